"""One type owns what a checkpoint holds: round trips, files written by earlier versions, damaged files, and the
rule that no other module spells a checkpoint's keys."""

import ast
import shutil
from pathlib import Path

import pytest
import torch

import resnetlab
from resnetlab.checkpoint import Best, Checkpoint, EpochSums, RunState, save_checkpoint
from resnetlab.cli import main
from resnetlab.errors import UserError
from resnetlab.models.pretrained import read_state_dict

FIXTURES = Path(__file__).parent / "fixtures"
V1 = FIXTURES / "v1"  # written by the trainer before the checkpoint had a type (fixtures/README.md says how)


def v1_raw() -> dict:
    """The v1 fixture's last.pt as stored (load_checkpoint refuses v1 files for resuming)."""
    return torch.load(V1 / "last.pt", weights_only=True)


SRC = Path(resnetlab.__file__).parent


def same(a, b) -> bool:
    """Deep equality of plain checkpoint contents: tensors by value, containers item by item."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_a_v1_checkpoint_reads_as_one_type_and_goes_back_to_the_same_file_contents(tmp_path):
    raw = v1_raw()
    checkpoint = Checkpoint.from_dict(raw, V1 / "last.pt")
    state = checkpoint.state
    assert (state.epoch, state.batch_in_epoch, state.step) == (1, 10, 66)  # stopped in epoch 2 (fixtures/README)
    assert state.best == Best(top1=1.0, epoch=1) and state.partial.seen == 160 and len(state.rows) == 1
    assert checkpoint.ema is not None and checkpoint.weights_meta.model == "resnet8"
    assert same(checkpoint.to_dict(), {k: v for k, v in raw.items() if k != "format"})  # symmetric, key for key
    checkpoint.save(tmp_path / "last.pt")
    again = Checkpoint.load(tmp_path)
    assert same(again.to_dict(), checkpoint.to_dict())  # state -> file -> state


def test_a_resumed_process_other_than_rank_0_starts_its_share_of_the_epochs_sums_at_zero():
    state = RunState(step=7, partial=EpochSums(loss=3.5, correct=9.0, seen=12, time=1.25))
    assert state.for_rank(0) is state
    other = state.for_rank(1)
    assert other.partial == EpochSums(time=1.25) and other.step == 7 and state.partial.seen == 12


@pytest.mark.parametrize("drop", ["partial", "model", "rng", "batch_in_epoch"])
def test_a_checkpoint_missing_a_key_is_one_sentence_on_resume_and_as_init(tmp_path, capsys, drop):
    run = tmp_path / "run"
    shutil.copytree(V1, run)
    raw = v1_raw()
    del raw[drop]
    save_checkpoint(run / "last.pt", {k: v for k, v in raw.items() if k != "format"})
    for argv in (["train", f"resume={run}", "quiet=true"], ["train", f"init={run / 'last.pt'}", f"out={tmp_path}"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"lacks {drop}: it is not a whole resnetlab checkpoint" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UserError, match="malformed checkpoint"):
        Checkpoint.from_dict({**v1_raw(), "rows": "not a list"}, run / "last.pt")


def test_a_v1_run_is_not_resumed_but_its_weights_evaluate_export_and_start_a_new_run(tmp_path, capsys):
    """v2 changed the augmentation draws: a v1 run cannot go on bit for bit, so resume= says to use init=."""
    run = tmp_path / "v1"
    shutil.copytree(V1, run)
    assert main(["train", f"resume={run}", "quiet=true"]) == 2
    err = capsys.readouterr().err
    assert "written by an earlier resnetlab (resnetlab-checkpoint-v1)" in err and f"init={run}" in err
    assert len(err.strip().splitlines()) == 1
    state, meta = read_state_dict(run / "last.pt")  # init= of a checkpoint: its model's weights and metadata
    assert meta.model == "resnet8" and state.keys() == Checkpoint.from_dict(v1_raw(), run).model.keys()
    model, meta = resnetlab.load(run)  # best.safetensors
    assert meta.classes and not model.training
    scored = resnetlab.evaluate(run, split="val", device="cpu", precision="fp32")
    assert 0.0 <= scored["top1"] <= 1.0 and "the run's own split" in scored["dataset"]
    assert main(["export", str(run), "format=onnx", f"out={tmp_path / 'm.onnx'}"]) == 0
    new = ["train", f"init={run}", "data=synthetic", "epochs=1", "quiet=true", f"out={tmp_path / 'runs'}"]
    assert main(new) == 0 and Checkpoint.load(next((tmp_path / "runs").iterdir())).state.epoch == 1


# Words a checkpoint shares with other records (per-epoch rows, the summary, settings): those may appear
# elsewhere. Every other key of a checkpoint is spelled in resnetlab/checkpoint.py alone.
SHARED_WORDS = {"model", "epoch", "step", "wall_s", "history", "resolved", "ema", "optimizer", "format", "cuda"}


def test_no_module_but_checkpoint_py_spells_a_checkpoint_key():
    raw = v1_raw()
    keys = set(raw) | set(raw["rng"]) | set(raw["partial"]) | set(raw["best"])
    own = keys - SHARED_WORDS - {"loss", "top1", "time", "torch"}
    assert {"batch_in_epoch", "weights_meta", "partial", "rng", "scaler", "rows", "best", "config"} <= own
    spelled = {}
    for path in SRC.rglob("*.py"):
        if path.name == "checkpoint.py" and path.parent == SRC:
            continue
        tree = ast.parse(path.read_text())
        words = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        if words & own:
            spelled[str(path.relative_to(SRC))] = sorted(words & own)
    assert not spelled, f"checkpoint keys spelled outside resnetlab/checkpoint.py: {spelled}"
