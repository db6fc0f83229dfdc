"""A tune's ending: the best trial (by validation top-1) scored once on test, its settings written as a recipe
that `train` reproduces bit for bit on the same machine, and the report: a table of the trials, the
optimisation history and the parameter importances (Optuna's matplotlib plots)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from ..errors import UserError
from ..experiments import markdown_table, write_csv
from ..files import atomic_write
from ..training.device import cpu_description
from ..training.finish import scored_summary
from ..training.report import _pyplot, write_json
from .search import Search
from .study import claim_lock, counted, fail_gone_trials

PRECISION_SETTING = {"fp32": "fp32", "bfloat16": "bf16", "float16": "fp16"}  # summary's name -> run.precision


@dataclass
class TuneResult:
    tune_dir: Path
    best: FrozenTrial  # the best finished trial so far, by validation top-1 (the earlier one of equals)
    test: dict[str, Any] | None  # its test figures, scored once; None while trials still run, or with no test split
    recipe: Path | None  # best.yaml, once no trial runs any more
    report: Path  # report.md
    unfinished: int  # trials still running or queued (in other processes)


def end(search: Search) -> TuneResult:
    """Report; and once no trial runs or waits, score the best on test and write its recipe. One process at a
    time; the last process of a search to finish is the one that scores."""
    with claim_lock(search.tune_dir):
        study = search.study
        fail_gone_trials(study, search.storage)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise UserError(
                f"no trial of {search.tune_dir} has finished (pruned, failed or still running); give more "
                "trials= or a longer budget="
            )
        best = max(complete, key=lambda t: (t.value, -t.number))  # equal figures: the earlier trial
        unfinished = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))
        test, recipe = None, None
        if not unfinished:
            test = score_test_once(study, best)
            recipe = write_best_recipe(search, best, test)
        report = write_report(search, best, test, unfinished)
    return TuneResult(search.tune_dir, best, test, recipe, report, unfinished)


def score_test_once(study: optuna.Study, best: FrozenTrial) -> dict[str, Any] | None:
    """The best trial's selected weights on test: scored the first time a trial is the best, then read back
    from the study (so a continued tune never scores one trial twice, and no other trial is ever scored unless
    more trials make another the best). None where the data has no test split."""
    scored = study.user_attrs.get("test_scored", {})
    if str(best.number) in scored:
        return scored[str(best.number)]
    run_dir = Path(best.user_attrs["run_dir"])
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    if not (summary.get("split") or {}).get("test_count"):
        return None
    from ..inference import evaluate

    precision = PRECISION_SETTING.get(best.user_attrs.get("precision", "fp32"), "auto")
    batch_size = yaml.safe_load((run_dir / "config.yaml").read_text())["optim"]["batch_size"]  # as train scores
    figures = evaluate(run_dir, split="test", precision=precision, batch_size=batch_size)
    test = {"top1": figures["top1"], "top5": figures["top5"], "loss": figures["loss"]}
    summary |= scored_summary({"selected": figures, "last": figures}, "test", figures["classes"])  # as train's
    summary |= {
        "result_split": "test",
        "test_scored_by": "resnetlab tune: once, after the search, as the best trial by validation top-1",
    }
    write_json(summary_path, summary)
    study.set_user_attr("test_scored", scored | {str(best.number): test})
    return test


def best_settings(best: FrozenTrial) -> dict[str, Any]:
    """The best trial's settings as its run resolved them, with the arithmetic it ran in pinned (threads,
    precision, layout) and the run-directory settings left out."""
    run_dir = Path(best.user_attrs["run_dir"])
    settings = yaml.safe_load((run_dir / "config.yaml").read_text())
    settings["output"] = {"init": settings["output"]["init"]} if settings["output"].get("init") else {}
    settings["run"] |= {
        "threads": settings["run"]["threads"] or best.user_attrs["threads"],
        "precision": PRECISION_SETTING[best.user_attrs["precision"]],
        "channels_last": "true" if best.user_attrs["channels_last"] else "false",
    }
    return {section: values for section, values in settings.items() if values}


def write_best_recipe(search: Search, best: FrozenTrial, test: dict[str, Any] | None) -> Path:
    """best.yaml: a recipe like the shipped ones (title, Command:, Result:), then the settings."""
    path = search.tune_dir / "best.yaml"
    run_dir = Path(best.user_attrs["run_dir"])
    summary = json.loads((run_dir / "summary.json").read_text())
    split_seed = (summary.get("split") or {}).get("seed", 0)
    scored = (
        f"{100 * test['top1']:.2f}% test top-1, scored once, after the search, and used for nothing"
        if test is not None
        else "this data has no test split, so the validation figure that chose it is the only one"
    )
    header = [
        f"# The best of {counted(search.study)} trials of `resnetlab tune` (trial {best.number}, by validation top-1).",
        f"# Command: resnetlab train {path}",
        f"# Result: {100 * best.value:.2f}% validation top-1 (epoch {summary['best_epoch']}, seed {summary['seed']}, "
        f"split seed {split_seed});",
        f"#   {scored}; on {cpu_description()}.",
        f"# Its run: {run_dir}. Threads, precision and layout are pinned to the trial's: on this machine `train`",
        "#   reproduces the trial's weights bit for bit.",
    ]
    text = "\n".join(header) + "\n" + yaml.safe_dump(best_settings(best), sort_keys=False, default_flow_style=None)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def write_report(search: Search, best: FrozenTrial, test: dict[str, Any] | None, unfinished: int) -> Path:
    """report.md, trials.csv, history.png and importance.png in the tune directory."""
    tune_dir, study = search.tune_dir, search.study
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    keys = [d.key for d in search.plan.space]
    rows = [trial_row(t, keys) for t in trials]
    table = markdown_table(rows)
    atomic_write(tune_dir / "trials.csv", lambda tmp: write_csv(tmp, rows))
    plots = write_plots(study, tune_dir)
    states = {s: sum(t.state == s for t in trials) for s in TrialState}
    counts = ", ".join(f"{n} {s.name.lower()}" for s, n in states.items() if n)
    space = "; ".join(f"`{d.key}={d.spec}`" for d in search.plan.space)
    if unfinished:
        outcome = (
            f"{unfinished} trials still run or wait in other processes: the last of them to finish scores the best "
            "trial on test and writes `best.yaml`; nothing has been scored on test yet."
        )
    elif test is None:
        outcome = "This data has no test split: the validation figure that chose the trial is the only one."
    else:
        outcome = (
            f"Its selected weights scored once on test, after the search: **test top-1 {100 * test['top1']:.2f}%** "
            f"(top-5 {100 * test['top5']:.2f}%). Its recipe: `best.yaml` (`resnetlab train {tune_dir / 'best.yaml'}`)."
        )
    scored = study.user_attrs.get("test_scored", {})
    if len(scored) > 1:  # a continued search found a better trial: each best was scored when its search ended
        each = ", ".join(f"trial {n} ({100 * figures['top1']:.2f}%)" for n, figures in scored.items())
        outcome += f" Scored on test over this study's life, each the best when a search ended: {each}."
    lines = [
        f"# Tune: {tune_dir.name}",
        "",
        f"- Settings: recipe `{search.settings.recipe or '(none)'}`, overrides `{' '.join(search.settings.overrides)}`",
        f"- Space: {space}",
        f"- Trials: {len(trials)} ({counts}); pruner: {search.settings.pruner}; each scored on validation only",
        f"- Machine: {cpu_description()}",
        "",
        f"**Best so far: trial {best.number}**, validation top-1 {100 * best.value:.2f}%. {outcome}",
        "",
        table,
        *[f"![{name}]({name}.png)" if ok else f"({name}: {why})" for name, (ok, why) in plots.items()],
        "",
    ]
    path = tune_dir / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines)))
    return path


def trial_row(trial: FrozenTrial, keys: list[str]) -> dict[str, Any]:
    attrs = trial.user_attrs
    state = trial.state.name.lower()
    if attrs.get("recipe_values"):
        state += " (the recipe's values)"
    if "retry_of" in attrs:
        state += f" (retry of {attrs['retry_of']})"
    if "pruned_after" in attrs:
        state += f" after epoch {attrs['pruned_after']}"
    return {
        "trial": trial.number,
        "state": state,
        **{key: _shown(trial.params.get(key, "")) for key in keys},
        "val_top1": f"{100 * trial.value:.2f}" if trial.value is not None else "",
        "epochs": len(trial.intermediate_values),
        "minutes": f"{attrs['seconds'] / 60:.1f}" if "seconds" in attrs else "",
        "run_dir": attrs.get("run_dir", ""),
    }


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_plots(study: optuna.Study, tune_dir: Path) -> dict[str, tuple[bool, str]]:
    """history.png and importance.png; each name -> (written, why not)."""
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    plt = _pyplot()
    made: dict[str, tuple[bool, str]] = {}
    drawings = {
        "history": lambda: plot_optimization_history(study, target_name="validation top-1"),
        # PED-ANOVA: no dependency beyond Optuna's own (fANOVA would need scikit-learn)
        "importance": lambda: plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator()),
    }
    for name, draw in drawings.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            try:
                axes = draw()
            except (ValueError, RuntimeError) as err:  # e.g. importances need two finished trials
                made[name] = (False, str(err).splitlines()[0])
                continue
        figure = axes.figure
        figure.set_size_inches(7, 4.5)
        atomic_write(tune_dir / f"{name}.png", lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=120,
                                                                               bbox_inches="tight"))  # fmt: skip
        plt.close(figure)
        made[name] = (True, "")
    return made
