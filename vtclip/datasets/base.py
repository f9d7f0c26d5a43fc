"""Dataset registry, the labelled-image dataset type every loader returns, and few-shot sampling.

Taught in: chapter 04 (few-shot protocol); the datasets appendix lists every registered dataset.
"""
from __future__ import annotations

import copy
import os
import warnings
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

    #: How few-shot training views are augmented (``vtclip.features.AUGMENT_POLICIES``).
    augment_policy = "crop-flip"

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
                return to_rgb(im)
        except (OSError, ValueError, Image.DecompressionBombError) as err:   # also symlink loops, dangling links
            raise BadImageError(f"cannot read image {path}: {err}. Remove or replace the file, or "
                                "leave unreadable images out with --skip-bad-images (vtclip train, zeroshot, "
                                "sweep, ablate, curves) or split(..., skip_bad_images=True); they are listed in "
                                "the record's `dropped_images`. `vtclip data check NAME --images` lists them all.",
                                path=str(path), reason=str(err)) from err


#: Full scale of the pixel modes PIL's ``convert("RGB")`` would clip at 255 (a 16-bit PNG: all white).
_WIDE_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": None}
#: Modes whose files do not say their range: the candidate ranges, smallest first.
_OPEN_RANGES = {"I": (255.0, 65535.0, 2.0**31 - 1), "F": (1.0, 255.0, 65535.0)}


def to_rgb(im: Image.Image) -> Image.Image:
    """``im`` as 8-bit RGB, transparency composited onto white (as ``CLIPImageProcessor`` does, and
    ``backbones.hf.ToRGB``; PIL's ``convert("RGB")`` would keep whatever colour transparent pixels hold).

    PIL's own conversion clips 16- and 32-bit pixels at 255, so those are scaled from their full
    range first: 16-bit modes from 0..65535. Modes that carry no range are scaled from the smallest
    range that holds their pixels: 32-bit integers (``I``, which older PILs and some 16-bit TIFFs give,
    and 8-bit data saved as 32 bits) from 0..255, 0..65535 or 0..2**31-1; floats (``F``) from 0..1,
    0..255 or 0..65535. (A 16-bit image stored as ``I`` whose pixels all lie below 256 is therefore
    read as 8-bit data: nearly black in 16 bits, it is shown at its own contrast.) A 16-bit mode is
    always read from 0..65535, as the PNG and TIFF rules say its samples fill: a file that holds
    10- or 12-bit sensor data unscaled (0..4095) is read as it says, 16 times too dark. The file
    cannot tell the two apart (PIL does not read PNG's ``sBIT`` chunk), so nothing is guessed;
    rescale such files to the full 16-bit range, or save them as 8-bit.
    Pixels no range explains raise ``ValueError`` (``BadImageError`` when read from a file): negative
    ones, NaN or infinite floats, and floats just above 1 (up to 2.55, i.e. over 0..1 but under 1 % of
    0..255: an overshooting 0..1 image or a nearly black 0..255 one, which cannot be told apart).
    """
    if im.mode in _WIDE_MODES or im.mode == "F":
        x = np.asarray(im, dtype=np.float64)                      # (H, W)
        _check_open_range(x, im.mode)
        ranges = _OPEN_RANGES.get(im.mode)
        top = (_WIDE_MODES[im.mode] if ranges is None
               else next((t for t in ranges if x.max(initial=0) <= t), ranges[-1]))
        x = x * (255.0 / top)
        return Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8), "L").convert("RGB")
    if "A" in im.getbands() or "transparency" in im.info:           # RGBA, LA, PA, P with a transparent index
        im = im.convert("RGBA")                                      # (PIL warns on P -> RGB directly)
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")
    return im.convert("RGB")


def _check_open_range(x: np.ndarray, mode: str) -> None:
    """Refuse pixels that no intensity range explains (see ``to_rgb``): scaling them would guess."""
    what = f"{'float' if mode == 'F' else 'integer'} (mode {mode}) pixels"
    if not np.isfinite(x).all():
        raise ValueError(f"{what} include NaN or infinite values; save the image with finite intensities "
                         "(8-bit, or floats in 0..1)")
    lo, hi = x.min(initial=0), x.max(initial=0)
    if lo < 0:
        raise ValueError(f"{what} range from {lo:g} to {hi:g}: negative intensities (normalised data?) fit "
                         "no image range; save it as 8-bit, or as floats in 0..1")
    if mode == "F" and 1 < hi < 2.55:
        raise ValueError(f"{what} range from {lo:g} to {hi:g}: above 0..1, yet under 1 % of 0..255, so it is "
                         "either a 0..1 image that overshoots or a nearly black 0..255 one; rescale it to "
                         "0..1 (or save it as 8-bit)")


class BadImagesLeftOutWarning(UserWarning):
    """``skip_bad_images=True`` left unreadable images out of a split (named in the message)."""


class BadImageError(OSError):
    """An image file exists but cannot be decoded; ``path`` says which, ``reason`` why (one line)."""

    def __init__(self, message: str, path: str = "", reason: str = ""):
        super().__init__(message)
        self.path = path
        self.reason = reason or message


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline needs to know about one dataset."""

    name: str                                # registry key, e.g. "dtd", "pocket-crowds"
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

    def split(self, split: str, root: str | Path | None = None, transform=None,
              skip_bad_images: bool = False) -> LabeledImages:
        """Load one split ("train", "val" or "test").

        ``skip_bad_images=True`` decodes every image first and leaves the unreadable ones out, with a
        ``BadImagesLeftOutWarning``; their paths are in the returned dataset's ``dropped_images`` (record them). Datasets
        rendered in memory (the Pocket suite, ``toy-colours``) have no files to fail, so there it
        changes nothing.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        ds = self.build(split, root)
        if skip_bad_images and isinstance(ds, ImageFiles):
            ds, dropped = drop_bad_images(ds)
            if dropped:
                warnings.warn(f"{self.name}/{split}: left out {len(dropped)} unreadable image(s), "
                              f"e.g. {dropped[0]} (a run's record lists them in dropped_images)",
                              BadImagesLeftOutWarning, stacklevel=2)
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
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"get_dataset needs a dataset name ({', '.join(sorted(DATASETS))}) or the path of an "
                        f"image folder, got {name!r}")
    if name in DATASETS:
        return DATASETS[name]
    if Path(name).expanduser().is_dir():
        from .folder import folder_dataset

        return folder_dataset(name)
    path = Path(name).expanduser()
    if os.sep in str(name) or str(name).startswith((".", "~")):        # meant as a folder
        what = "is a file, not a folder" if path.exists() else "does not exist"
        raise ValueError(f"dataset folder {str(path)!r} {what}: give an image folder with one sub-folder "
                         f"per class, or a registered name ({', '.join(sorted(DATASETS))})")
    raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(sorted(DATASETS))}; "
                     "or pass the path of an image folder (one sub-folder per class).")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64s (wrapping arithmetic, identical on every platform)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _whole(x) -> bool:
    """Whether ``x`` is a whole number (an int, or a float/NumPy number equal to one)."""
    try:
        return int(x) == x
    except (TypeError, ValueError, OverflowError):    # None, "abc", inf, nan
        return False


def check_draw(k: int, seed: int) -> None:
    """A ``ValueError`` unless ``k`` shots and ``seed`` can name a few-shot draw (k >= 1, 0 <= seed < 2**64)."""
    if not _whole(k) or k < 1:
        raise ValueError(f"shots must be a whole number of at least 1, got {k!r} (zero-shot CLIP, which "
                         "uses no training images: vtclip zeroshot --dataset D)")
    if not _whole(seed) or not 0 <= seed < 2**64:     # the draw hashes the seed as a 64-bit unsigned integer
        raise ValueError(f"seed must be a whole number from 0 to 2**64 - 1, got {seed!r} (the protocol uses "
                         "1, 2, 3)")


def few_shot(labels: Sequence[int], k: int, seed: int, num_classes: int | None = None,
             allow_fewer: bool = False, classnames: Sequence[str] | None = None) -> np.ndarray:
    """Sorted indices of ``k`` images per class, drawn reproducibly from ``seed``.

    The RNG: image ``i`` gets the key ``SplitMix64(i + SplitMix64(seed))`` (64-bit integer hashing)
    and each class keeps its ``k`` smallest keys. The draw depends only on (labels, k, seed) -- the
    same on every machine and NumPy version -- and a larger ``k`` extends a smaller one. A class with
    fewer than ``k`` images raises a ``ValueError`` listing the counts, or, with
    ``allow_fewer=True``, contributes all its images (CoOp does this for val); the message names
    the classes by ``classnames`` when given (else by index). ``k < 1`` and a ``seed`` outside
    ``0 .. 2**64 - 1`` raise a ``ValueError``.
    """
    check_draw(k, seed)
    labels = np.asarray(labels, dtype=np.int64)
    num_classes = num_classes or (int(labels.max()) + 1 if labels.size else 0)
    counts = np.bincount(labels, minlength=num_classes)
    short = {c: int(n) for c, n in enumerate(counts) if n < k}
    if short and not allow_fewer:
        name = (lambda c: repr(classnames[c])) if classnames is not None else (lambda c: f"class {c}")
        shown = ", ".join(f"{name(c)}: {n}" for c, n in list(short.items())[:10])
        empty = [name(c) for c, n in short.items() if n == 0]
        if empty:                 # "use at most 0 shots" would not help
            advice = (f"no training images at all in {', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}: "
                      "add some to the train split (`vtclip data check NAME` shows where they are read from)")
        else:
            advice = f"use at most {int(counts.min())} shots"
        raise ValueError(f"{k} shots asked, but {len(short)} class(es) have fewer training images "
                         f"({shown}{', ...' if len(short) > 10 else ''}); {advice}")
    idx = np.arange(len(labels), dtype=np.uint64)
    keys = _splitmix64(idx + _splitmix64(np.array([seed], dtype=np.uint64)))   # (N,)
    order = np.lexsort((keys, labels))                      # by class, then key
    first = np.searchsorted(labels[order], labels[order])   # start of each class's run
    rank = np.arange(len(order)) - first                     # position within the class
    return np.sort(order[rank < k])


def few_shot_val(labels: Sequence[int], shots: int, seed: int, num_classes: int | None = None) -> np.ndarray:
    """CoOp's few-shot val set: ``min(shots, 4)`` images per class (all of a class if it has fewer)."""
    return few_shot(labels, min(shots, 4), seed, num_classes, allow_fewer=True)


def check_images(dataset: LabeledImages, progress: bool = False, reasons: dict | None = None) -> list[str]:
    """Decode every image of ``dataset``; return the paths (idents) of those that cannot be read.
    ``reasons``, when given, receives each such path's reason (``BadImageError.reason``)."""
    bad = []
    for i in range(len(dataset)):
        try:
            dataset.load_image(i)
        except BadImageError as err:
            bad.append(err.path or dataset.ident(i))
            if reasons is not None:
                reasons[bad[-1]] = err.reason
        if progress and (i + 1) % 1000 == 0:
            print(f"  checked {i + 1}/{len(dataset)} images, {len(bad)} unreadable", flush=True)
    return bad


def drop_bad_images(dataset: ImageFiles, bad: Sequence[str] | None = None) -> tuple[ImageFiles, list[str]]:
    """``dataset`` without its unreadable images, and the dropped paths (to record with the results).

    ``bad`` is the output of :func:`check_images` (computed when not given). The copy keeps every
    other attribute (``split_source``, ...) and lists the dropped paths in ``dropped_images``.
    """
    if not isinstance(dataset, ImageFiles):
        raise TypeError(f"drop_bad_images needs an ImageFiles dataset, got {type(dataset).__name__}")
    bad = set(check_images(dataset) if bad is None else bad)
    is_bad = [str(dataset.root / p) in bad or p in bad for p in dataset.paths]
    keep = [i for i, b in enumerate(is_bad) if not b]
    new = copy.copy(dataset)
    new.paths = [dataset.paths[i] for i in keep]
    new.labels = dataset.labels[keep]
    dropped = [str(dataset.root / p) for p, b in zip(dataset.paths, is_bad) if b]
    new.dropped_images = list(getattr(dataset, "dropped_images", [])) + dropped
    return new, dropped
