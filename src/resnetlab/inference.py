"""Using a trained model: load it from a run or a weights file, evaluate it on a dataset, predict images.

model, meta = resnetlab.load("runs/resnet20-fashion-mnist")
resnetlab.predict("runs/resnet20-fashion-mnist", ["shoe.png"])   # [{'file': ..., 'top': [(class, p), ...]}]
resnetlab.evaluate("runs/resnet20-fashion-mnist", data="fashion-mnist")
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from .data import BatchLoader, Dataset
from .data.dataset import centre_offsets
from .data.folders import IMAGE_EXTENSIONS, read_image
from .data.splits import sample
from .errors import UserError
from .evaluation import evaluate as evaluate_loader
from .models import create_model
from .models.pretrained import load_into, read_state_dict, resolve_weights_path
from .records import WeightsMeta
from .run_split import RunSplit, data_name, is_own_data, load_run_split
from .runtimes import ExportedModel, Logits, is_export, open_export
from .training.device import resolve_device, resolve_precision


def load(source: str | Path, device: str = "cpu") -> tuple[nn.Module, WeightsMeta]:
    """(model in eval mode, metadata: model name, classes, input_size, mean, std, ...) from a run or .safetensors."""
    path = resolve_weights_path(source)
    state, meta = read_state_dict(path)
    if meta is None:
        raise UserError(
            f"{path} carries no resnetlab metadata (model name, classes); to use foreign weights, "
            "fine-tune them with `resnetlab finetune init=...`"
        )
    try:
        model = create_model(meta.model, num_classes=meta.num_classes, in_chans=meta.in_chans, **meta.args)
    except (TypeError, UserError) as err:  # an unknown model name or arguments its builder does not take
        raise UserError(f"{path} has malformed resnetlab metadata ({err})") from err
    report = load_into(model, state)
    if report.missing or report.dropped:
        raise UserError(f"{path} does not match {meta.model}: missing {report.missing[:3]}, extra {report.dropped[:3]}")
    return model.to(resolve_device(device)).eval(), meta


def normalise(images: np.ndarray, meta: WeightsMeta) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W), normalised with the weights' mean and std."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(meta.mean).view(1, -1, 1, 1)
    std = torch.tensor(meta.std).view(1, -1, 1, 1)
    return (x - mean) / std


def preprocess(images: list[Path], meta: WeightsMeta) -> tuple[torch.Tensor | None, list[tuple[str, str]]]:
    """Image files -> ((N, C, H, W) float of the readable ones, prepared exactly as the training images were,
    or None), and (file, reason) for each file that could not be used."""
    channels, height, width = meta.input_size
    resize = meta.resized_side
    top, left = centre_offsets((resize, resize), (height, width))
    batch, skipped = [], []
    for image in images:
        result = read_image(Path(image), resize, channels)  # shorter side to `resize`, centre square
        if isinstance(result, str):
            skipped.append((str(image), result))
        else:
            batch.append(result[top : top + height, left : left + width])
    return (normalise(np.stack(batch), meta) if batch else None), skipped


GLOB_CHARACTERS = set("*?[")


def image_files(inputs: list[str | Path]) -> list[Path]:
    """Files as given, every image file below each folder (sorted, recursively), and what each glob pattern
    ('photos/*.jpg', 'shots/**/*.png', quoted so that Python rather than the shell expands it) matches."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            # Broken links too: predict lists them as skipped, with the reason, rather than leaving them out.
            found = (p for p in path.rglob("*") if p.is_file() or p.is_symlink())
            files += sorted(p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS)
        elif path.is_file():
            files.append(path)
        elif GLOB_CHARACTERS & set(str(item)):
            matches = sorted(Path(m) for m in glob.glob(str(path), recursive=True))
            found = [m for m in matches if m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS]
            found += image_files([m for m in matches if m.is_dir()]) if any(m.is_dir() for m in matches) else []
            if not found:
                raise UserError(f"the pattern {item} matches no image file")
            files += found
        else:
            raise UserError(f"{item} is neither an image file, a folder, nor a pattern such as 'photos/*.jpg'")
    if not files:
        raise UserError(f"no image files in {', '.join(map(str, inputs))}")
    return list(dict.fromkeys(files))  # each image once, where a folder and a pattern (or 'dir/**') both reach it


# (the files in order, the readable ones, their images, (file, reason) for each skipped one)
Batch = tuple[list[Path], list[Path], torch.Tensor | None, list[tuple[str, str]]]


def image_batches(files: list[Path], meta: WeightsMeta, batch_size: int, what: str) -> Iterator[Batch]:
    """The files prepared for the network `batch_size` at a time, with a progress bar on a terminal."""
    if batch_size < 1:
        raise UserError(f"batch_size={batch_size} should be a positive number of images, such as 64")
    with tqdm(total=len(files), unit="img", desc=what, disable=None, leave=False) as bar:
        for start in range(0, len(files), batch_size):
            chunk = files[start : start + batch_size]
            x, skipped = preprocess(chunk, meta)
            unreadable = {name for name, _ in skipped}
            yield chunk, [p for p in chunk if str(p) not in unreadable], x, skipped
            bar.update(len(chunk))


def classifier(source: str | Path, device: str = "cpu") -> tuple[Logits, WeightsMeta]:
    """(images -> logits on the CPU, metadata) from a run, a weights file, or an ONNX / torch.export / TorchScript
    export that resnetlab wrote (run by ONNX Runtime or PyTorch, with the metadata stored inside it)."""
    if is_export(source):
        return open_export(source)
    model, meta = load(source, device)
    where = next(model.parameters()).device

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(x.to(where)).float().cpu()

    return run, meta


@torch.no_grad()
def embed(
    source: str | Path, inputs: list[str | Path], batch_size: int = 256
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Pooled features (N, num_features) of every readable image (files, folders, glob patterns), their file
    names, and (file, reason) of the files that could not be used."""
    if is_export(source):
        raise UserError(
            f"{source} is an export, which gives logits only; embed from the run or its .safetensors weights"
        )
    model, meta = load(source, "cpu")
    features, names, skipped = [], [], []
    files = image_files(inputs)
    for _, readable, x, bad in image_batches(files, meta, batch_size, "embedding"):
        skipped += bad
        names += [str(p) for p in readable]
        if x is not None:
            features.append(model.forward_head(model.forward_features(x), pre_logits=True).float().numpy())
    if not features:
        raise UserError(f"none of the {len(files)} files could be read as an image ({skipped[0][1]})")
    return np.concatenate(features), names, skipped


def predict(
    source: str | Path, images: list[str | Path], topk: int = 5, device: str = "cpu", batch_size: int = 64
) -> list[dict[str, Any]]:
    """Top-k (class name, probability) for each image (files, folders, glob patterns), in order: {'file', 'top'},
    or {'file', 'skipped': reason} for a file that could not be used (unreadable, a decompression bomb, too
    large). `source`: a run, a weights file, or an ONNX / .pt2 / TorchScript export written by resnetlab."""
    if topk < 1:
        raise UserError(f"topk={topk} should be a positive number of classes, such as 5")
    logits, meta = classifier(source, device)
    files = image_files(images)
    results: list[dict[str, Any]] = []
    for chunk, _, x, skipped in image_batches(files, meta, batch_size, "predicting"):
        reasons = dict(skipped)
        tops = iter([])
        if x is not None:
            values, indices = logits(x).float().softmax(1).topk(min(topk, len(meta.classes)), 1)
            tops = iter(
                [(meta.classes[i], float(p)) for p, i in zip(v.tolist(), ix.tolist())] for v, ix in zip(values, indices)
            )
        results += [
            {"file": str(p), "skipped": reasons[str(p)]} if str(p) in reasons else {"file": str(p), "top": next(tops)}
            for p in chunk
        ]
    if all("skipped" in r for r in results):
        first = results[0]
        raise UserError(f"none of the {len(files)} images could be read ({first['file']}: {first['skipped']})")
    return results


def _old_val_fraction(source: str | Path) -> float | None:
    """val_fraction of the run that wrote `source`, read from its config.yaml (None when unknown)."""
    folder = Path(source) if Path(source).is_dir() else Path(source).parent
    try:
        return float(yaml.safe_load((folder / "config.yaml").read_text())["data"]["val_fraction"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def evaluate(
    source: str | Path,
    data: str | None = None,
    split: str = "auto",
    batch_size: int = 256,
    device: str = "auto",
    precision: str = "auto",
    limit: int = 0,
    tta: str = "none",
    **data_options: Any,
) -> dict[str, Any]:
    """Top-1, top-5, per-class accuracy and confusion matrix of a trained model on a dataset split
    (`tta="flip"`: each image scored by the mean of its and its mirror image's class probabilities).

    split="auto" scores the test split, or where the data has none (a flat image folder) the validation split,
    with a note that the run selected its epoch on it. On the data it was trained on, the split is the run's
    own, rebuilt from the settings recorded in the weights: split="val" scores exactly the images the run held
    out (and selected on), split="train" those it trained on; if an image folder has changed since, that is an
    error rather than a score on other images.
    """
    if split not in ("auto", "train", "val", "test"):
        raise UserError(f"split={split!r} is unknown; use 'test', 'val' or 'train' ('auto': test, else val)")
    if tta not in ("none", "flip"):
        raise UserError(f"tta={tta!r} is unknown; use none or flip")
    exported = is_export(source)  # an ONNX / .pt2 / TorchScript file, scored as it would run in deployment
    if exported:
        logits, meta = classifier(source)
        model: nn.Module = ExportedModel(logits)
    else:
        model, meta = load(source, "cpu")
    dataset, run_split, notes = evaluation_images(source, meta, data, split, limit, data_options)
    split = dataset.split  # "auto" made test, or val where the data has no test split
    if tta == "flip" and not dataset.info.hflip:
        raise UserError(f"tta=flip scores mirror images, but {dataset.info.name} means something else mirrored; "
                        "use tta=none")  # fmt: skip
    if exported:  # the export's own runtime, on the CPU, in the precision it was written in
        dev, dtype, channels_last = torch.device("cpu"), None, False
    else:
        dev = resolve_device(device)
        dtype, channels_last = resolve_precision(precision, "auto", dev)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loader = BatchLoader(
        dataset, batch_size, train=False, mean=meta.mean, std=meta.std, device=dev, channels_last=channels_last
    )
    result = evaluate_loader(model, loader, dev, dtype, len(dataset.classes), tta=tta == "flip")
    own = ", the run's own split" if run_split.own and split != "test" else ""
    described = f"{run_split.shown} ({split}, {len(dataset):,} images{own}{', flip TTA' if tta == 'flip' else ''})"
    return {**result, "classes": list(dataset.classes), "dataset": described, "split": split, "notes": notes}


def evaluation_images(
    source: str | Path, meta: WeightsMeta, data: str | None, split: str, limit: int, options: dict[str, Any]
) -> tuple[Dataset, RunSplit, list[str]]:
    """The images to score: the split of the weights' own data as their run made it (or of `data`), checked
    against the run's record and the model's classes; notes on what a figure of them means."""
    notes: list[str] = []
    asked, split = split, "test" if split == "auto" else split
    if meta.split is None and is_own_data(meta, data) and not options and data_name(meta, data):
        options, notes = legacy_split(source, split)
    run_split = load_run_split(meta, data, (split,), options or None)
    if asked == "auto" and run_split.splits.test is None:
        split = "val"
        if meta.split is None and is_own_data(meta, data) and data_name(meta, data):
            options, notes = legacy_split(source, split)  # refuses a validation split it cannot rebuild
        run_split = load_run_split(meta, data, (split,), options or None)
        notes.append(
            "the data has no test split, so its validation split is scored: the images the run chose its epoch on, "
            "so the figure is optimistic (a test/ folder beside train/ gives an unbiased one)"
        )
    dataset = run_split.splits.part(split)
    name = run_split.name
    if dataset is None:
        why = "held out no validation images (val_fraction=0)" if split == "val" else "has no test split"
        other = "test" if split == "val" and asked != "auto" else "val" if split == "test" else ""
        raise UserError(f"{name} {why}; evaluate split=train{f' or split={other}' if other else ''}")
    run_split.check_unchanged(meta.split, (split,), source, "scoring")
    if limit:
        dataset = sample(dataset, limit, seed=0, purpose=0)
    if list(dataset.classes) != list(meta.classes):
        raise UserError(
            f"{name} has classes {dataset.classes[:4]}...; the model was trained on {list(meta.classes[:4])}..."
        )
    return dataset, run_split, notes


def legacy_split(source: str | Path, split: str) -> tuple[dict[str, Any], list[str]]:
    """Weights from before runs recorded their split: what their run held out, as far as it can be known."""
    held_out = _old_val_fraction(source)
    if held_out:
        if split != "test":
            raise UserError(
                f"{source} was trained before resnetlab recorded its split: its run held out {held_out:g} of train "
                "by another method, which cannot be rebuilt; evaluate split=test"
            )
        return {}, []
    if split == "val":
        raise UserError(
            f"{source} was trained before resnetlab held out validation images, so it has no validation split of "
            "its own (its run validated on test); evaluate split=test or split=train"
        )
    note = (
        "these weights were written before resnetlab held out validation images: their run chose its best epoch "
        "on the test split, so a test figure of them is optimistic"
    )
    return {"val_fraction": 0.0}, [note]  # such a run trained on every training image
