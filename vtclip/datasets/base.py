"""Dataset registry, the labelled-image dataset type every loader returns, and few-shot sampling.

Taught in: chapter 04 (few-shot protocol); the datasets appendix lists every registered dataset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

SPLITS = ("train", "val", "test")


class LabeledImages(Dataset):
    """A split of a classification dataset: ``labels`` known up front, images loaded on access.

    Subclasses implement ``load_image(i) -> PIL.Image``; ``transform`` maps it to a tensor.
    """

    def __init__(self, labels: Sequence[int], classnames: Sequence[str], transform=None):
        self.labels = np.asarray(labels, dtype=np.int64)   # (N,) class index of every image
        self.classnames = list(classnames)                  # (K,) names in label order
        self.transform = transform                          # PIL -> tensor, or None

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, i: int) -> Image.Image:
        raise NotImplementedError

    def ident(self, i: int) -> str:
        """A stable identifier of image ``i`` (a relative path, or a render seed), for cache keys."""
        return str(i)

    def __getitem__(self, i: int):
        img = self.load_image(int(i))
        return (self.transform(img) if self.transform else img), int(self.labels[i])

    def with_transform(self, transform) -> "LabeledImages":
        """A shallow copy that applies ``transform`` (e.g. a backbone's preprocess)."""
        import copy

        new = copy.copy(self)
        new.transform = transform
        return new


class ImageFiles(LabeledImages):
    """Images stored as files: ``paths[i]`` relative to ``root``."""

    def __init__(self, root, paths: Sequence[str], labels, classnames, transform=None):
        super().__init__(labels, classnames, transform)
        self.root = Path(root)
        self.paths = list(paths)

    def ident(self, i: int) -> str:
        return self.paths[i]

    def load_image(self, i: int) -> Image.Image:
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as err:
            raise BadImageError(f"cannot read image {path}: {err}. Remove or replace the file, "
                                "or pass --skip-bad-images to leave unreadable images out "
                                "(they are then listed in the run's record).") from err


class BadImageError(OSError):
    """An image file exists but cannot be decoded."""


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline needs to know about one dataset."""

    name: str                                # registry key, e.g. "dtd", "pocket-clutter"
    classnames: tuple[str, ...]              # class names in label order
    templates: tuple[str, ...]               # prompt templates with one "{}" for the class name
    build: Callable[..., LabeledImages]      # build(split, root) -> LabeledImages
    kind: str = "real"                       # "real", "pocket" or "folder"
    description: str = ""                    # one line for listings
    source: str = ""                         # where the data comes from (URL / paper), licence
    folder: str = ""                         # sub-folder of the data root the loader reads
    extra: dict = field(default_factory=dict, compare=False)   # sizes, download notes, ...

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def split(self, split: str, root: str | Path | None = None, transform=None) -> LabeledImages:
        """Load one split ("train", "val" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        ds = self.build(split, root)
        return ds.with_transform(transform) if transform is not None else ds


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to ``DATASETS`` (names are unique)."""
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    DATASETS[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The registered dataset ``name``, or an ImageFolder-style directory at that path."""
    if name in DATASETS:
        return DATASETS[name]
    if Path(name).expanduser().is_dir():
        from .folder import folder_dataset

        return folder_dataset(name)
    raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(sorted(DATASETS))}; "
                     "or pass the path of an image folder (one sub-folder per class).")


def few_shot(labels: Sequence[int], k: int, seed: int, num_classes: int | None = None) -> np.ndarray:
    """Indices of ``k`` images per class drawn with ``numpy.random.default_rng(seed)``.

    The draw depends only on (labels, k, seed), so it is the same on every machine. Raises a
    ``ValueError`` listing the classes with fewer than ``k`` images.
    """
    labels = np.asarray(labels)
    num_classes = num_classes or int(labels.max()) + 1
    counts = np.bincount(labels, minlength=num_classes)
    short = {c: int(n) for c, n in enumerate(counts) if n < k}
    if short:
        shown = ", ".join(f"class {c}: {n}" for c, n in list(short.items())[:10])
        raise ValueError(f"{k} shots asked, but {len(short)} class(es) have fewer training images "
                         f"({shown}{', ...' if len(short) > 10 else ''}); use at most "
                         f"{int(counts.min())} shots")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in range(num_classes)]
    return np.sort(np.concatenate(picks))
