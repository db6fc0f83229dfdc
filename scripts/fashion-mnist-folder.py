"""Write part of Fashion-MNIST's training images as an ordinary image folder: OUT/<class>/<n>.png.

A folder to try `resnetlab train FOLDER` on before your own (the README's quick start): real images, grey,
28 x 28, in class folders, and nothing that tells resnetlab they came from a named dataset.

    .venv/bin/python scripts/fashion-mnist-folder.py my-clothes            # 300 images of each of 10 classes
    .venv/bin/python scripts/fashion-mnist-folder.py my-clothes --per-class 100
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from resnetlab.data import load_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the folder to write (it must not exist yet)")
    parser.add_argument("--per-class", type=int, default=300, help="images of each class, the first ones (300)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} exists already; name a new folder")
    data = load_dataset("fashion-mnist", "train", val_fraction=0.0)
    for label, name in enumerate(data.classes):
        folder = out / name.replace("/", "-")  # "T-shirt/top" is not a folder name
        folder.mkdir(parents=True)
        for n, i in enumerate(np.flatnonzero(data.labels == label)[: args.per_class]):
            Image.fromarray(np.asarray(data.images[i])[..., 0], "L").save(folder / f"{n}.png")
    print(f"wrote {args.per_class} images of each of {len(data.classes)} classes to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
