"""Reading training settings: a recipe (YAML), then `key=value` overrides, then validation.

    cfg = load_config("fashion_mnist_fast", ["epochs=3", "optim.lr=0.2"])   # a shipped recipe, or a YAML path

Dotted keys reach any field (`schedule.milestones=[32000,48000]`); every field name found in one section only
works alone (`threads=2` is run.threads), and SHORT_KEYS names the rest (`model=`, `data=`, `name=`, `lr=`). Values are
read as YAML scalars or lists. Unknown keys and wrong types are errors that name the closest valid key,
raised before anything is written. The schema itself (fields, defaults, meanings, choices) is config.py.
"""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, did_you_mean
from .config import TrainConfig, all_keys, choices_of, field_of, get, validate

SHORT_KEYS = {
    "model": "model.name",
    "data": "data.name",
    "epochs": "schedule.epochs",
    "iterations": "schedule.iterations",
    "schedule": "schedule.name",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "optimizer": "optim.optimizer",
    "weight_decay": "optim.weight_decay",
    "label_smoothing": "optim.label_smoothing",
    "ema": "optim.ema",
    "device": "run.device",
    "precision": "run.precision",
    "compile": "run.compile",
    "nproc": "run.nproc",
    "sync_bn": "run.sync_bn",
    "backend": "run.backend",
    "seed": "run.seed",
    "quiet": "run.quiet",
    "name": "output.name",
    "out": "output.out",
    "resume": "output.resume",
    "init": "output.init",
    "stream": "data.stream",
    "tta": "data.tta",
    "limit_train": "data.limit_train",
    "limit_val": "data.limit_val",
    "val_fraction": "data.val_fraction",
    "split_seed": "data.split_seed",
    "freeze": "finetune.freeze",
    "freeze_bn": "finetune.freeze_bn",
    "backbone_lr": "finetune.backbone_lr",
    "unfreeze_every": "finetune.unfreeze_every",
}


SPACE_SECTION = "space"


def unique_field(name: str) -> str | None:
    """The dotted key of a field name found in one section only ('threads' -> 'run.threads'), else None."""
    matches = [dotted for dotted in all_keys() if dotted.split(".")[1] == name]
    return matches[0] if len(matches) == 1 else None


def dotted_key(key: str) -> str:
    """The dotted key a short or dotted one names ('lr' -> 'optim.lr'); unknown keys come back as they are."""
    return SHORT_KEYS.get(key) or unique_field(key) or key


def _field_type(section: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(section))
    return hints[name]


def _coerce(key: str, value: Any, kind: Any) -> Any:
    """Check (and gently convert) one value against its annotated type; a ConfigError names the key."""
    origin = typing.get_origin(kind)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # PyYAML reads 1e-4 (no dot) as text; Python reads it as a number
        try:
            return float(value)
        except ValueError:
            pass
    if kind is str and isinstance(value, bool):  # YAML reads `true` as a bool; "true"/"false" fields want text
        return "true" if value else "false"
    if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if kind in (int, float, str, bool):
        if type(value) is not kind:
            raise ConfigError(f"{key}={value!r} should be {kind.__name__}, not {type(value).__name__}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            value = [value]
        (inner,) = typing.get_args(kind)
        return [_coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} should be a mapping such as {{drop_path_rate: 0.1}}")
        return dict(bounded(key, value))
    if origin in (typing.Union, types.UnionType):
        return value
    return value


MAX_VALUES = 10_000  # far more than any architecture's arguments; a YAML alias bomb expands to billions


def bounded(key: str, value: Any) -> Any:
    """`value` when it holds at most MAX_VALUES values in all; else a ConfigError. Counted with an early stop, so
    that nested YAML aliases (each level repeating the one below) are refused at once, not expanded."""
    pending, seen = [value], 0
    while pending:
        item = pending.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ConfigError(
                f"{key} holds more than {MAX_VALUES:,} values (YAML anchors repeated inside each other?); give "
                "architecture arguments as numbers, words or short lists, such as {drop_path_rate: 0.1}"
            )
        if isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            pending += item
    return value


def apply(cfg: TrainConfig, key: str, value: Any) -> None:
    """Set one dotted (or short) key, checking that it exists and that the value has the right type."""
    if not isinstance(key, str):  # YAML allows any key (`? [1, 2]`, `?` alone is a null one)
        raise ConfigError(f"config key {key!r} is not a name; keys are words such as epochs or optim.lr")
    dotted = dotted_key(key)
    if dotted.startswith("model.args."):  # free-form architecture arguments: checked when the model is built
        cfg.model.args[dotted.split(".", 2)[2]] = bounded(dotted, value)
        _given(cfg).add(dotted)
        return
    parts = dotted.split(".")
    valid = all_keys()
    if len(parts) != 2 or dotted not in valid:
        raise ConfigError(f"unknown config key {key!r}{did_you_mean(key, valid + list(SHORT_KEYS))}")
    section = getattr(cfg, parts[0])
    setattr(section, parts[1], _coerce(dotted, value, _field_type(section, parts[1])))
    _given(cfg).add(dotted)


def _given(cfg: TrainConfig) -> set[str]:
    """The dotted keys a recipe, an override or a keyword argument set on `cfg` (not its dataclass defaults)."""
    if "_given" not in vars(cfg):
        cfg._given = set()  # type: ignore[attr-defined]
    return cfg._given  # type: ignore[attr-defined]


def given_keys(cfg: TrainConfig) -> list[str]:
    """Every key the user set: those applied by name, and any that differ from the defaults (a TrainConfig
    built directly in Python records nothing else)."""
    default = TrainConfig()
    differing = {k for k in all_keys() if k != "model.args" and get(cfg, k) != get(default, k)}
    differing |= {f"model.args.{name}" for name in cfg.model.args}
    return sorted(_given(cfg) | differing)


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """['lr=0.1', 'schedule.milestones=[30,60]'] -> [('lr', 0.1), ('schedule.milestones', [30, 60])]."""
    pairs = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{item!r} is not key=value; for example epochs=10 or model=resnet56")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        pairs.append((key.strip(), "" if value is None else value))
    return pairs


def from_dict(values: dict[str, Any], cfg: TrainConfig | None = None) -> TrainConfig:
    """Fill a TrainConfig from a nested mapping (a recipe or a saved config.yaml)."""
    cfg = cfg or TrainConfig()
    for section, entries in (values or {}).items():
        if section == SPACE_SECTION:  # what `resnetlab tune` searches (tune/space.py); a run has no use for it
            continue
        if not isinstance(section, str):
            raise ConfigError(f"config key {section!r} is not a name; keys are words such as epochs or optim.lr")
        if section not in {f.name for f in fields(TrainConfig)}:
            if not isinstance(entries, dict):  # a short key at the top level of a recipe
                apply(cfg, section, entries)
                continue
            raise ConfigError(f"unknown config section {section!r}{did_you_mean(section, all_keys())}")
        if not isinstance(entries, dict):
            apply(cfg, section, entries)
            continue
        for key, value in entries.items():
            if section == "model" and key == "args":
                cfg.model.args = _coerce("model.args", value, dict[str, Any])
                _given(cfg).update(f"model.args.{name}" for name in cfg.model.args)
            else:
                apply(cfg, f"{section}.{key}", value)
    return cfg


def read_recipe(recipe: str | Path) -> dict[str, Any]:
    """A recipe's sections as a mapping (a shipped name or a YAML path)."""
    from ..recipes import recipe_path

    path = recipe_path(recipe)
    try:
        values = yaml.safe_load(path.read_bytes()) or {}  # bytes: UTF-8, or UTF-16 by its byte-order mark
    except yaml.YAMLError as err:
        raise ConfigError(f"{recipe} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{recipe} should hold a mapping of sections (model:, data:, optim:, ...)")
    return values


def load_config(recipe: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """A recipe file (optional), then key=value overrides on top, then validation."""
    cfg = TrainConfig()
    if recipe:
        cfg = from_dict(read_recipe(recipe), cfg)
    for key, value in parse_overrides(overrides or []):
        apply(cfg, key, value)
    validate(cfg)
    return cfg


def key_docs() -> list[tuple[str, str, str]]:
    """(dotted key, default shown as YAML, meaning) for every key, the meaning from its field's metadata."""
    default = TrainConfig()
    rows = []
    for dotted in all_keys():
        shown = yaml.safe_dump(get(default, dotted), default_flow_style=True).strip().removesuffix("...").strip()
        rows.append((dotted, shown, field_of(dotted).metadata["help"]))
    return rows


def keys_help() -> str:
    """The text of `resnetlab train --help`'s key list: each key, its short name, default, choices and meaning."""
    short_of = {dotted: short for short, dotted in SHORT_KEYS.items()}
    for dotted in all_keys():
        if dotted not in short_of and unique_field(dotted.split(".")[1]) == dotted:
            short_of[dotted] = dotted.split(".")[1]
    out, section = [], ""
    for dotted, shown, meaning in key_docs():
        if dotted.split(".")[0] != section:
            section = dotted.split(".")[0]
            out.append(f"{section}:")
        name = dotted + (f" ({short_of[dotted]})" if dotted in short_of and short_of[dotted] != dotted else "")
        choices = f" [{'|'.join(choices_of(dotted))}]" if choices_of(dotted) else ""
        out.append(f"  {name}={shown}{choices}" + (f"  {meaning}" if meaning else ""))
    return "\n".join(out)
