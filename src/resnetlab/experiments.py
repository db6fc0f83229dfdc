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
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError
from .models import create_model, list_models, model_info
from .training import TrainConfig, load_config
from .training.loop import fit, make_loader, resolve_device
from .training.report import _pyplot, read_metrics
from .training.setup import load_run_data

# Presets: "quick" shows the effect on Fashion-MNIST in about 20 minutes on 2 CPU cores (a 20k-image subset,
# 4 epochs); "full" is He et al. 2015's CIFAR-10 recipe (64k iterations; for a GPU).
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
    "full": [
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
        "data.hflip=true",
        "quiet=true",
    ],
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


def member_config(preset: str, overrides: list[str], model: str, exp_dir: Path) -> TrainConfig:
    if preset not in PRESETS:
        raise UserError(f"preset={preset!r} is not one of {', '.join(PRESETS)}")
    model_info(model)  # an unknown name fails before any member trains
    return load_config(None, [*PRESETS[preset], *overrides, f"model={model}", f"out={exp_dir}", f"name={model}"])


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
    return Member(run_dir.name, run_dir, summary, read_metrics(run_dir / "metrics.csv"))


# ---------------------------------------------------------------------------------------------------
# Tables and figures


def _error(accuracy: float | None) -> float | str:
    return "-" if accuracy is None else round(100 * (1 - accuracy), 2)


def results_table(members: list[Member]) -> list[dict[str, Any]]:
    """One row per member: the last epoch's training error, the validation error of the epoch selected on
    validation, and the test error of that epoch's weights (scored once, at the end of the run)."""
    rows = []
    for m in members:
        last, s = m.rows[-1], m.summary
        rows.append(
            {
                "model": s["model"],
                "params": s["parameters"],
                "MMACs": round(s["macs_per_image"] / 1e6, 1),
                "train error %": round(100 * (1 - last["train_acc"]), 2),
                "val error % (selected)": _error(s.get("best_val_top1")),
                "epoch": s.get("best_epoch", len(m.rows)),
                "test error %": _error(s.get("test_top1")),
                "images/s": round(s["train_images_per_s"]),
                "wall s": round(s["wall_s"]),
                "run": m.run_dir.name,
            }
        )
    return rows


TABLE_NOTE = (
    "Train error: the last epoch's training batches as they were seen. Val error: the held-out validation "
    "images, at the epoch selected on them. Test error: the test split, scored once for that epoch's weights."
)


def write_table(exp_dir: Path, rows: list[dict[str, Any]]) -> str:
    """results.csv and results.md; returns the Markdown."""
    with open(exp_dir / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [f"{v:,}" if isinstance(v, int) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    md = "\n".join(lines) + "\n"
    (exp_dir / "results.md").write_text(md)
    return md


COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def plot_error_curves(path: Path, members: list[Member], title: str, style=None) -> None:
    """Training error and test error against iterations, side by side; style(member) -> (colour, dashes)."""
    plt = _pyplot()
    fig, (ax_train, ax_test) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True, sharey=False)
    splits_seen: set[str] = set()
    for i, m in enumerate(members):
        colour, dashed = style(m, i) if style else (COLOURS[i % len(COLOURS)], False)
        steps = [r["step"] for r in m.rows]
        kw = dict(color=colour, linestyle="--" if dashed else "-", marker="o", markersize=3, linewidth=1.8)
        ax_train.plot(steps, [100 * (1 - r["train_acc"]) for r in m.rows], label=m.name, **kw)
        split = "val" if not np.isnan(m.rows[-1].get("val_top1", np.nan)) else "test"
        splits_seen.add(split)
        ax_test.plot(steps, [100 * (1 - r.get(f"{split}_top1", np.nan)) for r in m.rows], label=m.name, **kw)
    held_out = {
        frozenset({"val"}): "validation error (%)",
        frozenset({"test"}): "test error (%), display only",
    }.get(frozenset(splits_seen), "validation error (%), or test error (display only) where nothing was held out")
    for ax, what in ((ax_train, "training error (%)"), (ax_test, held_out)):
        ax.set(xlabel="iterations", ylabel=what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(exp_dir: Path, title: str, intro: str, figures: list[str], table_md: str, findings: list[str]) -> Path:
    parts = [f"# {title}\n", intro.strip() + "\n"]
    parts += [f"![{Path(f).stem}]({f})\n" for f in figures]
    parts += ["## Results\n", table_md, TABLE_NOTE + " Table: [results.csv](results.csv), [results.md](results.md).\n"]
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
) -> Path:
    """Plain-d and ResNet-d for every depth d, same recipe and seed; He et al. 2015, figures 4 and 6."""
    overrides = overrides or []
    data_name = next((o.split("=", 1)[1] for o in overrides if o.startswith("data=")), PRESETS.get(preset, [""])[0][5:])
    label = "" if shortcut == "A" else f"-option{shortcut}"
    exp_dir = experiment_dir(out, name or f"degradation-{Path(data_name).name}{label}")
    members: dict[tuple[str, int], Member] = {}
    for depth in sorted(depths):
        for kind, model in (("plain", f"plain{depth}"), ("resnet", residual_twin(depth, shortcut))):
            cfg = member_config(preset, overrides, model, exp_dir)
            members[kind, depth] = run_member(cfg, exp_dir)
    ordered = [members[k, d] for k in ("plain", "resnet") for d in sorted(depths)]
    shades = {d: COLOURS[i % len(COLOURS)] for i, d in enumerate(sorted(depths))}

    def style(m: Member, _: int) -> tuple[str, bool]:
        depth = int("".join(c for c in m.name if c.isdigit()))
        return shades[depth], m.name.startswith("plain")

    title = f"plain (dashed) against residual, option {shortcut} shortcuts (solid)"
    plot_error_curves(exp_dir / "degradation.png", ordered, title, style)
    rows = results_table(ordered)
    md = write_table(exp_dir, rows)
    findings = []
    shallow, deep = min(depths), max(depths)
    if shallow != deep:
        err = {
            (k, d): 100 * (1 - members[k, d].rows[-1]["train_acc"])
            for k in ("plain", "resnet")
            for d in (shallow, deep)
        }
        plain_worse = err["plain", deep] > err["plain", shallow]
        resnet_better = err["resnet", deep] < err["resnet", shallow]
        findings.append(
            f"Plain-{deep} ends with {err['plain', deep]:.2f}% training error against {err['plain', shallow]:.2f}% for "
            f"Plain-{shallow}: the deeper plain network trained {'worse' if plain_worse else 'no worse'}"
            + (" (degradation)." if plain_worse else ".")
        )
        findings.append(
            f"ResNet-{deep} ends with {err['resnet', deep]:.2f}% against {err['resnet', shallow]:.2f}% for "
            f"ResNet-{shallow}: the deeper ResNet trained {'better' if resnet_better else 'no better'}."
        )
        findings.append(
            f"At depth {deep} the shortcuts alone take the training error from {err['plain', deep]:.2f}% (plain) to "
            f"{err['resnet', deep]:.2f}% (ResNet), with the same "
            + ("parameters, recipe and seed." if shortcut == "A" else "recipe and seed (option B adds projections).")
        )
        findings.append(
            "Both effects together, as in He et al. 2015: "
            + ("yes." if plain_worse and resnet_better else "not in this run (a longer recipe may be needed).")
        )
    intro = (
        f"Plain networks and their ResNet twins at depths {', '.join(map(str, sorted(depths)))}, trained with "
        f"the same recipe and seed (preset `{preset}`{', ' + ' '.join(overrides) if overrides else ''}), the ResNets "
        f"with option {shortcut} shortcuts"
        + (" (parameter-free, as in He et al. 2015). " if shortcut == "A" else " (projections where the width grows). ")
        + "Training error is measured on the training batches as they are seen; validation error (held-out "
        "training images) after each epoch, and it alone selects each member's epoch; test error once, at the end."
    )
    write_report(exp_dir, "Degradation: plain against residual networks", intro, ["degradation.png"], md, findings)
    return exp_dir


def compare(
    models: list[str], preset: str = "quick", overrides: list[str] | None = None, out: str = "runs", name: str = ""
) -> Path:
    """Any list of models under one recipe: overlaid curves and a results table."""
    if len(models) < 1:
        raise UserError("models= needs at least one name, e.g. models=resnet56,preact_resnet56")
    exp_dir = experiment_dir(out, name or "compare-" + "-".join(models))
    members = [run_member(member_config(preset, overrides or [], m, exp_dir), exp_dir) for m in models]
    return _compare_report(exp_dir, members, f"preset `{preset}`{', ' + ' '.join(overrides) if overrides else ''}")


def compare_runs(run_dirs: list[str | Path], out: str | Path) -> Path:
    """The compare figure and table from finished runs."""
    members = [read_member(Path(r)) for r in run_dirs]
    exp_dir = Path(out)
    exp_dir.mkdir(parents=True, exist_ok=True)
    return _compare_report(exp_dir, members, "existing runs: " + ", ".join(str(r) for r in run_dirs))


def _compare_report(exp_dir: Path, members: list[Member], how: str) -> Path:
    plot_error_curves(exp_dir / "curves.png", members, " vs ".join(m.name for m in members))
    md = write_table(exp_dir, results_table(members))
    scored = [m for m in members if m.summary.get("test_top1") is not None]
    findings = []
    if scored:
        best = min(scored, key=lambda m: 1 - m.summary["test_top1"])
        findings.append(
            f"Lowest test error, of the weights each member selected on validation: {best.name} "
            f"({100 * (1 - best.summary['test_top1']):.2f}%)."
        )
    write_report(
        exp_dir,
        "Comparison",
        f"Models compared: {', '.join(m.name for m in members)} ({how}).",
        ["curves.png"],
        md,
        findings,
    )
    return exp_dir


def layer_grad_norms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[str, float]]:
    """(name, gradient norm) of every conv and linear weight, in forward order, for one batch."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [(n, p.grad.norm().item()) for n, p in model.named_parameters() if p.dim() > 1 and p.grad is not None]


def gradflow(
    models: list[str],
    steps: int = 100,
    preset: str = "quick",
    overrides: list[str] | None = None,
    out: str = "runs",
    name: str = "",
) -> Path:
    """Gradient norm of every layer at initialisation and after `steps` SGD steps, against depth."""
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
        opt = torch.optim.SGD(model.parameters(), lr=base.optim.lr, momentum=0.9, weight_decay=base.optim.weight_decay)
        done, epoch = 0, 0
        while done < steps:
            for x, y in loader.epoch(epoch):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()
                done += 1
                if done >= steps:
                    break
            epoch += 1
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
