"""Training images per second: resnetlab's `fit` against a plain PyTorch loop on the same model shape and batch.

The peers are what a user would write instead: torchvision's resnet18, and a CIFAR ResNet-20 written out
plainly (He et al. 2015, option A), each trained by a bare loop over in-memory tensors (no augmentation,
no metrics, no checkpoints), in fp32 and in bf16 autocast + channels_last. resnetlab runs its whole loop
(batches from its loader, metrics, checkpoint at the epoch end; augmentation off, as the peer has none;
benchmarks/data_speed.py measures that part), in fp32 and in bf16 + channels_last (what
precision=auto picks on CPUs with AMX/AVX-512 BF16). Each runs two epochs (the second is timed), in
rounds that alternate the four loops; the median of each counts, as this machine is shared and noisy
(the same loop varies by +-20% from one process to the next here).
The last column compares the faster precision of each side.

Run: .venv/bin/python benchmarks/train_speed.py [--steps 30] [--batch-size 128] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from resnetlab.training import load_config
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


def plain_loop(model: nn.Module, steps: int, batch: int, bf16_cl: bool) -> float:
    """Images per second of the second of two epochs of a bare training loop."""
    x_all = torch.randn(steps * batch, 3, 32, 32)
    y_all = torch.randint(0, 10, (steps * batch,))
    if bf16_cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    seconds = [bare_epoch(model, opt, x_all, y_all, steps, batch, bf16_cl) for _ in range(2)]
    return steps * batch / seconds[-1]


def bare_epoch(
    model: nn.Module, opt: torch.optim.Optimizer, x_all: torch.Tensor, y_all: torch.Tensor, steps: int, batch: int,
    bf16: bool,
) -> float:  # fmt: skip
    """Seconds for `steps` bare training steps on consecutive slices of x_all / y_all (also ddp_speed's peer)."""
    start = time.perf_counter()
    for i in range(steps):
        x, y = x_all[i * batch : (i + 1) * batch], y_all[i * batch : (i + 1) * batch]
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def resnetlab_loop(name: str, steps: int, batch: int, precision: str) -> float:
    """Images per second of the second epoch of resnetlab's `fit` (no augmentation: the same work as the peer)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(
            None,
            [
                f"model={name}",
                "data=synthetic",
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


def measure(name: str, make_peer, steps: int, batch: int, rounds: int) -> dict[str, float]:
    """Median images/s of each loop over `rounds` rounds that alternate the four of them."""
    results: dict[str, list[float]] = {"plain fp32": [], "plain bf16": [], "ours fp32": [], "ours bf16": []}
    for _ in range(rounds):
        torch.manual_seed(0)
        results["plain fp32"].append(plain_loop(make_peer(), steps, batch, bf16_cl=False))
        results["plain bf16"].append(plain_loop(make_peer(), steps, batch, bf16_cl=True))
        results["ours fp32"].append(resnetlab_loop(name, steps, batch, "fp32"))
        results["ours bf16"].append(resnetlab_loop(name, steps, batch, "bf16"))
    return {key: statistics.median(values) for key, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    import resnetlab.data.sources as sources

    # synthetic() makes 1000 training images by default; give the timed epochs enough distinct batches.
    default_synthetic = sources.synthetic
    sources.synthetic = lambda split, **kw: default_synthetic(split, n=max(args.steps * args.batch_size, 256), **kw)
    peers = {"resnet20": PlainResNet20, "resnet18": lambda: torchvision.models.resnet18(num_classes=10)}
    print(
        f"torch {torch.__version__}; batch {args.batch_size}, 32x32x3, {args.steps} steps an epoch, 2 threads, "
        f"median of {args.rounds} interleaved rounds (images/s)"
    )
    print(
        f"{'model':<9} {'plain fp32':>11} {'plain bf16+CL':>14} {'resnetlab fp32':>15} {'resnetlab bf16+CL':>18} "
        f"{'best / best':>12}"
    )
    for name, make_peer in peers.items():
        m = measure(name, make_peer, args.steps, args.batch_size, args.rounds)
        ratio = max(m["ours fp32"], m["ours bf16"]) / max(m["plain fp32"], m["plain bf16"])
        print(
            f"{name:<9} {m['plain fp32']:>11.0f} {m['plain bf16']:>14.0f} {m['ours fp32']:>15.0f} "
            f"{m['ours bf16']:>18.0f} {ratio:>11.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
