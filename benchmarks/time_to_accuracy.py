"""Wall-clock time to a target test accuracy on Fashion-MNIST: resnetlab's recipe against the loop a user writes.

Each arm is one process, timed from its start to its final test figure (Python start-up, imports, reading the
data, training, scoring): the time a user waits. As in DAWNBench, a run's budget is fixed in advance and its
time counts as time-to-accuracy only if its final test accuracy reaches the target; nothing is selected on
the test images (resnetlab selects its epoch on its validation hold-out; the bare loop takes its last epoch).

Arms:
- resnetlab: `resnetlab train RECIPE` (fashion_mnist_fast by default: ResNet-14, 5 epochs, one-cycle).
- bare: the recipe's network (resnetlab's model, with the recipe's model.args) and settings written as the plain
  PyTorch loop of the tutorials: torchvision's FashionMNIST dataset, a DataLoader with 2 workers, the recipe's
  flips and pad-crop as torchvision transforms, ToTensor + Normalize, SGD with the recipe's batch, lr, momentum,
  Nesterov and weight decay, OneCycleLR (the recipe's pct_start, no momentum cycling; it rises along a cosine
  where resnetlab rises linearly), the recipe's label smoothing (one-cycle SGD recipes on Fashion-MNIST only);
  channels_last in fp32 where the CPU has no bf16 units (bf16 autocast where it has), the arithmetic resnetlab
  picks; trained on a seeded 90% of train (the images resnetlab trains on number the same), scored on test after
  the last epoch.
- timm (with --timm-train PATH): timm's own `train.py` and `validate.py` (from a checkout of
  github.com/huggingface/pytorch-image-models; the pip package does not carry them) on the same images written
  as an image folder (train/ the bare loop's 54,000, validation/ the other 6,000, test/; writing the PNGs is
  not timed): timm's resnet18 (--timm-model) for 1-channel 28x28 input, the recipe's batch, lr, momentum,
  Nesterov, weight decay (biases and norm weights exempt, timm's default), label smoothing, flips and epochs,
  cosine schedule per step after one warm-up epoch,
  no random-resized crop (timm has no pad-crop: a recipe's crop_padding is not carried over), bf16 autocast and
  channels_last where the CPU has bf16 units, 2 loader workers. train.py keeps the epoch best on validation/
  (model_best.pth.tar); validate.py scores it on test/. The wall time is both processes'.

Run: .venv/bin/python benchmarks/time_to_accuracy.py [--target 0.92] [--arms resnetlab,bare,timm] [--epochs N]
                                                      [--timm-train PATH/TO/pytorch-image-models/train.py]
                                                      [--device cuda] [--json FIGURES.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

RECIPE = "fashion_mnist_fast"


def find_fashion_mnist() -> dict[str, Path]:
    """The four IDX files (role -> .gz or plain file), where resnetlab finds them (data dir, Debian package)."""
    from resnetlab.data.idx import locate_idx
    from resnetlab.data.registry import named

    found = locate_idx(named("fashion-mnist"))  # type: ignore[arg-type]
    if found is None:
        raise SystemExit("Fashion-MNIST is not here; `make demo` or `resnetlab data fetch fashion-mnist` puts it there")
    return found


def run_resnetlab(recipe: str, out: Path, extra: list[str]) -> dict:
    """`resnetlab train RECIPE` as a user runs it (its epoch lines pass through), timed from the outside."""
    before = set(out.glob("*/summary.json"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "resnetlab", "train", recipe, f"out={out}", *extra], check=True)
    wall = time.perf_counter() - start
    (new,) = set(out.glob("*/summary.json")) - before
    summary = json.loads(new.read_text())
    return {"wall_s": wall, "test_top1": summary["test_top1"], "epochs": summary["epochs"]}


def run_bare(recipe: str, epochs: int, limit: int, out: Path, device: str) -> dict:
    start = time.perf_counter()
    cmd = [sys.executable, __file__, "--bare-worker", "--epochs", str(epochs), "--limit", str(limit), "--out", str(out)]
    cmd += ["--device", device, "--recipe", recipe]
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    return {"wall_s": wall, **json.loads((out / "bare.json").read_text())}


def bare_worker(recipe: str, epochs: int, limit: int, out: Path, device_name: str) -> None:
    """The tutorial loop (runs in its own process, so that its start-up is timed too); on a GPU as the tutorials
    write it there: pinned loader memory, batches copied without blocking, bf16 autocast where the GPU has it."""
    import torchvision
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    from resnetlab import create_model
    from resnetlab.training.device import choose_precision

    device = torch.device(device_name)
    root = out / "torchvision"  # torchvision's FashionMNIST reads root/FashionMNIST/raw/<name> (unzipped)
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for path in find_fashion_mnist().values():
        unzipped = raw / path.name.removesuffix(".gz")
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f, open(unzipped, "wb") as g:
            shutil.copyfileobj(f, g)
    cfg = bare_recipe(recipe)
    scale = [transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))]
    augment = [transforms.RandomCrop(28, padding=cfg.data.crop_padding)] if cfg.data.crop_padding else []
    augment += [transforms.RandomHorizontalFlip()] if cfg.data.hflip == "true" else []
    train = torchvision.datasets.FashionMNIST(str(root), train=True, transform=transforms.Compose(augment + scale))
    test = torchvision.datasets.FashionMNIST(str(root), train=False, transform=transforms.Compose(scale))
    keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: min(limit, int(0.9 * len(train)))]
    pin = device.type == "cuda"
    batch, o = cfg.optim.batch_size, cfg.optim
    loader = DataLoader(
        Subset(train, keep.tolist()), batch_size=batch, shuffle=True, num_workers=2, drop_last=True, pin_memory=pin
    )
    test_loader = DataLoader(test, batch_size=512, num_workers=2, pin_memory=pin)

    torch.manual_seed(0)
    bf16 = choose_precision("auto", "auto", device).dtype is torch.bfloat16  # the arithmetic resnetlab picks here
    model = create_model(cfg.model.name, num_classes=10, in_chans=1, **cfg.model.args)
    model = model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
    )
    steps = epochs * len(loader)
    # OneCycleLR needs a warm-up of at least 2 steps (pct_start * steps - 1 > 0), which a short check run lacks.
    pct_start = max(cfg.schedule.pct_start, 2 / steps)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=o.lr, total_steps=steps, pct_start=pct_start, cycle_momentum=False
    )
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=o.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)  # counted on the device, read once
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for x, y in test_loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            correct += (model(x).argmax(1) == y.to(device, non_blocking=True)).sum()
    correct = int(correct)
    (out / "bare.json").write_text(json.dumps({"test_top1": correct / len(test), "epochs": epochs}))


# What the bare loop and timm's arm write out of a recipe; every other data, optim and schedule setting must be
# left at its default (a recipe that needs more is refused, rather than compared with another recipe).
WRITTEN = {
    "data": {"name", "path", "crop_padding", "hflip", "stream", "tta"},
    "optim": {"optimizer", "lr", "batch_size", "momentum", "nesterov", "weight_decay", "label_smoothing"},
    "schedule": {"name", "epochs", "pct_start"},
}


def bare_recipe(recipe: str) -> Any:
    """The recipe (a TrainConfig) that the bare loop and timm's train.py write out: one-cycle SGD on Fashion-MNIST
    with flips and pad-crop. Its hflip is resolved (true or false) and Nesterov without momentum made plain SGD,
    as resnetlab trains them."""
    from resnetlab.training import TrainConfig, load_config
    from resnetlab.training.resolve import with_flips

    cfg, default = load_config(recipe), TrainConfig()
    if cfg.optim.optimizer != "sgd" or cfg.schedule.name != "onecycle" or cfg.data.name != "fashion-mnist":
        raise ValueError(
            f"{recipe} trains {cfg.data.name} with {cfg.optim.optimizer} and a {cfg.schedule.name} schedule; the "
            "bare loop writes one-cycle SGD on fashion-mnist only (give such a recipe)"
        )
    for section, written in WRITTEN.items():
        for field in fields(getattr(cfg, section)):
            said, usual = getattr(getattr(cfg, section), field.name), getattr(getattr(default, section), field.name)
            if field.name not in written and said != usual:
                key = f"{section}.{field.name}"
                raise ValueError(
                    f"{recipe} sets {key}={said}, which the bare loop does not write out; leave it at {usual}"
                )
    cfg, _ = with_flips(cfg)
    optim = replace(cfg.optim, nesterov=cfg.optim.nesterov and cfg.optim.momentum > 0)
    return replace(cfg, optim=optim)


def write_image_folder(root: Path, limit: int) -> None:
    """Fashion-MNIST as PNG files: root/{train,validation,test}/<class>/<index>.png, train/validation split as the
    bare loop splits (a seeded permutation: its first `limit` images train, the last 10% validate)."""
    import numpy as np
    from PIL import Image

    from resnetlab.data.idx import read_idx

    files = find_fashion_mnist()
    train_x, train_y = read_idx(files["train-images"]), read_idx(files["train-labels"])
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0)).numpy()
    parts = {
        "train": (train_x, train_y, order[: min(limit, int(0.9 * len(train_x)))]),
        "validation": (train_x, train_y, order[int(0.9 * len(train_x)) :]),
        "test": (read_idx(files["test-images"]), read_idx(files["test-labels"]), np.arange(10_000)),
    }
    for part, (images, labels, rows) in parts.items():
        for label in range(10):
            (root / part / f"class{label}").mkdir(parents=True)
        for row in rows:
            Image.fromarray(images[row]).save(root / part / f"class{labels[row]}" / f"{row}.png")


def run_timm(recipe_name: str, train_py: Path, model: str, epochs: int, limit: int, out: Path, device: str) -> dict:
    """timm's train.py, then its validate.py on test/ with the checkpoint train.py selected on validation/."""
    from resnetlab.training.device import choose_precision

    data = out / "folder"
    write_image_folder(data, limit)
    shape = ["--model", model, "--num-classes", "10", "--input-size", "1", "28", "28", "--crop-pct", "1.0"]
    shape += ["--mean", "0.2860", "--std", "0.3530", "--device", device, "--workers", "2"]
    if choose_precision("auto", "auto", torch.device(device)).dtype is torch.bfloat16:  # what resnetlab picks here
        shape += ["--amp", "--amp-dtype", "bfloat16", "--channels-last"]
    else:
        shape += ["--channels-last"]
    cfg = bare_recipe(recipe_name)
    o = cfg.optim
    # timm's "sgd" is Nesterov momentum, its "momentum" the plain kind; its optimizer exempts biases and norm
    # weights from weight decay by default, where the recipe decays every parameter (left as timm does it)
    opt = "sgd" if o.nesterov else "momentum"
    recipe = ["-b", str(o.batch_size), "--opt", opt, "--lr", str(o.lr), "--momentum", str(o.momentum)]
    recipe += ["--weight-decay", str(o.weight_decay), "--epochs", str(epochs)]
    recipe += ["--sched", "cosine", "--sched-on-updates", "--warmup-epochs", "1", "--cooldown-epochs", "0"]
    flip = "0.5" if cfg.data.hflip == "true" else "0"
    recipe += ["--smoothing", str(o.label_smoothing), "--scale", "1", "1", "--ratio", "1", "1", "--hflip", flip]
    recipe += ["--color-jitter", "0"]
    recipe += ["--seed", "0", "--checkpoint-hist", "1", "--log-interval", "50"]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, str(train_py), "--data-dir", str(data), *shape, *recipe]
        + ["--output", str(out), "--experiment", "run"],
        check=True,
    )
    results = out / "test.json"
    subprocess.run(
        [sys.executable, str(train_py.parent / "validate.py"), "--data-dir", str(data), "--split", "test", *shape]
        + ["-b", "512", "--checkpoint", str(out / "run" / "model_best.pth.tar"), "--results-file", str(results)]
        + ["--results-format", "json"],
        check=True,
    )
    wall = time.perf_counter() - start
    scored = json.loads(results.read_text())
    scored = scored[0] if isinstance(scored, list) else scored
    return {"wall_s": wall, "test_top1": float(scored["top1"]) / 100, "epochs": epochs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.92, help="test top-1 that counts as reached")
    parser.add_argument("--arms", default="resnetlab,bare")
    parser.add_argument("--recipe", default=RECIPE)
    parser.add_argument("--epochs", type=int, default=0, help="override the recipe's epochs (0: the recipe's)")
    parser.add_argument("--limit", type=int, default=54_000, help="training images (54,000: 90%% of train)")
    parser.add_argument("--runs", type=Path, default=None, help="keep resnetlab's run here (default: a temporary one)")
    parser.add_argument("--timm-train", type=Path, default=None, help="timm's train.py (validate.py beside it)")
    parser.add_argument("--timm-model", default="resnet18", help="the timm model of the timm arm")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every arm trains there)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--bare-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        return bare_worker(args.recipe, args.epochs, args.limit, args.out, args.device)
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - {"resnetlab", "bare", "timm"})
    if unknown:
        parser.error(f"--arms {','.join(unknown)}: the arms are resnetlab, bare and timm")
    if "timm" in arms and not (args.timm_train and args.timm_train.is_file()):
        parser.error(
            f"the timm arm needs --timm-train PATH to timm's train.py (given: {args.timm_train}); it is in a "
            "checkout of github.com/huggingface/pytorch-image-models, not in the pip package"
        )

    from resnetlab.training import load_config
    from resnetlab.training.device import choose_precision, cpu_description

    try:
        cfg = bare_recipe(args.recipe) if {"bare", "timm"} & set(arms) else load_config(args.recipe)
    except ValueError as err:
        parser.error(str(err))
    epochs = args.epochs or cfg.schedule.epochs
    device = torch.device(args.device)
    chosen = choose_precision("auto", "auto", device)
    where = f"CPU {cpu_description()}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        where = f"GPU {torch.cuda.get_device_name(device)} (torch {torch.__version__}); host {where}"
    print(
        f"Fashion-MNIST, target {100 * args.target:.1f}% test top-1; recipe {args.recipe}, {epochs} epochs, "
        f"{args.limit:,} training images; {where}, {chosen.name}"
    )
    results: dict[str, dict] = {}
    ratios: dict[str, float] = {}
    figures = {"where": where, "precision": chosen.name, "target": args.target, "epochs": epochs, "limit": args.limit}

    def keep() -> None:  # after each arm, so that a run cut short keeps the arms it finished
        if args.json:
            args.json.write_text(json.dumps({**figures, "arms": results, "peer_wall_over_resnetlab": ratios}, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        for arm in arms:
            out = Path(tmp) / arm
            out.mkdir()
            if arm == "resnetlab":
                extra = [f"device={args.device}"] + ([f"epochs={epochs}"] if args.epochs else [])
                extra += [f"limit_train={args.limit}"] if args.limit < 54_000 else []
                results[arm] = run_resnetlab(args.recipe, args.runs or out, extra)
            elif arm == "bare":
                results[arm] = run_bare(args.recipe, epochs, args.limit, out, args.device)
            else:
                results[arm] = run_timm(
                    args.recipe, args.timm_train.resolve(), args.timm_model, epochs, args.limit, out, args.device
                )
            keep()
    print(f"{'arm':<10}{'epochs':>7}{'test top-1':>12}{'wall s':>9}{'to target':>13}")
    for arm, r in results.items():
        reached = f"{r['wall_s']:.0f} s" if r["test_top1"] >= args.target else "not reached"
        print(f"{arm:<10}{r['epochs']:>7}{100 * r['test_top1']:>11.2f}%{r['wall_s']:>9.0f}{reached:>13}")
    for peer, label in (("bare", "time_to_accuracy"), ("timm", "time_to_accuracy_timm")):
        if {"resnetlab", peer} <= results.keys():
            ratio = ratios[peer] = results[peer]["wall_s"] / results["resnetlab"]["wall_s"]
            missed = [a for a in ("resnetlab", peer) if results[a]["test_top1"] < args.target]
            what = (
                f"{' and '.join(missed)} missed the target: the wall times of one budget, not times to accuracy"
                if missed
                else f"speed: the {peer} arm's wall time over resnetlab's"
            )
            print(f"{label}: resnetlab/peer = {ratio:.2f}x ({what})")
    keep()
    if not math.isfinite(sum(r["wall_s"] for r in results.values())):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
