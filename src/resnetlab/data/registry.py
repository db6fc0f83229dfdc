"""The named datasets: each is one file that declares `DATASET = NamedDataset(...)` (its name, aliases, figures
and files), found in the package resnetlab.data.datasets or in the files $RESNETLAB_DATASETS names.

    named("FMNIST")          # -> the fashion-mnist NamedDataset (aliases and case do not matter), or None
    names()                  # every registered name, built-in ones first
    register(dataset)        # one more, from this process (a name or alias already taken is an error)

The table is built on first lookup, and again when $RESNETLAB_DATASETS changes. An environment variable, not
only register(), because the processes torchrun starts inherit it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import UserError
from .dataset import Dataset, DatasetInfo

ENV = "RESNETLAB_DATASETS"


class DatasetFiles(Protocol):
    """What a format knows of a named dataset's files: how to find, verify and read them, and to fetch them."""

    fetchable: bool  # whether fetch() can download them (generated data cannot)

    def read(self, dataset: NamedDataset, split: str, path: Path | None, allow_download: bool) -> Dataset: ...

    def fetch(self, dataset: NamedDataset, target: Path) -> None: ...


@dataclass(frozen=True, kw_only=True)
class NamedDataset:
    """A dataset known by name: what a model and the loader need to know of it, and its files."""

    name: str  # the registered spelling, lower case; also its folder in the data directory
    about: str  # one line: what it is, and where its figures come from
    classes: tuple[str, ...]  # () when the files name them (CIFAR's meta file)
    mean: tuple[float, ...]  # per channel, on the [0, 1] scale
    std: tuple[float, ...]
    input_size: tuple[int, int, int]  # (C, H, W)
    hflip: bool  # whether a horizontal flip keeps the label (not for digits or letters)
    files: DatasetFiles
    aliases: tuple[str, ...] = ()

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.name, self.mean, self.std, self.input_size, self.classes, self.hflip)

    def read(self, split: str, path: Path | None = None, allow_download: bool = True) -> Dataset:
        """One split ("train" or "test"), from `path` or wherever its format looks."""
        return self.files.read(self, split, path, allow_download)


_registered: list[tuple[NamedDataset, str]] = []  # by register() in this process, with where it was called
_table: tuple[str, dict[str, tuple[NamedDataset, str]]] | None = None  # ($RESNETLAB_DATASETS, key -> entry)


def named(name: str) -> NamedDataset | None:
    """The dataset registered under `name` or an alias of it (any case), or None."""
    entry = _lookup().get(name.lower())
    return entry[0] if entry else None


def names() -> list[str]:
    """Every registered name, once each: the built-in ones (alphabetically), then the declared ones."""
    return list(dict.fromkeys(dataset.name for dataset, _ in _lookup().values()))


def canonical(name: str) -> str:
    """A dataset name in its registered spelling ('FMNIST' -> 'fashion-mnist'); other text lower-cased."""
    dataset = named(name)
    return dataset.name if dataset else name.lower()


def register(dataset: NamedDataset, where: str = "register()") -> None:
    """Add a dataset from this process; a name or alias another dataset has is an error."""
    _add(_lookup(), dataset, where)
    _registered.append((dataset, where))


def reset() -> None:
    """Forget what register() added and build the table again on the next lookup (for tests)."""
    global _table
    _registered.clear()
    _table = None


def _lookup() -> dict[str, tuple[NamedDataset, str]]:
    global _table
    declared = os.environ.get(ENV, "")
    if _table is None or _table[0] != declared:
        table: dict[str, tuple[NamedDataset, str]] = {}
        for dataset, where in [*_builtin(), *_declared(declared), *_registered]:
            _add(table, dataset, where)
        _table = (declared, table)
    return _table[1]


def _add(table: dict[str, tuple[NamedDataset, str]], dataset: NamedDataset, where: str) -> None:
    keys = [dataset.name.lower(), *(a.lower() for a in dataset.aliases)]
    for key in keys:
        other, other_where = table.get(key, (dataset, where))
        if other != dataset:
            raise UserError(
                f"dataset {dataset.name!r} ({where}) cannot take the name {key!r}: {other.name} ({other_where}) "
                "has it; give one of them another name or alias"
            )
    table.update((key, (dataset, where)) for key in keys)


def _builtin() -> list[tuple[NamedDataset, str]]:
    """The modules of resnetlab.data.datasets, each declaring DATASET."""
    from . import datasets

    found = []
    for module in pkgutil.iter_modules(datasets.__path__):
        imported = importlib.import_module(f"{datasets.__name__}.{module.name}")
        found.append((imported.DATASET, f"{datasets.__name__}.{module.name}"))
    return found


def _declared(setting: str) -> list[tuple[NamedDataset, str]]:
    """The datasets the .py files (or folders of them) in $RESNETLAB_DATASETS declare."""
    found = []
    for entry in filter(None, setting.split(os.pathsep)):
        path = Path(entry).expanduser()
        if not path.exists():
            raise UserError(f"{ENV} names {path}, which does not exist; give .py files or folders of them")
        for file in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            found += [(dataset, str(file)) for dataset in _declarations(file)]
    return found


def _declarations(file: Path) -> list[NamedDataset]:
    what = "it should define DATASET = NamedDataset(...) (from resnetlab.data.registry) or DATASETS = [...]"
    spec = importlib.util.spec_from_file_location(f"resnetlab_declared_datasets.{file.stem}", file)
    if spec is None or spec.loader is None:
        raise UserError(f"{file} (in {ENV}) is not a Python file; {what}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # where dataclasses and pickle look a module's classes up
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # any failure of someone else's file: say which file and why
        raise UserError(f"{file} (in {ENV}) failed to import ({err.__class__.__name__}: {err}); {what}") from err
    declared = list(getattr(module, "DATASETS", [])) + ([module.DATASET] if hasattr(module, "DATASET") else [])
    if not declared or not all(isinstance(d, NamedDataset) for d in declared):
        raise UserError(f"{file} (in {ENV}) declares no NamedDataset; {what}")
    return declared
