"""synthetic: generated class patterns plus noise, for tests and smoke runs; clearly not real data."""

from ..generated import Generated, synthetic
from ..registry import NamedDataset

DATASET = NamedDataset(
    name="synthetic",
    about="generated: 10 fixed random colour patterns plus noise, 32x32, 1,000 train + 200 test images",
    classes=tuple(f"class{i}" for i in range(10)),
    # What synthetic() makes (its images say so too).
    mean=(0.5,) * 3,
    std=(0.25,) * 3,
    input_size=(3, 32, 32),
    hflip=True,
    files=Generated(synthetic),
)
