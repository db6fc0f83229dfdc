"""A search space: which training settings `tune` varies, and over what.

    space.lr=log:0.01:1                 a number on a log scale, 0.01 to 1
    space.optim.weight_decay=float:0:1e-3   a number on a linear scale
    space.epochs=int:3:15               a whole number
    space.data.crop_padding=choice:0,2,4    one of these values (each read as YAML: numbers, words, true/false)

Keys are training keys, short or dotted; a recipe may declare the same in a `space:` section (key: spec). Every
bound and choice is checked as a setting before the first trial (values possible apart but not together fail
their trial, and the search goes on).
Without a space, `default_space` derives one from the recipe's own values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import ConfigError
from ..training.config import TrainConfig, get, validate
from ..training.settings import SPACE_SECTION, apply, dotted_key, read_recipe

KINDS = ("log", "float", "int", "choice")
EXAMPLE = "log:0.01:1, float:0:0.2, int:3:15 or choice:0,2,4"


@dataclass(frozen=True)
class Dimension:
    key: str  # a dotted training key, e.g. optim.lr: also the parameter's name in the study
    kind: str  # one of KINDS
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    @property
    def spec(self) -> str:
        """As it is written on the command line: 'log:0.05:0.8'."""
        if self.kind == "choice":
            return "choice:" + ",".join(map(str, self.choices))
        return f"{self.kind}:{self.low:g}:{self.high:g}"

    def values(self) -> list[Any]:
        """The values that bound the dimension: its ends, or every choice (each is checked as a setting)."""
        if self.kind == "choice":
            return list(self.choices)
        return [int(self.low), int(self.high)] if self.kind == "int" else [self.low, self.high]

    def holds(self, value: Any) -> bool:
        """Whether `value` is one of this dimension's values."""
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "int" and not float(value).is_integer():
            return False
        return isinstance(value, int | float) and self.low <= value <= self.high

    def suggest(self, trial: Any) -> Any:
        """This dimension's value in an Optuna trial (a retried trial gets its original's value back)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high))
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")


def parse_dimension(key: str, spec: Any) -> Dimension:
    """'lr', 'log:0.01:1' -> Dimension('optim.lr', 'log', 0.01, 1.0); a ConfigError names what is wrong."""
    given = f"space.{key}={spec}"
    kind, _, rest = str(spec).partition(":")
    if kind not in KINDS or not rest:
        raise ConfigError(f"{given} is not a range or a choice; write it as {EXAMPLE}")
    dotted = dotted_key(key)
    if kind == "choice":
        choices = tuple(_scalar(v) for v in rest.split(","))
        if len(set(map(str, choices))) != len(choices):
            raise ConfigError(f"{given} names a value twice; give each choice once, as choice:0,2,4")
        return Dimension(dotted, kind, choices=choices)
    ends = rest.split(":")
    try:
        low, high = (float(e) for e in ends) if len(ends) == 2 else (None, None)
    except ValueError:
        low = high = None
    if low is None or high is None:
        raise ConfigError(f"{given} needs two numbers, LOW:HIGH, such as {kind}:0.01:1")
    if not low < high:
        raise ConfigError(f"{given}: the low end {low:g} must be below the high end {high:g}")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{given}: a log scale needs a low end above 0, such as log:1e-5:1e-3")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{given}: int needs whole numbers, such as int:3:15")
    return Dimension(dotted, kind, low, high)


def _scalar(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return "" if value is None else value


# Settings a search must hold still: the validation images (trials are compared on them), and where a run goes.
HELD_STILL = ("data.name", "data.path", "data.val_fraction", "data.split_seed", "data.limit_val", "run.nproc")


def parse_space(specs: dict[str, Any], base: TrainConfig) -> list[Dimension]:
    """Each key's dimension, every bound and choice checked as a setting of `base` (the recipe with overrides)."""
    space = [parse_dimension(key, spec) for key, spec in specs.items()]
    for dimension in space:
        if dimension.key in HELD_STILL or dimension.key.startswith("output."):
            raise ConfigError(
                f"space.{dimension.key} cannot be searched: trials are compared on the same validation images, "
                "each in its own run directory; give it as a plain setting (key=value) instead"
            )
    keys = [d.key for d in space]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"space.{twice[0]} is given twice (as a short and a dotted key?); give it once")
    for dimension in space:
        for value in dimension.values():
            cfg = copy.deepcopy(base)
            try:
                apply(cfg, dimension.key, value)
                validate(cfg)
            except ConfigError as err:
                raise ConfigError(
                    f"space.{dimension.key}={dimension.spec} reaches a value that cannot work: {err}"
                ) from None
    return space


def default_space(cfg: TrainConfig) -> list[Dimension]:
    """The space searched when none is given, around the recipe's own values: the learning rate from a quarter
    to four times it, weight decay from a tenth to ten times it (when it has any), label smoothing 0-0.2, and
    the pad-and-crop shift (where the recipe does not use random resized crops)."""
    lr, decay = cfg.optim.lr, cfg.optim.weight_decay
    space = [Dimension("optim.lr", "log", lr / 4, lr * 4)]
    if decay > 0:
        space.append(Dimension("optim.weight_decay", "log", decay / 10, decay * 10))
    space.append(Dimension("optim.label_smoothing", "float", 0.0, 0.2))
    if not cfg.data.crop_scale:
        space.append(Dimension("data.crop_padding", "choice", choices=(0, 2, 4)))
    return space


def applied(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """`base` with a trial's values set."""
    cfg = copy.deepcopy(base)
    for key, value in params.items():
        apply(cfg, key, value)
    validate(cfg)
    return cfg


def recipe_space(recipe: str | None) -> dict[str, Any]:
    """A recipe's `space:` section (key: spec), {} where it has none."""
    if not recipe:
        return {}
    declared = read_recipe(recipe).get(SPACE_SECTION) or {}
    if not isinstance(declared, dict):
        raise ConfigError(f"{recipe}: space: should map settings to ranges, such as `lr: log:0.01:1`")
    return declared


def recipe_values(base: TrainConfig, space: list[Dimension]) -> dict[str, Any]:
    """The recipe's own values of the searched keys, those inside the space: the search's first trial, so that
    the best it finds is never one that did worse on validation than the recipe it started from."""
    own = {d.key: get(base, d.key) for d in space}
    return {d.key: own[d.key] for d in space if own[d.key] is not None and d.holds(own[d.key])}
