"""Fashion-MNIST: Zalando's article images, 28x28 grey (Xiao, Rasul and Vollgraf 2017)."""

from ..idx import IdxFiles
from ..registry import NamedDataset

DATASET = NamedDataset(
    name="fashion-mnist",
    aliases=("fashion_mnist", "fmnist"),
    about="Zalando's article images, 28x28 grey, 10 classes, 60,000 train + 10,000 test (Xiao et al. 2017)",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    # As commonly quoted (Xiao et al.).
    mean=(0.2860,),
    std=(0.3530,),
    input_size=(1, 28, 28),
    hflip=True,
    # Checksums of the official archives as torchvision lists them; the decompressed checksums are those of
    # Debian's recompressed copy (DESIGN.md), which match the official contents.
    files=IdxFiles(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train-labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            "test-images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        {"train": 60_000, "test": 10_000},
        content_md5={
            "train-images": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels": "9018921c3c673c538a1fc5bad174d6f9",
            "test-images": "8181f5470baa50b63fa0f6fddb340f0a",
            "test-labels": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        debian_dir="fashion-mnist",
    ),
)
