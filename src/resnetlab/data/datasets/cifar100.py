"""CIFAR-100: small colour photos in 100 fine classes (Krizhevsky 2009), the python-pickle version."""

from ..cifar import CifarArchive
from ..registry import NamedDataset

DATASET = NamedDataset(
    name="cifar100",
    aliases=("cifar-100",),
    about="32x32 colour photos, 100 fine classes, 50,000 train + 10,000 test (Krizhevsky 2009)",
    classes=(),  # read from the archive's meta file (the fine label names)
    # Computed from the training set.
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    input_size=(3, 32, 32),
    hflip=True,
    files=CifarArchive(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
        ("train",),
        ("test",),
        "meta",
        b"fine_labels",
        b"fine_label_names",
        {"train": 50_000, "test": 10_000},
    ),
)
