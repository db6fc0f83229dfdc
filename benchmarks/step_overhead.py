"""Where a training step's time goes outside the model: resnetlab's loop against the plain loop, under torch.profiler.

Both arms train the same network shape with the same batch, arithmetic and optimizer (as benchmarks/train_speed.py:
the plain loop over in-memory tensors, resnetlab's `fit` with augmentation off). Each step's span runs from the end
of one optimizer update to the end of the next; from it the profiler's own events subtract the model's forward
(labelled here), its backward (the autograd engine's top-level events) and the update (`Optimizer.step`). What is
left is the step's time outside the model: the loader, the learning-rate setting, the running figures, the loss,
zero_grad and the Python between them. The first step of each epoch is reported apart (the loader's start), and the
profiler's own cost is in both arms alike.

Run: .venv/bin/python benchmarks/step_overhead.py [--model resnet20|resnet18] [--steps 30] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile
from train_speed import PlainResNet20, plain_loop, resnetlab_loop

from resnetlab.training.device import choose_precision, cpu_description
from resnetlab.training.step import TrainStep

FORWARD = "model.forward"


class Labelled(nn.Module):
    """The plain arm's model, its forward marked for the profiler as resnetlab's is."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with record_function(FORWARD):
            return self.inner(x)


def label_resnetlab_forward() -> None:
    """Every TrainStep built after this marks its model's forward (the benchmark's process only)."""
    build = TrainStep.__init__

    def labelled_init(self: TrainStep, *args, **kwargs) -> None:
        build(self, *args, **kwargs)
        forward = self.train_model

        def marked(x: torch.Tensor) -> torch.Tensor:
            with record_function(FORWARD):
                return forward(x)

        self.train_model = marked

    TrainStep.__init__ = labelled_init


@dataclass
class Steps:
    """Per-step milliseconds of one profiled arm: medians over the steps that are not first in their epoch."""

    span: float
    model: float  # forward + backward + update
    outside: float
    first_outside: float  # the first step of each epoch: its time outside the model (median)
    count: int
    operations: dict[str, float]  # mean ms a step of each top-level operation outside the model, largest first


def profiled(run: Callable[[], object]) -> list:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return list(prof.events())


def per_step(events: list, epochs: int = 2) -> Steps:
    """Split the profile into steps at each update's end and charge every top-level event to its step."""
    forwards = sorted((e for e in events if e.name == FORWARD), key=lambda e: e.time_range.start)
    thread = forwards[0].thread  # the training thread; the loader's reader threads are left out
    top = [e for e in events if e.thread == thread and e.cpu_parent is None]
    updates = sorted((e for e in top if e.name.startswith("Optimizer.step#")), key=lambda e: e.time_range.end)
    backwards = [e for e in top if e.name.startswith("autograd::engine::evaluate_function")]
    ends = [u.time_range.end for u in updates]
    steps_per_epoch = len(updates) // epochs
    spans, models, outsides, firsts = [], [], [], []
    operations: dict[str, float] = defaultdict(float)
    for i in range(1, len(updates)):
        start, end = ends[i - 1], ends[i]
        inside = [e for e in forwards if start <= e.time_range.start < end]
        inside += [e for e in backwards if start <= e.time_range.start < end] + [updates[i]]
        model_us = sum(e.time_range.elapsed_us() for e in inside)
        outside_ms = (end - start - model_us) / 1000
        if i % steps_per_epoch == 0:  # the first step of an epoch: after the last one's evaluation and checkpoint
            firsts.append(outside_ms)
            continue
        spans.append((end - start) / 1000)
        models.append(model_us / 1000)
        outsides.append(outside_ms)
        counted = {id(e) for e in inside}
        for e in top:
            if start <= e.time_range.start < end and id(e) not in counted:
                operations[e.name] += e.time_range.elapsed_us() / 1000
    return Steps(
        statistics.median(spans),
        statistics.median(models),
        statistics.median(outsides),
        statistics.median(firsts) if firsts else float("nan"),
        len(spans),
        {name: ms / len(spans) for name, ms in sorted(operations.items(), key=lambda kv: -kv[1])},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=("resnet20", "resnet18"), default="resnet20")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(2)
    chosen = choose_precision("auto", "auto", torch.device("cpu"))
    arithmetic = ("bf16" if chosen.dtype == torch.bfloat16 else "fp32") + ("+CL" if chosen.channels_last else "")
    peers = {"resnet20": PlainResNet20, "resnet18": lambda: torchvision.models.resnet18(num_classes=10)}
    label_resnetlab_forward()
    print(
        f"torch {torch.__version__}; CPU {cpu_description()}; {args.model}, batch {args.batch_size}, 32x32x3, "
        f"{args.steps} steps an epoch, 2 epochs, 2 threads; both arms in {arithmetic} (resnetlab's auto choice)"
    )
    torch.manual_seed(0)
    plain = Labelled(peers[args.model]())
    arms = {
        "plain loop": profiled(lambda: plain_loop(plain, args.steps, args.batch_size, arithmetic)),
        "resnetlab": profiled(lambda: resnetlab_loop(args.model, args.steps, args.batch_size, "auto")),
    }
    print(f"{'arm':<12}{'step ms':>9}{'model ms':>10}{'outside ms':>12}{'outside %':>11}{'1st of epoch':>14}")
    for arm, events in arms.items():
        s = per_step(events)
        print(f"{arm:<12}{s.span:>9.2f}{s.model:>10.2f}{s.outside:>12.2f}{100 * s.outside / s.span:>10.1f}%"
              f"{s.first_outside:>13.1f}  (medians of {s.count} steps; ms outside the model)")  # fmt: skip
        named = sum(s.operations.values())
        biggest = ", ".join(f"{name} {ms:.2f}" for name, ms in list(s.operations.items())[:6])
        print(f"    outside, ms a step (means): {biggest}; untraced Python and gaps about {s.outside - named:.2f}")


if __name__ == "__main__":
    main()
