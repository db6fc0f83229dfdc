"""Training checkpoints (last.pt) that survive a crash at any moment, and the one type that says what they hold.

- Every file is written to a temporary file in the same folder, flushed, fsync'ed, then renamed over the
  old one: a reader sees the old file or the new one, never half of either.
- `last.pt` holds plain types only (tensors, numbers, strings, lists, dicts), so it loads with
  `torch.load(weights_only=True)`; a file that needs arbitrary pickled objects is refused.
- A failed write (no space, no permission) is WriteFailed and leaves the previous checkpoint as it was.
  Checkpoints are serialised in memory first, because torch.save hides the operating system's reason for a
  failed write behind an opaque RuntimeError.
- Weight files (safetensors with metadata) are written and read by resnetlab.files.

What a checkpoint holds is one type, `Checkpoint`: the run's progress (`RunState`: position, per-epoch rows,
best epoch, the running sums of the epoch in progress, history, training seconds, resolved settings), the
states of what trains (model, optimizer, EMA, gradient scaler), every process's random state, the config
and the weights' metadata. `Checkpoint.to_dict` and `Checkpoint.from_dict` are the only code that names the
keys of a checkpoint file, one the mirror of the other; a file that lacks a key or holds a wrong type is one
sentence naming the file and the key.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .errors import UserError
from .files import atomic_write, load_plain, write_bytes
from .records import WeightsMeta

if TYPE_CHECKING:
    from .training.distributed import World

# v2: each augmentation draws from a stream of its own (data/loader.py), so a v1 run cannot go on bit for bit.
CHECKPOINT_FORMAT = "resnetlab-checkpoint-v2"
EARLIER_FORMATS = ("resnetlab-checkpoint-v1",)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    atomic_write(path, lambda tmp: write_bytes(tmp, buffer.getbuffer()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a last.pt; a clear UserError naming the file when it is missing, damaged or unsafe."""
    folder = Path(path) if Path(path).is_dir() else None
    path = folder / "last.pt" if folder else Path(path)
    if not path.is_file():
        if folder:  # a run directory whose run stopped before its first checkpoint (or another folder)
            raise UserError(
                f"{folder} holds no checkpoint (last.pt): a run stopped before writing its first one has nothing "
                f"to resume; start it over with the command that started it (it makes a new run directory)"
            )
        raise UserError(f"no checkpoint at {path}; resume= takes a run directory that holds last.pt")
    state = load_plain(path, "checkpoint")
    if isinstance(state, dict) and state.get("format") in EARLIER_FORMATS:
        run = folder or path.parent
        raise UserError(
            f"{path} was written by an earlier resnetlab ({state['format']}), which drew its augmentations in "
            f"another order, so its run cannot go on bit for bit; start a new run from its weights with init={run}"
        )
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a resnetlab training checkpoint (no '{CHECKPOINT_FORMAT}' marker)")
    return state


@dataclass
class Best:
    """The epoch selected so far (on validation; with nothing held out, the latest) and its top-1."""

    top1: float = -1.0
    epoch: int = 0


@dataclass
class EpochSums:
    """The running figures of the epoch in progress: loss, correct and images summed over every process (the
    sums are global, so after a resume rank 0 alone carries them on); time is this process's training seconds."""

    loss: float = 0.0
    correct: float = 0.0
    seen: int = 0
    time: float = 0.0


@dataclass
class RunState:
    """Where a run stands and what it has measured: saved in every checkpoint, restored exactly on resume."""

    epoch: int = 0  # epochs finished
    batch_in_epoch: int = 0  # batches of the next epoch already trained (a checkpoint inside an epoch)
    step: int = 0  # optimizer steps taken
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per finished epoch (metrics.csv)
    best: Best = field(default_factory=Best)
    partial: EpochSums = field(default_factory=EpochSums)
    history: list[dict[str, Any]] = field(default_factory=list)  # resumes that changed the arithmetic
    wall_s: float = 0.0  # seconds of the run so far, over every session
    resolved: dict[str, Any] = field(default_factory=dict)  # what "auto" became: device, precision, layout

    def for_rank(self, rank: int) -> RunState:
        """The state a process resumes with: the epoch's global sums go on from rank 0 only (the others start
        their share at zero, and the next reduction adds them up again)."""
        if rank == 0:
            return self
        return RunState(**{**self.__dict__, "partial": EpochSums(time=self.partial.time)})


@dataclass
class RngState:
    """Every random state a resumed run needs to draw what the uninterrupted run would have drawn."""

    torch: torch.Tensor
    cuda: list[torch.Tensor] | None = None  # every CUDA device's, for a single-process run on CUDA
    ranks: list[torch.Tensor] | None = None  # each process's CPU state, under several processes

    @classmethod
    def capture(cls, world: World, device: torch.device) -> RngState | None:
        """This moment's random states (a collective: every rank calls it); None on ranks other than 0."""
        ranks = world.gather(torch.get_rng_state())  # raises if a peer died
        if not world.is_main:
            return None
        cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
        return cls(torch.get_rng_state(), cuda, ranks if world.size > 1 else None)

    def restore(self, world: World, device: torch.device) -> None:
        """Each process's own state where the checkpoint has one per process, else rank 0's for all."""
        mine = self.ranks[world.rank] if self.ranks and len(self.ranks) == world.size else self.torch
        torch.set_rng_state(mine)
        if device.type == "cuda" and self.cuda is not None and world.size == 1:
            torch.cuda.set_rng_state_all(self.cuda)


# The states of what trains, beside the run's progress and random state.
COMPONENTS = ("config", "weights_meta", "model", "optimizer", "ema", "scaler")
OPTIONAL = ("ema", "scaler", "history", "resolved")  # absent in files where the run had none (or older files)


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly (last.pt)."""

    config: dict[str, Any]  # TrainConfig.to_dict()
    weights_meta: WeightsMeta | None  # what the run's weights files carry: architecture, classes, preprocessing, split
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]  # with plain-number learning rates
    ema: dict[str, torch.Tensor] | None
    scaler: dict[str, Any] | None
    state: RunState
    rng: RngState

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tensors, numbers, strings, lists, dicts): loadable with weights_only=True."""
        parts = {name: getattr(self, name) for name in COMPONENTS}
        parts["weights_meta"] = self.weights_meta.to_dict() if self.weights_meta else {}
        return {**parts, **asdict(self.state), "rng": asdict(self.rng)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path) -> Checkpoint:
        """The checkpoint in `raw` (a loaded file); a missing key or a value of the wrong kind is a UserError
        naming the file and the key."""
        progress = [f.name for f in fields(RunState)]
        needed = [k for k in (*COMPONENTS, *progress, "rng") if k not in OPTIONAL]
        missing = [k for k in needed if k not in raw]
        if missing:
            raise UserError(
                f"{path} lacks {', '.join(missing)}: it is not a whole resnetlab checkpoint, so it can neither "
                "resume nor give weights; resume from another run, or start afresh"
            )
        kinds = {"model": dict, "optimizer": dict, "config": dict, "weights_meta": dict, "rows": list, "rng": dict}
        kinds.update({"epoch": int, "batch_in_epoch": int, "step": int, "best": dict, "partial": dict})
        wrong = [k for k, kind in kinds.items() if not isinstance(raw[k], kind)]
        if wrong:
            raise UserError(f"{path} holds a malformed checkpoint ({', '.join(wrong)} of the wrong kind)")
        values = {k: raw[k] for k in progress if k in raw}
        try:
            state = RunState(**{**values, "best": Best(**raw["best"]), "partial": EpochSums(**raw["partial"])})
            rng = RngState(**raw["rng"])
        except TypeError as err:
            raise UserError(f"{path} holds a malformed checkpoint ({err})") from err
        parts = {name: raw.get(name) for name in COMPONENTS}
        parts["weights_meta"] = WeightsMeta.read(raw["weights_meta"], path, "resume from another run, or start afresh")
        return cls(**parts, state=state, rng=rng)

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """The checkpoint of a run directory (its last.pt) or of a last.pt file."""
        raw = load_checkpoint(path)  # says in one sentence what is missing or damaged
        return cls.from_dict(raw, Path(path) / "last.pt" if Path(path).is_dir() else Path(path))


def is_checkpoint(raw: Any) -> bool:
    """Whether a loaded file is a resnetlab checkpoint (by its format marker)."""
    return isinstance(raw, dict) and str(raw.get("format", "")).startswith("resnetlab-checkpoint")
