"""Where images come from (sources, folders) and how they become batches (loader)."""

from .dataset import Dataset, DatasetInfo, data_dir
from .loader import AugmentConfig, BatchLoader
from .sources import dataset_info, load_dataset, load_splits
from .splits import Splits, holdout

__all__ = [
    "AugmentConfig",
    "BatchLoader",
    "Dataset",
    "DatasetInfo",
    "data_dir",
    "dataset_info",
    "holdout",
    "load_dataset",
    "load_splits",
    "Splits",
]
