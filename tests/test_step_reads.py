"""The training step reads nothing back from the device between progress-bar refreshes: on a GPU, each host read
(`.item()`, `float()`, `.tolist()`, `if tensor:`) waits for the queue to drain and leaves the GPU idle. On the CPU
the same calls are counted, so that CI (which has no GPU) guards the GPU's step."""

import math

import pytest
import torch

from resnetlab.training import load_config
from resnetlab.training.ema import WeightAverage
from resnetlab.training.loop import fit

READS = ("item", "tolist", "__float__", "__int__", "__bool__")
SETTINGS = [
    "model=resnet8",
    "data=synthetic",
    "epochs=1",
    "batch_size=16",
    "limit_val=64",
    "quiet=true",
    "output.tensorboard=false",
    "run.checkpoint_minutes=0",
    "data.crop_padding=2",
    "data.hflip=true",
]


def reads_in_a_run(monkeypatch, out, *extra: str) -> tuple[int, int]:
    """(host reads of tensors during the whole run, training steps per epoch)."""
    count = [0]
    for name in READS:
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            count[0] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    result = fit(load_config(None, [*SETTINGS, f"out={out}", *extra]))
    monkeypatch.undo()
    return count[0], result.rows[-1]["step"]


@pytest.mark.parametrize("extra", [[], ["optim.ema=0.9", "optim.grad_clip=1.0"]], ids=["plain", "ema+clip"])
def test_an_epoch_reads_the_device_once_per_log_every_steps(tmp_path, monkeypatch, extra):
    short, short_steps = reads_in_a_run(monkeypatch, tmp_path / "a", "limit_train=320", *extra)
    long, long_steps = reads_in_a_run(monkeypatch, tmp_path / "b", "limit_train=640", *extra)
    assert (short_steps, long_steps) == (20, 40)
    # Everything else in the two runs is the same (validation, checkpoint, summary), so the extra 20 steps may
    # add only their progress-bar reads: ceil(40 / 10) - ceil(20 / 10) = 2. One read per step would add 20+.
    assert long - short <= math.ceil(40 / 10) - math.ceil(20 / 10), (short, long)
    fewer, _ = reads_in_a_run(monkeypatch, tmp_path / "c", "limit_train=640", "run.log_every=40", *extra)
    assert long - fewer >= 2  # and the reads do follow log_every (40: one read for the whole epoch)


def test_the_weight_average_matches_torch_averaged_model_and_resumes():
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from resnetlab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ours = WeightAverage(model, 0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(4):
        loss = model(torch.randn(8, 3, 32, 32)).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        theirs.update_parameters(model)
        ours.update(model)
    a, b = theirs.state_dict(), ours.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)
    resumed = WeightAverage(model, 0.9)
    resumed.load_state_dict(a)  # a checkpoint of either kind loads, and the next update averages
    assert resumed.started and not WeightAverage(model, 0.9).started


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("graphs", ["false", "true"])
def test_on_a_gpu_the_steps_between_reads_never_synchronise(tmp_path, monkeypatch, graphs, train_steps):
    """CUDA's sync debug mode raises on any synchronising call; it is on from each step's start to the next read
    (a read point turns it off for its one read and what follows it: checkpoint, epoch end). Recording the CUDA
    graph synchronises once, by design (torch.cuda.graph does), and is let through."""
    from resnetlab.training.step import TrainStep
    from resnetlab.training.tally import StepTally

    real_set_lr, real_read, real_record = TrainStep.set_lr, StepTally.read, TrainStep._record
    steps = [0]

    def set_lr_strict(*args, **kwargs):
        steps[0] += 1
        torch.cuda.set_sync_debug_mode("error")
        return real_set_lr(*args, **kwargs)

    def read_allowed(self):
        torch.cuda.set_sync_debug_mode("default")
        return real_read(self)

    def record_allowed(self, *args):
        torch.cuda.set_sync_debug_mode("default")
        real_record(self, *args)
        torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(TrainStep, "set_lr", set_lr_strict)
    monkeypatch.setattr(StepTally, "read", read_allowed)
    monkeypatch.setattr(TrainStep, "_record", record_allowed)
    settings = [*SETTINGS, f"out={tmp_path}", "device=cuda", "limit_train=640", "optim.ema=0.9"]
    try:
        fit(load_config(None, [*settings, f"run.cuda_graphs={graphs}"]))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert steps[0] == 40
    assert (train_steps[0].graph is not None) == (graphs == "true")  # the recording held, not a silent eager fallback


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_update_is_fused_on_cuda_and_a_resume_takes_this_machines_kernels(optimizer):
    from resnetlab.training.config import OptimConfig
    from resnetlab.training.optim import build_optimizer, load_optimizer_state

    model = torch.nn.Linear(3, 2)
    groups = lambda: [{"params": list(model.parameters()), "lr": 0.1, "weight_decay": 0.0}]  # noqa: E731
    cfg = OptimConfig(optimizer=optimizer)
    on_gpu = build_optimizer(groups(), cfg, torch.device("cuda"))  # PyTorch's fused kernels also run on a CPU
    assert on_gpu.defaults["fused"] is True
    model(torch.randn(4, 3)).sum().backward()
    on_gpu.step()
    on_cpu = build_optimizer(groups(), cfg, torch.device("cpu"))
    assert on_cpu.defaults["fused"] is None  # PyTorch's default (foreach) on a CPU
    saved = on_gpu.state_dict()
    load_optimizer_state(on_cpu, saved)  # a checkpoint written on a GPU, resumed on a CPU
    assert on_cpu.param_groups[0]["fused"] is None and saved["param_groups"][0]["fused"] is True  # not mutated
    on_cpu.step()
    back = build_optimizer(groups(), cfg, torch.device("cuda"))
    load_optimizer_state(back, on_cpu.state_dict())  # and the reverse: fused again, its state placed for fused
    assert back.param_groups[0]["fused"] is True
    back.step()
    if optimizer == "adamw":  # fused AdamW keeps `step` where the parameters are, as float32
        step = back.state[next(iter(model.parameters()))]["step"]
        assert step.device == next(iter(model.parameters())).device and step.dtype == torch.float32


class HostToDevice:
    """Counts copies from the CPU onto the `meta` device (a stand-in for a GPU: the same code paths, no data), and
    tensors made from Python numbers straight onto it (torch.tensor(..., device=...))."""

    def __init__(self, monkeypatch):
        from torch.utils._python_dispatch import TorchDispatchMode

        self.copies = []
        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func is torch.ops.aten._to_copy.default:
                    src, dst = args[0].device, torch.device(kwargs.get("device") or args[0].device)
                elif func is torch.ops.aten.copy_.default:
                    src, dst = args[1].device, args[0].device
                else:
                    return func(*args, **kwargs)
                if src.type == "cpu" and dst.type == "meta":
                    counter.copies.append(str(func))
                return func(*args, **kwargs)

        self.mode = Mode()
        real_tensor = torch.tensor

        def made(*args, **kwargs):
            if kwargs.get("device") is not None and torch.device(kwargs["device"]).type == "meta":
                counter.copies.append("torch.tensor")
            return real_tensor(*args, **kwargs)

        monkeypatch.setattr(torch, "tensor", made)


AUGMENTS = {
    "crop+flip+cutout": dict(crop_padding=4, hflip=True, cutout=8),
    "photo+mix": dict(
        brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1, grey=0.1, erase=0.25, mixup=0.2, cutmix=1.0
    ),  # fmt: skip
    "resized+warped": dict(crop_scale=(0.35, 1.0), hflip=True, rotate=10, shear=5, zoom=0.1, translate=0.1),
}


LOADERS = {  # name: (augmentation, BatchLoader keywords, first batch, batches then left)
    **{name: (AUGMENTS[name], {}, 0, 7) for name in AUGMENTS},
    "eval": ({}, {"train": False}, 0, 7),
    "rank 1 of 2, resumed": (AUGMENTS["photo+mix"], {"rank": 1, "world_size": 2}, 3, 4),
}


@pytest.mark.parametrize("case", list(LOADERS), ids=list(LOADERS))
def test_the_loader_copies_nothing_from_the_host_after_an_epochs_first_batch(monkeypatch, case):
    """On a GPU a copy from pageable host memory waits for every queued kernel, as a host read does: the epoch's
    random draws go to the device once, at its first batch, and every later batch slices them there. The meta
    device stands in for a GPU: host reads raise there and copies are counted; an operation mixing a CPU index
    with device data is not seen there, so the moved plan is also checked to hold device tensors only."""
    import dataclasses

    from resnetlab.data import AugmentConfig, BatchLoader
    from resnetlab.data.loader import PhotoDraws
    from resnetlab.data.sources import synthetic

    augment, keywords, first, left = LOADERS[case]
    settings = {"train": True, "augment": AugmentConfig(**augment), "device": "meta", "channels_last": True, **keywords}
    loader = BatchLoader(synthetic("train", n=256), 32, **settings)
    batches = loader.epoch(0, first)
    next(batches)  # the epoch's plan moves to the device here, and constants are made once
    counted = HostToDevice(monkeypatch)
    with counted.mode:
        rest = [x.shape for x, _ in batches]
    assert len(rest) == left and rest[0][1:] == (3, 32, 32)
    assert counted.copies == []
    moved = loader.plan(0).to(torch.device("meta"))
    for field in dataclasses.fields(moved):
        value = getattr(moved, field.name)
        photo = isinstance(value, PhotoDraws)
        parts = [getattr(value, f.name) for f in dataclasses.fields(value)] if photo else [value]
        assert all(t.device.type == "meta" for t in parts if isinstance(t, torch.Tensor)), field.name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", [*AUGMENTS, "streamed"])
def test_on_a_gpu_the_loaders_batches_never_synchronise(case):
    """From an epoch's second batch on, making a batch queues work and waits for nothing (RandAugment and
    TrivialAugment excepted: policy.py says why)."""
    from resnetlab.data import AugmentConfig, BatchLoader
    from resnetlab.data.sources import synthetic

    augment = AugmentConfig(**AUGMENTS.get(case, AUGMENTS["crop+flip+cutout"]))
    stream = "true" if case == "streamed" else "false"
    loader = BatchLoader(synthetic("train", n=512), 32, train=True, augment=augment, device="cuda",
                         channels_last=True, stream=stream)  # fmt: skip
    batches = loader.epoch(0)
    next(batches)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        made = sum(1 for _ in batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert made == 15
