"""The `resnetlab` command: parse, call the library, print. User errors exit 2 without a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .errors import UserError


def parse_size(text: str) -> tuple[int, int, int]:
    """'3,32,32' -> (3, 32, 32)."""
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 1:
        raise UserError(f"--input-size {text!r} is not C,H,W with positive integers; try 3,32,32 or 3,224,224")
    return parts  # type: ignore[return-value]


def cmd_models(args: argparse.Namespace) -> int:
    from .models import create_model, list_models, model_info
    from .models.summary import count_params

    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no model name matches {args.pattern!r}; `resnetlab models` lists them all")
    rows = [("name", "params", "published result", "dataset", "source")]
    for name in names:
        info = model_info(name)
        params = info.params if info.params is not None else count_params(create_model(name))
        rows.append((name, f"{params:,}", info.result or "-", info.dataset, info.source.split(":")[0]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if j == 1 else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .models import create_model, model_info
    from .models.summary import format_summary

    info = model_info(args.name)
    size = parse_size(args.input_size) if args.input_size else info.input_size
    model = create_model(args.name, in_chans=size[0])
    print(format_summary(model, args.name, size, depth=args.depth))
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import load_dataset

    data = load_dataset(
        args.dataset, args.split, image_size=args.image_size, channels=args.channels, val_fraction=args.val_fraction
    )
    counts = np.bincount(data.labels, minlength=len(data.classes))
    pixels = np.asarray(data.images[:: max(1, len(data) // 50000)], np.float32) / 255.0  # <= ~50k images
    print(f"dataset: {data.info.name} ({args.split} split)")
    print(f"found at: {data.source}")
    print(f"images: {len(data):,} of {'x'.join(map(str, data.images.shape[1:]))} (H x W x C), uint8")
    print(f"classes: {len(data.classes)}; horizontal flips keep labels: {'yes' if data.info.hflip else 'no'}")
    print(
        f"mean: {', '.join(f'{m:.4f}' for m in pixels.mean((0, 1, 2)))}   "
        f"std: {', '.join(f'{v:.4f}' for v in pixels.std((0, 1, 2)))}"
    )
    width = max(len(c) for c in data.classes)
    for name, count in zip(data.classes, counts):
        print(f"  {name.ljust(width)}  {count:>7,}")
    if data.skipped:
        print(f"skipped {len(data.skipped)} unreadable files (see the warning above)")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data.sources import CIFAR_SPECS, IDX_SPECS, NAMES, data_dir, load_dataset

    name = args.dataset.lower()
    if name not in IDX_SPECS and name not in CIFAR_SPECS:
        raise UserError(
            f"cannot fetch {args.dataset!r}; named datasets that can be fetched: "
            f"{', '.join(n for n in NAMES if n != 'synthetic')}"
        )
    try:
        found = load_dataset(name, "test", allow_download=False)
        print(f"{name} is already available at {found.source}; nothing to fetch")
        return 0
    except UserError:
        pass
    print(f"fetching {name} into {data_dir() / name} ...")
    data = load_dataset(name, "test", allow_download=True)
    print(f"{name} is ready at {data.source}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnetlab", description="Residual networks: define, train, explain, export.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("models", help="list the registered networks with parameters and published results")
    p.add_argument("pattern", nargs="?", default=None, help="a glob such as 'resnet*' or a word such as 'preact'")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("summary", help="per-layer table, parameters and FLOPs of one network")
    p.add_argument("name", help="a registered model name (see `resnetlab models`)")
    p.add_argument("--input-size", default=None, help="C,H,W (default: the size the network was published at)")
    p.add_argument("--depth", type=int, default=2, help="module nesting to show (2: one row per block)")
    p.set_defaults(func=cmd_summary)

    data = sub.add_parser("data", help="inspect or fetch datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("info", help="counts per class, image shape, mean/std, where the files were found")
    p.add_argument("dataset", help="a name (mnist, fashion-mnist, kmnist, cifar10, cifar100, synthetic) or a path")
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--image-size", type=int, default=224, help="image folders: side of the square images")
    p.add_argument("--channels", type=int, default=3, help="image folders: 1 (grayscale) or 3 (RGB)")
    p.add_argument("--val-fraction", type=float, default=0.0, help="hold out this part of train as val")
    p.set_defaults(func=cmd_data_info)
    p = data.add_parser("fetch", help="put a named dataset into the data directory ($RESNETLAB_DATA)")
    p.add_argument("dataset")
    p.set_defaults(func=cmd_data_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="resnetlab: %(message)s", stream=sys.stderr)
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad usage
    try:
        return args.func(args)
    except UserError as err:
        print(f"resnetlab: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `resnetlab models | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (keeps Python's exit flush quiet)
        return 0
    except KeyboardInterrupt:
        print("resnetlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
