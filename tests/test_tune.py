"""`resnetlab tune`: trials are ordinary runs scored on validation only, the best is scored once on test and
written as a recipe that reproduces it bit for bit, processes share one study, and a killed tune resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from safetensors.torch import load_file

from resnetlab.cli import main, parse_duration
from resnetlab.errors import ConfigError, UserError
from resnetlab.recipes import read_header
from resnetlab.training import load_config
from resnetlab.training.loop import fit
from resnetlab.tune import tune
from resnetlab.tune.space import default_space, parse_dimension, parse_space
from resnetlab.tune.study import STUDY_NAME, open_storage

TINY = [
    "model=resnet8",
    "data=synthetic",
    "epochs=2",
    "batch_size=32",
    "limit_train=256",
    "limit_val=64",
    "quiet=true",
    "output.tensorboard=false",
]
SPACE = {"lr": "log:0.01:0.5", "label_smoothing": "float:0:0.2"}


def load_study(tune_dir: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage("", tune_dir))


@pytest.fixture(scope="module")
def four_trials(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    result = tune(None, TINY, space=SPACE, trials=4, out=str(out), name="t", sampler_seed=0)
    return result, load_study(out / "t")


def test_each_trial_is_a_run_scored_on_validation_and_only_the_best_on_test(four_trials):
    result, study = four_trials
    trials = study.get_trials()
    assert len(trials) == 4 and {t.number for t in trials} == {0, 1, 2, 3}
    assert trials[0].params == {"optim.lr": 0.1, "optim.label_smoothing": 0.0}  # first: the settings' own values
    assert trials[0].user_attrs["recipe_values"]
    assert "(the recipe's values)" in (result.tune_dir / "trials.csv").read_text()
    for trial in trials:
        run_dir = Path(trial.user_attrs["run_dir"])
        assert (run_dir / "config.yaml").is_file() and (run_dir / "last.pt").is_file()
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["output"]["score_test"] is False
        assert config["optim"]["lr"] == pytest.approx(trial.params["optim.lr"])
        summary_path = run_dir / "summary.json"
        if trial.state != optuna.trial.TrialState.COMPLETE:
            continue  # a pruned trial stops after an epoch: it has a checkpoint but no summary
        summary = json.loads(summary_path.read_text())
        assert trial.value == summary["best_val_top1"]
        has_test = any(k.startswith("test_") for k in summary)
        assert has_test == (trial.number == result.best.number), trial.number
    best_summary = json.loads((Path(result.best.user_attrs["run_dir"]) / "summary.json").read_text())
    assert best_summary["test_top1"] == result.test["top1"] and best_summary["result_split"] == "test"
    assert study.user_attrs["test_scored"].keys() == {str(result.best.number)}
    for name in ("report.md", "trials.csv", "history.png", "best.yaml"):
        assert (result.tune_dir / name).is_file(), name
    report = (result.tune_dir / "report.md").read_text()
    assert f"**Best so far: trial {result.best.number}**" in report and f"{100 * result.test['top1']:.2f}%" in report


def test_the_best_recipe_reproduces_the_best_trial_bit_for_bit(four_trials, tmp_path):
    result, _ = four_trials
    header = read_header(result.recipe)
    assert header.command == f"resnetlab train {result.recipe}"
    assert f"{100 * result.best.value:.2f}% validation top-1" in header.result
    settings = yaml.safe_load(result.recipe.read_text())
    assert settings["run"]["threads"] == torch.get_num_threads() and settings["run"]["precision"] != "auto"
    assert "out" not in settings.get("output", {})
    again = fit(load_config(str(result.recipe), [f"out={tmp_path}"]))
    trial_dir = Path(result.best.user_attrs["run_dir"])
    assert again.summary["best_val_top1"] == result.best.value
    assert again.summary["test_top1"] == result.test["top1"]  # train scores test itself: the same figure
    mine, theirs = load_file(again.run_dir / "best.safetensors"), load_file(trial_dir / "best.safetensors")
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_a_continued_tune_runs_only_the_missing_trials_and_scores_no_second_test(four_trials, monkeypatch):
    result, study = four_trials

    def no_second_score(*args, **kwargs):
        raise AssertionError("the test split was scored a second time")

    monkeypatch.setattr("resnetlab.inference.evaluate", no_second_score)
    again = tune(None, TINY, space=SPACE, trials=4, out=str(result.tune_dir.parent), name="t", sampler_seed=0)
    assert len(load_study(result.tune_dir).get_trials()) == 4
    assert again.best.number == result.best.number and again.test == result.test


def test_two_processes_started_together_share_one_study(tmp_path):
    command = [sys.executable, "-m", "resnetlab", "tune", *TINY, "epochs=3", "limit_train=512", "trials=4"]
    command += [f"out={tmp_path}", "name=t", *[f"space.{k}={v}" for k, v in SPACE.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    study = load_study(tmp_path / "t")
    trials = study.get_trials()
    assert [t.state.name for t in trials].count("WAITING") == 0 and len(trials) == 4, outputs  # no fifth trial
    assert len({str(t.params) for t in trials}) == 4  # each process draws its own values
    runners = [t.user_attrs["owner"]["pid"] for t in trials]
    assert set(runners) == {p.pid for p in procs}, outputs  # each process ran at least one of them
    assert len(study.user_attrs["test_scored"]) == 1  # scored once, by whichever process ended when none ran


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_tune_stopped_mid_trial_resumes_that_trial_from_its_checkpoint(tmp_path, signum):
    command = [sys.executable, "-m", "resnetlab", "tune", *TINY, "epochs=6", "limit_train=512", "trials=1"]
    command += [f"out={tmp_path}", "name=t", "pruner=none", "space.lr=log:0.05:0.1"]
    stopped = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "t" / "trials" / "trial-000" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.is_file() and stopped.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped.send_signal(signum)  # SIGKILL: no chance to say anything, the trial stays "running" in the study
    said = stopped.communicate(timeout=120)[1]
    assert checkpoint.is_file()
    if signum == signal.SIGTERM:
        assert stopped.returncode == 128 + signum and "give the same tune command again" in said, said
        assert "Traceback" not in said
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    gone = "trial 0 was running in a process that is gone: queued to run again" in resumed.stderr
    assert gone == (signum == signal.SIGKILL), resumed.stderr  # a stopped trial queued its retry itself
    assert "resumes trial 0's run from its checkpoint" in resumed.stderr
    trials = load_study(tmp_path / "t").get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == trials[0].params
    assert trials[1].user_attrs["run_dir"] == trials[0].user_attrs["run_dir"]
    summary = json.loads((checkpoint.parent / "summary.json").read_text())
    assert summary["epochs"] == 6 and "test_top1" in summary  # one run, finished in its own directory


@pytest.mark.parametrize(
    ("key", "spec", "words"),
    [
        ("lr", "uniform:0:1", "log:0.01:1"),
        ("lr", "log:1:0.1", "must be below"),
        ("lr", "log:0:1", "above 0"),
        ("epochs", "int:2.5:4", "whole numbers"),
        ("lr", "log:0.1", "two numbers"),
        ("crop_padding", "choice:0,2,2", "twice"),
    ],
)
def test_a_bad_dimension_is_refused_in_one_sentence(key, spec, words):
    with pytest.raises(ConfigError, match=words):
        parse_dimension(key, spec)


def test_every_value_of_the_space_is_checked_as_a_setting_before_any_trial():
    base = load_config(None, TINY)
    with pytest.raises(ConfigError, match=r"space.optim.label_smoothing=float:0:1.5 .*label_smoothing"):
        parse_space({"label_smoothing": "float:0:1.5"}, base)
    with pytest.raises(ConfigError, match="pad_mode"):
        parse_space({"pad_mode": "choice:zeros,mirror"}, base)
    (dim,) = parse_space({"epochs": "int:3:15"}, base)
    assert (dim.key, dim.values()) == ("schedule.epochs", [3, 15])


def test_the_default_space_is_centred_on_the_recipe():
    space = {d.key: d for d in default_space(load_config("fashion_mnist_fast"))}
    assert (space["optim.lr"].low, space["optim.lr"].high) == pytest.approx((0.05, 0.8))
    from resnetlab.tune.space import recipe_values

    own = recipe_values(load_config("fashion_mnist_fast"), list(space.values()))
    assert own == {"optim.lr": 0.2, "optim.weight_decay": 5e-4, "optim.label_smoothing": 0.1, "data.crop_padding": 0}
    assert space["data.crop_padding"].choices == (0, 2, 4)
    assert "data.crop_padding" not in {d.key for d in default_space(load_config("finetune_folder"))}


def test_a_recipe_declares_its_space_and_train_ignores_it(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: resnet8}\nspace: {lr: 'log:0.01:1'}\n")
    assert load_config(str(recipe)).model.name == "resnet8"
    from resnetlab.tune.space import recipe_space

    assert recipe_space(str(recipe)) == {"lr": "log:0.01:1"}


def test_durations_read_as_people_write_them():
    assert [parse_duration(t) for t in ("60m", "90s", "1.5h", "3600")] == [3600, 90, 5400, 3600]
    with pytest.raises(UserError, match="budget='soon'"):
        parse_duration("soon")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], "needs a recipe"),
        (TINY, "trials=N, budget="),
        ([*TINY, "trials=2", "val_fraction=0"], "validation only"),
        ([*TINY, "trials=2", "nproc=2"], "its own process"),
        ([*TINY, "trials=2", "pruner=sometimes"], "pruner='sometimes'"),
        ([*TINY, "trials=2", "space.lr"], "'space.lr' is not key=value"),
        ([*TINY, "trials=2", "space.val_fraction=float:0.1:0.2"], "space.data.val_fraction cannot be searched"),
        ([*TINY, "trials=2", "storage=nosuch://x"], "storage=nosuch://x could not be opened"),
        ([*TINY, "trials=2", "space.lr=log:0:1"], "above 0"),
        ([*TINY, "budget=soon"], "budget='soon'"),
    ],
)
def test_tune_user_errors_exit_2_in_one_line(args, words, tmp_path, capsys):
    assert main(["tune", *args, f"out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1


def test_a_study_of_other_settings_is_refused(four_trials):
    result, _ = four_trials
    with pytest.raises(UserError, match="searches other settings"):
        tune(None, [*TINY, "epochs=3"], space=SPACE, trials=4, out=str(result.tune_dir.parent), name="t")


def test_a_budget_stops_before_a_trial_that_would_not_fit(tmp_path, caplog):
    with caplog.at_level("INFO", logger="resnetlab"):
        result = tune(None, TINY, space=SPACE, budget_s=0.5, out=str(tmp_path), name="t")
    assert len(load_study(result.tune_dir).get_trials()) == 1  # the first trial always starts
    assert "no more trials" in caplog.text and "budget:" in caplog.text


def test_trials_that_diverge_fail_count_and_the_search_goes_on(tmp_path, capsys):
    assert main(["tune", *TINY, "trials=2", "space.lr=choice:1e9", f"out={tmp_path}", "name=t"]) == 2
    assert "no trial of" in capsys.readouterr().err  # every trial diverged: nothing to score, said in one line
    trials = load_study(tmp_path / "t").get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all("the training loss became nan" in t.user_attrs["error"] for t in trials)


def test_auto_prunes_nothing_when_the_schedule_length_is_searched():
    from resnetlab.tune.search import pruner

    base = load_config(None, TINY)
    chosen, why = pruner("auto", parse_space({"epochs": "int:2:4"}, base))
    assert isinstance(chosen, optuna.pruners.NopPruner) and "schedule.epochs is searched" in why
    assert isinstance(pruner("auto", parse_space(SPACE, base))[0], optuna.pruners.MedianPruner)


def test_a_run_with_test_scoring_off_reports_validation_only(tmp_path, capsys):
    result = fit(load_config(None, [*TINY, "epochs=1", f"out={tmp_path}", "output.score_test=false"]))
    assert not [k for k in result.summary if k.startswith("test_")] and result.summary["result_split"] is None
    assert result.summary["best_val_top1"] > 0
    said = capsys.readouterr().out
    assert "the test split is not scored (output.score_test=false)" in said
    assert "test not scored (output.score_test=false)" in said and "val top-1" in said
