"""Datasets (IDX, CIFAR pickles, SVHN .mat, scikit-learn digits, synthetic, and your own: an image
folder or .npz arrays), in-memory batching, augmentation and per-class sampling. Images stay uint8
in memory; batches come out in [0, 1]."""

from robustlab.data import user_data  # noqa: F401  (registers folder and npz in DATASETS)
from robustlab.data.batches import Batches, Split, horizontal_flip, random_crop, validation_split
from robustlab.data.budgets import DEFAULT_EPS, check_eps, default_eps
from robustlab.data.class_index import ClassIndex
from robustlab.data.datasets import DATASETS, Dataset, dataset_status, load_dataset

__all__ = [
    "DATASETS",
    "DEFAULT_EPS",
    "Batches",
    "ClassIndex",
    "Dataset",
    "Split",
    "check_eps",
    "dataset_status",
    "default_eps",
    "horizontal_flip",
    "load_dataset",
    "random_crop",
    "validation_split",
]
