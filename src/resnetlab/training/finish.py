"""A run's last phase: score the selected weights once on the final split (test; where the data has none,
validation, and the summary says so), then the plots, summary.json and the closing line."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from ..evaluation import evaluate
from ..files import read_weights
from ..models.summary import count_macs, count_params
from .epochs import Run
from .report import plot_confusion, plot_curves, say, write_json
from .setup import make_loader


def final_scores(run: Run) -> dict[str, dict[str, Any]]:
    """Score the last weights, and the selected ones where they differ, once on the final split.

    Every process scores its share of the images and the counts are summed, like validation; the selected
    weights are read by rank 0 (it wrote them) and handed to the others, so no shared file system is needed."""
    session, data, rows = run.session, run.data, run.state.rows
    cfg, world, device, precision = session.cfg, session.world, session.device, session.precision
    final_split = final_split_of(run)
    if final_split is None:
        return {}
    part = data.splits.part(final_split)
    loader = make_loader(cfg, part, False, device, precision.channels_last, data.mean, data.std, world.rank, world.size)
    classes, dtype, eval_model = len(part.classes), precision.dtype, run.trainer.eval_model
    scores = {"last": evaluate(eval_model, loader, device, dtype, classes, world.sum)}
    scores["selected"] = scores["last"]
    selected = eval_model
    selected_epoch = run.state.best.epoch or (rows[-1]["epoch"] if rows else 0)
    if rows and selected_epoch != rows[-1]["epoch"]:
        selected = copy.deepcopy(eval_model)
        state = read_weights(run.run_dir / "best.safetensors")[0] if world.is_main else None
        selected.load_state_dict(world.broadcast(state))
        scores["selected"] = evaluate(selected, loader, device, dtype, classes, world.sum)
    if cfg.data.tta == "flip":  # reported beside the plain figure, never instead of it
        scores["tta"] = evaluate(selected, loader, device, dtype, classes, world.sum, tta=True)
    return scores


def final_split_of(run: Run) -> str | None:
    """The split the selected weights are scored on at the end: test, else validation; none when scoring test
    is off (output.score_test=false: the run reports its validation figures only)."""
    if not run.session.cfg.output.score_test:
        return None
    return run.data.splits.final()


def finish(run: Run, scores: dict[str, dict[str, Any]], wall: float) -> dict[str, Any]:
    """Plots, summary.json and the closing line (rank 0 only); returns the summary."""
    cfg, train = run.session.cfg, run.data.train
    rows, best = run.state.rows, run.state.best
    selected_epoch = best.epoch or (rows[-1]["epoch"] if rows else 0)
    final_split = final_split_of(run)
    held_out = run.data.splits.val is not None
    how = f"epoch {selected_epoch}, selected on validation" if held_out else f"last epoch ({selected_epoch})"
    title = f"{cfg.model.name} on {train.info.name}"
    smoothing = cfg.optim.label_smoothing
    note = f"train loss with label smoothing {smoothing:g}" if smoothing else ""
    plot_curves(run.run_dir / "curves.png", rows, title, note)
    chosen = scores.get("selected")
    if chosen is not None:
        caption = f"{title}: {final_split} top-1 {100 * chosen['top1']:.2f}% ({how})"
        plot_confusion(run.run_dir / "confusion_matrix.png", chosen["confusion"], train.classes, caption)
    summary = run_summary(run, selected_epoch, final_split, how) | scored_summary(scores, final_split, train.classes)
    summary |= {"wall_s": wall} | machine_summary(run) | {"history": run.state.history}
    write_json(run.run_dir / "summary.json", summary)
    if run.writer is not None:
        run.writer.close()
    say(cfg, closing_line(scores, final_split, how, wall, run), force=True)
    return summary


def run_summary(run: Run, selected_epoch: int, final_split: str | None, how: str) -> dict[str, Any]:
    """What ran, on what, and how it was selected."""
    cfg, data, state = run.session.cfg, run.data, run.state
    in_size = (data.in_chans, *data.train.view())
    return {
        "model": cfg.model.name,
        "seed": cfg.run.seed,
        "dataset": data.train.info.name,
        "data": cfg.data.name,
        "run_dir": str(run.run_dir),
        "parameters": count_params(run.trainer.model),
        "macs_per_image": count_macs(cpu_copy(run.trainer.model), in_size),
        "epochs": len(state.rows),
        "steps": state.rows[-1]["step"] if state.rows else 0,
        "final": state.rows[-1] if state.rows else {},
        "split": data.splits.record.to_dict() if data.splits.record else None,
        "selected_on": "val" if data.splits.val is not None else None,
        "best_epoch": selected_epoch,
        "best_val_top1": state.best.top1 if data.splits.val is not None else None,
        "result_split": final_split,  # the split of the figures below: "test", or "val" where there is no test
        "result_weights": how,
    }


def machine_summary(run: Run) -> dict[str, Any]:
    """How fast, and where: the device, the processes, the arithmetic."""
    rows, session = run.state.rows, run.session
    return {
        "train_images_per_s": float(np.mean([r["images_per_s"] for r in rows])) if rows else 0.0,
        "device": str(session.device),
        "processes": session.world.size,
        "precision": session.precision.name,
        "channels_last": session.precision.channels_last,
    }


def scored_summary(scores: dict[str, dict[str, Any]], final_split: str | None, classes: list[str]) -> dict[str, Any]:
    """The final figures, named by their split: test_top1, ... or, where the data has no test part, val_top1."""
    chosen = scores.get("selected")
    if chosen is None or final_split is None:
        return {}
    prefix = final_split
    figures = {
        f"{prefix}_top1": chosen["top1"],
        f"{prefix}_top5": chosen["top5"],
        f"{prefix}_loss": chosen["loss"],
        f"{prefix}_per_class": dict(zip(classes, chosen["per_class"])),
    }
    if scores["last"] is not chosen:
        figures[f"{prefix}_top1_last_epoch"] = scores["last"]["top1"]
    if "tta" in scores:
        figures.update({f"{prefix}_top1_tta": scores["tta"]["top1"], f"{prefix}_top5_tta": scores["tta"]["top5"]})
    return figures


def closing_line(scores: dict[str, dict[str, Any]], final_split: str | None, how: str, wall: float, run: Run) -> str:
    chosen = scores.get("selected")
    if chosen is None and not run.session.cfg.output.score_test:
        best = run.state.best
        figure = f"val top-1 {100 * best.top1:.2f}% ({how})" if run.data.splits.val is not None else how
        return f"{figure}; test not scored (output.score_test=false)  in {wall:.0f}s  ->  {run.run_dir}"
    if chosen is None:
        return (
            f"no validation or test images: the last epoch's weights are the result  in {wall:.0f}s  ->  {run.run_dir}"
        )
    last = ""
    if scores["last"] is not chosen:
        last = f"; last epoch {100 * scores['last']['top1']:.2f}%"
    if "tta" in scores:
        last += f"; with flip TTA {100 * scores['tta']['top1']:.2f}%"
    note = " (the selection set: this data has no test split)" if final_split == "val" else ""
    return (
        f"{final_split} top-1 {100 * chosen['top1']:.2f}%  top-5 {100 * chosen['top5']:.2f}%  "
        f"({how}{last}){note}  in {wall:.0f}s  ->  {run.run_dir}"
    )


def cpu_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).float()
