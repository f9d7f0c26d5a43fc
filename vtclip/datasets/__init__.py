"""Datasets: the ``DATASETS`` registry, labelled-image splits and few-shot sampling.

Taught in: chapter 04 (few-shot protocol) and the appendix "Getting the datasets".
"""
from .base import (DATASETS, SPLITS, BadImageError, DatasetSpec, ImageFiles, LabeledImages,
                   check_images, drop_bad_images, few_shot, few_shot_val, get_dataset, register)
from . import toy  # noqa: F401  (registers the tiny built-in dataset)
from . import real  # noqa: F401  (registers the 11 datasets of CoOp's few-shot protocol)

__all__ = ["DATASETS", "SPLITS", "BadImageError", "DatasetSpec", "ImageFiles", "LabeledImages",
           "check_images", "drop_bad_images", "few_shot", "few_shot_val", "get_dataset", "register"]
from ..pocket import suite as _pocket_suite  # noqa: F401
