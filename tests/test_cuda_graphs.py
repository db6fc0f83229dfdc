"""The training step recorded as a CUDA graph (training/step.py).

A replay re-runs the recorded kernels on the recorded memory, so what CI can check without a GPU is what
the recording relies on: the step's arithmetic with device learning rates equals the eager step's, every
tensor that outlives a step keeps its address, the step count lives on the device, and the runs that cannot
be recorded are told why. The recording itself is checked by the `gpu` tests."""

import pytest
import torch

from resnetlab.errors import UserError
from resnetlab.models import create_model
from resnetlab.training import load_config
from resnetlab.training.config import OptimConfig
from resnetlab.training.device import Precision
from resnetlab.training.ema import WeightAverage
from resnetlab.training.loop import fit
from resnetlab.training.optim import build_optimizer, load_optimizer_state
from resnetlab.training.step import TrainStep, graphs_decision
from resnetlab.training.tally import NO_STEP, StepTally

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
BF16 = Precision(torch.bfloat16, True, "test")
FP16 = Precision(torch.float16, True, "test")


def test_auto_records_only_where_a_graph_can_be_kept_and_says_why_not():
    model = create_model("resnet8", num_classes=10)
    assert graphs_decision("auto", CUDA, 1, BF16, model, thaws=False)[0] is True
    off = {
        "cpu": graphs_decision("auto", CPU, 1, BF16, model, False),
        "ddp": graphs_decision("auto", CUDA, 2, BF16, model, False),
        "fp16": graphs_decision("auto", CUDA, 1, FP16, model, False),
        "thaw": graphs_decision("auto", CUDA, 1, BF16, model, True),
        "recompute": graphs_decision(
            "auto", CUDA, 1, BF16, create_model("densenet_bc_100", num_classes=10, memory_efficient=True), False
        ),
        "asked": graphs_decision("false", CUDA, 1, BF16, model, False),
    }
    words = {"cpu": "on cpu", "ddp": "processes", "fp16": "scaler", "thaw": "unfreeze_every", "recompute": "host"}
    for case, (on, why) in off.items():
        assert on is False and why.startswith("off"), case
        assert words.get(case, "cuda_graphs=false") in why, (case, why)
    with pytest.raises(UserError, match=r"run.cuda_graphs=true cannot be kept: fp16 with a gradient scaler.*use run"):
        graphs_decision("true", CUDA, 1, FP16, model, False)


def test_a_cpu_run_with_cuda_graphs_true_is_a_user_error_before_anything_is_written(tmp_path):
    settings = ["model=resnet8", "data=synthetic", "epochs=1", "limit_train=64", "batch_size=32", "quiet=true"]
    with pytest.raises(UserError, match="need a CUDA device and this run is on cpu"):
        fit(load_config(None, [*settings, "run.cuda_graphs=true", f"out={tmp_path}"]))
    assert not any(tmp_path.iterdir())


def _steps(lr_on_device: bool, optimizer: str, batches, multipliers, start: int = 0):
    """A fresh seeded model trained on `batches` with the fused update (as on CUDA); (model, ema, step, tally)."""
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10)
    groups = [  # two groups with their own base lr, as fine-tuning's backbone_lr makes
        {"params": list(model.fc.parameters()), "lr": 0.1, "weight_decay": 0.0},
        {"params": [p for n, p in model.named_parameters() if not n.startswith("fc.")], "lr": 0.05},
    ]
    cfg = OptimConfig(optimizer=optimizer, nesterov=True, weight_decay=5e-4)
    opt = build_optimizer(groups, cfg, CUDA)  # the CUDA choice: fused kernels, which also run on a CPU
    base_lrs = [g["lr"] for g in opt.param_groups]
    ema, tally = WeightAverage(model, 0.9), StepTally(CPU)
    tally.start_at(start)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    step = TrainStep(model, model, opt, scaler, ema, tally, BF16, CPU, 0.1, 1.0, lr_on_device=lr_on_device)
    for (x, y), factor in zip(batches, multipliers, strict=True):
        step.set_lr(base_lrs, factor)
        step(x.contiguous(memory_format=torch.channels_last), y)
    return model, ema, step, tally


def _batches(n: int, poisoned: int | None = None):
    gen = torch.Generator().manual_seed(1)
    out = [(torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 10, (16,), generator=gen)) for _ in range(n)]
    if poisoned is not None:
        out[poisoned][0][0, 0, 0, 0] = float("nan")
    return out


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_device_learning_rates_give_the_eager_steps_arithmetic(optimizer):
    batches, multipliers = _batches(5), [0.2, 1.0, 0.7, 0.3, 0.05]  # a schedule that moves every step
    eager, eager_ema, eager_step, eager_tally = _steps(False, optimizer, batches, multipliers)
    ready, ready_ema, ready_step, ready_tally = _steps(True, optimizer, batches, multipliers)
    assert isinstance(ready_step.optimizer.param_groups[1]["lr"], torch.Tensor)
    assert ready_step.lr() == pytest.approx(eager_step.lr()) == pytest.approx(0.1 * 0.05)
    # The device lr is float32 (the eager one a Python float): AdamW's update differs in the 7th digit, no more
    close = {"rtol": 0, "atol": 0} if optimizer == "sgd" else {"rtol": 1e-5, "atol": 1e-7}
    for a, b in zip(eager.state_dict().values(), ready.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, **close)
    for a, b in zip(eager_ema.state_dict().values(), ready_ema.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, **close)
    eager_read, ready_read = eager_tally.read(), ready_tally.read()
    assert (eager_read.correct, eager_read.seen, eager_read.bad_step) == (ready_read.correct, 80, NO_STEP)
    assert eager_read.loss == pytest.approx(ready_read.loss, rel=1e-6)
    saved = ready_step.optimizer_state()  # a checkpoint holds plain numbers, as an eager run's does
    assert all(type(g["lr"]) is float for g in saved["param_groups"])
    assert all(isinstance(g["lr"], torch.Tensor) for g in ready_step.optimizer.param_groups)  # left in place
    assert saved["param_groups"][0]["lr"] == pytest.approx(0.1 * 0.05)


def test_every_tensor_a_step_writes_keeps_its_address_across_steps():
    """A replay writes where the recording wrote: rebinding an attribute to a new tensor (`self.x = a + b` instead
    of `self.x += b`) would leave later replays adding into memory that nothing reads."""
    batches = _batches(6)
    model, ema, step, tally = _steps(True, "adamw", batches[:3], [1.0] * 3)  # the warm-up: lazy state exists now

    def addresses():
        optimizer_state = [t for s in step.optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
        lrs = [g["lr"] for g in step.optimizer.param_groups]
        tallied = [tally.loss, tally.correct, tally.bad_step, tally.bad_loss, tally.next_step]
        kept = [*model.parameters(), *model.buffers(), *ema.parameters(), *ema.buffers(), *optimizer_state, *lrs]
        return [t.data_ptr() for t in (*kept, *tallied)]

    before = addresses()
    base_lrs = [0.1, 0.05]
    for x, y in batches[3:]:
        step.set_lr(base_lrs, 0.5)
        step(x.contiguous(memory_format=torch.channels_last), y)
    assert addresses() == before


def test_the_first_non_finite_step_is_counted_on_the_device_from_where_a_run_resumed():
    *_, tally = _steps(True, "sgd", _batches(5, poisoned=2), [1.0] * 5, start=100)
    figures = tally.read()
    assert figures.bad_step == 102 and figures.seen == 5 * 16
    assert tally.read().bad_step == NO_STEP and int(tally.next_step) == 105  # reads reset the sums, not the count


def test_a_resume_onto_a_recording_machine_makes_adamw_capturable():
    model = torch.nn.Linear(3, 2)
    groups = lambda: [{"params": list(model.parameters()), "lr": 0.1, "weight_decay": 0.0}]  # noqa: E731
    eager = build_optimizer(groups(), OptimConfig(optimizer="adamw"), CPU)
    model(torch.randn(4, 3)).sum().backward()
    eager.step()
    recording = build_optimizer(groups(), OptimConfig(optimizer="adamw"), CUDA, capturable=True)
    load_optimizer_state(recording, eager.state_dict())
    assert recording.param_groups[0]["capturable"] is True and recording.param_groups[0]["fused"] is True
    sgd = build_optimizer(groups(), OptimConfig(optimizer="sgd"), CUDA, capturable=True)
    assert "capturable" not in sgd.defaults  # fused SGD has no step counts and takes a device lr as it is


# ---------------------------------------------------------------------------------------------------
# On a GPU

GPU_RUN = [
    "model=resnet8",
    "data=synthetic",
    "epochs=2",
    "batch_size=32",
    "limit_train=640",
    "limit_val=128",
    "quiet=true",
    "output.tensorboard=false",
    "device=cuda",
    "optim.ema=0.9",
    "optim.grad_clip=1.0",
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "optimizer,extra",
    [("sgd", []), ("adamw", []), ("sgd", ["data.stream=true"]), ("sgd", ["device=cuda:0"]), ("sgd", ["compile=true"])],
    ids=["sgd", "adamw", "streamed", "cuda0", "compiled"],
)
def test_on_a_gpu_a_recorded_run_trains_as_the_eager_run_does(tmp_path, optimizer, extra, caplog, train_steps):
    import logging

    from resnetlab.training.step import WARMUP

    settings = [*GPU_RUN, f"optim.optimizer={optimizer}", "lr=0.01" if optimizer == "adamw" else "lr=0.1", *extra]
    settings += ["schedule.name=onecycle"]  # the learning rate moves every step: a frozen one would show
    with caplog.at_level(logging.WARNING, logger="resnetlab"):
        graphed = fit(load_config(None, [*settings, "run.cuda_graphs=true", f"out={tmp_path / 'g'}"]))
    (step,) = train_steps
    steps = graphed.rows[-1]["step"]
    assert step.graph is not None and step.replays == steps - WARMUP  # the recorded step is replayed too
    assert "failed" not in caplog.text  # neither the recording nor torch.compile fell back
    eager = fit(load_config(None, [*settings, "run.cuda_graphs=false", f"out={tmp_path / 'e'}"]))
    assert graphed.rows[-1]["train_loss"] < graphed.rows[0]["train_loss"]  # it learns
    for g, e in zip(graphed.rows, eager.rows, strict=True):  # same batches, same arithmetic up to kernel choice
        assert g["train_loss"] == pytest.approx(e["train_loss"], rel=0.05)
        assert g["lr"] == e["lr"]
