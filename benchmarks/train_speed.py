"""Training images per second: resnetlab's `fit` against a plain PyTorch loop on the same model shape and batch.

The peers are what a user would write instead: torchvision's resnet18, and a CIFAR ResNet-20 written out
plainly (He et al. 2015, option A), each trained by a bare loop over in-memory tensors (no augmentation,
no metrics, no checkpoints) in every arithmetic a user might pick: fp32 in NCHW, fp32 in channels_last, and
bf16 autocast + channels_last. resnetlab runs its whole loop (batches from its loader, metrics, checkpoint
at the epoch end; augmentation off, as the peer has none; benchmarks/data_speed.py measures that part) with
precision=auto and channels_last=auto: what it picks on this CPU is the figure a user gets. The ratio compares
it with the fastest plain loop.

bf16 is run only on CPUs with bf16 units (AMX or AVX-512 BF16): elsewhere it is emulated and takes minutes
(27 img/s for ResNet-20 on a 2-core AMD EPYC), and precision=auto never picks it there; the column says so.
Each loop runs two epochs (the second is timed), in rounds that alternate the loops; every round is printed and the
median of each counts, as this machine is shared and noisy (the same loop varies by +-20% from one process to the
next here).

How far each arm is from the hardware: the benchmark times this CPU's own limits (a 2048x2048 matrix product and a
3x3 convolution at 32 px with 64 channels in channels_last, in fp32 and, with bf16 units, in bf16) and prints each
arm's arithmetic rate (6 x the network's multiply-adds per training image: forward 2, backward 4 FLOP a
multiply-add) as a fraction of the faster of the two limits in the arm's arithmetic.

Run: .venv/bin/python benchmarks/train_speed.py [--steps 30] [--batch-size 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import replace
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from resnetlab.data.generated import Generated, synthetic
from resnetlab.data.registry import named, register
from resnetlab.models.summary import cost_on_meta
from resnetlab.training import load_config
from resnetlab.training.device import choose_precision, cpu_description, cpu_has_fast_bf16
from resnetlab.training.loop import fit


class PlainBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)), inplace=True)))
        shortcut = x if self.stride == 1 and not self.extra else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))
        return F.relu(out + shortcut, inplace=True)


class PlainResNet20(nn.Module):
    """ResNet-20 for CIFAR as most people would write it (the peer for resnetlab's resnet20)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(PlainBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.bn(self.conv(x)), inplace=True))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def plain_loop(model: nn.Module, steps: int, batch: int, arithmetic: str) -> float:
    """Images per second of the second of two epochs of a bare training loop ("fp32", "fp32+CL" or "bf16+CL")."""
    x_all = torch.randn(steps * batch, 3, 32, 32)
    y_all = torch.randint(0, 10, (steps * batch,))
    channels_last = arithmetic.endswith("+CL")
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    bf16 = arithmetic.startswith("bf16")
    seconds = [bare_epoch(model, opt, x_all, y_all, steps, batch, bf16, channels_last) for _ in range(2)]
    return steps * batch / seconds[-1]


def bare_epoch(
    model: nn.Module, opt: torch.optim.Optimizer, x_all: torch.Tensor, y_all: torch.Tensor, steps: int, batch: int,
    bf16: bool, channels_last: bool,
) -> float:  # fmt: skip
    """Seconds for `steps` bare training steps on consecutive slices of x_all / y_all (also ddp_speed's peer)."""
    start = time.perf_counter()
    for i in range(steps):
        x, y = x_all[i * batch : (i + 1) * batch], y_all[i * batch : (i + 1) * batch]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def timed_synthetic(n: int) -> str:
    """The name of `synthetic` with `n` images a split, registered in this process (synthetic makes 1000 training
    images): enough distinct batches for the timed epochs."""
    name = f"synthetic-{n}"
    if named(name) is None:
        register(replace(named("synthetic"), name=name, aliases=(), files=Generated(partial(synthetic, n=n))))
    return name


def resnetlab_loop(name: str, steps: int, batch: int, precision: str) -> float:
    """Images per second of the second epoch of resnetlab's `fit` (no augmentation: the same work as the peer)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(
            None,
            [
                f"model={name}",
                f"data={timed_synthetic(math.ceil(steps * batch / 0.9) + batch)}",  # 10% held out: `steps` remain
                f"batch_size={batch}",
                "epochs=2",
                f"limit_train={steps * batch}",
                "limit_val=128",
                f"precision={precision}",
                "quiet=true",
                f"out={out}",
                "output.tensorboard=false",
                "data.crop_padding=0",
                "data.hflip=false",
            ],
        )
        return fit(cfg).rows[-1]["images_per_s"]


def measure(name: str, make_peer, steps: int, batch: int, rounds: int, peers: list[str]) -> dict[str, list[float]]:
    """Images/s of each loop in each of `rounds` rounds that alternate them (each round printed as it ends)."""
    results: dict[str, list[float]] = {key: [] for key in [*peers, "resnetlab"]}
    for r in range(rounds):
        for arithmetic in peers:
            torch.manual_seed(0)
            results[arithmetic].append(plain_loop(make_peer(), steps, batch, arithmetic))
        results["resnetlab"].append(resnetlab_loop(name, steps, batch, "auto"))
        cells = "  ".join(f"{key} {values[-1]:.0f}" for key, values in results.items())
        print(f"  {name} round {r + 1}/{rounds}: {cells}", flush=True)
    return results


def gflops(run, flop: float, repeats: int = 5) -> float:
    """GFLOP/s of `run` (a closure doing `flop` floating-point operations): the best of `repeats` after a warm-up."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return flop / best / 1e9


@torch.no_grad()
def hardware_limits(bf16: bool) -> dict[str, float]:
    """This CPU's measured GFLOP/s for a 2048^2 matrix product and a 3x3 convolution (batch 64, 64 channels, 32 px,
    channels_last), in fp32 and, where the CPU has bf16 units, bf16."""
    limits = {}
    for dtype in (torch.float32, torch.bfloat16) if bf16 else (torch.float32,):
        a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
        limits[f"{dtype_name(dtype)} matmul"] = gflops(partial(torch.matmul, a, b), 2 * 2048**3)
        x = torch.randn(64, 64, 32, 32, dtype=dtype).contiguous(memory_format=torch.channels_last)
        conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(dtype=dtype, memory_format=torch.channels_last)
        limits[f"{dtype_name(dtype)} conv3x3"] = gflops(partial(conv, x), 2 * 64 * 32 * 32 * 64 * 64 * 9)
    return limits


def dtype_name(dtype: torch.dtype) -> str:
    return "bf16" if dtype == torch.bfloat16 else "fp32"


def fraction_of_limit(images_per_s: float, macs: int, arithmetic: str, limits: dict[str, float]) -> float:
    """The arm's arithmetic rate over the faster measured limit in its arithmetic (bf16 or fp32)."""
    dtype = arithmetic[:4]
    limit = max(v for k, v in limits.items() if k.startswith(dtype))
    return images_per_s * 6 * macs / 1e9 / limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    chosen = choose_precision("auto", "auto", torch.device("cpu"))
    peers = ["fp32", "fp32+CL"] + (["bf16+CL"] if cpu_has_fast_bf16() else [])
    print(
        f"torch {torch.__version__}; CPU {cpu_description()}; batch {args.batch_size}, 32x32x3, {args.steps} steps "
        f"an epoch, 2 threads, median of {args.rounds} interleaved rounds (images/s)"
    )
    print(f"resnetlab picks {chosen.name}{' + channels_last' if chosen.channels_last else ''} ({chosen.reason})")
    if "bf16+CL" not in peers:
        print("plain bf16 skipped: this CPU has no bf16 units, so bf16 is emulated (minutes per run)")
    limits = hardware_limits("bf16+CL" in peers)
    print("this CPU's measured limits (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in limits.items()))
    arithmetic_of = {**{p: p for p in peers}, "resnetlab": dtype_name(chosen.dtype or torch.float32)}
    models = {"resnet20": PlainResNet20, "resnet18": lambda: torchvision.models.resnet18(num_classes=10)}
    for name, make_peer in models.items():
        rounds = measure(name, make_peer, args.steps, args.batch_size, args.rounds, peers)
        m = {key: statistics.median(values) for key, values in rounds.items()}
        macs = cost_on_meta(name, (3, 32, 32))[1]
        ratio = m["resnetlab"] / max(m[p] for p in peers)
        header = "".join(f"{'plain ' + p:>15}" for p in peers)
        print(f"{'model':<9}{header}{'resnetlab auto':>16}{'ours / best plain':>19}")
        cells = "".join(f"{m[p]:>15.0f}" for p in peers)
        print(f"{name:<9}{cells}{m['resnetlab']:>16.0f}{ratio:>18.2f}x", flush=True)
        shares = [f"{key} {fraction_of_limit(v, macs, arithmetic_of[key], limits):.0%}" for key, v in m.items()]
        print(f"  {name}: {6 * macs / 1e6:.0f} MFLOP a training image; of the limit: " + ", ".join(shares))
        print(f"{name}: resnetlab/peer = {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
