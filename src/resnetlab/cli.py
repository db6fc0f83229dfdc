"""The `resnetlab` command: parse, call the library, print. User errors exit 2 without a traceback."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import Fault, OneProcessError, RunStopped, UserError, WriteFailed, resume_with
from .training.settings import keys_help


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
    from .models import list_models, model_info
    from .models.summary import cost_on_meta, human

    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no model name matches {args.pattern!r}; `resnetlab models` lists them all")
    rows = [("name", "params", "MACs", "input", "published result", "dataset", "source")]
    for name in names:
        info = model_info(name)
        params, macs = cost_on_meta(name)  # counted from the code; the tests hold them to the published counts
        size = "x".join(map(str, info.input_size[1:]))  # the MACs are per image at this size
        rows.append(
            (name, f"{params:,}", human(macs), size, info.result or "-", info.dataset, info.source.split(":")[0])
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = (c.rjust(w) if j in (1, 2) else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths)))
        print("  ".join(cells).rstrip())
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
    from .data.dataset import channel_stats
    from .data.folders import CENTRE_CROP
    from .training import load_config
    from .training.resolve import resolve

    # The data settings as `train` resolves them, so that what is shown (and cached) is what a run would use.
    given = [f"data={args.dataset}", f"data.val_fraction={args.val_fraction}", f"data.split_seed={args.split_seed}"]
    for key, value in (("image_size", args.image_size), ("channels", args.channels), ("centre_crop", args.centre_crop)):
        given += [f"data.{key}={value}"] if value else []
    resolved = resolve(load_config(None, given))
    d = resolved.cfg.data
    data = load_dataset(
        d.name,
        args.split,
        image_size=d.image_size or 224,
        channels=d.channels or 3,
        centre_crop=d.centre_crop or CENTRE_CROP,
        val_fraction=d.val_fraction,
        seed=d.split_seed,
    )
    counts = np.bincount(data.labels, minlength=len(data.classes))
    mean, std = channel_stats(data.images, limit=50_000)
    print(f"dataset: {data.info.name} ({args.split} split)")
    print(f"found at: {data.source}")
    print(f"images: {len(data):,} of {'x'.join(map(str, data.images.shape[1:]))} (H x W x C), uint8")
    seen = "x".join(map(str, data.info.input_size[1:]))
    if tuple(data.info.input_size[1:]) != tuple(data.images.shape[1:3]):
        print(f"network input: {seen} (evaluation takes the centre; training crops from the whole)")
    if "data.image_size" in resolved.why:
        print(f"image size chosen as train chooses it: {resolved.why['data.image_size']}")
    flips = d.hflip == "true" if d.hflip != "auto" else data.info.hflip
    flips_why = f" ({resolved.why['data.hflip']})" if "data.hflip" in resolved.why else ""
    print(f"classes: {len(data.classes)}; training flips images horizontally: {'yes' if flips else 'no'}{flips_why}")
    print(f"mean: {', '.join(f'{m:.4f}' for m in mean)}   std: {', '.join(f'{v:.4f}' for v in std)}")
    width = max(len(c) for c in data.classes)
    for name, count in zip(data.classes, counts):
        print(f"  {name.ljust(width)}  {count:>7,}")
    if data.skipped:
        print(f"skipped {len(data.skipped)} unreadable files (see the warning above)")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from .data.dataset import data_dir
    from .data.registry import named, names
    from .data.sources import load_dataset

    dataset = named(args.dataset)
    if dataset is None or not dataset.files.fetchable:
        fetchable = [n for n in names() if named(n).files.fetchable]  # type: ignore[union-attr]
        raise UserError(f"cannot fetch {args.dataset!r}; named datasets that can be fetched: {', '.join(fetchable)}")
    name = dataset.name
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


def cmd_data_cache(args: argparse.Namespace) -> int:
    from .data.dataset import data_dir
    from .data.folders import clear_caches, list_caches
    from .files import byte_size

    folder = Path(args.folder) if args.folder else None
    if folder is not None and not folder.expanduser().is_dir() and not args.clear:
        raise UserError(f"{args.folder} is not a folder; give an image folder, or nothing to list every cache")
    entries = clear_caches(folder) if args.clear else list_caches(folder)
    where = f"of {args.folder} " if folder is not None else ""
    if not entries:
        print(f"no image-folder caches {where}in {data_dir() / 'folders'}")
        return 0
    for e in entries:
        what = f"{e.images:,} images of {'x'.join(map(str, e.shape))}" if e.root else "incomplete or damaged"
        print(f"{byte_size(e.bytes):>9}  {what:<28}  {e.root or '?'}  ({e.path.name})")
    total = sum(e.bytes for e in entries)
    print(f"{'removed' if args.clear else 'in all'}: {len(entries)} cache(s), {byte_size(total)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import load_config
    from .training.distributed import launch, under_torchrun
    from .training.loop import fit

    recipe, overrides = None, list(args.settings)
    if not overrides:  # a bare `resnetlab train` would start a 30-epoch default job: ask what to train instead
        raise UserError(
            f"{args.command} needs a recipe or settings, e.g. `resnetlab {args.command} fashion_mnist_fast` "
            "(`resnetlab recipes` lists them) or `resnetlab train model=resnet20 data=fashion-mnist epochs=5`; "
            f"`resnetlab {args.command} --help` lists every key"
        )
    if "=" not in overrides[0]:
        recipe = overrides.pop(0)
        if Path(recipe).expanduser().is_dir():  # `resnetlab train FOLDER`: the folder is the data, not a recipe
            if os.environ.get("RANK", "0") == "0":
                print(f"resnetlab: training on the folder {recipe} (as data={recipe})", file=sys.stderr)
            recipe, overrides = None, [f"data={recipe}", *overrides]
    if args.command == "finetune" and not any(o.startswith(("init=", "output.init=", "resume=")) for o in overrides):
        raise UserError("finetune needs init=WEIGHTS (a run, a .safetensors, or a torchvision/timm .pth file)")
    cfg = load_config(recipe, overrides)
    if args.print_config:  # the settings as a run would use them, with why, and nothing trained or written
        from .training.resolve import annotated_yaml, resolve

        print(annotated_yaml(resolve(cfg)))
        return 0
    if cfg.run.nproc > 1 and not under_torchrun():
        return launch(cfg.run.nproc, list(args.settings), args.command)
    try:
        fit(cfg)
    except WriteFailed as err:
        if (err.path.parent / "last.pt").is_file():  # a checkpoint from before the failure is there to go on from
            err.next_step = resume_with(err.path.parent)
        raise
    return 0


TUNE_KEYS = {"trials": int, "budget": str, "storage": str, "out": str, "name": str, "pruner": str, "sampler_seed": int}


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import tune

    items = list(args.settings)
    recipe = items.pop(0) if items and "=" not in items[0] else None
    bare = next((i for i in items if "=" not in i), None)
    if bare is not None:
        raise UserError(f"{bare!r} is not key=value; for example trials=20, budget=60m or space.lr=log:0.01:1")
    own = key_values([i for i in items if i.split("=", 1)[0] in TUNE_KEYS], TUNE_KEYS)
    space = {i.split("=", 1)[0].removeprefix("space."): i.split("=", 1)[1] for i in items if i.startswith("space.")}
    overrides = [i for i in items if i.split("=", 1)[0] not in TUNE_KEYS and not i.startswith("space.")]
    if not recipe and not overrides:
        raise UserError("tune needs a recipe or settings, e.g. `resnetlab tune fashion_mnist_fast trials=20`")
    budget = own.pop("budget", "")
    result = tune(recipe, overrides, space=space, budget_s=parse_duration(budget) if budget else 0.0, **own)
    best, test = result.best, result.test
    scored = (
        f"test top-1 {100 * test['top1']:.2f}% (scored once, after the search)"
        if test is not None
        else f"{result.unfinished} trials still run elsewhere: the last to finish scores test"
        if result.unfinished
        else "no test split in this data"
    )
    print(f"best: trial {best.number}, val top-1 {100 * best.value:.2f}%; {scored}")
    if result.recipe is not None:
        print(f"recipe: {result.recipe}  (resnetlab train {result.recipe})")
    print(f"report: {result.report}")
    return 0


def parse_duration(text: str) -> float:
    """'60m' -> 3600.0; also '90s', '1.5h' and plain seconds ('3600')."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"budget={text!r} is not a length of time; give it as 60m, 90s, 1.5h or seconds")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def cmd_recipes(args: argparse.Namespace) -> int:
    import textwrap

    from .recipes import list_recipes, recipe_path

    if args.name:
        print(recipe_path(args.name).read_text().rstrip())
        return 0
    for recipe in list_recipes():
        print(f"{recipe.name}: {recipe.title}")
        print(f"  command: {recipe.command}")
        print(
            textwrap.fill(
                recipe.result, 110, initial_indent="  result:  ", subsequent_indent=" " * 11, break_on_hyphens=False
            )
        )
    return 0


def key_values(items: list[str], allowed: dict[str, type]) -> dict:
    """['data=cifar10', 'batch_size=64'] -> {'data': 'cifar10', 'batch_size': 64}, checked against `allowed`."""
    from .errors import did_you_mean

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise UserError(
                f"{item!r} is not one of {', '.join(k + '=' for k in allowed)}{did_you_mean(key, list(allowed))}"
            )
        try:
            out[key] = allowed[key](value)
        except ValueError:
            raise UserError(f"{key}={value!r} should be {allowed[key].__name__}") from None
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .inference import evaluate
    from .training.report import plot_confusion

    opts = key_values(
        args.settings,
        {
            "data": str,
            "split": str,
            "batch_size": int,
            "device": str,
            "limit": int,
            "out": str,
            "val_fraction": float,
            "tta": str,
        },  # fmt: skip
    )
    out = opts.pop("out", None)
    result = evaluate(args.weights, **opts)
    if out:
        plot_confusion(Path(out), result["confusion"], result["classes"], f"{args.weights}: {result['dataset']}")
    if args.json:
        print(json.dumps({k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in result.items()}, indent=2))
        return 0
    for note in result.get("notes", []):
        print(f"note: {note}")
    print(
        f"{result['dataset']}: top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%  "
        f"loss {result['loss']:.4f}"
    )
    width = max(len(c) for c in result["classes"])
    print(f"{'class'.ljust(width)}  accuracy")
    for name, acc in zip(result["classes"], result["per_class"]):
        print(f"{name.ljust(width)}  {100 * acc:6.2f}%")
    matrix = result["confusion"]
    if len(matrix) <= 12:
        print("confusion matrix (rows: true class, columns: predicted)")
        for name, row in zip(result["classes"], matrix):
            print(f"{name.ljust(width)}  " + " ".join(f"{int(v):5d}" for v in row))
    if out:
        print(f"confusion matrix figure: {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from .data.folders import printable
    from .files import atomic_write, chosen_output, refuse_run_file
    from .inference import predict

    images, options = paths_and_options(args.images, {"out": Path, "topk": int, "batch_size": int, "device": str})
    topk, batch_size = options.get("topk", args.topk), options.get("batch_size", args.batch_size)
    if topk < 1:
        raise UserError(f"{as_given('topk', options, topk)} should be a positive number of classes, such as 5")
    if batch_size < 1:
        raise UserError(
            f"{as_given('batch_size', options, batch_size)} should be a positive number of images, such as 64"
        )
    out = options.get("out")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"out={out} should end in .csv or .json")
    if out is not None:
        refuse_run_file(out)  # before predicting: a run's own files (summary.json, ...) are never written over
    if not images:
        raise UserError("predict needs images: files, folders or patterns such as 'photos/*.jpg'")
    results = predict(args.weights, images, topk=topk, batch_size=batch_size, device=options.get("device", "cpu"))
    skipped = [r for r in results if "skipped" in r]
    if out is not None:
        text = json.dumps(results, indent=2) + "\n" if out.suffix.lower() == ".json" else predictions_csv(results)
        with chosen_output(out):
            atomic_write(out, lambda tmp: tmp.write_bytes(text.encode("utf-8", "surrogateescape")))
        print(f"{len(results) - len(skipped)} predictions -> {out}")
    elif args.json:
        print(json.dumps(results, indent=2))
        return 0
    else:
        for result in results:
            print(printable(result["file"]))
            if "skipped" in result:
                print(f"  skipped: {result['skipped']}")
                continue
            for name, p in result["top"]:
                print(f"  {100 * p:6.2f}%  {name}")
    if skipped:
        shown = "; ".join(f"{printable(r['file'])} ({r['skipped']})" for r in skipped[:5])
        print(f"skipped {len(skipped)} unreadable files: {shown}{' ...' if len(skipped) > 5 else ''}")
    return 0


def predictions_csv(results: list[dict]) -> str:
    """file, class_1, prob_1, ..., class_k, prob_k, skipped: one row per image, in the order given."""
    import csv
    import io

    k = max((len(r["top"]) for r in results if "top" in r), default=0)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", *[f"{what}_{i}" for i in range(1, k + 1) for what in ("class", "prob")], "skipped"])
    for r in results:
        cells = [c for name, p in r.get("top", []) for c in (name, f"{p:.6f}")]
        writer.writerow([r["file"], *cells, *[""] * (2 * k - len(cells)), r.get("skipped", "")])
    return buffer.getvalue()


def as_given(key: str, options: dict, value: object) -> str:
    """'topk=-1' when the option was given as key=value, '--topk -1' when as a flag: as the user wrote it."""
    return f"{key}={value}" if key in options else f"--{key.replace('_', '-')} {value}"


def paths_and_options(items: list[str], allowed: dict[str, type]) -> tuple[list[str], dict]:
    """Image paths, and key=value options among them (checked against `allowed`, as key_values does): an item is
    an option when it reads `word=...` and no file of that name exists."""
    is_option = [re.fullmatch(r"[a-z_]+=.*", i) is not None and not Path(i).exists() for i in items]
    options = key_values([i for i, o in zip(items, is_option) if o], allowed)
    return [i for i, o in zip(items, is_option) if not o], options


def cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.folders import printable
    from .files import atomic_write, chosen_output, refuse_run_file
    from .inference import embed

    inputs, options = paths_and_options(args.inputs, {"out": Path, "batch_size": int})
    batch_size, out = options.get("batch_size", args.batch_size), options.get("out", Path("features.npy"))
    if batch_size < 1:
        raise UserError(
            f"{as_given('batch_size', options, batch_size)} should be a positive number of images, such as 256"
        )
    kind = out.suffix.lower()
    if kind not in (".npy", ".csv", ".json"):
        raise UserError(f"out={out} should end in .npy (with the names in a .txt beside it), .csv or .json")
    refuse_run_file(out)  # before embedding: a run's own files are never written over
    features, names, skipped = embed(args.weights, inputs, batch_size=batch_size)
    written = [out]
    with chosen_output(out):  # each file complete or absent: written beside, then renamed
        if kind == ".npy":

            def write_array(tmp: Path) -> None:
                with open(tmp, "wb") as f:  # a file object: np.save would add .npy to the temporary name
                    np.save(f, features)

            names_file = out.with_suffix(".txt")
            listing = "".join(f"{n}\n" for n in names)  # names as the file system has them
            atomic_write(out, write_array)
            atomic_write(names_file, lambda tmp: tmp.write_bytes(listing.encode("utf-8", "surrogateescape")))
            written.append(names_file)
        else:
            text = embeddings_text(features, names, kind)
            atomic_write(out, lambda tmp: tmp.write_bytes(text.encode("utf-8", "surrogateescape")))
    where = " and ".join(map(str, written))
    print(f"{features.shape[0]} images -> {where} ({features.shape[1]} features each, float32)")
    if skipped:
        shown = "; ".join(f"{printable(name)} ({reason})" for name, reason in skipped[:5])
        print(f"skipped {len(skipped)} unreadable files: {shown}{' ...' if len(skipped) > 5 else ''}")
    return 0


def embeddings_text(features, names: list[str], kind: str) -> str:
    """CSV (file, f0, f1, ...) or JSON ({"files": [...], "features": [[...], ...]}) of the embeddings."""
    import csv
    import io
    import json

    if kind == ".json":
        return json.dumps({"files": names, "features": features.round(6).tolist()}) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", *[f"f{i}" for i in range(features.shape[1])]])
    for name, row in zip(names, features):
        writer.writerow([name, *(f"{v:.6g}" for v in row)])
    return buffer.getvalue()


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    opts = key_values(args.settings, {"format": str, "out": str, "batch": str, "opset": int})
    batch = opts.get("batch", "dynamic")
    if batch != "dynamic" and not batch.isdigit():
        raise UserError(f"batch={batch!r} should be 'dynamic' or a whole number such as 8")
    result = export(
        args.weights,
        opts.get("format", "onnx"),
        opts.get("out"),
        dynamic_batch=batch == "dynamic",
        check_batch=4 if batch == "dynamic" else int(batch),
        opset=opts.get("opset", 17),
    )
    print(f"wrote {result.path} ({result.format})")
    if result.max_abs_diff is not None:
        print(
            f"checked against PyTorch at batch {' and '.join(map(str, result.batches))}: "
            f"largest difference {result.max_abs_diff:.2e}"
        )
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from .files import byte_size
    from .quantize import quantize

    opts = key_values(args.settings, {"images": int, "out": str, "check": int, "seed": int, "data": str})
    result = quantize(
        args.weights,
        opts.get("out"),
        calibration_images=opts.get("images", 512),
        check_images=opts.get("check", 1000),
        seed=opts.get("seed", 0),
        data=opts.get("data"),
    )
    print(
        f"wrote {result.path} (int8 QDQ, weights per channel: {byte_size(result.int8_bytes)}; "
        f"fp32 {byte_size(result.fp32_bytes)})"
    )
    print(f"calibrated on {result.calibration}")
    accuracy = (
        f"; top-1 accuracy fp32 {100 * result.fp32_top1:.2f}%, int8 {100 * result.int8_top1:.2f}%"
        if result.fp32_top1 is not None and result.int8_top1 is not None
        else ""
    )
    print(
        f"int8 vs fp32 on {result.checked}: top-1 agrees on {100 * result.agreement:.2f}%, largest logit "
        f"difference {result.max_abs_diff:.3g} (logits up to {result.logit_scale:.3g}){accuracy}"
    )
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from . import experiments

    own = {
        "depths": "",
        "models": "",
        "steps": "",
        "preset": "quick",
        "name": "",
        "out": "runs",
        "shortcut": "A",
        "seeds": "",
        "table": "",
    }
    overrides = []
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"{item!r} is not key=value; for example depths=20,56 or models=plain56,resnet56")
        if key in own:
            own[key] = value
        else:
            overrides.append(item)  # a training setting, checked by the config loader
    names = [m for m in own["models"].split(",") if m]
    seeds_given = own["seeds"] or ("3" if args.kind == "ablation" else "1")
    if not seeds_given.isdigit() or int(seeds_given) < 1:
        raise UserError(f"seeds={own['seeds']!r} should be a positive number of runs per arm, such as 3")
    seeds = int(seeds_given)
    if own["table"] and args.kind != "ablation":
        raise UserError(f"table={own['table']} applies to `experiment ablation`, not {args.kind}")
    common = dict(preset=own["preset"], overrides=overrides, out=own["out"], name=own["name"])
    if args.kind == "ablation":
        from .ablation import TABLES, ablation

        if not own["table"]:
            raise UserError(f"ablation needs table=NAME: one of {', '.join(TABLES)} (He et al. 2016, tables 1 and 2)")
        exp_dir = ablation(own["table"], seeds=seeds, **common)
    elif args.kind == "degradation":
        try:
            depths = [int(d) for d in (own["depths"] or "20,56").split(",")]
        except ValueError:
            raise UserError(f"depths={own['depths']!r} should be numbers such as 20,56") from None
        exp_dir = experiments.degradation(depths, shortcut=own["shortcut"].upper(), seeds=seeds, **common)
    elif args.kind == "gradflow":
        if seeds != 1:
            raise UserError(f"seeds={seeds} applies to degradation and compare; gradflow measures one initialisation")
        steps = int(own["steps"] or 100) if (own["steps"] or "100").isdigit() else -1
        if steps < 0:
            raise UserError(f"steps={own['steps']!r} should be a whole number such as 100")
        exp_dir = experiments.gradflow(names or ["plain56", "resnet56"], steps=steps, **common)
    else:
        if not names:
            raise UserError("compare needs models=NAME,NAME,... (for example models=resnet110,preact_resnet110)")
        exp_dir = experiments.compare(names, seeds=seeds, **common)
    print((exp_dir / "results.md").read_text().rstrip())
    print(f"report: {exp_dir / 'report.md'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiments import compare_runs

    runs, options = paths_and_options(args.runs, {"out": Path})
    exp_dir = compare_runs(runs, options.get("out") or Path(runs[0]).parent / "compare")
    print((exp_dir / "results.md").read_text().rstrip())
    print(f"report: {exp_dir / 'report.md'}")
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors in one line (which command, what was wrong, where help is), status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"resnetlab: error: {message}; `{self.prog} --help` lists what works\n")


Argument = tuple[tuple[str, ...], dict[str, Any]]


def arg(*names: str, **options: Any) -> Argument:
    return names, options


RUN_OR_WEIGHTS = "a run directory or a .safetensors file"
ANY_WEIGHTS = "a run directory, a .safetensors file, or an export (.onnx incl. int8, .pt2, .torchscript.pt)"
TRAIN_DESCRIPTION = (
    "Settings are key=value: a dotted key reaches any field (optim.momentum=0.95), and a field name alone works "
    "where only one section has it (threads=2). A first argument without '=' is a recipe: a shipped one by name "
    "(`resnetlab recipes` lists them) or any YAML file."
)
TRAIN_ARGUMENTS = [
    arg("settings", nargs="*", help="[RECIPE] key=value ..."),
    arg("--print-config", action="store_true", help="print the resolved settings and exit"),
]

# The commands as data: name -> (help, handler, arguments). `resnetlab data` has commands of its own.
COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int], list[Argument]]] = {
    "models": (
        "list the registered networks with parameters and published results",
        cmd_models,
        [arg("pattern", nargs="?", default=None, help="a glob such as 'resnet*' or a word such as 'preact'")],
    ),
    "summary": (
        "per-layer table, parameters and FLOPs of one network",
        cmd_summary,
        [
            arg("name", help="a registered model name (see `resnetlab models`)"),
            arg("--input-size", default=None, help="C,H,W (default: the size the network was published at)"),
            arg("--depth", type=int, default=2, help="module nesting to show (2: one row per block)"),
        ],
    ),
    "train": ("train a model (the main job)", cmd_train, TRAIN_ARGUMENTS),
    "finetune": ("train from pretrained weights: init=WEIGHTS data=FOLDER ...", cmd_train, TRAIN_ARGUMENTS),
    "tune": (
        "search a recipe's settings on validation (Optuna): the best as a recipe, scored once on test",
        cmd_tune,
        [
            arg(
                "settings",
                nargs="*",
                help="[RECIPE] trials=N budget=60m space.KEY=log:LOW:HIGH|float:LOW:HIGH|int:LOW:HIGH|choice:A,B,C "
                "storage=URL (default: SQLite in the tune directory; journal:PATH for Optuna's journal file) "
                "out=tunes name= pruner=auto|median|hyperband|none sampler_seed=N, and any training key=value",
            )
        ],
    ),
    "recipes": (
        "the shipped training recipes, each with its command and result",
        cmd_recipes,
        [arg("name", nargs="?", help="print this recipe's YAML")],
    ),
    "eval": (
        "top-1, top-5, per-class accuracy and confusion matrix of a trained model",
        cmd_eval,
        [
            arg("weights", help=ANY_WEIGHTS),
            arg(
                "settings",
                nargs="*",
                help="split=test|val|train (default: test, else val where the data has no test split; val and "
                "train: the run's own split, rebuilt from its record) "
                "data=NAME|PATH batch_size=256 device=auto limit=N out=cm.png tta=none|flip",
            ),
            arg("--json", action="store_true", help="print JSON"),
        ],
    ),
    "predict": (
        "top-k classes of images: files, folders, patterns; CSV or JSON",
        cmd_predict,
        [
            arg("weights", help=ANY_WEIGHTS),
            arg(
                "images",
                nargs="+",
                help="image files, folders (every image below) and quoted patterns ('shots/**/*.png'); options: "
                "out=predictions.csv or out=predictions.json (writes them to a file), topk=5, batch_size=64, "
                "device=cpu|cuda|auto",
            ),
            arg("--topk", type=int, default=5),
            arg("--batch-size", type=int, default=64, help="images prepared and run at a time"),
            arg("--json", action="store_true", help="print JSON"),
        ],
    ),
    "embed": (
        "pooled features of images, for retrieval, clustering or another classifier",
        cmd_embed,
        [
            arg("weights", help=RUN_OR_WEIGHTS),
            arg(
                "inputs",
                nargs="+",
                help="image files, folders and quoted patterns; options: out=features.npy (names in features.txt), "
                "out=x.csv or out=x.json (names the output), batch_size=256",
            ),
            arg("--batch-size", type=int, default=256),
        ],
    ),
    "export": (
        "ONNX, torch.export, TorchScript or safetensors, checked against PyTorch",
        cmd_export,
        [
            arg("weights", help=RUN_OR_WEIGHTS),
            arg(
                "settings",
                nargs="*",
                help="format=onnx|pt2|torchscript|safetensors out=PATH batch=dynamic|N (N: a fixed shape) opset=17",
            ),
        ],
    ),
    "quantize": (
        "int8 ONNX calibrated on the run's training images, compared with fp32",
        cmd_quantize,
        [
            arg("weights", help=RUN_OR_WEIGHTS),
            arg(
                "settings",
                nargs="*",
                help="images=512 (calibration images, from the run's training part) out=PATH (default: "
                "model.int8.onnx beside the weights) check=1000 (held-out images to compare int8 with fp32 on) "
                "seed=0 data=NAME|PATH",
            ),
        ],
    ),
    "experiment": (
        "degradation, gradient flow, a comparison, or He et al. 2016's ablations: figures, table, report",
        cmd_experiment,
        [
            arg("kind", choices=("degradation", "gradflow", "compare", "ablation")),
            arg(
                "settings",
                nargs="*",
                help="depths=20,56 (or 18,34) shortcut=A|B | models=a,b | table=shortcuts|activations (ablation: "
                "He et al. 2016 tables 1 and 2, preset=quick|paper, 3 seeds unless told)  preset=quick|full  "
                "seeds=N (each arm N times: mean ± std, 95%% CI)  steps=N  name=  out=  and any training key=value "
                "(data=, epochs=, ...)",
            ),
        ],
    ),
    "compare": (
        "the comparison figure and table from finished runs",
        cmd_compare,
        [arg("runs", nargs="+", help="run directories; out=DIR names the output folder")],
    ),
}
DATA_COMMANDS: dict[str, tuple[str, Callable[[argparse.Namespace], int], list[Argument]]] = {
    "info": (
        "counts per class, image shape, mean/std, where the files were found",
        cmd_data_info,
        [
            arg(
                "dataset",
                help="a name (mnist, fashion-mnist, kmnist, cifar10, cifar100, synthetic, or one declared in "
                "$RESNETLAB_DATASETS) or a path",
            ),
            arg("--split", default="train", choices=("train", "val", "test")),
            arg(
                "--image-size",
                type=int,
                default=0,
                help="image folders: side of the square images (default: as train chooses, the images' own size)",
            ),
            arg(
                "--channels",
                type=int,
                default=0,
                help="image folders: 1 (grayscale) or 3 (RGB) (default: as train chooses, from the images)",
            ),
            arg(
                "--centre-crop",
                type=float,
                default=0.0,
                help="image folders: cached at size / this (default 0.875: 256 for 224)",
            ),
            arg(
                "--val-fraction",
                type=float,
                default=0.1,
                help="where the data has no val split: hold out this part of train",
            ),
            arg("--split-seed", type=int, default=0, help="chooses the held-out images (as data.split_seed)"),
        ],
    ),
    "fetch": ("put a named dataset into the data directory ($RESNETLAB_DATA)", cmd_data_fetch, [arg("dataset")]),
    "cache": (
        "list image-folder caches with their size and source folder, or remove them",
        cmd_data_cache,
        [
            arg("folder", nargs="?", help="only the caches built from this image folder"),
            arg("--clear", action="store_true", help="remove them (all of them, or the folder's)"),
        ],
    ),
}


def add_commands(
    sub: Any, commands: dict[str, tuple[str, Callable[[argparse.Namespace], int], list[Argument]]]
) -> None:
    for name, (text, handler, arguments) in commands.items():
        extra: dict[str, Any] = {}
        if handler is cmd_train:  # train and finetune: every key, with its default and meaning
            extra = dict(
                description=TRAIN_DESCRIPTION,
                epilog="keys (default, meaning):\n" + keys_help(),
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        p = sub.add_parser(name, help=text, **extra)
        for names, options in arguments:
            p.add_argument(*names, **options)
        p.set_defaults(func=handler)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="resnetlab", description="Residual networks: define, train, explain, export.")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    add_commands(sub, COMMANDS)
    data = sub.add_parser("data", help="inspect or fetch datasets").add_subparsers(dest="data_command", required=True)
    add_commands(data, DATA_COMMANDS)
    return parser


def version_line() -> str:
    """'resnetlab 0.1.0 (torch 2.14.1, torchvision 0.29.1, Python 3.11.7)', read without importing torch."""
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    def of(package: str) -> str:
        try:
            return f"{package} {version(package)}"
        except PackageNotFoundError:
            return f"no {package}"

    return f"resnetlab {__version__} ({of('torch')}, {of('torchvision')}, Python {sys.version.split()[0]})"


def quiet_large_photos() -> None:
    """An image over Pillow's pixel limit but within twice it (a 10000x10000 photo) is read like any other; over
    twice it is skipped with a reason (folders.read_image). Pillow's warning about the first kind would be a
    raw line in the command's output, so the command line silences it (a library user keeps Pillow's default)."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="resnetlab: %(message)s", stream=sys.stderr)
    quiet_large_photos()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error already printed in one line (2)
        return int(done.code or 0)
    try:
        return args.func(args)
    except UserError as err:
        rank = os.environ.get("RANK", "0")  # under torchrun every process meets the error: one says it
        if rank == "0" or isinstance(err, OneProcessError):  # or the one process that met it
            print(f"resnetlab: error: {'' if rank == '0' else f'process {rank}: '}{err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `resnetlab models | head`: the reader left, nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (keeps Python's exit flush quiet)
        return 0
    except Fault as err:  # a full disk, a refused write, a cache changed under a run: not the user's input
        rank = os.environ.get("RANK", "0")  # under torchrun the process that met it says so (only it may have)
        print(f"resnetlab: error: {'' if rank == '0' else f'process {rank}: '}{err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"resnetlab: error: {(err.strerror or str(err)).lower()} while writing {err.filename}", file=sys.stderr)
        return 1
    except RunStopped as stopped:  # SIGTERM / first Ctrl-C: the run checkpointed at a step boundary
        if os.environ.get("RANK", "0") == "0":
            print(f"resnetlab: {stopped}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:
        print("resnetlab: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        lost = lost_a_peer(err)
        if not lost:
            raise
        print(f"resnetlab: error: process {os.environ['RANK']} lost contact with the others ({lost})", file=sys.stderr)
        return 1


# What gloo and NCCL say when another process of the job died mid-collective.
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused")


def lost_a_peer(err: Exception) -> str:
    """Under torchrun, the line of a collective's error saying a peer went away ("" otherwise): the process
    that died says why (or torchrun does); the survivors need one line, not the backend's traceback."""
    if "RANK" not in os.environ or type(err).__name__ not in ("DistBackendError", "DistNetworkError", "RuntimeError"):
        return ""
    line = next((line.strip() for line in str(err).splitlines() if any(p in line for p in PEER_LOST)), "")
    return line.split("] ", 1)[-1][:160]  # without the backend's "[file.cc:534]" prefix


if __name__ == "__main__":
    sys.exit(main())
