"""He et al. 2016's two ablations ("Identity Mappings in Deep Residual Networks"), one command per table.

    shortcuts    table 1: what the shortcut computes (scaled, gated, a 1x1 conv, dropped out), ResNet-110
    activations  table 2: where BN and ReLU sit around the addition, ResNet-110 and ResNet-164

Every variant of a table trains under one recipe and the same seeds, as an ordinary run directory inside the
experiment's folder (an interrupted table resumes; a finished member is never retrained). The report puts the
published CIFAR-10 column beside the measured one and says, from the 95% intervals over seeds, which of the
paper's orderings (each variant against the original unit) the measurement reproduces, which it contradicts
and which its seeds cannot separate. A member whose loss stops being finite, or whose test error ends within a
tenth of a uniform guess's, "fails", as the paper writes of its variants that did not train.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import TrainingDiverged, UserError
from .experiments import (
    CIFAR10_PAPER_SCHEDULE,
    COLOURS,
    Arm,
    Member,
    Spread,
    check_seeds,
    experiment_dir,
    markdown_table,
    member_row,
    plot_error_curves,
    run_member,
    write_csv,
    write_report,
)
from .models import model_info
from .training import load_config
from .training.device import cpu_description
from .training.report import _pyplot

FAILS = math.inf  # the paper's "fail": the variant did not train to a usable error


@dataclass(frozen=True)
class Variant:
    label: str
    fields: dict[str, Any]  # ResNetConfig fields over the base network
    published: tuple[float, ...]  # CIFAR-10 test error %, one per column of the paper's table (FAILS: "fail")


@dataclass(frozen=True)
class Table:
    title: str
    source: str
    columns: tuple[str, ...]  # the published columns: the depths the paper ran
    variants: tuple[Variant, ...]  # the first is the original unit every other is compared with
    note: str = ""  # what differs from the paper, said in the report


def _gated(bias: float, mode: str = "exclusive") -> dict[str, Any]:
    return {"gate": True, "gate_mode": mode, "gate_bias": bias}


TABLES = {
    "shortcuts": Table(
        "Shortcut variants",
        "He et al. 2016, table 1 (ResNet-110 on CIFAR-10; the gates' initial biases as the paper gives them)",
        ("ResNet-110",),
        (
            Variant("original", {}, (6.61,)),
            Variant("constant scaling 0.5, shortcut only", {"shortcut_scale": 0.5}, (FAILS,)),
            Variant("constant scaling 0.5, both paths", {"shortcut_scale": 0.5, "residual_scale": 0.5}, (12.35,)),
            Variant("exclusive gating, bias 0", _gated(0.0), (FAILS,)),  # the paper: fails for biases 0 to -5
            Variant("exclusive gating, bias -6", _gated(-6.0), (8.70,)),
            Variant("exclusive gating, bias -7", _gated(-7.0), (9.81,)),
            Variant("shortcut-only gating, bias 0", _gated(0.0, "shortcut"), (12.86,)),
            Variant("shortcut-only gating, bias -6", _gated(-6.0, "shortcut"), (6.91,)),
            Variant("1x1 conv shortcut", {"shortcut": "C"}, (12.22,)),
            Variant("dropout shortcut 0.5", {"shortcut_dropout": 0.5}, (FAILS,)),
        ),
        "The dropout shortcut is PyTorch's dropout, which doubles the values it keeps: the shortcut's expected value "
        "stays x, where the paper explains its failure by an expectation of 0.5 x; the noise is the same.",
    ),
    "activations": Table(
        "Activation variants",
        "He et al. 2016, table 2 (CIFAR-10; ResNet-110 with basic blocks, ResNet-164 with bottlenecks)",
        ("ResNet-110", "ResNet-164"),
        (
            Variant("original", {}, (6.61, 5.93)),
            Variant("BN after addition", {"layout": "bn_after_add"}, (8.17, 6.50)),
            Variant("ReLU before addition", {"layout": "relu_before_add"}, (7.84, 6.14)),
            Variant("ReLU-only pre-activation", {"layout": "relu_preact"}, (6.71, 5.91)),
            Variant("full pre-activation", {"preact": True}, (6.37, 5.46)),
        ),
    ),
}

# The networks: option B (projections where the shape changes) as in the paper's code; the "1x1 conv shortcut"
# variant makes every shortcut a projection (option C). v1 ResNet-164 is preact_resnet164 with preact=False.
NETWORKS = {
    "ResNet-110": ("resnet110_b", {}),
    "ResNet-164": ("preact_resnet164", {"preact": False}),
    "ResNet-20": ("resnet20_b", {}),
}


@dataclass(frozen=True)
class Preset:
    recipe: tuple[str, ...]
    networks: tuple[str, ...]  # keys of NETWORKS: every network runs each variant; the paper's column is matched
    columns: tuple[int, ...]  # by index: the published column that each network's measured one stands beside
    about: str

    def networks_for(self, table: Table) -> list[tuple[str, int]]:
        """(network, published column) for the preset's networks that the table has a column for (table 1 has
        ResNet-110 only)."""
        return [(n, c) for n, c in zip(self.networks, self.columns) if c < len(table.columns)]


PRESETS = {
    # Fashion-MNIST, sized so that one table of 3 seeds runs in about 30 minutes on 2 CPU cores (see the README).
    "quick": Preset(
        (
            "data=fashion-mnist",
            "limit_train=8000",
            "limit_val=1000",
            "epochs=3",
            "batch_size=64",
            "lr=0.1",
            "weight_decay=1e-4",
            "schedule=onecycle",
            "data.crop_padding=0",
            "quiet=true",
        ),
        ("ResNet-20",),
        (0,),
        "ResNet-20 (basic blocks, option B) on 8,000 Fashion-MNIST training images for 3 epochs, one-cycle SGD",
    ),
    # The paper's CIFAR-10 schedule (He et al. 2015's, shared with `experiment degradation preset=full`), with the
    # 400-iteration warm-up He et al. give ResNet-110 (lr 0.01 until training error falls below 80%).
    "paper": Preset(
        (*CIFAR10_PAPER_SCHEDULE, "schedule.warmup=400", "quiet=true"),
        ("ResNet-110", "ResNet-164"),
        (0, 1),
        "the paper's networks and CIFAR-10 schedule",
    ),
}


@dataclass
class Outcome:
    """One variant on one network over its seeds: the test errors of the members that trained, and how many
    failed (diverged, or ended within a tenth of a uniform guess's error)."""

    errors: list[float]
    failed: int = 0
    why: list[str] = field(default_factory=list)

    @property
    def all_failed(self) -> bool:
        return self.failed > 0 and not self.errors

    @property
    def spread(self) -> Spread | None:
        return Spread(self.errors) if self.errors and not self.failed else None

    def cell(self) -> str:
        if self.failed:
            return f"fails ({self.failed} of {self.failed + len(self.errors)} seeds)"
        return f"{self.spread}%"

    def interval(self) -> str:
        s = self.spread
        if s is None or len(s.values) < 2:
            return "-"
        return f"{s.mean - s.half_width:.2f} to {s.mean + s.half_width:.2f}"


def slug(label: str) -> str:
    """A run-directory name for a variant label: 'exclusive gating, bias -6' -> 'exclusive-gating-bias-m6'."""
    text = re.sub(r"-(\d)", r"m\1", label.lower()).replace(".", "")  # a minus sign as "m", 0.5 as 05
    return "-".join("".join(c if c.isalnum() else " " for c in text).split())


def default_name(table: str, preset: str, overrides: list[str]) -> str:
    """'ablation-shortcuts-quick', with a digest of the changed settings where there are any: another recipe is
    another folder, so that no member of one is read back as a member of the other."""
    if not overrides:
        return f"ablation-{table}-{preset}"
    return f"ablation-{table}-{preset}-{hashlib.sha1(' '.join(overrides).encode()).hexdigest()[:8]}"


def variant_config(preset: Preset, overrides: list[str], network: str, variant: Variant, seed: int, exp_dir: Path):
    model, base_fields = NETWORKS[network]
    fields = {**base_fields, **variant.fields}
    model_args = [f"model.args.{k}={json.dumps(v)}" for k, v in fields.items()]
    name = f"{network.lower().replace('-', '')}-{slug(variant.label)}-seed{seed}"
    return load_config(
        None,
        [*preset.recipe, *overrides, f"model={model}", *model_args, f"seed={seed}", f"out={exp_dir}", f"name={name}"],
    )


def run_or_fail(cfg, exp_dir: Path) -> Member | str:
    """A finished member, or why it failed: a diverged member leaves failed.json and is not retrained."""
    run_dir = exp_dir / cfg.output.name
    marker = run_dir / "failed.json"
    if marker.is_file():
        print(f"{cfg.output.name}: failed before, not retrained")
        return json.loads(marker.read_text())["why"]
    try:
        return run_member(cfg, exp_dir)
    except TrainingDiverged as err:
        why = f"diverged: {str(err).split(';')[0]}"
        run_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"why": why}))
        print(f"{cfg.output.name}: {why}")
        return why


def guess_error(member: Member) -> float:
    """The test error % of a uniform guess among the classes (90% for Fashion-MNIST's ten)."""
    classes = len(member.summary.get("test_per_class") or {}) or 10
    return 100 * (1 - 1 / classes)


def outcome_of(results: list[Member | str]) -> Outcome:
    out = Outcome([])
    for r in results:
        if isinstance(r, str):
            out.failed, out.why = out.failed + 1, [*out.why, r]
            continue
        error = 100 * (1 - r.summary["test_top1"])
        if error >= 0.9 * guess_error(r):  # within a tenth of a guess's error: the paper's "fail"
            out.failed, out.why = out.failed + 1, [*out.why, f"{r.name}: {error:.2f}% test error, a guess's"]
        else:
            out.errors.append(error)
    return out


# ---------------------------------------------------------------------------------------------------
# Findings: each variant against the original unit, as the paper orders them and as the seeds measured them.


def order(published: float, original: float) -> str:
    return "worse" if published > original else "better" if published < original else "equal"


def measured_order(variant: Outcome, original: Outcome) -> str:
    """'worse', 'better', or 'inseparable': an arm whose every seed failed is worse than one whose every seed
    trained; seeds that partly failed, two failed arms, overlapping 95% intervals and single seeds are not ordered."""
    if variant.failed or original.failed:
        if variant.all_failed and not original.failed:
            return "worse"
        if original.all_failed and not variant.failed:
            return "better"
        return "inseparable"
    a, b = variant.spread, original.spread
    if len(a.values) < 2 or len(b.values) < 2 or abs(a.mean - b.mean) <= a.half_width + b.half_width:
        return "inseparable"
    return "worse" if a.mean > b.mean else "better"


def verdict(paper: str, measured: str) -> str:
    """'reproduces' or 'contradicts' the paper's order, or 'the seeds cannot separate' the two."""
    if measured == "inseparable":
        return "the seeds cannot separate"
    return "reproduces" if measured == paper else "contradicts"


def describe(value: float) -> str:
    return "fails" if value == FAILS else f"{value:.2f}%"


def findings(table: Table, column: int, outcomes: list[Outcome], network: str) -> list[str]:
    """One sentence per variant: the paper's order against the original, the measured one, and the verdict;
    then how many of the paper's orderings the measurement reproduces, contradicts and cannot separate."""
    original, paper_original = outcomes[0], table.variants[0].published[column]
    lines, verdicts = [], []
    for variant, outcome in zip(table.variants[1:], outcomes[1:]):
        paper = order(variant.published[column], paper_original)
        measured = measured_order(outcome, original)
        verdicts.append(verdict(paper, measured))
        lines.append(
            f"{network}, {variant.label}: the paper has it {paper} than the original "
            f"({describe(variant.published[column])} against {describe(paper_original)}); measured "
            f"{outcome.cell()} against {original.cell()}"
            + (f": {measured}, so it {verdicts[-1]}." if measured != "inseparable" else f": {verdicts[-1]}.")
        )
    seeds = len(original.errors) + original.failed
    lines.append(
        f"{network}: of the paper's {len(verdicts)} orderings against the original, the measurement reproduces "
        f"{verdicts.count('reproduces')}, contradicts {verdicts.count('contradicts')}, and cannot separate "
        f"{verdicts.count('the seeds cannot separate')}"
        + (
            " (one seed orders only a failed arm against a trained one: run seeds=3 or more to separate the rest)."
            if seeds < 2
            else " (95% intervals over seeds)."
        )
    )
    return lines


# ---------------------------------------------------------------------------------------------------
# The command


def ablation(
    table: str,
    preset: str = "quick",
    overrides: list[str] | None = None,
    out: str = "runs",
    name: str = "",
    seeds: int = 3,
) -> Path:
    """Every variant of the chosen table on the preset's networks, `seeds` seeds each: table, figures, report."""
    if table not in TABLES:
        raise UserError(f"table={table!r} is not one of {', '.join(TABLES)}")
    if preset not in PRESETS:
        raise UserError(f"preset={preset!r} is not one of {', '.join(PRESETS)} for an ablation")
    check_seeds(seeds)
    chosen, setup = TABLES[table], PRESETS[preset]
    overrides = overrides or []
    exp_dir = experiment_dir(out, name or default_name(table, preset, overrides))
    networks = [n for n, _ in setup.networks_for(chosen)]
    for network in networks:
        model_info(NETWORKS[network][0])
    first = load_config(None, [*setup.recipe, *overrides]).run.seed
    results: dict[str, list[tuple[Variant, list[Member | str]]]] = {}
    for network in networks:
        results[network] = []
        for variant in chosen.variants:
            configs = [
                variant_config(setup, overrides, network, variant, s, exp_dir) for s in range(first, first + seeds)
            ]
            results[network].append((variant, [run_or_fail(c, exp_dir) for c in configs]))
    return write_ablation_report(exp_dir, chosen, setup, preset, overrides, results)


def write_ablation_report(
    exp_dir: Path,
    table: Table,
    setup: Preset,
    preset: str,
    overrides: list[str],
    results: dict[str, list[tuple[Variant, list[Member | str]]]],
) -> Path:
    rows, lines, figures = [], [], []
    members = [m for per in results.values() for _, ms in per for m in ms if not isinstance(m, str)]
    for network, column in setup.networks_for(table):
        outcomes = [outcome_of(ms) for _, ms in results[network]]
        for (variant, _), outcome in zip(results[network], outcomes):
            rows.append(
                {
                    "network": network,
                    "variant": variant.label,
                    f"published CIFAR-10 test error % ({table.columns[column]})": describe(variant.published[column]),
                    "measured test error % (mean ± std)": outcome.cell(),
                    "95% CI of the mean": outcome.interval(),
                    "seeds": len(outcome.errors) + outcome.failed,
                }
            )
        lines += findings(table, column, outcomes, network)
        figure = f"ablation-{network.lower().replace('-', '')}.png"
        plot_ablation(exp_dir / figure, table, column, outcomes, network)
        arms: list[Arm] = [
            (v.label, [m for m in ms if not isinstance(m, str)]) for v, ms in results[network] if any(
                not isinstance(m, str) for m in ms)
        ]  # fmt: skip
        curves = figure.replace("ablation-", "curves-")
        plot_error_curves(exp_dir / curves, arms, f"{table.title}, {network}")
        figures += [figure, curves]
    write_csv(exp_dir / "results.csv", rows)
    md = markdown_table(rows)
    (exp_dir / "results.md").write_text(md)
    if members:
        write_csv(exp_dir / "members.csv", [member_row(m) for m in members])
    changed = f", with {' '.join(overrides)}" if overrides else ""
    intro = (
        f"{table.title} of {table.source}, measured here with preset `{preset}` ({setup.about}{changed}) on "
        f"{cpu_description()}, torch {torch.__version__}. Each variant trains with the same recipe and seeds; its "
        "epoch is selected on the held-out validation images and its test error scored once. The published column "
        "is CIFAR-10 at the paper's schedule: compare orderings, not values."
    )
    note = (
        "Measured: mean ± sample standard deviation of the test error over seeds, and the 95% confidence interval "
        "of the mean (Student's t); two variants count as ordered only when their intervals do not overlap. "
        "'fails': a member diverged or its test error ended within a tenth of a uniform guess's (the paper's "
        "'fail': it did not train to a usable error); an arm only some of whose seeds failed is not ordered. Each "
        "member's run is a row of members.csv." + (f" {table.note}" if table.note else "")
    )
    write_report(exp_dir, f"{table.title}: {table.source.split(' (')[0]}", intro, figures, md, lines, note)
    return exp_dir


def plot_ablation(path: Path, table: Table, column: int, outcomes: list[Outcome], network: str) -> None:
    """Measured (mean, 95% interval) and published test error per variant, side by side; failures marked."""
    plt = _pyplot()
    labels = [v.label for v in table.variants]
    fig, (ax_measured, ax_paper) = plt.subplots(
        1, 2, figsize=(12, 0.45 * len(labels) + 1.6), sharey=True, constrained_layout=True
    )
    y = np.arange(len(labels))[::-1]
    finite = [o.spread.mean + o.spread.half_width if o.spread and len(o.errors) > 1 else o.spread.mean
              for o in outcomes if o.spread]  # fmt: skip
    top = max(finite, default=10.0) * 1.15
    for yi, outcome in zip(y, outcomes):
        if outcome.spread is None:
            ax_measured.barh(yi, top, color="#dddddd", hatch="//", edgecolor="#999999")
            ax_measured.text(top * 0.02, yi, outcome.cell(), va="center", fontsize=8)
            continue
        s = outcome.spread
        err = s.half_width if len(s.values) > 1 else None
        ax_measured.barh(yi, s.mean, xerr=err, color=COLOURS[0], alpha=0.85, capsize=3)
    published = [v.published[column] for v in table.variants]
    paper_top = max((p for p in published if p != FAILS), default=10.0) * 1.3
    for yi, p in zip(y, published):
        if p == FAILS:
            ax_paper.barh(yi, paper_top, color="#dddddd", hatch="//", edgecolor="#999999")
            ax_paper.text(paper_top * 0.02, yi, "fails", va="center", fontsize=8)
        else:
            ax_paper.barh(yi, p, color=COLOURS[1], alpha=0.85)
    ax_measured.set_yticks(y, labels)
    ax_measured.set(xlabel="measured test error (%): mean, bars 95% interval", title=f"measured, {network}")
    ax_paper.set(xlabel="published CIFAR-10 test error (%)", title=f"{table.source.split(' (')[0]}, "
                 f"{table.columns[column]}")  # fmt: skip
    for ax in (ax_measured, ax_paper):
        ax.grid(alpha=0.3, axis="x")
    fig.savefig(path, dpi=110)
    plt.close(fig)
