"""Small image folders for tests: one class per colour, each image that colour plus seeded noise."""

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def colour_folder(root: Path, per_class: int, size: int, noise: float) -> Path:
    """root/c0, c1, c2 with `per_class` PNGs of size x size each; the same bytes on every call."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate(COLOURS):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(np.array(colour) + rng.normal(0, noise, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"c{c}" / f"{i}.png")
    return root
