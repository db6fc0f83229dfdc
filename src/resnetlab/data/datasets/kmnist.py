"""Kuzushiji-MNIST: cursive Japanese characters, 28x28 grey (Clanuwat et al. 2018)."""

from ..idx import IdxFiles
from ..registry import NamedDataset

DATASET = NamedDataset(
    name="kmnist",
    about="cursive hiragana, one per row of the syllabary, 28x28 grey, 60,000 train + 10,000 test "
    "(Clanuwat et al. 2018)",
    classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    # Computed from its training set.
    mean=(0.1918,),
    std=(0.3483,),
    input_size=(1, 28, 28),
    hflip=False,  # a mirrored character is not that character
    # Checksums of the official archives as torchvision lists them.
    files=IdxFiles(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        {
            "train-images": ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
        },
        {"train": 60_000, "test": 10_000},
    ),
)
