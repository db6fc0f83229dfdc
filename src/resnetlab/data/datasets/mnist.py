"""MNIST: handwritten digits, 28x28 grey (LeCun, Cortes and Burges)."""

from ..idx import IdxFiles
from ..registry import NamedDataset

DATASET = NamedDataset(
    name="mnist",
    about="handwritten digits 0-9, 28x28 grey, 60,000 train + 10,000 test (LeCun, Cortes and Burges 1998)",
    classes=tuple("0123456789"),
    # As commonly quoted (torchvision's examples).
    mean=(0.1307,),
    std=(0.3081,),
    input_size=(1, 28, 28),
    hflip=False,  # a mirrored digit is not that digit
    # Checksums of the official archives as torchvision lists them.
    files=IdxFiles(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        {"train": 60_000, "test": 10_000},
    ),
)
