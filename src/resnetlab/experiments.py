"""Experiments that show why residual connections work, each one command, each a folder of evidence.

    degradation  plain twins against their ResNets at two or more depths (He et al. 2015, figure 6)
    gradflow     the gradient norm of every layer, at initialisation and after N steps, against depth
    compare      any list of models (v1 against v2, shortcut A/B/C, ...) under one recipe
    compare_runs the same figure and table from runs that already exist

Every trained member is an ordinary run directory inside the experiment's folder; running the same
experiment again resumes an interrupted member and never retrains a finished one. The folder holds the
figures (PNG), the table (CSV and Markdown) and a report.md that links them.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from .data import BatchLoader
from .data.splits import watched_in
from .errors import UserError
from .models import create_model, list_models, model_info
from .training import TrainConfig, load_config
from .training.device import choose_precision
from .training.finetune import param_groups
from .training.loop import fit, make_loader, resolve_device
from .training.optim import build_optimizer
from .training.report import _pyplot, read_metrics
from .training.setup import load_run_data
from .training.step import TrainStep
from .training.tally import StepTally

# He et al. 2015's CIFAR-10 schedule (section 4.2): batch 128, lr 0.1 divided by 10 at 32k and 48k iterations,
# stopped at 64k; weight decay 1e-4 (momentum 0.9 is the optimizer's default); 4-pixel zero padding with random
# crops, and flips. 10% of the training images are held out to select each member's weights (the paper trains on
# all 50k). For a GPU and CIFAR-10's files.
CIFAR10_PAPER_SCHEDULE: tuple[str, ...] = (
    "data=cifar10",
    "val_fraction=0.1",
    "batch_size=128",
    "lr=0.1",
    "weight_decay=1e-4",
    "schedule=multistep",
    "iterations=64000",
    "schedule.unit=iteration",
    "schedule.milestones=[32000,48000]",
    "data.crop_padding=4",
    "data.pad_mode=zeros",
    "data.hflip=true",
)

# Presets: "quick" shows the effect on Fashion-MNIST (a 20k-image subset, 4 epochs): degradation at depths 20
# and 56 took 30 min per seed on a 2-core AMD EPYC Zen 3 (fp32) and about 8 on a 2-core Zen 5 (bf16); "full" is
# He et al. 2015's CIFAR-10 recipe (64k iterations; for a GPU).
PRESETS: dict[str, list[str]] = {
    "quick": [
        "data=fashion-mnist",
        "limit_train=20000",
        "epochs=4",
        "batch_size=128",
        "lr=0.1",
        "weight_decay=1e-4",
        "schedule=multistep",
        "schedule.milestones=[0.5,0.75]",
        "data.crop_padding=0",
        "quiet=true",
    ],
    "full": [*CIFAR10_PAPER_SCHEDULE, "quiet=true"],
}


@dataclass
class Member:
    name: str
    run_dir: Path
    summary: dict[str, Any]
    rows: list[dict[str, float]]


def experiment_dir(out: str, name: str) -> Path:
    path = Path(out) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def member_config(preset: str, overrides: list[str], model: str, exp_dir: Path, extra: tuple = ()) -> TrainConfig:
    if preset not in PRESETS:
        raise UserError(f"preset={preset!r} is not one of {', '.join(PRESETS)}")
    model_info(model)  # an unknown name fails before any member trains
    return load_config(
        None, [*PRESETS[preset], *overrides, f"model={model}", f"out={exp_dir}", f"name={model}", *extra]
    )


def check_seeds(seeds: int) -> None:
    if not isinstance(seeds, int) or seeds < 1:
        raise UserError(f"seeds={seeds!r} should be a positive number of runs per arm, such as 3")


def run_arm(preset: str, overrides: list[str], model: str, exp_dir: Path, seeds: int = 1) -> list[Member]:
    """`seeds` members of one model: seeds base, base+1, ... (base: the recipe's run.seed, 0 unless set).
    One seed keeps the plain member name (the model's), so earlier single-seed experiments resume as they were;
    several are named MODEL-seedS, each an ordinary run directory."""
    check_seeds(seeds)
    base = member_config(preset, overrides, model, exp_dir)
    if seeds == 1:
        return [run_member(base, exp_dir)]
    first = base.run.seed
    return [
        run_member(member_config(preset, overrides, model, exp_dir, (f"seed={s}", f"name={model}-seed{s}")), exp_dir)
        for s in range(first, first + seeds)
    ]


def run_member(cfg: TrainConfig, exp_dir: Path) -> Member:
    """Train one member, or resume it, or (finished) just read it back."""
    run_dir = exp_dir / cfg.output.name
    if (run_dir / "summary.json").is_file():
        print(f"{cfg.output.name}: finished before, not retrained")
    elif (run_dir / "last.pt").is_file():
        print(f"{cfg.output.name}: resuming")
        resume = load_config(None, [f"resume={run_dir}", f"quiet={str(cfg.run.quiet).lower()}"])
        fit(resume)
    else:
        if run_dir.exists():  # started but never reached a checkpoint: nothing in it to keep
            shutil.rmtree(run_dir)
        print(f"{cfg.output.name}: training")
        fit(cfg)
    return read_member(run_dir)


def read_member(run_dir: Path) -> Member:
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file() or not (run_dir / "metrics.csv").is_file():
        raise UserError(f"{run_dir} is not a finished resnetlab run (no summary.json / metrics.csv)")
    summary = json.loads((run_dir / "summary.json").read_text())
    if "seed" not in summary and (run_dir / "config.yaml").is_file():  # runs from before summaries named it
        summary["seed"] = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("run", {}).get("seed")
    return Member(run_dir.name, run_dir, summary, read_metrics(run_dir / "metrics.csv"))


# ---------------------------------------------------------------------------------------------------
# Tables and figures
#
# An arm is one model under the experiment's recipe: one member per seed. With one seed a row is that run;
# with several, a row gives each error as mean +- standard deviation over the seeds and a 95% confidence
# interval of the mean test error, and the figure draws the mean curve with the seeds' spread as error bars.

Arm = tuple[str, list[Member]]  # (label, its members: one per seed)

# Student's t, two-sided 95% (0.975 quantile) for 1..30 degrees of freedom (any statistics table, e.g. NIST/SEMATECH
# e-Handbook of Statistical Methods, 1.3.6.7.2); beyond 30, the Cornish-Fisher expansion of t in 1/df (Abramowitz
# and Stegun 26.7.5, two terms), within 2e-4 of the table there.
T_975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t_quantile_975(df: int) -> float:
    z = 1.959964
    if df <= len(T_975):
        return T_975[df - 1]
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass
class Spread:
    """Mean, sample standard deviation and 95% confidence interval of the mean of one figure over seeds."""

    values: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    @property
    def half_width(self) -> float:
        n = len(self.values)
        return t_quantile_975(n - 1) * self.std / np.sqrt(n) if n > 1 else float("nan")

    def __str__(self) -> str:
        return f"{self.mean:.2f}" if len(self.values) == 1 else f"{self.mean:.2f} ± {self.std:.2f}"


def _error(accuracy: float | None) -> float | str:
    return "-" if accuracy is None else round(100 * (1 - accuracy), 2)


def final_train_error(m: Member) -> float:
    return 100 * (1 - m.rows[-1]["train_acc"])


def member_row(m: Member) -> dict[str, Any]:
    """One run: the last epoch's training error, the validation error of the epoch selected on validation,
    and the test error of that epoch's weights (scored once, at the end of the run)."""
    s = m.summary
    return {
        "model": s["model"],
        "seed": s.get("seed", "-"),
        "params": s["parameters"],
        "MMACs": round(s["macs_per_image"] / 1e6, 1),
        "train error %": round(final_train_error(m), 2),
        "val error % (selected)": _error(s.get("best_val_top1")),
        "epoch": s.get("best_epoch", len(m.rows)),
        "test error %": _error(s.get("test_top1")),
        "images/s": round(s["train_images_per_s"]),
        "wall s": round(s["wall_s"]),
        "run": m.run_dir.name,
    }


def arm_spreads(members: list[Member]) -> dict[str, Spread]:
    """Each error of an arm over its seeds (members without a figure, e.g. no test split, are left out)."""
    figures = {
        "train": [final_train_error(m) for m in members],
        "val": [100 * (1 - m.summary["best_val_top1"]) for m in members if m.summary.get("best_val_top1") is not None],
        "test": [100 * (1 - m.summary["test_top1"]) for m in members if m.summary.get("test_top1") is not None],
    }
    return {k: Spread(v) for k, v in figures.items() if v}


def arm_rows(arms: list[Arm]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(CSV rows, Markdown rows) with one row per arm: numbers in separate columns for the CSV, and
    'mean ± std' cells for people."""
    csv_rows, md_rows = [], []
    for label, members in arms:
        s, spreads = members[0].summary, arm_spreads(members)
        common = {"model": label, "params": s["parameters"], "MMACs": round(s["macs_per_image"] / 1e6, 1)}
        seeds = ",".join(str(m.summary.get("seed", "?")) for m in members)
        speed = round(float(np.mean([m.summary["train_images_per_s"] for m in members])))
        row = {**common, "seeds": seeds}
        md = {**common, "seeds": seeds}
        for key, what in (("train", "train error %"), ("val", "val error % (selected)"), ("test", "test error %")):
            spread = spreads.get(key)
            row[f"{what} mean"] = round(spread.mean, 2) if spread else "-"
            row[f"{what} std"] = round(spread.std, 2) if spread else "-"
            shown = what.replace(")", ", mean ± std)") if ")" in what else f"{what} (mean ± std)"
            md[shown] = str(spread) if spread else "-"
        test = spreads.get("test")
        ci = f"{test.mean - test.half_width:.2f} to {test.mean + test.half_width:.2f}" if test else "-"
        row["test error % 95% CI low"] = round(test.mean - test.half_width, 2) if test else "-"
        row["test error % 95% CI high"] = round(test.mean + test.half_width, 2) if test else "-"
        md["test error 95% CI"] = ci
        row["images/s"] = md["images/s"] = speed
        csv_rows.append(row)
        md_rows.append(md)
    return csv_rows, md_rows


TABLE_NOTE = (
    "Train error: the last epoch's training batches as they were seen. Val error: the held-out validation "
    "images, at the epoch selected on them. Test error: the test split, scored once for that epoch's weights."
)
SEEDS_NOTE = (
    " Several seeds: mean ± sample standard deviation over the training seeds (the split and the test images stay"
    " the same), and the 95% confidence interval of the mean test error over seeds (Student's t); two arms count"
    " as separated only when their intervals do not overlap, a stricter rule than a 5% test. Each seed's run is"
    " a row of members.csv."
)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_table(exp_dir: Path, rows: list[dict[str, Any]], md_rows: list[dict[str, Any]] | None = None) -> str:
    """results.csv and results.md (from md_rows where the people's table differs); returns the Markdown."""
    write_csv(exp_dir / "results.csv", rows)
    md = markdown_table(md_rows or rows)
    (exp_dir / "results.md").write_text(md)
    return md


def write_arms_table(exp_dir: Path, arms: list[Arm]) -> str:
    """One seed per arm: a row per run. Several: a row per arm (mean ± std, CI) and members.csv per run."""
    members = [m for _, ms in arms for m in ms]
    if all(len(ms) == 1 for _, ms in arms):
        return write_table(exp_dir, [member_row(m) for m in members])
    write_csv(exp_dir / "members.csv", [member_row(m) for m in members])
    return write_table(exp_dir, *arm_rows(arms))


def table_note(arms: list[Arm]) -> str:
    return TABLE_NOTE + (SEEDS_NOTE if any(len(ms) > 1 for _, ms in arms) else "")


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _curve(members: list[Member], key: str) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(steps, mean error %, std error %) of one figure per epoch over an arm's seeds (up to the shortest run)."""
    epochs = min(len(m.rows) for m in members)
    steps = [r["step"] for r in members[0].rows[:epochs]]
    errors = np.array([[100 * (1 - r.get(key, np.nan)) for r in m.rows[:epochs]] for m in members])
    std = errors.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(epochs)
    return steps, errors.mean(axis=0), std


def plot_error_curves(path: Path, arms: list[Arm], title: str, style=None) -> None:
    """Training error and validation error against iterations, side by side, one line per arm (the mean of its
    seeds, with error bars of one standard deviation where it has several); style(label, i) -> (colour, dashed)."""
    plt = _pyplot()
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True, sharey=False)
    splits_seen: set[str] = set()
    for i, (label, members) in enumerate(arms):
        colour, dashed = style(label, i) if style else (COLOURS[i % len(COLOURS)], False)
        split = watched_in(members[0].rows[-1]) or "test"
        splits_seen.add(split)
        for ax, key in ((ax_train, "train_acc"), (ax_test, f"{split}_top1")):
            steps, mean, std = _curve(members, key)
            dodge = (i - (len(arms) - 1) / 2) * 0.008 * max(steps)  # side by side, so no bar hides another
            ax.errorbar(
                np.array(steps) + (dodge if len(members) > 1 else 0),
                mean,
                yerr=std if len(members) > 1 else None,
                label=label,
                color=colour,
                linestyle="--" if dashed else "-",
                marker="o",
                markersize=3,
                linewidth=1.8,
                capsize=3,
            )
    held_out = {
        frozenset({"val"}): "validation error (%)",
        frozenset({"test"}): "test error (%), display only",
    }.get(frozenset(splits_seen), "validation error (%), or test error (display only) where nothing was held out")
    for ax, what in ((ax_train, "training error (%)"), (ax_test, held_out)):
        ax.set(xlabel="iterations", ylabel=what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    seeds = {len(members) for _, members in arms}
    if max(seeds) > 1:
        title += f"\nlines: the mean of {'/'.join(map(str, sorted(seeds)))} seeds; bars: ± 1 standard deviation"
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(
    exp_dir: Path,
    title: str,
    intro: str,
    figures: list[str],
    table_md: str,
    findings: list[str],
    note: str = TABLE_NOTE,
) -> Path:
    parts = [f"# {title}\n", intro.strip() + "\n"]
    parts += [f"![{Path(f).stem}]({f})\n" for f in figures]
    parts += ["## Results\n", table_md, note + " Table: [results.csv](results.csv), [results.md](results.md).\n"]
    if findings:
        parts += ["## What it shows\n", "\n".join(f"- {f}" for f in findings) + "\n"]
    path = exp_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


# ---------------------------------------------------------------------------------------------------
# The experiments


def residual_twin(depth: int, shortcut: str) -> str:
    """The ResNet compared with Plain-`depth`. He et al. 2015 use option A (parameter-free shortcuts, so both
    nets have the same parameters) in figure 6 (CIFAR) and in table 2 / figure 4 (ImageNet: ResNet-18/34);
    option B projects where the width grows and is a separate, labelled comparison."""
    if shortcut not in ("A", "B"):
        raise UserError(f"shortcut={shortcut!r} is not A or B; A is the paper's degradation comparison")
    imagenet = f"resnet{depth}_a" in list_models()  # ResNet-18/34: torchvision's resnet18/34 are option B
    if imagenet:
        return f"resnet{depth}_a" if shortcut == "A" else f"resnet{depth}"
    return f"resnet{depth}" if shortcut == "A" else f"resnet{depth}_b"


def degradation(
    depths: list[int],
    preset: str = "quick",
    overrides: list[str] | None = None,
    out: str = "runs",
    name: str = "",
    shortcut: str = "A",
    seeds: int = 1,
) -> Path:
    """Plain-d and ResNet-d for every depth d, same recipe and seeds; He et al. 2015, figures 4 and 6."""
    overrides = overrides or []
    check_seeds(seeds)
    data_name = next((o.split("=", 1)[1] for o in overrides if o.startswith("data=")), PRESETS.get(preset, [""])[0][5:])
    label = "" if shortcut == "A" else f"-option{shortcut}"
    exp_dir = experiment_dir(out, name or f"degradation-{Path(data_name).name}{label}")
    pairs = [
        (d, kind, model)
        for d in sorted(depths)
        for kind, model in (("plain", f"plain{d}"), ("resnet", residual_twin(d, shortcut)))
    ]
    for _, _, model in pairs:  # every name checked before the first member trains
        model_info(model)
    arms: dict[tuple[str, int], Arm] = {}
    for depth, kind, model in pairs:
        arms[kind, depth] = (model, run_arm(preset, overrides, model, exp_dir, seeds))
    ordered = [arms[k, d] for k in ("plain", "resnet") for d in sorted(depths)]
    shades = {d: COLOURS[i % len(COLOURS)] for i, d in enumerate(sorted(depths))}

    def style(label: str, _: int) -> tuple[str, bool]:
        depth = int("".join(c for c in label.split("_")[0] if c.isdigit()))  # resnet34_a -> 34
        return shades[depth], label.startswith("plain")

    title = f"plain (dashed) against residual, option {shortcut} shortcuts (solid)"
    plot_error_curves(exp_dir / "degradation.png", ordered, title, style)
    md = write_arms_table(exp_dir, ordered)
    shallow, deep = min(depths), max(depths)
    findings = degradation_findings(arms, shallow, deep, shortcut, seeds) if shallow != deep else []
    seeded = "seed" if seeds == 1 else f"{seeds} seeds each"
    intro = (
        f"Plain networks and their ResNet twins at depths {', '.join(map(str, sorted(depths)))}, trained with "
        f"the same recipe and {seeded} (preset `{preset}`{', ' + ' '.join(overrides) if overrides else ''}), the "
        f"ResNets with option {shortcut} shortcuts"
        + (" (parameter-free, as in He et al. 2015). " if shortcut == "A" else " (projections where the width grows). ")
        + "Training error is measured on the training batches as they are seen; validation error (held-out "
        "training images) after each epoch, and it alone selects each member's epoch; test error once, at the end."
    )
    write_report(
        exp_dir,
        "Degradation: plain against residual networks",
        intro,
        ["degradation.png"],
        md,
        findings,
        table_note(ordered),
    )
    return exp_dir


def degradation_findings(
    arms: dict[tuple[str, int], Arm], shallow: int, deep: int, shortcut: str, seeds: int
) -> list[str]:
    """The paper's two effects, read off the final training errors (means over seeds where there are several,
    and whether each difference is larger than the seeds' spread)."""
    err = {key: Spread([final_train_error(m) for m in members]) for key, (_, members) in arms.items()}

    def apart(a: Spread, b: Spread) -> bool:
        """A difference counts when the two means' 95% intervals do not overlap; one seed has no interval."""
        return seeds > 1 and abs(a.mean - b.mean) > a.half_width + b.half_width

    def spread_note(a: Spread, b: Spread) -> str:
        if seeds == 1:
            return ""
        return (" The 95% intervals of the two means do not overlap." if apart(a, b)
                else " The 95% intervals of the two means overlap: these seeds do not separate them.")  # fmt: skip

    def verdict(deeper: Spread, shallower: Spread, what: str) -> str:
        """'the deeper NET trained worse / better', or that the seeds do not tell."""
        if seeds == 1:
            ended = "worse" if deeper.mean > shallower.mean else "better" if deeper.mean < shallower.mean else "level"
            return f"it ended {ended}, but one seed cannot separate the deeper {what} from the shallower one"
        if not apart(deeper, shallower):
            return f"these seeds do not separate the deeper {what} from the shallower one"
        if deeper.mean == shallower.mean:
            return f"the deeper {what} trained no differently"
        return f"the deeper {what} trained {'worse' if deeper.mean > shallower.mean else 'better'}"

    plain_pair = err["plain", deep], err["plain", shallow]
    resnet_pair = err["resnet", deep], err["resnet", shallow]
    plain_worse = plain_pair[0].mean > plain_pair[1].mean and apart(*plain_pair)
    resnet_better = resnet_pair[0].mean < resnet_pair[1].mean and apart(*resnet_pair)
    how = "" if seeds == 1 else f" (mean ± std of {seeds} seeds)"
    same = "parameters, recipe and seed" if shortcut == "A" else "recipe and seed (option B adds projections)"
    if seeds > 1:
        same = same.replace("seed", "seeds")
    return [
        f"Plain-{deep} ends with {plain_pair[0]}% training error against {plain_pair[1]}% for Plain-{shallow}{how}: "
        + verdict(*plain_pair, "plain network")
        + (" (degradation)." if plain_worse else ".")
        + spread_note(*plain_pair),
        f"ResNet-{deep} ends with {resnet_pair[0]}% against {resnet_pair[1]}% for ResNet-{shallow}: "
        + verdict(*resnet_pair, "ResNet")
        + "."
        + spread_note(*resnet_pair),
        f"At depth {deep} the shortcuts alone take the training error from {err['plain', deep]}% (plain) to "
        f"{err['resnet', deep]}% (ResNet), with the same {same}."
        + spread_note(err["plain", deep], err["resnet", deep]),
        "Both effects together, as in He et al. 2015 (the deeper plain net worse, the deeper ResNet better): "
        + (
            "one seed cannot tell (seeds=3 gives each arm an interval)."
            if seeds == 1
            else "yes."
            if plain_worse and resnet_better
            else "not in this experiment."
        ),
    ]


def compare(
    models: list[str],
    preset: str = "quick",
    overrides: list[str] | None = None,
    out: str = "runs",
    name: str = "",
    seeds: int = 1,
) -> Path:
    """Any list of models under one recipe (each with `seeds` seeds): overlaid curves and a results table."""
    if len(models) < 1:
        raise UserError("models= needs at least one name, e.g. models=resnet56,preact_resnet56")
    check_seeds(seeds)
    for model in models:  # every name checked before the first member trains
        model_info(model)
    exp_dir = experiment_dir(out, name or "compare-" + "-".join(models))
    arms = [(m, run_arm(preset, overrides or [], m, exp_dir, seeds)) for m in models]
    how = f"preset `{preset}`{', ' + ' '.join(overrides) if overrides else ''}"
    return _compare_report(exp_dir, arms, how + ("" if seeds == 1 else f", {seeds} seeds each"))


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """The compare figure and table from finished runs (one row each)."""
    members = [read_member(Path(r)) for r in run_dirs]
    exp_dir = Path(out)
    exp_dir.mkdir(parents=True, exist_ok=True)
    names = [m.name for m in members]
    arms = [(m.name if names.count(m.name) == 1 else f"{m.run_dir.parent.name}/{m.name}", [m]) for m in members]
    return _compare_report(exp_dir, arms, "existing runs: " + ", ".join(str(r) for r in run_dirs))


def _compare_report(exp_dir: Path, arms: list[Arm], how: str) -> Path:
    plot_error_curves(exp_dir / "curves.png", arms, " vs ".join(label for label, _ in arms))
    md = write_arms_table(exp_dir, arms)
    scored = [(label, arm_spreads(members)["test"]) for label, members in arms if "test" in arm_spreads(members)]
    findings = []
    if scored:
        best_label, best = min(scored, key=lambda item: item[1].mean)
        several = len(best.values) > 1
        findings.append(
            f"Lowest {'mean ' if several else ''}test error, of the weights each member selected on validation: "
            f"{best_label} ({best}%{f', mean ± std of {len(best.values)} seeds' if several else ''})."
        )
        if not several and len(scored) > 1:
            findings.append("One seed cannot separate arms: seeds=3 gives each an interval to compare.")
        if several:
            overlapping = [
                label
                for label, spread in scored
                if label != best_label and spread.mean - spread.half_width <= best.mean + best.half_width
            ]
            if len(scored) > 1:
                findings.append(
                    "Its 95% interval overlaps those of "
                    + ", ".join(overlapping)
                    + ": these seeds do not separate them."
                    if overlapping
                    else "Its 95% interval overlaps no other arm's."
                )
    write_report(
        exp_dir,
        "Comparison",
        f"Models compared: {', '.join(label for label, _ in arms)} ({how}).",
        ["curves.png"],
        md,
        findings,
        table_note(arms),
    )
    return exp_dir


def layer_grad_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[str, float]]:
    """(name, gradient norm) of every conv and linear weight, in forward order, for one batch."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [(n, p.grad.norm().item()) for n, p in model.named_parameters() if p.dim() > 1 and p.grad is not None]


def fp32_step(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> TrainStep:
    """fit's training step with the run's optimizer (its kind, momentum, weight decay; the base learning rate,
    constant), label smoothing and clipping, in fp32: gradient norms in autocast would carry its rounding."""
    optimizer = build_optimizer(param_groups(model, cfg), cfg.optim, device)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    fp32 = choose_precision("fp32", "false", device)
    tally = StepTally(device)
    return TrainStep(
        model, model, optimizer, scaler, None, tally, fp32, device, cfg.optim.label_smoothing, cfg.optim.grad_clip
    )


def training_batches(loader: BatchLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's training batches, epoch after epoch, without end."""
    for epoch in itertools.count():
        yield from loader.epoch(epoch)


def gradflow(
    models: list[str],
    steps: int = 100,
    preset: str = "quick",
    overrides: list[str] | None = None,
    out: str = "runs",
    name: str = "",
) -> Path:
    """Gradient norm of every layer at initialisation and after `steps` training steps (fit's step and the
    run's optimizer, in fp32), against depth."""
    overrides = overrides or []
    exp_dir = experiment_dir(out, name or "gradflow-" + "-".join(models))
    base = member_config(preset, overrides, models[0], exp_dir)
    data = load_run_data(base, need=("train",)).train
    device = resolve_device("cpu" if base.run.device == "auto" else base.run.device)
    loader = make_loader(base, data, True, device, False, tuple(data.info.mean), tuple(data.info.std))
    probe_x, probe_y = next(loader.epoch(10_000))  # one fixed batch, the same for every model and moment
    results: dict[str, dict[str, list[float]]] = {}
    for model_name in models:
        cache = exp_dir / f"gradflow-{model_name}.json"
        if cache.is_file():  # computed before: an interrupted experiment resumes here
            print(f"{model_name}: computed before, not recomputed")
            results[model_name] = json.loads(cache.read_text())
            continue
        print(f"{model_name}: measuring at initialisation and after {steps} steps")
        torch.manual_seed(base.run.seed)
        model = create_model(model_name, num_classes=len(data.classes), in_chans=data.images.shape[-1]).to(device)
        model.train()
        at_init = layer_grad_norms(model, probe_x, probe_y)
        step = fp32_step(model, base, device)
        for x, y in itertools.islice(training_batches(loader), steps):
            step(x, y)
        after = layer_grad_norms(model, probe_x, probe_y)
        results[model_name] = {
            "layers": [n for n, _ in at_init],
            "init": [v for _, v in at_init],
            "trained": [v for _, v in after],
            "steps": steps,
        }
        cache.write_text(json.dumps(results[model_name]))
    _plot_gradflow(exp_dir / "gradflow.png", results, steps)
    rows = []
    for model_name, r in results.items():
        init, trained = np.array(r["init"]), np.array(r["trained"])
        rows.append(
            {
                "model": model_name,
                "layers": len(init),
                "first/last layer grad norm at init": float(f"{init[0] / init[-1]:.3g}"),
                "min grad norm at init": float(f"{init.min():.3g}"),
                "min grad norm after training": float(f"{trained.min():.3g}"),
                "max/min ratio after training": float(f"{trained.max() / max(trained.min(), 1e-30):.3g}"),
            }
        )
    md = write_table(exp_dir, rows)
    with open(exp_dir / "gradflow.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "depth", "layer", "grad_norm_init", f"grad_norm_after_{steps}_steps"])
        for model_name, r in results.items():
            for i, (layer, a, b) in enumerate(zip(r["layers"], r["init"], r["trained"])):
                writer.writerow([model_name, i + 1, layer, f"{a:.6g}", f"{b:.6g}"])
    intro = (
        f"Gradient norm of every convolution and linear weight on one fixed batch, at initialisation (dashed) "
        f"and after {steps} SGD steps (solid), against the layer's depth; per-layer values in gradflow.csv."
    )
    write_report(exp_dir, "Gradient flow", intro, ["gradflow.png"], md, [])
    return exp_dir


def _plot_gradflow(path: Path, results: dict[str, dict[str, list[float]]], steps: int) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.5), constrained_layout=True)
    for i, (model_name, r) in enumerate(results.items()):
        colour = COLOURS[i % len(COLOURS)]
        depth = np.arange(1, len(r["init"]) + 1)
        ax.plot(depth, r["init"], "--", color=colour, alpha=0.8, label=f"{model_name} at initialisation")
        ax.plot(depth, r["trained"], "-", color=colour, linewidth=2, label=f"{model_name} after {steps} steps")
    ax.set_yscale("log")
    ax.set(
        xlabel="layer (depth, input side first)",
        ylabel="gradient norm (log scale)",
        title="gradient norm of every layer: how evenly the error signal reaches each depth",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
