"""The command line: tables, summaries, and user errors that exit 2 without a traceback."""

import subprocess
import sys

from resnetlab.cli import main


def test_models_table_lists_names_params_and_results(capsys):
    assert main(["models", "resnet2*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20 " in out and "269,722" in out and "8.75% test error" in out
    assert "resnet20_b" in out and "272,474" in out


def test_models_with_no_match_is_a_user_error(capsys):
    assert main(["models", "alexnet*"]) == 2
    assert "no model name matches" in capsys.readouterr().err


def test_summary_prints_layers_params_and_flops(capsys):
    assert main(["summary", "resnet20", "--input-size", "3,32,32"]) == 0
    out = capsys.readouterr().out
    assert "layer3.2" in out and "64x8x8" in out
    assert "parameters: 269,722" in out
    assert "FLOPs (multiply-adds) per image: 40,551,040" in out


def test_summary_on_grayscale_input(capsys):
    assert main(["summary", "resnet20", "--input-size", "1,28,28"]) == 0
    assert "16x28x28" in capsys.readouterr().out


def test_unknown_model_exits_2_with_suggestion_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "resnetlab", "summary", "resnt56"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "resnet56" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1  # one sentence


def test_bad_input_size_exits_2(capsys):
    assert main(["summary", "resnet20", "--input-size", "3,32"]) == 2
    assert "3,32" in capsys.readouterr().err
