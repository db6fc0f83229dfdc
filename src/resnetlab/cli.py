"""The `resnetlab` command: parse, call the library, print. User errors exit 2 without a traceback."""

from __future__ import annotations

import argparse
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
