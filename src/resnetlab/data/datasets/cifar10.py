"""CIFAR-10: small colour photos in 10 classes (Krizhevsky 2009), the python-pickle version."""

from ..cifar import CifarArchive
from ..registry import NamedDataset

DATASET = NamedDataset(
    name="cifar10",
    aliases=("cifar-10",),
    about="32x32 colour photos, 10 classes, 50,000 train + 10,000 test (Krizhevsky 2009)",
    classes=(),  # read from the archive's batches.meta
    # Computed from the training set.
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
    input_size=(3, 32, 32),
    hflip=True,
    files=CifarArchive(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        b"labels",
        b"label_names",
        {"train": 50_000, "test": 10_000},
    ),
)
