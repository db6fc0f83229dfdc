"""Inference on a CPU: int8 against fp32 ONNX, both run by ONNX Runtime, for the demo model and ResNet-50.

Both int8 models are made by `resnetlab.quantize` (static quantization, QDQ: int8 weights per channel, 8-bit
activations calibrated on --calibration images of the training part, never on test images); fp32 is the export
it starts from (resnetlab.export, checked against PyTorch there).

- demo: a run of the fashion_mnist_fast recipe (--run DIR). Without --run a short one is trained here first
  (--epochs, default 1 of the recipe's 5; the output says so), so its accuracy is below the recipe's. Its
  table has the top-1 accuracy of fp32 and int8 on the Fashion-MNIST test split (a finished model measured
  once: nothing is chosen on these images), images/s at batch 1 and 64, and the file sizes.
- resnet50: ResNet-50 at 224 px with a two-class head (the network `resnetlab finetune` makes for the ELPV
  solar-cell photos in --photos). No ImageNet weights are available offline and fine-tuning a ResNet-50 on
  2 CPU cores is too slow, so its weights are random (seeded), with BatchNorm statistics re-estimated on 64
  ELPV training photos so that its activations have a trained network's scale. No ResNet-50 accuracy is
  claimed: the table has images/s at batch 1 and 32, and how closely int8 computes the same network as fp32
  on the held-out ELPV photos (top-1 agreement, largest logit difference against the logits' size). Any other
  registered ImageNet-family name can stand in its place in --models (resnet18 in the quick test).

Timing: ONNX Runtime CPU sessions with all graph optimizations (QDQ pairs run as integer kernels) and
--threads threads; each measurement runs one warm-up batch, then batches of real prepared images for at
least --seconds; rounds alternate fp32 and int8, and the median of --rounds rounds counts (this machine is
shared and noisy). Each table ends with `int8_NAME: int8/fp32 = R.RRx`: int8's images/s over fp32's at the
larger batch.

Run: .venv/bin/python benchmarks/int8_speed.py [--run runs/resnet14-fashion-mnist] [--rounds 5] [--seconds 2]
     [--limit N (images scored per model, 0: all)] [--calibration 512] [--models demo,resnet50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).parent))

from resnetlab.data import BatchLoader, Dataset, load_splits  # noqa: E402
from resnetlab.data.splits import sample  # noqa: E402
from resnetlab.files import byte_size, save_weights  # noqa: E402
from resnetlab.inference import load  # noqa: E402
from resnetlab.models import create_model  # noqa: E402
from resnetlab.quantize import QuantizeResult, logits, quantize, run_data, session  # noqa: E402
from resnetlab.records import WeightsMeta  # noqa: E402
from resnetlab.training import load_config  # noqa: E402
from resnetlab.training.device import cpu_description  # noqa: E402
from resnetlab.training.loop import fit  # noqa: E402
from resnetlab.training.norm_stats import reestimate  # noqa: E402

RECIPE = "fashion_mnist_fast"
DEMO_BATCHES, PHOTO_BATCHES = (1, 64), (1, 32)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CENTRE_CROP = 0.875  # photos cached at side / 0.875 (256 for 224); the network sees the centre
PICK = 21  # the seeded random stream that picks images for scoring limits, BatchNorm statistics and timing


def images_per_s(sess, x: np.ndarray, seconds: float) -> float:
    """Images per second of `sess` on the batch `x`, run repeatedly for at least `seconds` after one warm-up."""
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)
    runs, start = 0, time.perf_counter()
    while True:
        sess.run(None, feed)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return runs * len(x) / elapsed


def a_batch(dataset: Dataset, meta: WeightsMeta, batch: int) -> np.ndarray:
    """The first `batch` images of `dataset`, prepared as evaluation prepares them (repeated if too few)."""
    x = next(iter(BatchLoader(dataset, batch, train=False, mean=meta.mean, std=meta.std)))[0]
    return np.ascontiguousarray(np.resize(x.numpy(), (batch, *x.shape[1:])))


def speeds(result: QuantizeResult, dataset: Dataset, meta: WeightsMeta, batches: tuple[int, ...], args) -> dict:
    """{(precision, batch): median images/s} over rounds that alternate fp32 and int8."""
    sessions = {"fp32": session(result.fp32_path, args.threads), "int8": session(result.path, args.threads)}
    inputs = {batch: a_batch(dataset, meta, batch) for batch in batches}
    seen: dict[tuple[str, int], list[float]] = {(p, b): [] for p in sessions for b in batches}
    for _ in range(args.rounds):
        for name, sess in sessions.items():
            for batch in batches:
                seen[name, batch].append(images_per_s(sess, inputs[batch], args.seconds))
    return {key: statistics.median(values) for key, values in seen.items()}


def table(speed: dict, batches: tuple[int, ...], result: QuantizeResult, top1: dict | None = None) -> None:
    """Rows fp32, int8 and int8/fp32: test top-1 (where measured), images/s at each batch, file size."""
    first = f"{'test top-1':>12}" if top1 else ""
    print(f"{'':<10}{first}" + "".join(f"{'batch ' + str(b):>11}" for b in batches) + f"{'file':>11}")
    sizes = {"fp32": result.fp32_bytes, "int8": result.int8_bytes}
    for name in ("fp32", "int8"):
        lead = f"{100 * top1[name]:>11.2f}%" if top1 else ""
        cells = "".join(f"{speed[name, b]:>11.1f}" for b in batches)
        print(f"{name:<10}{lead}{cells}{byte_size(sizes[name]):>11}")
    lead = f"{100 * (top1['int8'] - top1['fp32']):>+9.2f} pt" if top1 else ""
    ratio = "".join(f"{speed['int8', b] / speed['fp32', b]:>10.2f}x" for b in batches)
    print(f"{'int8/fp32':<10}{lead}{ratio}{sizes['int8'] / sizes['fp32']:>10.2f}x")


def agreement(where: str, agree: float, diff: float, scale: float) -> str:
    return (
        f"int8 vs fp32 on {where}: top-1 agrees on {100 * agree:.2f}%, largest logit difference {diff:.3g} "
        f"(logits up to {scale:.3g})"
    )


def ratio_line(name: str, speed: dict, batch: int) -> str:
    return f"int8_{name}: int8/fp32 = {speed['int8', batch] / speed['fp32', batch]:.2f}x"


def demo(args, tmp: Path) -> None:
    run = args.run
    if run is None:
        settings = [f"epochs={args.epochs}", "quiet=true", f"out={tmp / 'runs'}", "output.tensorboard=false"]
        settings += [f"limit_train={args.train_limit}"] if args.train_limit else []
        print(
            f"\nno --run given: training {RECIPE} here with epochs={args.epochs}"
            f"{f', limit_train={args.train_limit}' if args.train_limit else ''} (the recipe has 5 epochs), so its "
            "accuracy is below the recipe's; pass --run DIR to measure a finished run",
            flush=True,
        )
        run = fit(load_config(RECIPE, settings)).run_dir
    _, meta = load(run)
    result = quantize(
        run, tmp / "demo.int8.onnx", args.calibration, check_images=args.limit or 10**9,
        fp32_out=tmp / "demo.onnx", threads=args.threads,
    )  # fmt: skip
    test = run_data(run, meta, None, ("test",))[0]["test"]
    if test is None:
        raise SystemExit(f"{run} was trained on data without a test split; the demo is a Fashion-MNIST run")
    test = sample(test, args.limit, 0, PICK)
    scores = {
        "fp32": logits(session(result.fp32_path, args.threads), test, meta, 256),
        "int8": logits(session(result.path, args.threads), test, meta, 256),
    }
    labels = np.asarray(test.labels)
    top1 = {name: float((s.argmax(1) == labels).mean()) for name, s in scores.items()}
    shape = "x".join(map(str, [*meta.input_size[1:], meta.input_size[0]]))
    print(f"\ndemo: {meta.model} on {meta.dataset or '?'} {shape} ({run})")
    print(f"int8 calibrated on {result.calibration}; images/s")
    speed = speeds(result, test, meta, DEMO_BATCHES, args)
    table(speed, DEMO_BATCHES, result, top1)
    agree = float((scores["fp32"].argmax(1) == scores["int8"].argmax(1)).mean())
    diff = float(np.abs(scores["fp32"] - scores["int8"]).max())
    print(agreement(f"the {len(test):,} test images", agree, diff, float(np.abs(scores["fp32"]).max())))
    print(agreement(result.checked, result.agreement, result.max_abs_diff, result.logit_scale))
    print(ratio_line("demo", speed, DEMO_BATCHES[-1]), flush=True)


def random_weights(name: str, train: Dataset, side: int, path: Path) -> WeightsMeta:
    """Seeded random weights of the network `name` with BatchNorm statistics measured on 64 of `train`'s photos,
    written to `path` as a resnetlab weights file; returns its metadata."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(train.classes))
    norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    photos = BatchLoader(
        sample(train, 64, 0, PICK), 16, train=False, mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD)
    )
    reestimate(model.train(), norms, (x for x, _ in photos))
    meta = WeightsMeta(
        model=name, num_classes=len(train.classes), in_chans=3, classes=tuple(train.classes),
        input_size=(3, side, side), resize=round(side / CENTRE_CROP), mean=tuple(IMAGENET_MEAN),
        std=tuple(IMAGENET_STD), dataset=train.info.name,
    )  # fmt: skip
    save_weights(path, model.eval().state_dict(), meta.to_dict())
    return meta


def photo_model(name: str, args, tmp: Path) -> None:
    side, photos = args.side, str(args.photos)
    train = load_splits(photos, image_size=side, channels=3, centre_crop=CENTRE_CROP, need=("train",)).train
    meta = random_weights(name, train, side, tmp / f"{name}.safetensors")
    result = quantize(
        tmp / f"{name}.safetensors", tmp / f"{name}.int8.onnx", args.calibration,
        check_images=args.limit or 10**9, data=photos, fp32_out=tmp / f"{name}.onnx", threads=args.threads,
    )  # fmt: skip
    print(
        f"\n{name}: {side}x{side}x3, {len(train.classes)}-class head, random weights (seeded) with BatchNorm "
        f"statistics from 64 {train.info.name} training photos"
    )
    print(
        f"no ImageNet weights are available offline (and fine-tuning {name} here is too slow), so no {name} "
        "accuracy is claimed: the agreement below is how closely int8 computes these same weights"
    )
    print(f"int8 calibrated on {result.calibration}; images/s")
    speed = speeds(result, sample(train, 64, 0, PICK), meta, PHOTO_BATCHES, args)  # timed on real photos
    table(speed, PHOTO_BATCHES, result)
    print(agreement(result.checked, result.agreement, result.max_abs_diff, result.logit_scale))
    print(ratio_line(name, speed, PHOTO_BATCHES[-1]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help=f"a finished run of {RECIPE} (else one is trained)")
    parser.add_argument("--epochs", type=int, default=1, help="without --run: epochs of the run trained here")
    parser.add_argument("--train-limit", type=int, default=0, help="without --run: its training images (0: all)")
    parser.add_argument("--models", default="demo,resnet50", help="demo and ImageNet-family names (resnet50, ...)")
    parser.add_argument("--photos", type=Path, default=Path("/work/data/elpv"), help="a folder with train/, test/")
    parser.add_argument("--side", type=int, default=224, help="the photo models' input side")
    parser.add_argument("--calibration", type=int, default=512, help="calibration images from the training part")
    parser.add_argument("--limit", type=int, default=0, help="images scored and compared per model (0: all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="the least time of each measurement")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU {cpu_description()}; onnxruntime {onnxruntime.__version__} "
        f"CPUExecutionProvider, {args.threads} threads; median of {args.rounds} interleaved rounds of at least "
        f"{args.seconds:g} s per measurement"
    )
    with tempfile.TemporaryDirectory(prefix="int8_speed-") as tmp:
        for name in args.models.split(","):
            if name == "demo":
                demo(args, Path(tmp))
            else:
                photo_model(name, args, Path(tmp))


if __name__ == "__main__":
    main()
