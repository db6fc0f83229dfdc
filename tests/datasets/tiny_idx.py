"""A test's named dataset, declared as a user declares one (a file named in $RESNETLAB_DATASETS): six 5x4 grey
training images and four test ones in three classes, as IDX files test_registry.py writes into
$RESNETLAB_DATA/tiny-idx (no address to fetch them from, no checksums: the counts are checked)."""

from resnetlab.data.idx import IdxFiles
from resnetlab.data.registry import NamedDataset

DATASET = NamedDataset(
    name="tiny-idx",
    aliases=("tiny",),
    about="a test's six random 5x4 grey images in three classes",
    classes=("zero", "one", "two"),
    mean=(0.5,),
    std=(0.29,),
    input_size=(1, 5, 4),
    hflip=False,
    files=IdxFiles(
        (),  # no address to fetch them from: put them in $RESNETLAB_DATA/tiny-idx
        {
            "train-images": ("train-images-idx3-ubyte.gz", ""),  # role: (file name, md5 of the official .gz)
            "train-labels": ("train-labels-idx1-ubyte.gz", ""),
            "test-images": ("t10k-images-idx3-ubyte.gz", ""),
            "test-labels": ("t10k-labels-idx1-ubyte.gz", ""),
        },
        {"train": 6, "test": 4},  # images a split: a local copy must have them
    ),
)
