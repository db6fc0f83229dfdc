"""What a run leaves for people: the lines it prints, metrics.csv (one row per epoch), curves.png,
confusion_matrix.png, summary.json, and TensorBoard events where TensorBoard is installed."""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from ..data.splits import WATCH_ORDER, watched_in
from ..files import atomic_write

if TYPE_CHECKING:
    from .config import TrainConfig

log = logging.getLogger("resnetlab")

METRIC_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_acc",
    *(f"{split}_{what}" for split in WATCH_ORDER for what in ("loss", "top1", "top5")),
    "images_per_s",
    "epoch_s",
    "wall_s",
]


def eval_split(rows: list[dict[str, Any]]) -> str | None:
    """Which split the per-epoch evaluation columns of `rows` are on: 'val', 'test', or None (none)."""
    return watched_in(rows[-1]) if rows else None


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """The whole table, rewritten atomically (a resumed run's table never shows an epoch twice).

    The evaluation columns name their split (val_top1, or test_top1 when nothing was held out)."""
    columns = [c for c in METRIC_COLUMNS if any(c in row for row in rows)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    atomic_write(path, lambda tmp: tmp.write_text(buf.getvalue()))


def read_metrics(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [
            {k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()} for row in csv.DictReader(f)
        ]


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=float) + "\n"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path: Path, rows: list[dict[str, Any]], title: str, loss_note: str = "") -> None:
    """Loss and accuracy (train, and validation or test) against epoch, side by side."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    split = eval_split(rows)
    label = {"val": "validation", "test": "test (display only, not used to select)"}.get(split or "", "")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows], "o-", color="#1f77b4", label="train")
    ax_acc.plot(epochs, [100 * r["train_acc"] for r in rows], "o-", color="#1f77b4", label="train")
    if split:
        nan = float("nan")  # epochs without this split's figures (none in a run started by this version)
        ax_loss.plot(epochs, [r.get(f"{split}_loss", nan) for r in rows], "s-", color="#d62728", label=label)
        top1 = [100 * r.get(f"{split}_top1", nan) for r in rows]
        ax_acc.plot(epochs, top1, "s-", color="#d62728", label=f"{label} top-1")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss" + (f" ({loss_note})" if loss_note else ""))
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    if split == "val":  # the selected epoch; on test nothing is selected
        best = max((r for r in rows if "val_top1" in r), key=lambda r: r["val_top1"])
        ax_acc.annotate(
            f"best (selected) {100 * best['val_top1']:.2f}%",
            (best["epoch"], 100 * best["val_top1"]),
            textcoords="offset points",
            xytext=(-10, -18),
            ha="right",
            color="#d62728",
        )
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def plot_confusion(path: Path, matrix: np.ndarray, classes: list[str], title: str) -> None:
    """Rows: true class; columns: predicted; cells: share of the true class, with counts where they fit."""
    plt = _pyplot()
    k = len(classes)
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    side = min(4 + 0.45 * k, 16)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), constrained_layout=True)
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(matrix[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7 if k > 12 else 9,
                        color="white" if shares[i, j] > 0.5 else "black",
                    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def say(cfg: TrainConfig, message: str, force: bool = False) -> None:
    """A line for the person watching (beside the progress bar); `quiet` keeps only the forced ones."""
    if force or not cfg.run.quiet:
        tqdm.write(message)
    sys.stdout.flush()


def about(seconds: float) -> str:
    """A duration as a person says it: 'about 40 s', 'about 6 min', 'about 2.5 h'."""
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def epoch_line(row: dict[str, Any], epochs: int, split: str | None) -> str:
    line = f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {100 * row['train_acc']:.2f}%"
    if split:
        label = "val" if split == "val" else "test (display only)"
        line += (
            f"  {label} loss {row[f'{split}_loss']:.4f} top1 {100 * row[f'{split}_top1']:.2f}% "
            f"top5 {100 * row[f'{split}_top5']:.2f}%"
        )
    return line + f"  lr {row['lr']:.4g}  {row['images_per_s']:.0f} img/s  {row['epoch_s']:.0f}s"


_said_no_tensorboard: list[bool] = []


def tensorboard_writer(run_dir: Path, cfg: TrainConfig) -> Any:
    """A TensorBoard SummaryWriter in the run directory, or None (asked not to, or not installed: said once)."""
    if not cfg.output.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: say so once per process, with how to get it
        if not _said_no_tensorboard:
            _said_no_tensorboard.append(True)
            log.info(
                "TensorBoard is not installed, so this run writes metrics.csv and curves.png but no TensorBoard "
                "events; `pip install tensorboard` adds them (output.tensorboard=false silences this)"
            )
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
