"""resume= tells the truth: settings that change what is learned are refused (naming both values, writing
nothing), settings that change only the arithmetic are applied and said, a fine-tuning run resumes bit for
bit; foreign weights keep the normalisation they were trained with; fp16 trains with a gradient scaler."""

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

import resnetlab
from resnetlab.cli import main
from resnetlab.training import device as device_module
from resnetlab.training import load_config
from resnetlab.training.device import choose_precision
from resnetlab.training.loop import fit
from resnetlab.training.setup import IMAGENET_MEAN, IMAGENET_STD
from resnetlab.training.step import TrainStep

SETTINGS = [
    "model=resnet8",
    "data=synthetic",
    "epochs=2",
    "batch_size=64",
    "limit_train=512",
    "quiet=true",
    "output.tensorboard=false",
    "run.checkpoint_every=3",
]


class Stop(Exception):
    """Stands in for a kill: raised at a step boundary, after a mid-epoch checkpoint was written."""


def interrupted(monkeypatch, settings: list[str], after_steps: int) -> Path:
    """Start (or, with resume=, continue) a run and stop it after `after_steps` steps; returns its directory."""
    calls = []
    real_set_lr = TrainStep.set_lr

    def set_lr_then_stop(*args, **kwargs):
        calls.append(None)
        if len(calls) > after_steps:
            raise Stop
        return real_set_lr(*args, **kwargs)

    cfg = load_config(None, settings)
    with monkeypatch.context() as patch:
        patch.setattr(TrainStep, "set_lr", set_lr_then_stop)
        try:
            fit(cfg)
        except Stop:
            pass
    if cfg.output.resume:
        return Path(cfg.output.resume)
    (run,) = [p.parent for p in Path(cfg.output.out).glob("*/last.pt")]
    return run


def files_of(run):
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def test_resume_with_a_changed_learning_setting_exits_2_naming_both_values_and_writes_nothing(
    tmp_path, monkeypatch, capsys
):
    run = interrupted(monkeypatch, SETTINGS + [f"out={tmp_path}", "lr=0.05"], after_steps=5)
    before = files_of(run)
    assert main(["train", f"resume={run}", "lr=0.2", "model=resnet14"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr 0.05 (run) vs 0.2 (given)" in err and "model.name 'resnet8' (run) vs 'resnet14' (given)" in err
    assert f"init={run}" in err and "Traceback" not in err
    assert files_of(run) == before
    assert main(["train", f"resume={run}", "lr=0.05", "quiet=true"]) == 0  # the run's own values are fine


def test_a_longer_schedule_is_refused_with_what_would_work(tmp_path, capsys):
    run = fit(load_config(None, SETTINGS + [f"out={tmp_path}", "epochs=1"])).run_dir
    assert main(["train", f"resume={run}", "epochs=3"]) == 2
    err = capsys.readouterr().err
    assert "schedule.epochs 1 (run) vs 3 (given)" in err and "init=" in err and "epochs=" in err


def test_resume_with_other_threads_continues_says_so_and_records_it(tmp_path, monkeypatch, capsys):
    # NCHW: in channels_last, oneDNN's 1- and 2-thread convolutions differ more (~6e-3 after these steps, AMD EPYC)
    nchw = ["run.threads=1", "run.channels_last=false"]
    reference = fit(load_config(None, SETTINGS + [f"out={tmp_path / 'ref'}", *nchw]))
    run = interrupted(monkeypatch, SETTINGS + [f"out={tmp_path / 'cut'}", *nchw], after_steps=5)
    capsys.readouterr()
    resumed = fit(load_config(None, [f"resume={run}", "run.threads=2", "quiet=true"]))
    assert "will not be bit-identical" in capsys.readouterr().out
    a, b = load_file(reference.run_dir / "last.safetensors"), load_file(resumed.run_dir / "last.safetensors")
    for key in a:  # two threads sum in another order: float noise of ~1e-4, grown a little by later steps
        torch.testing.assert_close(a[key], b[key], rtol=1e-2, atol=2e-3)
    assert resumed.summary["history"] == [{"resumed_at_step": 3, "changed": {"run.threads": [1, 2]}}]
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["threads"] == 2


def test_a_fine_tuning_run_killed_mid_epoch_resumes_bit_identically(tmp_path, monkeypatch):
    source = fit(load_config(None, SETTINGS + [f"out={tmp_path / 'src'}", "epochs=1"])).run_dir
    tune = [
        *SETTINGS,
        f"init={source}",
        "model=",
        "freeze=stem",
        "lr=0.02",
        "data.mixup=0.2",
        "optim.ema=0.9",
        "run.seed=4",
    ]
    reference = fit(load_config(None, tune + [f"out={tmp_path / 'ref'}"]))
    run = interrupted(monkeypatch, tune + [f"out={tmp_path / 'cut'}"], after_steps=10)  # epoch 2, mid-way
    stopped = torch.load(run / "last.pt", weights_only=True)
    assert (stopped["epoch"], stopped["batch_in_epoch"]) == (1, 1)  # mid-epoch, in the second epoch
    interrupted(monkeypatch, [f"resume={run}", "quiet=true"], after_steps=3)  # stopped a second time
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 12
    resumed = fit(load_config(None, [f"resume={run}", "quiet=true"]))
    a, b = load_file(reference.run_dir / "last.safetensors"), load_file(resumed.run_dir / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r["val_top1"] for r in reference.rows] == [r["val_top1"] for r in resumed.rows]


def test_torchvision_style_weights_keep_imagenet_normalisation(tmp_path):
    state = resnetlab.create_model("resnet8", num_classes=7).state_dict()  # a plain state dict: no metadata
    torch.save(state, tmp_path / "foreign.pth")
    result = fit(load_config(None, SETTINGS + [f"out={tmp_path}", f"init={tmp_path / 'foreign.pth'}", "epochs=1"]))
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["data"]["mean"] == list(IMAGENET_MEAN) and config["data"]["std"] == list(IMAGENET_STD)
    assert resnetlab.load(result.run_dir)[1].mean == tuple(IMAGENET_MEAN)
    own = fit(
        load_config(
            None,
            SETTINGS
            + [f"out={tmp_path}", "data.mean=[0.5]", f"init={tmp_path / 'foreign.pth'}", "epochs=1", "data.std=[0.25]"],
        )
    )
    assert resnetlab.load(own.run_dir)[1].mean == (0.5,)  # the user's choice wins


def test_auto_precision_uses_bf16_only_where_it_is_native(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: False)
    chosen = choose_precision("auto", "auto", cpu)
    assert chosen.dtype is None and "emulated" in chosen.reason
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: True)
    assert choose_precision("auto", "auto", cpu).dtype is torch.bfloat16
    assert choose_precision("fp16", "auto", cpu).needs_scaler and not choose_precision("bf16", "auto", cpu).needs_scaler


def test_fp16_trains_with_a_gradient_scaler_and_resumes_it(tmp_path):
    result = fit(load_config(None, SETTINGS + [f"out={tmp_path}", "precision=fp16", "epochs=1", "limit_train=128"]))
    state = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert result.summary["precision"] == "float16" and state["scaler"]["scale"] > 0


def test_young_batchnorm_statistics_are_re_estimated_and_frozen_ones_kept():
    from resnetlab.training.norm_stats import reestimate, young_norms

    model = resnetlab.create_model("resnet8")
    model.train()
    model.bn1.eval()  # a frozen part keeps its statistics
    names = young_norms(model)
    assert "bn1" not in names and "layer1.0.bn1" in names
    x = torch.randn(16, 3, 32, 32) * 5 + 2
    before = model.bn1.running_var.clone()
    reestimate(model, names, [x[:8], x[8:]])
    assert torch.equal(model.bn1.running_var, before) and not model.bn1.training and model.layer1[0].bn1.training
    assert model.layer1[0].bn1.momentum == 0.1 and int(model.layer1[0].bn1.num_batches_tracked) == 0  # age kept
    assert model.layer1[0].bn1.running_var.mean() > 2  # the inputs' scale, not the initial 1


def test_resume_refuses_when_the_data_split_is_not_the_one_the_run_started_with(tmp_path, monkeypatch, capsys):
    run = interrupted(monkeypatch, SETTINGS + [f"out={tmp_path}"], after_steps=5)
    state = torch.load(run / "last.pt", weights_only=True)
    state["weights_meta"]["split"]["val_digest"] = "0000000000000000"  # as if other images had been held out
    torch.save(state, run / "last.pt")
    assert main(["train", f"resume={run}"]) == 2
    assert "val_digest 0000000000000000 then" in capsys.readouterr().err
    del state["weights_meta"]["split"]  # a run started before splits were recorded
    torch.save(state, run / "last.pt")
    assert main(["train", f"resume={run}"]) == 2
    assert "before resnetlab recorded its data split" in capsys.readouterr().err


def test_resuming_a_finished_run_is_refused_in_one_sentence(tmp_path, capsys):
    from resnetlab.cli import main

    settings = ["model=resnet8", "data=synthetic", "limit_train=256", "epochs=1", "quiet=true", f"out={tmp_path}",
                "name=done", "output.tensorboard=false"]  # fmt: skip
    assert main(["train", *settings]) == 0
    capsys.readouterr()
    assert main(["train", f"resume={tmp_path / 'done'}", "quiet=true"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'done'} already finished its 1 epochs; to train on, start a new run with init=" in err
