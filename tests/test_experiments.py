"""Experiments on tiny synthetic runs: every file, resumption that never retrains, per-layer gradient norms."""

import csv
import json

import numpy as np
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
    import resnetlab.training.epochs as epochs  # end_epoch evaluates validation here

    real_evaluate, calls = epochs.evaluate, {"n": 0}

    def killed_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the experiment is stopped after the first epoch's checkpoint
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(epochs, "evaluate", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        experiments.compare(["resnet8"], overrides=TINY, out=str(tmp_path), name="cmp")
    monkeypatch.setattr(epochs, "evaluate", real_evaluate)
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


def test_seeds_run_each_arm_n_times_and_report_mean_std_and_interval(tmp_path, capsys):
    exp = experiments.compare(["resnet8", "plain8"], overrides=TINY, out=str(tmp_path), name="s", seeds=3)
    for model in ("resnet8", "plain8"):
        seeds = [json.loads((exp / f"{model}-seed{s}" / "summary.json").read_text())["seed"] for s in range(3)]
        assert seeds == [0, 1, 2]  # each member trained under its own seed
    members = list(csv.DictReader(open(exp / "members.csv")))
    rows = {r["model"]: r for r in csv.DictReader(open(exp / "results.csv"))}
    assert len(members) == 6 and set(rows) == {"resnet8", "plain8"}
    for model, row in rows.items():
        errors = [float(m["test error %"]) for m in members if m["model"] == model]
        assert float(row["test error % mean"]) == pytest.approx(np.mean(errors), abs=0.01)
        assert float(row["test error % std"]) == pytest.approx(np.std(errors, ddof=1), abs=0.01)
        half = 4.303 * np.std(errors, ddof=1) / np.sqrt(3)  # Student's t, 2 degrees of freedom
        assert float(row["test error % 95% CI high"]) == pytest.approx(np.mean(errors) + half, abs=0.02)
        assert row["seeds"] == "0,1,2"
    md = (exp / "results.md").read_text()
    assert "test error % (mean ± std)" in md and " ± " in md
    report = (exp / "report.md").read_text()
    assert "95% interval" in report and "members.csv" in report
    assert _png(exp / "curves.png")


def test_several_seeds_start_from_the_recipe_seed_and_degradation_says_whether_seeds_separate(tmp_path):
    exp = experiments.degradation([8, 14], overrides=[*TINY, "seed=5"], out=str(tmp_path), name="d", seeds=2)
    assert sorted(p.name for p in exp.iterdir() if p.is_dir()) == sorted(
        f"{m}-seed{s}" for m in ("plain8", "plain14", "resnet8", "resnet14") for s in (5, 6)
    )
    report = (exp / "report.md").read_text()
    assert "mean ± std of 2 seeds" in report and "95% intervals of the two means" in report


def test_student_t_quantiles_follow_the_table_and_the_normal_limit():
    assert experiments.t_quantile_975(1) == 12.706 and experiments.t_quantile_975(30) == 2.042
    assert experiments.t_quantile_975(31) == pytest.approx(2.040, abs=1e-3)  # the table's next value
    assert experiments.t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
    assert experiments.Spread([1.0, 2.0, 3.0]).half_width == pytest.approx(4.303 * 1.0 / np.sqrt(3))


def test_bad_seeds_are_refused(tmp_path, capsys):
    assert main(["experiment", "compare", "models=resnet8", "seeds=0", f"out={tmp_path}"]) == 2
    assert "seeds='0'" in capsys.readouterr().err
    assert main(["experiment", "gradflow", "seeds=3", f"out={tmp_path}"]) == 2
    with pytest.raises(experiments.UserError, match="seeds=-1"):
        experiments.compare(["resnet8"], overrides=TINY, out=str(tmp_path), seeds=-1)


def test_an_unknown_model_stops_compare_before_any_member_trains(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(experiments, "fit", lambda cfg: calls.append(cfg))
    with pytest.raises(experiments.UserError, match="unknown model 'preact_resnet9'"):
        experiments.compare(["resnet8", "preact_resnet9"], overrides=TINY, out=str(tmp_path), seeds=2)
    assert calls == []


def _arm(name: str, train_errors: list[float]):
    from resnetlab.experiments import Member

    return name, [Member(name, None, {}, [{"train_acc": 1 - e / 100}]) for e in train_errors]


def test_degradation_findings_with_one_seed_say_it_cannot_separate_arms():
    from resnetlab.experiments import degradation_findings

    one = {
        ("plain", 20): _arm("plain20", [11.0]),
        ("plain", 56): _arm("plain56", [30.0]),
        ("resnet", 20): _arm("resnet20", [11.0]),
        ("resnet", 56): _arm("resnet56", [9.0]),
    }
    said = " ".join(degradation_findings(one, 20, 56, "A", 1))
    assert "(degradation)" not in said and "it ended worse, but one seed cannot separate the deeper plain" in said
    assert "one seed cannot tell" in said
    three = {
        ("plain", 20): _arm("plain20", [11.0, 11.2, 11.4]),
        ("plain", 56): _arm("plain56", [30.0, 30.5, 31.0]),
        ("resnet", 20): _arm("resnet20", [11.0, 11.1, 11.2]),
        ("resnet", 56): _arm("resnet56", [9.0, 9.1, 9.2]),
    }
    said = " ".join(degradation_findings(three, 20, 56, "A", 3))
    assert "the deeper plain network trained worse (degradation)" in said and "better): yes." in said


def test_the_full_preset_is_he_2015s_cifar10_schedule(tmp_path):
    """Section 4.2: batch 128, lr 0.1 divided by 10 at 32k and 48k iterations, 64k in all, weight decay 1e-4,
    momentum 0.9, 4-pixel zero padding, random crops and flips."""
    cfg = experiments.member_config("full", [], "resnet110", tmp_path)
    assert (cfg.data.name, cfg.optim.batch_size, cfg.optim.lr, cfg.optim.weight_decay) == ("cifar10", 128, 0.1, 1e-4)
    assert (cfg.schedule.name, cfg.schedule.iterations, list(cfg.schedule.milestones)) == (
        "multistep",
        64000,
        [32000, 48000],
    )
    assert (cfg.optim.momentum, cfg.data.crop_padding, cfg.data.pad_mode, cfg.data.hflip) == (0.9, 4, "zeros", "true")
