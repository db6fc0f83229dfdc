"""Train, validation and test: which images a run learns from, selects on, and reports.

The rule: a model is selected (best epoch, early stopping, any tuning) on validation images only, and
the test split is scored once, at the end. Where a dataset has no validation split of its own, a
stratified, seeded part of its training images is held out (`val_fraction`, 0.1 by default): each class
keeps its share, and the same settings always pick the same images, so any later command can
reproduce the split from the run's recorded settings alone (`eval RUN split=val`).

    splits = load_splits("fashion-mnist", val_fraction=0.1, seed=0)   # 54,000 / 6,000 / 10,000
    splits.record    # how the split was made, with a digest of the held-out images, for the run's files

Where each part comes from:
- named datasets (MNIST family, CIFAR, synthetic): train and val from the training split, test is test;
- a folder with train/ and val/ (valid/, validation/): those folders, and test/ when present;
- a folder with train/ and test/ only: val carved out of train/, test/ scored at the end;
- a flat folder of class folders: val carved out of it; there is no test part.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UserError
from ..records import SplitRecord
from .dataset import Dataset

SPLIT_METHOD = "stratified-v1"  # recorded with every run: the algorithm below, so that a change is detectable

# Independent random streams per purpose, all derived from the one split seed.
_HOLDOUT, _LIMIT_TRAIN, _LIMIT_VAL, SETTLE = 0, 1, 2, 3


def apportion(counts: np.ndarray, total: int, cap: np.ndarray | None = None, rng=None) -> np.ndarray:
    """Integers per class, proportional to `counts`, at most `cap` (default: counts) each, summing to `total`
    where the caps allow (largest remainders first; ties broken by `rng`, else by class index)."""
    counts = np.asarray(counts, np.int64)
    cap = counts if cap is None else np.asarray(cap, np.int64)
    if counts.sum() == 0:
        return np.zeros_like(counts)
    share = np.minimum(counts * total // counts.sum(), cap)  # integer arithmetic: no rounding surprises
    remainder = counts * total % counts.sum()
    tiebreak = rng.permutation(len(counts)) if rng is not None else np.arange(len(counts))
    order = np.lexsort((tiebreak, -remainder))  # largest remainder first
    rest = total - int(share.sum())
    while rest > 0 and (share < cap).any():
        for c in order:
            if rest > 0 and share[c] < cap[c]:
                share[c] += 1
                rest -= 1
    return share


def stratified_pick(labels: np.ndarray, total: int, seed: int, purpose: int, keep_one: bool = False) -> np.ndarray:
    """Sorted positions of `total` items chosen at random within each class, in proportion to the classes
    (`keep_one`: leave at least one item of every class with two or more unchosen)."""
    labels = np.asarray(labels, np.int64)
    rng = np.random.default_rng([seed, purpose])
    shuffled = rng.permutation(len(labels))
    by_class = shuffled[np.argsort(labels[shuffled], kind="stable")]  # grouped by class, random within
    classes, starts, counts = np.unique(labels[by_class], return_index=True, return_counts=True)
    cap = np.where(counts > 1, counts - 1, counts) if keep_one else counts
    share = apportion(counts, total, cap, rng)
    chosen = [by_class[s : s + k] for s, k in zip(starts, share)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def holdout(dataset: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A stratified, seeded (train, val) partition: the same seed always holds out the same images."""
    n = len(dataset)
    if n < 2:
        raise UserError(f"{dataset.source} has {n} training image(s): too few to hold out validation; add images")
    n_val = min(max(1, int(round(n * fraction))), n - 1)
    val_idx = stratified_pick(dataset.labels, n_val, seed, _HOLDOUT, keep_one=True)  # every class still trains
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    how = f"{fraction:g} stratified hold-out, split seed {seed}"
    return dataset.subset(train_idx, "train", f"train part of a {how}"), dataset.subset(val_idx, "val", how)


def sample(dataset: Dataset, n: int, seed: int, purpose: int) -> Dataset:
    """A stratified, seeded sample of `n` images (every class in proportion), or the dataset when n covers it."""
    if not n or n >= len(dataset):
        return dataset
    idx = stratified_pick(dataset.labels, n, seed, purpose)
    return dataset.subset(idx, dataset.split, f"stratified sample of {n}, split seed {seed}")


def digest(dataset: Dataset) -> str:
    """A short fingerprint of exactly which images (file names or positions) and labels a split holds."""
    h = hashlib.sha256()
    if dataset.files is not None:
        h.update("\n".join(dataset.files).encode("utf-8", "surrogateescape"))
    else:
        h.update(np.ascontiguousarray(dataset.positions(), np.int64).tobytes())
    h.update(np.ascontiguousarray(dataset.labels, np.int64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class Splits:
    """The parts of one dataset a run uses; `val` or `test` is None where the data has none."""

    train: Dataset | None
    val: Dataset | None
    test: Dataset | None
    record: SplitRecord | None = None  # how they were made (None: parts made by hand, e.g. in a test)

    def part(self, split: str) -> Dataset | None:
        return {"train": self.train, "val": self.val, "test": self.test}[split]

    def watched(self) -> str | None:
        """The split scored after each epoch (see WATCH_ORDER)."""
        return next((s for s in WATCH_ORDER if self.part(s) is not None), None)

    def final(self) -> str | None:
        """The split of the final figure (see FINAL_ORDER)."""
        return next((s for s in FINAL_ORDER if self.part(s) is not None), None)


# Which split a figure is on: one rule, for the run and for every reader of its files.
# After each epoch a run scores validation, which selects the epoch; with nothing held out, test, for display
# only (nothing is selected on it). The final figure is on test; where the data has no test part (a flat image
# folder), on validation, which is then also the set the epoch was selected on (and the summary says so).
WATCH_ORDER = ("val", "test")
FINAL_ORDER = ("test", "val")


def watched_in(row: dict[str, Any]) -> str | None:
    """The split whose per-epoch figures a metrics row holds ('val_top1', else 'test_top1'), or None."""
    figures = (row.get(f"{s}_top1") for s in WATCH_ORDER)
    present = [isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(v) for v in figures]
    return next((s for s, scored in zip(WATCH_ORDER, present) if scored), None)


Loader = Callable[[], Dataset]


def split_parts(
    parts: dict[str, Loader | None],
    *,
    val_fraction: float,
    seed: int,
    limit_train: int = 0,
    limit_val: int = 0,
    need: tuple[str, ...] = ("train", "val", "test"),
) -> Splits:
    """Turn a source's own parts (train, and maybe val and test) into the run's train / val / test.

    `need` names the parts wanted (an evaluation of test never reads train). The record says how val was
    made and holds a digest of train and val, so that a later command can tell whether it scores the same
    images.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction={val_fraction} must be in [0, 1); 0.1 holds out a tenth of the training set")
    own_val = parts.get("val")
    carve = own_val is None and val_fraction > 0
    method = "folder" if own_val is not None else ("stratified hold-out" if carve else "none")
    settings = {"val_fraction": val_fraction if carve else 0.0, "seed": seed}
    settings |= {"limit_train": limit_train, "limit_val": limit_val}
    train = val = test = None
    if "train" in need or ("val" in need and carve):
        source_train = parts["train"]()  # type: ignore[misc]
        if carve:
            train, val = holdout(source_train, val_fraction, seed)
        else:
            train = source_train
        train = sample(train, limit_train, seed, _LIMIT_TRAIN)
    if "val" in need and own_val is not None:
        val = own_val()
    if val is not None:
        val = sample(val, limit_val, seed, _LIMIT_VAL)
    if "test" in need and parts.get("test") is not None:
        test = parts["test"]()  # type: ignore[misc]
    facts: dict[str, Any] = {}
    for name, part in (("train", train), ("val", val), ("test", test)):
        if part is not None:
            facts[f"{name}_count"] = len(part)
            if name != "test":
                facts[f"{name}_digest"] = digest(part)
    record = SplitRecord(method, SPLIT_METHOD, **settings, **facts)
    return Splits(train if "train" in need else None, val if "val" in need else None, test, record)
