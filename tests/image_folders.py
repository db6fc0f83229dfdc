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


def resnet8_weights(path: Path, classes: list[str]) -> Path:
    """A resnet8 .safetensors for 32 px RGB with the metadata a finished run writes, and BatchNorm statistics
    that are not the identity (so an exported graph has real work)."""
    import torch

    from resnetlab.files import save_weights
    from resnetlab.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=len(classes)).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    meta = {
        "model": "resnet8",
        "args": {},
        "num_classes": len(classes),
        "in_chans": 3,
        "classes": list(classes),
        "input_size": [3, 32, 32],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "dataset": "colours",
    }
    save_weights(path, model.state_dict(), meta)
    return path
