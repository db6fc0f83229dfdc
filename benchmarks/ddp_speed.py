"""Training images per second on 1 and on 2 processes (torchrun + DistributedDataParallel, gloo), resnetlab
against a plain PyTorch DDP loop on the same model.

Both sides run under torchrun with the same global batch (each of N processes takes batch / N) and the cores
shared out (OMP_NUM_THREADS = cores / N). The peer is what a user would write: resnetlab's model (so that only
the loop differs) wrapped in DistributedDataParallel, each rank training on its own shard of in-memory
tensors, no augmentation, metrics or checkpoints. resnetlab runs its whole loop (its loader, per-step
agreement between the ranks, sharded validation and a checkpoint at the epoch end; augmentation off, as the
peer has none). Each runs two epochs and the second is timed; rounds alternate the four runs and the median of
each counts, as this machine is shared and noisy.

Run: .venv/bin/python benchmarks/ddp_speed.py [--model resnet20] [--steps 30] [--batch-size 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.distributed as dist
from train_speed import bare_epoch, timed_synthetic  # the same bare loop, one process's share of each batch

from resnetlab.training.device import cpu_description

CORES = os.cpu_count() or 1


def resnetlab_worker(args: argparse.Namespace) -> float:
    """resnetlab's whole loop; under torchrun it joins the group itself. Rank 0's figure is the global rate."""
    import resnetlab

    result = resnetlab.train(
        {"output": {"tensorboard": False}, "data": {"crop_padding": 0, "hflip": "false"}},
        model=args.model,
        data=timed_synthetic(max(args.steps * args.batch_size, 256)),  # enough distinct batches
        batch_size=args.batch_size,
        epochs=2,
        limit_train=args.steps * args.batch_size,
        limit_val=128,
        precision=args.precision,
        quiet=True,
        out=args.out,
        name=args.name,
    )
    return result.rows[-1]["images_per_s"]


def plain_worker(args: argparse.Namespace) -> float:
    """A bare DDP loop: each rank trains on its shard, gradients averaged by DistributedDataParallel."""
    from resnetlab import create_model

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10)
    bf16 = args.precision == "bf16"
    model = model.to(memory_format=torch.channels_last)  # the layout resnetlab's channels_last=auto picks on CPUs
    train_model = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    local = args.batch_size // world
    generator = torch.Generator().manual_seed(rank)
    x_all = torch.randn(args.steps * local, 3, 32, 32, generator=generator)
    y_all = torch.randint(0, 10, (args.steps * local,), generator=generator)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    elapsed = 0.0
    for _ in range(2):
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        bare_epoch(train_model, opt, x_all, y_all, args.steps, local, bf16, channels_last=True)
        if world > 1:
            dist.barrier()  # the epoch ends when the slowest rank's does
        elapsed = time.perf_counter() - start
    if world > 1:
        dist.destroy_process_group()
    return args.steps * args.batch_size / elapsed


def run(side: str, processes: int, args: argparse.Namespace, out: str, name: str) -> float:
    """One torchrun job of `side` on `processes` processes; rank 0's images/s."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    settings = ["--model", args.model, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                "--precision", args.precision]  # fmt: skip
    command = [*launcher, __file__, "--worker", side, "--out", out, "--name", name, *settings]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, CORES // processes))}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{side} on {processes} processes failed:\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--steps", type=int, default=30, help="steps an epoch (global batches)")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=("resnetlab", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        rate = (resnetlab_worker if args.worker == "resnetlab" else plain_worker)(args)
        if int(os.environ.get("RANK", "0")) == 0:
            print(json.dumps({"images_per_s": rate}), flush=True)
        return

    runs = [(side, n) for n in (1, 2) for side in ("plain", "resnetlab")]
    rates: dict[tuple[str, int], list[float]] = {run_: [] for run_ in runs}
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(args.rounds):
            for side, n in runs:
                rates[side, n].append(run(side, n, args, out, f"{side}-{n}-{round_}"))
    m = {key: statistics.median(values) for key, values in rates.items()}
    print(
        f"{cpu_description()}; torch {torch.__version__}, gloo; {args.model}, global batch {args.batch_size}, "
        f"32x32x3, {args.steps} steps an epoch, {args.precision}; median of {args.rounds} interleaved rounds (images/s)"
    )
    print(f"{'':<28} {'plain DDP loop':>15} {'resnetlab':>10} {'resnetlab / plain':>18}")
    for n in (1, 2):
        label = f"{n} process{'es' if n > 1 else ''} x {max(1, CORES // n)} thread{'s' if CORES // n > 1 else ''}"
        plain, ours = m["plain", n], m["resnetlab", n]
        print(f"{label:<28} {plain:>15.0f} {ours:>10.0f} {ours / plain:>17.2f}x")
    scale = [m[side, 2] / m[side, 1] for side in ("plain", "resnetlab")]
    print(f"{'2 processes / 1 process':<28} {scale[0]:>14.2f}x {scale[1]:>9.2f}x")


if __name__ == "__main__":
    main()
