"""What a run's settings come to before anything runs, worked out in one place for every command that needs it:
`train` (the run itself, `--print-config`, and the settings a run prints as it starts) and `data info`.

- resume=RUN: the run's own settings, with the few a resume may change (resume.py);
- init= weights: the model, image size, channels and normalisation they were trained with (setup.py);
- an image folder: its own image size and channels (folders.natural_shape), its path made absolute, and
  flips as the folder declares (folders.folder_flips); a named dataset: flips as its declaration says;
- no model named: resnet20.

Each value that an empty setting or `auto` became is noted with the reason (`Resolved.why`), and
`annotated_yaml` prints the settings with those notes as YAML comments: still a recipe that `train` runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import Checkpoint
from ..data.folders import folder_flips
from ..data.registry import named
from ..data.sources import check_data_name, image_folder
from ..models.pretrained import read_state_dict
from ..records import WeightsMeta
from .config import TrainConfig, get
from .distributed import World
from .resume import resumed_config
from .setup import with_absolute_data_path, with_folder_shape, with_init_defaults


@dataclass
class Resolved:
    cfg: TrainConfig  # every setting as the run will use it
    why: dict[str, str] = field(default_factory=dict)  # dotted key -> why it has the value it has
    resumed: Checkpoint | None = None  # the checkpoint to continue from
    run_dir: Path | None = None  # the resumed run's directory
    changed: dict[str, list[Any]] = field(default_factory=dict)  # arithmetic settings a resume changed
    init_state: dict[str, torch.Tensor] = field(default_factory=dict)  # init= weights
    init_meta: WeightsMeta | None = None  # what resnetlab init weights say of themselves (None: foreign)


def resolve(cfg: TrainConfig, world: World | None = None) -> Resolved:
    """The settings a run of `cfg` uses, and why those that were left open are what they are. Reads the resumed
    checkpoint and the init weights (under torchrun, on rank 0 alone: `starting_point`); writes nothing."""
    world = world or World()
    resolved = world.from_main(lambda: starting_point(cfg))
    return world.together(lambda: with_data_settings(resolved))  # each node reads its own copy of the data


def with_data_settings(resolved: Resolved) -> Resolved:
    """`resolved` with what the init weights and the data decide: model, image size, channels, flips."""
    given, meta = resolved.cfg, resolved.init_meta
    chosen = with_init_defaults(given, meta)
    chosen, shape_line = with_folder_shape(with_absolute_data_path(chosen))
    chosen, flips_line = with_flips(chosen, resumed=resolved.resumed is not None)
    why = resolved.why
    if not given.model.name:
        why["model.name"] = "the init weights' model" if meta is not None else "the default model"
    for key in ("data.image_size", "data.channels"):
        if not get(given, key) and get(chosen, key):
            said = shape_line or "as the init weights were trained"
            why[key] = "chosen with data.image_size (above)" if why.get("data.image_size") == said else said
    if flips_line:
        why["data.hflip"] = flips_line
    resolved.cfg = chosen
    return resolved


def starting_point(cfg: TrainConfig) -> Resolved:
    """What the run starts from, read from this process's disk: resume=RUN's checkpoint and settings, or init=
    weights. The names are checked first: a misspelled data= is said before a missing file."""
    if cfg.output.resume:
        cfg, resumed, run_dir, changed = resumed_config(cfg)
        resolved = Resolved(cfg, {"output.resume": f"the settings of the run in {run_dir}"}, resumed, run_dir, changed)
    else:
        resolved = Resolved(cfg)
    check_data_name(resolved.cfg.data.name)  # a misspelled data= is said now, with the nearest match
    if cfg.output.init and resolved.resumed is None:
        resolved.init_state, resolved.init_meta = read_state_dict(cfg.output.init)
    return resolved


def with_flips(cfg: TrainConfig, resumed: bool = False) -> tuple[TrainConfig, str]:
    """data.hflip=auto made true or false as the data declares itself (a named dataset's declaration, or an image
    folder's resnetlab.yaml and the convention), with the reason; other data keeps `auto` (its reader decides).
    A resumed run that recorded `auto` began before folders could declare flips: it goes on flipping, as it did."""
    if cfg.data.hflip != "auto":
        return cfg, ""
    dataset, folder = named(cfg.data.name), image_folder(cfg.data.name)
    if resumed and folder is not None:
        flips, why = True, "this run began before a folder could declare its flips, and goes on as it began"
    elif dataset is not None:
        flips = dataset.hflip
        why = f"{dataset.name}: " + ("a mirrored image keeps its label" if flips else "mirroring changes its labels")
    elif folder is not None:
        flips, why = folder_flips(folder)
    else:
        return cfg, ""
    return replace(cfg, data=replace(cfg.data, hflip="true" if flips else "false")), why


def annotated_yaml(resolved: Resolved) -> str:
    """The settings as YAML, each value that was chosen for the user followed by a comment saying why (notes on
    keys that YAML writes inline, in a section of plain values, come first, as comment lines of their own)."""
    lines, section, placed, open_flow = [], "", set(), 0
    for line in resolved.cfg.to_yaml().rstrip().splitlines():
        if not line.startswith(" "):
            section = line.split(":", 1)[0]
        key = f"{section}.{line.strip().split(':', 1)[0]}"
        # A line inside a wrapped inline mapping ({a: 1,\n  b: 2}) is not a key of its own: where the wrap falls
        # depends on the values' lengths (a run's path), so its notes go in the header.
        inside_flow = open_flow > 0
        open_flow += line.count("{") + line.count("[") - line.count("}") - line.count("]")
        if not inside_flow and line.startswith("  ") and not line.startswith("   ") and key in resolved.why:
            placed.add(key)
            line = f"{line}  # {' '.join(resolved.why[key].split())}"
        lines.append(line)
    header = [f"# {key}: {' '.join(note.split())}" for key, note in resolved.why.items() if key not in placed]
    return "\n".join(header + lines)
