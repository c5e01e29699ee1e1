"""Datasets: in-memory tensor bundles (digits offline, torchvision, synthetic) and streamed image folders."""
from . import digits, folder, synthetic, vision  # noqa: F401  (register the datasets)
from .bundle import DataBundle
from .registry import available_datasets, dataset_entry, get_dataset, register_dataset
from .tensors import DataError, TensorDataBundle, adapt_input, random_crop, random_flip

__all__ = [
    "DataBundle",
    "DataError",
    "TensorDataBundle",
    "adapt_input",
    "available_datasets",
    "dataset_entry",
    "get_dataset",
    "random_crop",
    "random_flip",
    "register_dataset",
]
