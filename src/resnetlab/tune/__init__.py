"""`resnetlab tune`: search a recipe's settings for a user's own data, on validation only, with Optuna.

    resnetlab tune fashion_mnist_fast trials=20 budget=60m space.lr=log:0.05:0.8 space.label_smoothing=float:0:0.2

1. search.py   the tune directory, its study (study.py) and the search space (space.py); trials claimed and run
               (trial.py: each an ordinary run with test scoring off, pruned on its per-epoch validation figure)
               until `trials` are in the study or the budget cannot fit another
2. ending.py   the best trial scored once on test, its recipe (best.yaml), the report with its plots

Optuna is an optional extra: `pip install 'resnetlab[tune]'`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError

__all__ = ["tune"]


def tune(recipe: str | Path | None, overrides: list[str] | None = None, **options):  # noqa: ANN201
    """Run a search (see the module's docstring): `options` are TuneSettings' fields (trials, budget_s, storage,
    out, name, pruner, sampler_seed, space). Returns the TuneResult (best trial, its test figures, files)."""
    try:
        import optuna
    except ImportError:
        raise UserError("tune needs Optuna: pip install 'resnetlab[tune]' (or pip install optuna)") from None
    from ..training.settings import load_config
    from .ending import end
    from .search import TuneSettings, open_search, run_trials
    from .space import recipe_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # resnetlab says what happens, one line per trial
    recipe_name = str(recipe) if recipe else None
    settings = TuneSettings(recipe_name, list(overrides or []), **options)
    base = load_config(recipe_name, settings.overrides)
    opened = open_search(settings, base, recipe_space(recipe_name))
    run_trials(opened)
    return end(opened)
