"""Where images come from (sources, folders) and how they become batches (loader)."""

from .loader import AugmentConfig, BatchLoader
from .sources import Dataset, DatasetInfo, data_dir, dataset_info, holdout, load_dataset

__all__ = [
    "AugmentConfig",
    "BatchLoader",
    "Dataset",
    "DatasetInfo",
    "data_dir",
    "dataset_info",
    "holdout",
    "load_dataset",
]
