"""A tuned recipe against the one it was tuned from: each trained with the same seeds, test top-1 as the mean
and 95% interval over the seeds (Student's t), with every seed's figure.

    python scripts/tuned_vs_shipped.py fashion_mnist_fast tunes/fashion_mnist_fast/best.yaml --seeds 1,2,3

Runs land in --out (default tuned-vs-shipped/<recipe>-seedN); a run already finished there is read, not
trained again. Use seeds the search did not train with (its trials ran the recipe's seed, 0 by default), so
that neither arm is scored on the seed it was selected with.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resnetlab.experiments import Spread, markdown_table
from resnetlab.training import load_config
from resnetlab.training.device import cpu_description
from resnetlab.training.loop import fit


def test_top1(recipe: str, seed: int, out: Path) -> float:
    """The run's test top-1: read from a finished run of that name, or trained now."""
    name = f"{Path(recipe).stem}-seed{seed}"
    summary = out / name / "summary.json"
    if not summary.is_file():
        fit(load_config(recipe, [f"seed={seed}", f"out={out}", f"name={name}", "quiet=true"]))
    return json.loads(summary.read_text())["test_top1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", help="recipes (shipped names or YAML files), each an arm")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--out", default="tuned-vs-shipped", type=Path)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for recipe in args.recipes:
        spread = Spread([100 * test_top1(recipe, seed, args.out) for seed in seeds])
        rows.append(
            {
                "recipe": recipe,
                "test top-1 % (mean)": f"{spread.mean:.2f}",
                "95% interval": f"{spread.mean - spread.half_width:.2f} - {spread.mean + spread.half_width:.2f}",
                "per seed": ", ".join(f"{v:.2f}" for v in spread.values),
            }
        )
    print(markdown_table(rows))
    print(f"seeds {args.seeds} (split seed 0); test split of each run's own data, scored once; {cpu_description()}")


if __name__ == "__main__":
    main()
