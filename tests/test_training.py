"""The training engine: a real (tiny) run end to end, exact resume after SIGKILL, safe checkpoints,
config errors before anything is written, the non-finite guard, eval and predict on a saved run."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

import resnetlab
from resnetlab import checkpoint as ckpt
from resnetlab.cli import main
from resnetlab.data.sources import synthetic
from resnetlab.errors import ConfigError, UserError, WriteFailed
from resnetlab.recipes import list_recipes
from resnetlab.training import load_config
from resnetlab.training.config import ScheduleConfig
from resnetlab.training.loop import TrainingDiverged, fit
from resnetlab.training.optim import lr_multiplier

TINY = [
    "model=resnet20",
    "data=synthetic",
    "epochs=2",
    "batch_size=32",
    "limit_train=256",
    "limit_val=64",
    "quiet=true",
    "output.tensorboard=false",
]


def tiny(tmp_path, *extra):
    return load_config(None, TINY + [f"out={tmp_path / 'runs'}", *extra])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    settings = TINY + [f"out={out}", "epochs=3", "limit_train=512", "lr=0.05", "schedule=cosine", "data.crop_padding=2"]
    return fit(load_config(None, settings))


def test_a_tiny_run_writes_every_file_and_each_is_readable(finished_run):
    run = finished_run.run_dir
    for name in (
        "config.yaml",
        "metrics.csv",
        "last.pt",
        "last.safetensors",
        "best.safetensors",
        "curves.png",
        "confusion_matrix.png",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["name"] == "resnet20" and config["schedule"]["epochs"] == 3
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,step,lr,train_loss") and len(rows) == 4
    state = torch.load(run / "last.pt", weights_only=True)  # plain types only
    assert state["epoch"] == 3 and state["step"] == 48 and state["config"]["model"]["name"] == "resnet20"
    weights = load_file(run / "best.safetensors")
    assert "fc.weight" in weights and weights["fc.weight"].shape == (10, 64)
    for png in ("curves.png", "confusion_matrix.png"):
        with Image.open(run / png) as img:
            assert img.format == "PNG" and img.size[0] > 300
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"] == 269_722 and summary["epochs"] == 3
    for key in ("test_top1", "wall_s", "train_images_per_s", "macs_per_image", "best_epoch"):
        assert key in summary
    assert summary["test_top1"] > 0.5  # the synthetic classes are learnable: far above 10% chance


def test_run_directories_are_never_overwritten(tmp_path):
    cfg = tiny(tmp_path, "epochs=1", "limit_train=64")
    first, second = fit(cfg).run_dir, fit(cfg).run_dir
    assert first != second and second.name == first.name + "-2"


def test_eval_and_predict_on_a_saved_run(finished_run, tmp_path):
    result = resnetlab.evaluate(finished_run.run_dir, data="synthetic", split="test", limit=64)
    assert result["count"] == 64 and result["confusion"].sum() == 64
    assert result["top1"] == pytest.approx(finished_run.summary["test_top1"], abs=0.02)
    images = synthetic("test", n=3).images
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(img).save(paths[-1])
    predictions = resnetlab.predict(finished_run.run_dir, paths, topk=3)
    assert len(predictions) == 3 and all(len(p["top"]) == 3 for p in predictions)
    probs = [p for _, p in predictions[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    model, meta = resnetlab.load(finished_run.run_dir)
    assert meta.classes[0] == "class0" and meta.input_size == (3, 32, 32) and not model.training


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_eval_scores_an_export_on_the_runs_own_split_as_the_weights_score(finished_run, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from resnetlab.export import export

    path = export(finished_run.run_dir, fmt, tmp_path / f"m.{fmt}").path
    for split in ("test", "val"):
        weights = resnetlab.evaluate(finished_run.run_dir, split=split, device="cpu", precision="fp32")
        exported = resnetlab.evaluate(path, split=split)  # the metadata inside the export rebuilds the split
        assert exported["dataset"] == weights["dataset"]
        assert exported["confusion"].sum() == weights["confusion"].sum()
        assert abs(exported["top1"] - weights["top1"]) * exported["confusion"].sum() <= 1  # at most a near-tie
        assert exported["loss"] == pytest.approx(weights["loss"], abs=1e-4)


def test_cli_eval_and_predict(finished_run, tmp_path, capsys):
    assert main(["eval", str(finished_run.run_dir), "data=synthetic", "limit=32", f"out={tmp_path / 'cm.png'}"]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "class9" in out and (tmp_path / "cm.png").is_file()
    Image.fromarray(synthetic("test", n=1).images[0]).save(tmp_path / "x.png")
    assert main(["predict", str(finished_run.run_dir), str(tmp_path / "x.png"), "--json", "--topk", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["top"]) == 2
    assert main(["eval", str(finished_run.run_dir), "datta=synthetic"]) == 2
    assert "data=" in capsys.readouterr().err


def _weights(run: Path) -> dict:
    return load_file(run / "last.safetensors")


def test_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path):
    settings = TINY + [
        "epochs=3",
        "model.args.drop_path_rate=0.1",
        "data.mixup=0.2",
        "data.cutout=8",
        "run.checkpoint_every=3",
        "optim.ema=0.9",
    ]
    reference = fit(load_config(None, settings + [f"out={tmp_path / 'ref'}"]))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "resnetlab", "train", *settings, f"out={out}", "name=victim"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "victim" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere later in the run: mid-epoch, mid-write, wherever
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "victim" / "last.pt", weights_only=True)
    assert (killed_at["epoch"], killed_at["batch_in_epoch"]) < (3, 0), "the run finished before it was killed"
    resumed = fit(load_config(None, [f"resume={out / 'victim'}", "quiet=true"]))
    assert resumed.run_dir == out / "victim"
    a, b = _weights(reference.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for r1, r2 in zip(reference.rows, resumed.rows, strict=True):
        for key in ("step", "lr", "train_loss", "train_acc", "val_loss", "val_top1"):
            assert r1[key] == r2[key], key


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, {"epoch": 1, "model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def half_then_full(tmp, data):
        Path(tmp).write_bytes(bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt, "write_bytes", half_then_full)
    with pytest.raises(WriteFailed, match=r"^no space left on device while writing .*last\.pt; nothing was replaced"):
        ckpt.save_checkpoint(path, {"epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_corrupt_and_unsafe_checkpoints_are_clear_errors(tmp_path):
    path = tmp_path / "last.pt"
    ckpt.save_checkpoint(path, {"epoch": 1})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError, match=r"last.pt is truncated or is not a PyTorch checkpoint"):
        ckpt.load_checkpoint(path)

    import datetime  # any class outside the safe list stands in for a malicious object

    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "thing": datetime.date(2020, 1, 1)}, path)
    with pytest.raises(UserError, match=r"asks to run code when loaded \(datetime.date\), so it was not loaded"):
        ckpt.load_checkpoint(path)
    with pytest.raises(UserError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path / "nowhere")


def test_non_finite_loss_stops_with_epoch_step_and_lr_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import torch.nn.functional as F

    real, calls = F.cross_entropy, {"n": 0}

    def poisoned(*args, **kwargs):
        loss = real(*args, **kwargs)
        if kwargs.get("reduction") == "sum":  # evaluation
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 12 else loss

    monkeypatch.setattr(F, "cross_entropy", poisoned)
    cfg = tiny(tmp_path, "name=nan")  # 8 steps an epoch: the host reads the loss at step 8 and 16 only
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 2, step 12 \(lr"):
        fit(cfg)
    state = ckpt.load_checkpoint(tmp_path / "runs" / "nan")
    assert state["epoch"] == 1 and state["step"] == 8


def test_config_errors_name_the_closest_key_before_anything_is_written(tmp_path):
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(None, ["batchsize=3", f"out={out}"])
    with pytest.raises(ConfigError, match=r"optim.lr='fast' should be float"):
        load_config(None, ["lr=fast"])
    with pytest.raises(ConfigError, match="schedule.name='linear'"):
        load_config(None, ["schedule=linear"])
    assert load_config(None, ["weight_decay=1e-4"]).optim.weight_decay == 1e-4  # YAML alone would read text
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(None, ["epochs"])
    with pytest.raises(ConfigError, match="give one of them"):
        load_config(None, ["resume=a", "init=b"])
    with pytest.raises(UserError, match="unknown model"):
        fit(load_config(None, ["model=resnet21", "data=synthetic", f"out={out}"]))
    assert not out.exists()
    assert main(["train", "optim.lrr=0.1"]) == 2


def test_cli_train_runs_a_recipe_with_overrides(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "model: {name: resnet20}\ndata: {name: synthetic, limit_train: 64, limit_val: 32}\n"
        "optim: {batch_size: 32}\nschedule: {epochs: 1}\n"
    )
    assert main(["train", str(recipe), f"out={tmp_path}", "quiet=true", "output.tensorboard=false"]) == 0
    assert "test top-1" in capsys.readouterr().out
    assert (tmp_path / "resnet20-synthetic" / "summary.json").is_file()


def test_paper_schedule_in_iterations():
    cfg = ScheduleConfig(name="multistep", iterations=64_000, unit="iteration", milestones=[32_000, 48_000])
    m = lr_multiplier(cfg, steps_per_epoch=352)
    assert m(0) == 1 and m(31_999) == 1 and m(32_000) == pytest.approx(0.1) and m(48_000) == pytest.approx(0.01)
    cos = lr_multiplier(ScheduleConfig(name="cosine", epochs=10, warmup=1), 100)
    # Warm-up multiplies the cosine, which runs over the whole schedule: 0.5 * (1 + cos(pi * 99 / 1000)) at step 99.
    assert (
        cos(0) == pytest.approx(0.01 * 1.0, abs=1e-4) and cos(99) == pytest.approx(0.976, abs=1e-3) and cos(999) < 1e-4
    )
    one = lr_multiplier(ScheduleConfig(name="onecycle", epochs=4, pct_start=0.25), 100)
    assert one(0) == pytest.approx(1 / 25) and one(100) == pytest.approx(1) and one(399) < 1e-3


def test_every_shipped_recipe_loads_by_name_and_states_its_command_and_result():
    shipped = list_recipes()
    assert {"fashion_mnist_fast", "finetune_folder", "cifar10_resnet_paper"} <= {r.name for r in shipped}
    for recipe in shipped:
        assert recipe.command.startswith(("resnetlab train " + recipe.name, "resnetlab finetune " + recipe.name))
        assert recipe.result and recipe.title, recipe.name
        assert load_config(recipe.name).to_dict() == load_config(recipe.path).to_dict()
    assert load_config("configs/fashion_mnist_fast.yaml").model.name == "resnet14"  # the old path still finds it
    with pytest.raises(ConfigError, match=r"'fashion_mnist_fats' is neither a file nor a shipped recipe \(did you"):
        load_config("fashion_mnist_fats")


def test_a_field_name_alone_is_its_key_where_one_section_has_it():
    cfg = load_config(None, ["threads=2", "crop_padding=0", "nesterov=true", "name=x", "model=resnet8"])
    assert (cfg.run.threads, cfg.data.crop_padding, cfg.optim.nesterov) == (2, 0, True)
    assert (cfg.output.name, cfg.model.name) == ("x", "resnet8")  # shared names keep their documented meaning
    with pytest.raises(ConfigError, match="unknown config key 'thread'.*threads"):
        load_config(None, ["thread=2"])


def test_help_lists_every_key_with_its_default_and_meaning(capsys):
    from resnetlab.training.config import all_keys
    from resnetlab.training.settings import key_docs

    undocumented = [key for key, _, doc in key_docs() if not doc]
    assert not undocumented  # every field carries its one line of meaning where it is defined
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for key in all_keys():
        assert f"  {key}" in text, key
    assert "run.threads (threads)=0  CPU threads for torch (0: all cores)" in text
    assert "data.crop_scale (crop_scale)=[]  [min, max] area share: random resized crops (the ImageNet" in text
    assert "optim.optimizer (optimizer)=sgd [sgd|adam|adamw]" in text


def test_meanings_and_choices_live_in_the_fields_and_resume_classifies_only_real_keys():
    from resnetlab.training.config import DataConfig, all_keys, choices_of, field_of
    from resnetlab.training.resume import ARITHMETIC_KEYS, DISPLAY_KEYS, setting_kind

    assert field_of("run.threads").metadata["help"] == "CPU threads for torch (0: all cores)"
    assert choices_of("optim.optimizer") == ("sgd", "adam", "adamw") and choices_of("optim.lr") == ()
    assert DataConfig().crop_ratio is not DataConfig().crop_ratio  # each config owns its lists
    assert set(ARITHMETIC_KEYS + DISPLAY_KEYS) <= set(all_keys())  # a misspelt key would count as "learning"
    assert (setting_kind("run.threads"), setting_kind("run.quiet"), setting_kind("optim.lr")) == (
        "arithmetic",
        "display",
        "learning",
    )
    with pytest.raises(ConfigError, match="run.precision='fp8' is not one of auto, bf16, fp16, fp32"):
        load_config(None, ["precision=fp8"])


def test_print_config_resolves_a_recipe_and_writes_nothing(tmp_path, capsys):
    assert main(["train", "fashion_mnist_fast", "epochs=2", "threads=1", f"out={tmp_path}", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["name"] == "resnet14" and printed["schedule"]["epochs"] == 2
    assert printed["run"]["threads"] == 1 and not any(tmp_path.iterdir())


def test_a_bare_train_asks_what_to_train_instead_of_starting_a_default_job(capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert "train needs a recipe or settings" in err and "resnetlab recipes" in err and "Traceback" not in err


def test_recipes_command_lists_each_with_command_and_result(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist_fast:" in out and "command: resnetlab train fashion_mnist_fast" in out
    assert "result:" in out and "AMD EPYC" in out
    assert main(["recipes", "finetune_folder"]) == 0
    assert "crop_scale" in capsys.readouterr().out


def test_api_train_with_keyword_overrides(tmp_path):
    result = resnetlab.train(
        None,
        model="resnet20",
        data="synthetic",
        epochs=1,
        batch_size=32,
        limit_train=64,
        limit_val=32,
        out=str(tmp_path),
        quiet=True,
        threads=2,  # any key a field name alone names, as on the command line
        tensorboard=False,
    )
    assert result.run_dir.is_dir() and np.isfinite(result.rows[0]["train_loss"])
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["run"]["threads"] == 2 and saved["output"]["tensorboard"] is False


def test_tensorboard_asked_for_but_not_installed_is_said_once_with_how_to_install(tmp_path, monkeypatch, caplog):
    import importlib.util

    import resnetlab.training.report as report

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    monkeypatch.setattr(report, "_said_no_tensorboard", [])
    with caplog.at_level("INFO", logger="resnetlab"):
        for name in ("a", "b"):
            fit(tiny(tmp_path, f"name={name}", "epochs=1", "limit_train=64", "output.tensorboard=true"))
    said = [r.message for r in caplog.records if "TensorBoard is not installed" in r.message]
    assert len(said) == 1 and "pip install tensorboard" in said[0]


def test_adam_adds_l2_to_the_gradient_where_adamw_decays_apart():
    """optimizer=adam is torch.optim.Adam (coupled L2: weight_decay * w joins the gradient, then the adaptive step
    normalises it), adamw decays the weight by lr * weight_decay apart from the step. With a zero gradient the
    first Adam step moves w by about lr; AdamW's by lr * weight_decay."""
    from resnetlab.training.config import OptimConfig
    from resnetlab.training.optim import build_optimizer

    moved = {}
    for kind in ("adam", "adamw"):
        w = torch.nn.Parameter(torch.ones(3))
        opt = build_optimizer([{"params": [w], "lr": 0.01, "weight_decay": 0.1}], OptimConfig(optimizer=kind, lr=0.01))
        w.grad = torch.zeros(3)
        opt.step()
        moved[kind] = float(1 - w.detach()[0])
    assert moved["adam"] == pytest.approx(0.01, rel=1e-3) and moved["adamw"] == pytest.approx(0.001, rel=1e-3)


def test_a_run_trains_with_plain_adam(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_DATA", str(tmp_path / "cache"))
    args = ["train", "data=synthetic", "model=resnet8", "limit_train=64", "limit_val=32", "epochs=1"]
    args += ["batch_size=32", "optimizer=adam", "lr=1e-3", "weight_decay=0", f"out={tmp_path}", "name=adam"]
    assert main(args) == 0
    saved = yaml.safe_load((tmp_path / "adam" / "config.yaml").read_text())
    assert saved["optim"]["optimizer"] == "adam"
    state = torch.load(tmp_path / "adam" / "last.pt", weights_only=False)
    assert "exp_avg_sq" in next(iter(state["optimizer"]["state"].values()))  # Adam's second moment, saved
    assert all(not group["decoupled_weight_decay"] for group in state["optimizer"]["param_groups"])  # not AdamW


def test_the_start_line_says_where_the_schedule_takes_the_lr():
    from resnetlab.training.config import OptimConfig, ScheduleConfig
    from resnetlab.training.optim import describe_optimization, lr_multiplier

    optim = OptimConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=128, weight_decay=5e-4)
    schedule = ScheduleConfig(name="multistep", epochs=10, milestones=[5, 8], gamma=0.1)
    line = describe_optimization(optim, schedule, lr_multiplier(schedule, 100), 1000)
    assert "sgd (momentum 0.9), batch 128, weight decay 0.0005 (L2)" in line
    assert "lr schedule multistep: 0.1 at the first step, 0.1 at most, 0.001 at the last of 1,000" in line
    constant = ScheduleConfig(name="constant", epochs=10)
    adam = OptimConfig(optimizer="adam", lr=1e-3)
    line = describe_optimization(adam, constant, lr_multiplier(constant, 100_000), 10**6)  # sampled, not every step
    assert "0.001 at the first step, 0.001 at most, 0.001 at the last of 1,000,000" in line
