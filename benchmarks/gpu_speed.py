"""Training images per second on a GPU: resnetlab's `fit` against bare PyTorch loops, eager, compiled and under
CUDA graphs, for ResNet-20 at 32 px (batch 512) and ResNet-50 at 224 px (batch 256).

The bare loop is what a performance-minded user writes: the uint8 images held on the GPU, a random batch
gathered there, normalised, bf16 autocast + channels_last (what precision=auto picks on a GPU with bf16 units;
fp16 with a scaler elsewhere), SGD with momentum (fused on CUDA), and no host read inside the timed steps.
Its four modes: eager; torch.compile (default mode); graphs: the eager step recorded whole as one CUDA graph
(torch.cuda.graph, as PyTorch's CUDA-graph notes show it: static batch tensors, 3 warm-up steps on a side
stream); compile+graphs: torch.compile(mode="reduce-overhead"), which replays the compiled forward and backward
as CUDA graphs. resnetlab runs its whole loop (seeded loader, metrics read every run.log_every steps, checkpoint
at the epoch end; augmentation off, as the peer has none) with the settings that ask for the same: compile=true|false
and run.cuda_graphs=true|false (resnetlab records its whole step, compiled or not, where reduce-overhead records
the compiled forward and backward); its figure is the second epoch's images/s (the first holds warm-up and
recording).
The peers are torchvision's resnet50 and the plain CIFAR ResNet-20 of train_speed.py, the same architectures
as resnetlab's.

Each table ends with `NAME: resnetlab/peer = R.RRx`: resnetlab's best mode over the bare loop's best mode.
On a CPU it runs too (for checking the script: --device cpu --modes eager --steps 3); the figures that
matter are a GPU's, and the device is printed first.

Run: python benchmarks/gpu_speed.py [--device cuda] [--models resnet20,resnet50]
         [--modes eager,compile,graphs,compile+graphs] [--json FIGURES.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import PlainResNet20  # noqa: E402

from resnetlab.data.dataset import Dataset, DatasetInfo  # noqa: E402
from resnetlab.data.generated import Generated  # noqa: E402
from resnetlab.data.registry import named, register  # noqa: E402
from resnetlab.training import load_config  # noqa: E402
from resnetlab.training.device import choose_precision  # noqa: E402
from resnetlab.training.loop import fit  # noqa: E402

SETUPS = {  # name: (peer, image side, batch)
    "resnet20": (PlainResNet20, 32, 512),
    "resnet50": (lambda: torchvision.models.resnet50(num_classes=10), 224, 256),
}
MODES = ("eager", "compile", "graphs", "compile+graphs")
GRAPH_MODES = ("graphs", "compile+graphs")


def wait(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(name: str, device: torch.device, mode: str, steps: int, batch: int, dtype: torch.dtype | None) -> float:
    """Images per second of `steps` bare training steps after as many warm-up steps (compiling happens there)."""
    make, side, _ = SETUPS[name]
    torch.manual_seed(0)
    model = make().to(device, memory_format=torch.channels_last)
    if mode in ("compile", "compile+graphs"):
        model = torch.compile(model, mode="reduce-overhead" if mode == "compile+graphs" else "default")
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, **fused)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    pool = 8 * batch  # distinct images held on the device, as uint8 NHWC
    images = torch.randint(0, 256, (pool, side, side, 3), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (pool,), device=device)
    mean = torch.tensor([0.5, 0.5, 0.5], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.25, 0.25, 0.25], device=device).view(1, 3, 1, 1) * 255

    def batch_now() -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.randint(0, pool, (batch,), device=device)
        return images[rows].permute(0, 3, 1, 2).float().sub_(mean).div_(std), labels[rows]  # NCHW view of NHWC

    def learn(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=mode != "graphs"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    step = lambda: learn(*batch_now())  # noqa: E731
    if mode == "graphs":  # warm up on a side stream, record one step on static tensors, then replay
        static_x, static_y = batch_now()
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):
                learn(static_x, static_y)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            learn(static_x, static_y)

        def replay() -> None:
            x, y = batch_now()
            static_x.copy_(x)
            static_y.copy_(y)
            graph.replay()

        step = replay

    for _ in range(max(steps, 3)):
        step()
    wait(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    wait(device)
    return steps * batch / (time.perf_counter() - start)


def noise_images(split: str, n: int, side: int, seed: int = 0) -> Dataset:
    """Uniform uint8 images and labels, made fast (synthetic()'s smooth patterns cost float64 memory at 224 px)."""
    rng = np.random.default_rng([seed, split == "train"])
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    classes = [f"class{i}" for i in range(10)]
    info = DatasetInfo("synthetic", (0.5,) * 3, (0.25,) * 3, (3, side, side), tuple(classes), True)
    return Dataset(images, rng.integers(0, 10, n), classes, info, split, "generated (noise)")


def noise_dataset(n: int, batch: int, side: int) -> str:
    """The name of a dataset of noise_images (n training images, a batch of test ones), registered in this process."""
    name = f"noise-{side}px-{n}-{batch}"
    if named(name) is None:

        def make(split: str) -> Dataset:
            return noise_images(split, n if split == "train" else batch, side)

        register(replace(named("synthetic"), name=name, input_size=(3, side, side), files=Generated(make)))
    return name


def resnetlab_loop(name: str, device: torch.device, mode: str, steps: int, batch: int) -> float:
    """Images per second of the second epoch of resnetlab's `fit` on as many generated images as the peer sees."""
    _, side, _ = SETUPS[name]
    data = noise_dataset(steps * batch, batch, side)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(
            None,
            [
                f"model={name}",
                f"data={data}",
                "val_fraction=0",  # the test images are scored per epoch for display, outside the timed part
                f"batch_size={batch}",
                "epochs=2",
                f"device={device}",
                f"compile={str('compile' in mode).lower()}",
                f"run.cuda_graphs={str(mode in GRAPH_MODES).lower()}",
                "quiet=true",
                f"out={out}",
                "tensorboard=false",
                "crop_padding=0",
                "hflip=false",
                "checkpoint_minutes=0",
            ],
        )
        return fit(cfg).rows[-1]["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="resnet20,resnet50")
    parser.add_argument("--modes", default=",".join(MODES), help="of " + ", ".join(MODES))
    parser.add_argument("--steps", type=int, default=50, help="timed steps (and resnetlab's steps per epoch)")
    parser.add_argument("--batch-scale", type=float, default=1.0, help="multiply the batch sizes (0.05 on a CPU)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here, after each model")
    args = parser.parse_args()
    device = torch.device(args.device)
    chosen = choose_precision("auto", "auto", device)
    modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"--modes {','.join(unknown)} is not among {', '.join(MODES)}")
    if device.type != "cuda":
        modes = [m for m in modes if m not in GRAPH_MODES]  # CUDA graphs exist only on CUDA
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {where}; torch {torch.__version__}; {chosen.name} + channels_last ({chosen.reason})")
    figures: dict = {"device": where, "torch": torch.__version__, "precision": chosen.name, "models": {}}
    for name in args.models.split(","):
        _, side, batch = SETUPS[name]
        batch = max(2, int(batch * args.batch_scale))
        print(f"\n{name}, {side}x{side}x3, batch {batch}, {args.steps} timed steps (images/s)")
        table: dict[str, dict[str, float]] = {}
        figures["models"][name] = {"batch": batch, "steps": args.steps, "modes": table}
        # Each mode's pair side by side, each figure written as it arrives: a run cut short keeps what it measured.
        for mode in modes:
            table[mode] = {"bare": bare_loop(name, device, mode, args.steps, batch, chosen.dtype)}
            keep(figures, args.json)
            table[mode]["resnetlab"] = resnetlab_loop(name, device, mode, args.steps, batch)
            table[mode]["ratio"] = table[mode]["resnetlab"] / table[mode]["bare"]
            keep(figures, args.json)
        print(f"{'mode':<16}{'bare loop':>12}{'resnetlab':>12}{'ratio':>8}")
        for mode, r in table.items():
            print(f"{mode:<16}{r['bare']:>12.0f}{r['resnetlab']:>12.0f}{r['ratio']:>7.2f}x")
        best = max(r["resnetlab"] for r in table.values()) / max(r["bare"] for r in table.values())
        figures["models"][name]["best_over_best"] = best
        keep(figures, args.json)
        print(f"{name}: resnetlab/peer = {best:.2f}x", flush=True)


def keep(figures: dict, path: Path | None) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
