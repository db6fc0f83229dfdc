"""A trained model's own data split, rebuilt from the record its weights carry.

A run records how it split its data (held-out fraction, split seed, samples, and a digest of each part);
`eval` and `quantize` rebuild exactly those parts from the record, so that "val" means the images the run
selected on and "train" the images it trained on. On other data (data= naming another dataset, or options
that change the split) the parts are that data's, split the default way (a seeded 0.1 hold-out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Splits, load_splits
from .data.sources import same_data
from .errors import UserError
from .records import SplitRecord, WeightsMeta

DEFAULT_SPLIT = {"val_fraction": 0.1, "seed": 0}  # another dataset's hold-out: as `train` splits by default


@dataclass
class RunSplit:
    splits: Splits
    name: str  # the data, as given (data=) or as the weights record it
    shown: str  # its name for messages: a folder's own name, not its whole path
    own: bool  # the run's own parts, rebuilt from its record

    def check_unchanged(self, record: SplitRecord | None, parts: tuple[str, ...], source: str | Path, use: str) -> None:
        """A folder that changed since the run would give other images under the same names: an error."""
        if not self.own or record is None or self.splits.record is None:
            return
        for part in parts:
            digest = record.digest(part)
            if part != "test" and digest not in (None, self.splits.record.digest(part)):
                now = self.splits.part(part)
                then = record.count(part)
                raise UserError(
                    f"{self.name} has changed since {source} was trained: its {part} part now holds "
                    f"{len(now) if now is not None else 0:,} images (the run's held "
                    f"{f'{then:,}' if then is not None else '?'}), so {use} would use other images; restore the "
                    "data, or give data= (and val_fraction=) to use it as it is now"
                )


def data_name(meta: WeightsMeta, data: str | None) -> str | None:
    """The data to use: the one given, else the one the weights were trained on."""
    return data or meta.data_name or None


def is_own_data(meta: WeightsMeta, data: str | None) -> bool:
    """Whether `data` (None: the weights' own) is the data the weights were trained on."""
    return data is None or same_data(data, meta.data_name)


def load_run_split(
    meta: WeightsMeta, data: str | None, need: tuple[str, ...], options: dict[str, Any] | None = None
) -> RunSplit:
    """The parts `need` of the data: the run's own (its record rebuilt) when the data is the run's and no
    split `options` are given, else the data's with `options` over the default split."""
    name = data_name(meta, data)
    if not name:
        raise UserError("say which data to use: data=fashion-mnist, data=cifar10 or data=path/to/folder")
    record = meta.split
    own = record is not None and is_own_data(meta, data) and not options
    if record is not None and own:
        split_options = {"val_fraction": record.val_fraction, "seed": record.seed, "path": meta.data_path or None}
        split_options |= {"limit_train": record.limit_train, "limit_val": record.limit_val}
    else:
        split_options = DEFAULT_SPLIT | (options or {})
    channels, size, _ = meta.input_size
    centre_crop = size / meta.resize if meta.resize else 1.0  # as the run cached and evaluated them
    splits = load_splits(name, image_size=size, channels=channels, centre_crop=centre_crop, need=need, **split_options)
    shown = Path(name).name if Path(name).exists() else name
    return RunSplit(splits, name, shown, own)
