"""Several processes on PyTorch's own engine: torchrun starts them, this module joins them up.

Under torchrun the environment says who a process is (WORLD_SIZE, RANK, LOCAL_RANK, and MASTER_ADDR /
MASTER_PORT for the rendezvous); `join()` turns that into a process group: nccl where the run is on CUDA
(each process on cuda:LOCAL_RANK), gloo on the CPU. Without torchrun it is a world of one, and every
helper below is a no-op, so the training loop reads as the single-process story with a few calls:

    world.sum(t)         all-reduce a tensor in place (counts, losses)
    world.agree(flags)   every rank learns every rank's flags (stop, checkpoint now, non-finite loss)
    world.broadcast(x)   rank 0's object on every rank (the run directory)
    world.gather(x)      every rank's object on rank 0 (RNG states for the checkpoint)

Rank 0 alone writes files and prints; a collective on a dead peer raises instead of writing anything.
"""

from __future__ import annotations

import copy
import gc
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import ConfigError, OneProcessError, UserError

if TYPE_CHECKING:
    from .config import TrainConfig

BACKENDS = ("auto", "gloo", "nccl")
T = TypeVar("T")
RUN_ID_FILE = ".torchrun-id"  # in a run directory: the torchrun job that started it


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # where collectives' tensors live (cuda:LOCAL_RANK under nccl)
    owns_group: bool = False  # this module created the process group, so it destroys it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce `tensor` (on this process's device) in place, summing over the ranks."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def agree(self, *flags: float) -> list[float]:
        """The largest value of each flag over the ranks: one rank asking to stop stops them all."""
        if self.size == 1:
            return list(flags)
        values = torch.tensor(flags, dtype=torch.float64, device=self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values.tolist()

    def broadcast(self, obj: Any) -> Any:
        if self.size == 1:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """[rank 0's, rank 1's, ...] on rank 0, None elsewhere."""
        if self.size == 1:
            return [obj]
        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def node_first(self, work: Callable[[], T]) -> T:
        """work() on each node's first process (LOCAL_RANK 0), then on that node's others: what the first builds on
        its node's disk (an image-folder cache) the others reuse, instead of every process decoding the same folder
        at once. Nodes build at the same time, each on its own disk (a disk shared by several nodes is safe too: a
        cache is written to temporary files and renamed into place). A UserError on a first process stops every
        process (`raise_together`), rather than leaving the others waiting."""
        if self.size == 1:
            return work()
        first = self.local_rank == 0
        result = self._failing_together(work if first else None)
        second = self._failing_together(None if first else work)  # the others open what their node's first built
        return result if first else second  # type: ignore[return-value]

    def from_main(self, work: Callable[[], T]) -> T:
        """work() on rank 0 alone, and its result on every rank: what rank 0 reads from its own disk (the
        checkpoint to resume from, init weights, the run a restarted job left), which another node's disk may not
        hold. Only rank 0 writes a run's files, so its disk is the one that has them. A UserError on rank 0 stops
        every process."""
        if self.size == 1:
            return work()
        return self.broadcast(self._failing_together(work if self.is_main else None))

    def together(self, work: Callable[[], T]) -> T:
        """work() on every rank, where a UserError on one (a file missing from its node's disk) stops them all."""
        if self.size == 1:
            return work()
        return self._failing_together(work)  # type: ignore[return-value]

    def _failing_together(self, work: Callable[[], T] | None) -> T | None:
        result: T | None = None
        failure: Exception | None = None
        if work is not None:
            try:
                result = work()
            except Exception as err:  # noqa: BLE001 - a full disk on one node too: the others must not wait
                failure = err
        self.raise_together(failure)
        return result

    def raise_together(self, failure: Exception | None) -> None:
        """Every rank learns whether any met an error (`failure`, None where none), and then all raise: the lowest
        rank that met one raises it (a UserError as a OneProcessError, which that process says, naming itself);
        process 0 says which process that was; the others stop without a word."""
        if self.size == 1:
            if failure is not None:
                raise failure
            return
        lowest = self.size - int(self.agree(float(self.size - self.rank) if failure is not None else 0.0)[0])
        if lowest == self.size:
            return
        if self.rank == lowest:
            assert failure is not None
            if self.rank == 0 or not isinstance(failure, UserError):
                raise failure
            raise OneProcessError(str(failure)) from failure
        raise UserError(f"process {lowest} could not go on (it says why)")

    def leave(self, together: bool = True) -> None:
        """Destroy the process group this module created.

        `together` (a run that finished, or stopped by agreement): wait for every rank first, and let go of
        objects that hold the group (DistributedDataParallel's reducer) while the interpreter is whole; a
        rank tearing gloo down while a peer still talks to it, or at interpreter exit, can abort the
        process. After an error a peer may be gone, so nobody is waited for."""
        if not (self.owns_group and dist.is_initialized()):
            return
        if together and self.size > 1:
            gc.collect()
            try:
                dist.barrier()
            except Exception:  # noqa: BLE001 - a peer failed on its way out: this rank's own outcome stands
                pass
        dist.destroy_process_group()


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def join(backend: str, device: torch.device) -> tuple[World, torch.device]:
    """The World this process belongs to, and its training device (cuda -> cuda:LOCAL_RANK).

    `backend` "auto" is nccl for CUDA and gloo otherwise."""
    if backend not in BACKENDS:
        raise ConfigError(f"run.backend={backend!r} is not one of {', '.join(BACKENDS)}")
    if not under_torchrun():
        return World(), device
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    chosen = backend if backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if chosen == "nccl" and device.type != "cuda":
        raise ConfigError("run.backend=nccl needs CUDA devices; on the CPU use run.backend=gloo (or auto)")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(
            chosen,
            store=attempt_store(rank, size),
            rank=rank,
            world_size=size,
            device_id=device if chosen == "nccl" else None,
        )
    collective_device = device if chosen == "nccl" else torch.device("cpu")
    return World(rank, size, local_rank, collective_device, owns), device


def attempt_store(rank: int, size: int) -> dist.Store:
    """The job's key-value store (env://: MASTER_ADDR, MASTER_PORT), under a prefix of this attempt's own.

    torchrun's agent keeps one store across the restarts of --max-restarts, and a process group writes its
    members' addresses under the same keys every time: a restarted group read the killed attempt's addresses
    and its gloo mesh was refused ("connectFullMesh failed ... Connection refused", issue 27 item 19). The
    attempt is counted in the store itself: every process of every attempt adds one as it joins, so the
    processes of one attempt share a number. torchrun's own restart count cannot serve: an agent whose workers
    were restarted because another node's failed (a membership change) does not count that restart, and two
    nodes then joined under different prefixes and waited for each other forever."""
    from torch.distributed.rendezvous import rendezvous

    store, _, _ = next(rendezvous("env://", rank=rank, world_size=size))
    # 1..size in the first attempt, size+1..2*size in the next, ...; counted per group size, as an elastic job's
    # attempts may differ in size. (A process that dies before it counts shifts the later attempts: not handled.)
    joined = store.add(f"resnetlab/joined/{size}", 1)
    return dist.PrefixStore(f"resnetlab/attempt_{size}_{(joined - 1) // size}", store)


def restart_count() -> int:
    """How often torchrun has restarted this group after a failure (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def run_id() -> str | None:
    """The id torchrun gives a job (--rdzv-id, or one it makes up), the same across restarts."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def mark_run(run_dir: Path) -> None:
    """Note in the run directory which torchrun job owns it, so that a restarted group finds it again."""
    if under_torchrun() and run_id():
        (run_dir / RUN_ID_FILE).write_text(f"{run_id()}\n")


def continue_after_restart(cfg: TrainConfig, world: World) -> tuple[TrainConfig, Path | None]:
    """After torchrun restarted the group (--max-restarts), the run its first attempt started: resumed from its
    checkpoint, or (stopped before the first one) started again in the same directory. Else (cfg, None).

    Only rank 0 writes a run's files, so the run is looked for on rank 0's disk and the answer sent to every rank.
    A restart whose rendezvous put another node first (c10d orders nodes anew) finds the run on a disk that is
    no longer rank 0's: that is refused, rather than a second run started beside it."""
    if cfg.output.resume or not under_torchrun() or not run_id():
        return cfg, None
    # Agents count restarts apart (a node whose workers were restarted for another node's failure may count none):
    # the group has restarted if any process says so.
    restarted, elsewhere = world.agree(
        float(restart_count() > 0), 0.0 if world.is_main else float(job_run_dir(cfg) is not None)
    )
    if not restarted:
        return cfg, None
    return world.from_main(lambda: where_to_continue(cfg, bool(elsewhere)))


def job_run_dir(cfg: TrainConfig) -> Path | None:
    """The run directory under out= that this torchrun job started, on this process's disk."""
    markers = sorted(Path(cfg.output.out).glob(f"*/{RUN_ID_FILE}"))
    return next((m.parent for m in markers if m.read_text().strip() == run_id()), None)


def where_to_continue(cfg: TrainConfig, elsewhere: bool) -> tuple[TrainConfig, Path | None]:
    """continue_after_restart's answer on rank 0 (`elsewhere`: another rank's disk holds the job's run)."""
    found = job_run_dir(cfg)
    if found is None and elsewhere:
        raise UserError(
            f"torchrun restarted job {run_id()}, and its run directory is on another node's disk, not on the disk of "
            "the node that now runs process 0; give the nodes a shared out=, or start the job again with "
            "resume=RUN on the node that holds it as --node-rank=0"
        )
    if found is None or not (found / "last.pt").is_file():
        return cfg, found
    cfg = copy.deepcopy(cfg)
    cfg.output.resume = str(found)
    return cfg, None


def job_status(codes: dict[int, int]) -> int:
    """The exit status of a job whose processes failed ({rank: exit code}, negative: killed by that signal): a
    user error or a stop (2, 130, 143) where a process said one; else a killed process as a shell reports it,
    128 + the signal (SIGKILL: 137), said in one line; else the first process's status."""
    said = next((c for c in codes.values() if c in (2, 130, 143)), None)
    if said is not None:
        return said
    killed = next(((rank, -c) for rank, c in codes.items() if c < 0), None)
    if killed is not None:
        rank, signum = killed
        print(
            f"resnetlab: error: process {rank} of the job was killed ({signal.Signals(signum).name}) and the others "
            "were stopped; resume from the run's last checkpoint with resume=RUN",
            file=sys.stderr,
        )
        return 128 + signum
    return next(iter(codes.values()), 1)


def launch(nproc: int, settings: list[str], command: str = "train") -> int:
    """`resnetlab train ... nproc=N`: the same command in N processes on this machine, started by torchrun's own
    launcher (torch.distributed.run, standalone rendezvous); returns the exit status of the job."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "-m", "resnetlab", command, *settings]
    )
    environ = dict(os.environ)
    try:
        run(args)
    except ChildFailedError as failed:
        return job_status({rank: failure.exitcode for rank, failure in failed.failures.items()})
    finally:  # torchrun sets OMP_NUM_THREADS=1 (and the rendezvous variables) in this process's own environment:
        os.environ.clear()  # a later run or child of this process would then compute single-threaded, in
        os.environ.update(environ)  # another summation order than the same run started anew
    return 0
