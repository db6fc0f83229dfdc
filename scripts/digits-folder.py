"""Write a folder of generated digits: OUT/train/<digit>/ and OUT/test/<digit>/, grey 28 x 28 PNGs.

A folder that no dataset registry knows and no pretrained network has seen, made on the spot so that it needs
no download: each image is one digit drawn in Pillow's own font at a random size, stroke width, rotation, slant
and position, blurred and noised by a random amount. The linear-probe recipe (`resnetlab recipes
linear_probe_folder`) measures how far Fashion-MNIST features carry to it.

    .venv/bin/python scripts/digits-folder.py data/digits                     # 300 train + 100 test per digit
    .venv/bin/python scripts/digits-folder.py data/digits --per-class 100 --test-per-class 30

The same arguments always write the same images (seed 0; train and test are drawn from separate streams). The
folder (and its train/ part) declares `hflip: false` in a resnetlab.yaml: a mirrored digit is not that digit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = 28
CANVAS = 56  # drawn at twice the size, then reduced: smoother strokes than drawing at 28 px


def draw_digit(digit: int, rng: np.random.Generator) -> Image.Image:
    """One grey SIZE x SIZE image of `digit`, its look drawn from `rng`."""
    font = ImageFont.load_default(size=int(rng.integers(28, 46)))
    canvas = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    stroke = int(rng.integers(0, 3))
    centre = (CANVAS / 2, CANVAS / 2)
    draw.text(centre, str(digit), fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255)
    slant = rng.uniform(-0.3, 0.3)  # a shear of the x axis, as handwriting leans
    shear = (1, slant, -slant * CANVAS / 2, 0, 1, 0)
    canvas = canvas.transform(canvas.size, Image.Transform.AFFINE, shear, resample=Image.Resampling.BILINEAR)
    shift = rng.uniform(-5, 5, 2)
    canvas = canvas.rotate(rng.uniform(-20, 20), resample=Image.Resampling.BILINEAR, translate=tuple(shift))
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5))).resize((SIZE, SIZE), Image.Resampling.BOX)
    pixels = np.asarray(canvas, np.float32) * rng.uniform(0.6, 1.0) + rng.normal(0, rng.uniform(0, 30), (SIZE, SIZE))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


def write_part(out: Path, per_class: int, rng: np.random.Generator) -> None:
    for digit in range(10):
        folder = out / str(digit)
        folder.mkdir(parents=True)
        for n in range(per_class):
            draw_digit(digit, rng).save(folder / f"{n}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the folder to write (it must not exist yet)")
    parser.add_argument("--per-class", type=int, default=300, help="training images of each digit (300)")
    parser.add_argument("--test-per-class", type=int, default=100, help="test images of each digit (100)")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        parser.error(f"{out} exists already; name a new folder")
    write_part(out / "train", args.per_class, np.random.default_rng([0, 0]))
    write_part(out / "test", args.test_per_class, np.random.default_rng([0, 1]))
    for folder in (out, out / "train"):  # a mirrored digit is not that digit; train/ alone is a folder too
        (folder / "resnetlab.yaml").write_text("hflip: false\n")
    print(f"wrote {args.per_class} training and {args.test_per_class} test images of each digit to {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
