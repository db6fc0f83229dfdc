"""A run's second phase: its data. The splits (train, a held-out validation part, test), the normalisation,
the loaders, the fixed batches that re-estimate young BatchNorm statistics, and the metadata its weights
files will carry. Data comes first: a missing dataset fails before a run directory exists."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import BatchLoader, Dataset, Splits
from ..data.splits import SETTLE, sample
from ..errors import UserError
from ..records import SplitRecord, WeightsMeta
from .distributed import World
from .norm_stats import BATCHES
from .resume import check_same_split
from .session import Session
from .setup import load_run_data, make_loader, normalisation, weights_meta


@dataclass
class RunData:
    splits: Splits
    train_loader: BatchLoader
    watch_split: str | None  # the split scored after each epoch: "val" (selects the epoch), "test" (display only)
    watch_loader: BatchLoader | None
    settle_loader: BatchLoader  # fixed unaugmented training batches, for re-estimating young BatchNorm statistics
    mean: tuple[float, ...]
    std: tuple[float, ...]
    meta: WeightsMeta  # what the run's weights files carry

    @property
    def train(self) -> Dataset:
        assert self.splits.train is not None
        return self.splits.train

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    @property
    def in_chans(self) -> int:
        return int(self.train.images.shape[-1])


def load_data(session: Session) -> RunData:
    cfg, world, device, precision = session.cfg, session.world, session.device, session.precision
    splits = world.node_first(lambda: load_run_data(cfg))  # each node's first process builds a folder's cache
    check_same_data(world, splits.record)
    train = splits.train
    assert train is not None
    if session.resumed is not None:
        check_same_split(session.resumed, splits.record, session.run_dir)
    if not cfg.data.mean:  # record the normalisation in the config, so that a resumed run uses the same
        foreign_init = bool(session.init_state) and session.init_meta is None
        cfg.data.mean, cfg.data.std = normalisation(train, foreign_init=foreign_init)
    mean, std = tuple(cfg.data.mean), tuple(cfg.data.std)
    rank, size, layout = world.rank, world.size, precision.channels_last
    train_loader = make_loader(cfg, train, True, device, layout, mean, std, rank, size)
    check_batches(cfg.optim.batch_size, cfg.data.tta, train, train_loader)
    # Per-epoch figures: on validation, which selects the best epoch; with nothing held out, on test, for
    # display only (nothing is selected on it: the last epoch is the result).
    watch_split = splits.watched()
    if watch_split == "test" and not cfg.output.score_test:  # test is off: not even watched for display
        watch_split = None
    watch_data = splits.part(watch_split) if watch_split else None
    watch_loader = (  # each process scores every N-th image; the counts are summed (world.sum)
        make_loader(cfg, watch_data, False, device, layout, mean, std, rank, size) if watch_data is not None else None
    )
    # A few fixed, unaugmented training batches for re-estimating young BatchNorm statistics, shuffled as training
    # batches are: in file order a folder's batches hold one class each, and an average of such batches'
    # variances misses the spread between classes (the model then scored near chance in evaluation mode).
    settle_data = sample(train, BATCHES * cfg.optim.batch_size, cfg.data.split_seed, SETTLE)  # every class
    settle_loader = BatchLoader(
        settle_data,
        cfg.optim.batch_size,
        train=True,  # a seeded random order, no augmentation (augment=None), the same on every rank
        drop_last=False,
        mean=mean,
        std=std,
        device=device,
        channels_last=layout,
        seed=cfg.run.seed,
        stream=cfg.data.stream,
    )
    meta = weights_meta(cfg, train, mean, std, splits.record)
    return RunData(splits, train_loader, watch_split, watch_loader, settle_loader, mean, std, meta)


def check_same_data(world: World, record: SplitRecord) -> None:
    """Each node reads the data from its own disk: every process must hold the images, labels and split that
    process 0 holds (compared by the split record's digests of the file names or positions and labels)."""
    if world.size == 1:
        return
    differ = world.broadcast(record).differences(record, words=("on process 0", "here"))
    world.raise_together(
        UserError(
            f"its data differs from process 0's ({'; '.join(differ)}); every node needs the same images at the same "
            "path (data=)"
        )
        if differ
        else None
    )


def check_batches(batch_size: int, tta: str, train: Dataset, loader: BatchLoader) -> None:
    """What cannot work with these images: one class only, a batch larger than them, flip TTA without flips."""
    present = np.unique(train.labels)
    if len(present) < 2:  # every answer would be right: 100% top-1 that says nothing
        only = train.classes[int(present[0])] if len(present) else "none"
        raise UserError(
            f"{train.info.name} has one class to train on ({only}), and a classifier of one class is always right; "
            "give it a folder of images for each of two or more classes"
        )
    if batch_size > len(train):
        raise UserError(
            f"batch_size={batch_size} is larger than the {len(train):,} training images; use at most {len(train)}"
        )
    if tta == "flip" and not loader.augment.hflip:
        raise UserError(
            f"tta=flip scores mirror images, but this run does not flip {train.info.name} (digits and letters "
            "change meaning mirrored, or data.hflip=false); use tta=none"
        )
