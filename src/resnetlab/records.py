"""The records a run writes for later commands to read: how it split its data (SplitRecord) and what its
weights say of themselves (WeightsMeta). Both are stored as plain JSON-able dicts (in safetensors headers,
exports' metadata, last.pt and summary.json) and become typed here, checked once when read: a malformed
field is one sentence naming the file, the field and what it should be, never a TypeError later.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import UserError

COUNTS = ("num_classes", "in_chans")  # WeightsMeta's sizes that must be positive
REEXPORT = "export it again from its run with `resnetlab export RUN format=safetensors`"


def _fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value has the annotated type (int for float; int, float, str, bool and containers)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (tuple, list):  # tuple[int, ...] or list[str]: a JSON list of such items
        return isinstance(value, list | tuple) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, kind)


def _checked(cls: type, values: dict[str, Any], where: str, what: str, fix: str) -> dict[str, Any]:
    """The fields of `cls` found in `values`, each checked against its annotation; any missing (without a
    default) or of the wrong type make one UserError naming them all, e.g. "x.safetensors has malformed
    resnetlab metadata (num_classes, mean missing or wrong)"."""
    hints = typing.get_type_hints(cls)
    known, bad = {}, []
    for f in fields(cls):
        if f.name not in values:
            if f.default is MISSING and f.default_factory is MISSING:  # a field that has no default
                bad.append(f.name)
        elif not _fits(values[f.name], hints[f.name]):
            bad.append(f.name)
        else:
            value = values[f.name]
            known[f.name] = tuple(value) if typing.get_origin(hints[f.name]) is tuple else value
    if bad:
        raise UserError(f"{where} has {what} ({', '.join(bad)} missing or wrong); {fix}")
    return known


@dataclass(frozen=True)
class SplitRecord:
    """How a run split its data, so that `eval` and `quantize` rebuild exactly its parts and resume= and a
    changed folder are caught: the method, its settings and a digest of the train and val parts."""

    method: str  # "stratified hold-out", "folder" (the data's own val/), or "none"
    algorithm: str  # data.splits.SPLIT_METHOD at the time: a changed algorithm is detectable
    val_fraction: float  # 0.0 unless held out
    seed: int  # data.split_seed
    limit_train: int = 0
    limit_val: int = 0
    train_count: int | None = None  # None: the part was not read (test is never digested)
    val_count: int | None = None
    test_count: int | None = None
    train_digest: str | None = None
    val_digest: str | None = None

    # What must agree for a resumed run to train and select on the images it started with.
    SAME_FOR_RESUME = (
        *("method", "algorithm", "val_fraction", "seed", "limit_train", "limit_val"),
        *("train_digest", "val_digest"),
    )

    @classmethod
    def read(cls, values: Any, where: str, fix: str = REEXPORT) -> SplitRecord:
        """The record in `values` (from a file at `where`); `fix` says what to do about a malformed one."""
        if not isinstance(values, dict):
            raise UserError(f"{where} has a malformed split record (a {type(values).__name__}); {fix}")
        return cls(**_checked(cls, values, where, "a malformed split record", fix))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def count(self, part: str) -> int | None:
        return getattr(self, f"{part}_count", None)

    def digest(self, part: str) -> str | None:
        return getattr(self, f"{part}_digest", None)

    def differences(self, now: SplitRecord, words: tuple[str, str] = ("then", "now")) -> list[str]:
        """'key A then, B now' for each of SAME_FOR_RESUME that differs from `now`'s (`words` name the two)."""
        pairs = [(k, getattr(self, k), getattr(now, k)) for k in self.SAME_FOR_RESUME]
        return [f"{k} {a} {words[0]}, {b} {words[1]}" for k, a, b in pairs if a != b]

    def describe(self) -> str:
        """One line for the log: how the validation images were chosen."""
        val = f"{self.val_count:,}" if self.val_count is not None else "?"
        if self.method == "stratified hold-out":
            held = f"stratified, {self.val_fraction:g}, split seed {self.seed}"
            return f"validation: {val} images held out of train ({held})"
        if self.method == "folder":
            return f"validation: the data's own val folder ({val} images)"
        return "validation: none (val_fraction=0); nothing is selected, the last epoch is the result"


@dataclass(frozen=True)
class WeightsMeta:
    """What a weights file says of itself, so that it can be used alone: the architecture, the classes, how
    images are prepared for it, and the data (and split) it was trained on."""

    model: str  # a registered model name
    num_classes: int
    in_chans: int
    classes: tuple[str, ...]
    input_size: tuple[int, ...]  # (C, H, W) of the network's input
    mean: tuple[float, ...]  # per channel (or one for all), of pixels scaled to [0, 1]
    std: tuple[float, ...]
    args: dict[str, Any] = field(default_factory=dict)  # architecture arguments given to the model's builder
    resize: int = 0  # shorter side resized to this, then the centre input_size crop; 0: straight to the size
    dataset: str = ""  # the dataset's own name ("fashion-mnist", a folder's name)
    data: str = ""  # data= as the run was given it (a name or an absolute path)
    data_path: str = ""  # data.path: where a named dataset's files were
    image_size: int = 0  # data.image_size and data.channels as the run resolved them
    channels: int = 0
    split: SplitRecord | None = None  # None: written before runs recorded their split
    extra: dict[str, Any] = field(default_factory=dict)  # anything else (epoch, val_top1, selected_on, ...)

    @classmethod
    def read(cls, values: Any, where: str | Path, fix: str = REEXPORT) -> WeightsMeta | None:
        """The metadata in `values` (from a file at `where`); None where it carries none of resnetlab's (foreign
        weights); a malformed field is a UserError of one sentence ending in `fix`, what to do about it."""
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        if not values or (isinstance(values, dict) and not any(key in values for key in required)):
            return None
        if not isinstance(values, dict):
            raise UserError(f"{where} has malformed resnetlab metadata (a {type(values).__name__}); {fix}")
        named = {k: v for k, v in values.items() if k not in ("split", "extra")}
        known = _checked(cls, named, str(where), "malformed resnetlab metadata", fix)
        split = values.get("split")
        extra = {k: v for k, v in values.items() if k not in {f.name for f in fields(cls)}}
        split_record = SplitRecord.read(split, str(where), fix) if split is not None else None
        meta = cls(**known, split=split_record, extra=extra)
        meta.check_consistent(where, fix)
        return meta

    def check_consistent(self, where: str | Path, fix: str = REEXPORT) -> None:
        """Sizes are positive, and the counts agree: names per class, input channels, a mean and std per channel."""
        bad = [f"{key} ({getattr(self, key)}: not positive)" for key in COUNTS if getattr(self, key) < 1]
        if min(self.input_size, default=0) < 1:
            bad.append(f"input_size ({list(self.input_size)}: not positive)")
        if min(self.std, default=1) <= 0:  # a division by zero on every image
            bad.append(f"std ({list(self.std)}: not positive)")
        if len(self.classes) != self.num_classes:
            bad.append(f"classes ({len(self.classes)} names for {self.num_classes} classes)")
        if len(self.input_size) != 3 or self.input_size[0] != self.in_chans:
            bad.append(f"input_size ({list(self.input_size)} for {self.in_chans} channels)")
        if len(self.mean) != len(self.std) or len(self.mean) not in (1, self.in_chans):  # 1: for every channel
            bad.append(f"mean/std ({len(self.mean)}/{len(self.std)} values for {self.in_chans} channels)")
        if bad:
            raise UserError(f"{where} has malformed resnetlab metadata ({', '.join(bad)}); {fix}")

    def to_dict(self) -> dict[str, Any]:
        """The stored form: JSON types, the split as its dict, the extra keys beside the named ones."""
        named = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("split", "extra")}
        named = {k: list(v) if isinstance(v, tuple) else v for k, v in named.items()}
        return {**named, "split": self.split.to_dict() if self.split else None, **self.extra}

    def tagged(self, **extra: Any) -> WeightsMeta:
        """A copy carrying more (or other) extra keys, e.g. the epoch a weights file is of."""
        assert not {f.name for f in fields(self)} & set(extra), "a named field is set by replace(), not tagged()"
        return replace(self, extra={**self.extra, **extra})

    @property
    def data_name(self) -> str:
        """The data the weights were trained on: as given, else the dataset's own name."""
        return self.data or self.dataset

    @property
    def resized_side(self) -> int:
        """The side images are resized to before the centre crop (the input's height where not recorded)."""
        return self.resize or self.input_size[1]
