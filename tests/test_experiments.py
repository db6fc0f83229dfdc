"""Experiments on tiny synthetic runs: every file, resumption that never retrains, per-layer gradient norms."""

import json

import pytest
from PIL import Image

import resnetlab.experiments as experiments
from resnetlab.cli import main

TINY = ["data=synthetic", "limit_train=128", "limit_val=64", "epochs=2", "batch_size=32", "output.tensorboard=false"]


def _png(path):
    with Image.open(path) as img:
        return img.format == "PNG" and img.size[0] > 400


def test_degradation_writes_every_file_and_resumes_without_retraining(tmp_path, monkeypatch, capsys):
    exp = experiments.degradation([8, 14], overrides=TINY, out=str(tmp_path), name="deg")
    for member in ("plain8", "plain14", "resnet8", "resnet14"):
        assert (exp / member / "summary.json").is_file()  # an ordinary run directory
    assert _png(exp / "degradation.png")
    for name in ("results.csv", "results.md", "report.md"):
        assert (exp / name).is_file()
    report = (exp / "report.md").read_text()
    assert "degradation.png" in report and "results.csv" in report and "Plain-14 ends with" in report
    assert (exp / "results.csv").read_text().count("\n") == 5

    calls = []
    monkeypatch.setattr(experiments, "fit", lambda cfg: calls.append(cfg))
    experiments.degradation([8, 14], overrides=TINY, out=str(tmp_path), name="deg")
    assert calls == []  # every member was finished: nothing retrained
    assert capsys.readouterr().out.count("not retrained") == 4


def test_an_interrupted_member_is_resumed(tmp_path, monkeypatch):
    import resnetlab.training.loop as loop

    real_evaluate, calls = loop.evaluate, {"n": 0}

    def killed_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the experiment is stopped after the first epoch's checkpoint
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        experiments.compare(["resnet8"], overrides=TINY, out=str(tmp_path), name="cmp")
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    member = tmp_path / "cmp" / "resnet8"
    assert (member / "last.pt").is_file() and not (member / "summary.json").exists()
    resumed = []
    real_fit = experiments.fit
    monkeypatch.setattr(experiments, "fit", lambda cfg: resumed.append(cfg.output.resume) or real_fit(cfg))
    experiments.compare(["resnet8"], overrides=TINY, out=str(tmp_path), name="cmp")
    assert resumed == [str(member)] and (member / "summary.json").is_file()
    assert json.loads((member / "summary.json").read_text())["epochs"] == 2


def test_gradflow_measures_every_layer_with_a_parameter(tmp_path):
    exp = experiments.gradflow(
        ["plain14", "resnet14"], steps=3, overrides=["data=synthetic", "limit_train=128"], out=str(tmp_path), name="gf"
    )
    data = json.loads((exp / "gradflow-plain14.json").read_text())
    from resnetlab.models import create_model

    weights = [n for n, p in create_model("plain14").named_parameters() if p.dim() > 1]
    assert data["layers"] == weights and len(data["init"]) == len(data["trained"]) == 14
    assert all(v > 0 for v in data["init"] + data["trained"])
    assert _png(exp / "gradflow.png") and (exp / "gradflow.csv").read_text().count("\n") == 29


def test_cli_experiment_and_compare_runs(tmp_path, capsys):
    assert main(["experiment", "compare", "models=resnet8,plain8", f"out={tmp_path}", "name=c", *TINY]) == 0
    out = capsys.readouterr().out
    assert "| resnet8 |" in out and "report:" in out
    assert (
        main(["compare", str(tmp_path / "c" / "resnet8"), str(tmp_path / "c" / "plain8"), f"out={tmp_path / 'cc'}"])
        == 0
    )
    assert _png(tmp_path / "cc" / "curves.png") and (tmp_path / "cc" / "report.md").is_file()
    assert main(["experiment", "degradation", "depths=x"]) == 2
    assert main(["experiment", "compare", "models=resnet9"]) == 2
