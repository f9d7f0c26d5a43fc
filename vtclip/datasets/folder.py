"""Bring your own images: any ImageFolder-style directory is a dataset (``get_dataset("path/to/dir")``).

Layouts, checked in this order:
- ``split.json`` in the directory: CoOp's split-file format, paths relative to the directory (the
  class names and their order still come from the class folders, as below, and must match it);
- ``train/<class>/*`` and ``test/<class>/*`` (optional ``val/<class>/*``): those splits; without
  ``val/``, 20% of each class's train images become val;
- ``<class>/*``: one folder per class, split per class 50/20/30 (train/val/test).
Generated splits are seeded (``SPLIT_SEED``) hashes of the file paths, so they are deterministic.
Optional files: ``classnames.txt`` (one name per line, in sorted folder order) and ``templates.txt``
(one prompt template per line, each with one ``{}``).

Taught in: the appendix "Getting the datasets" (section "Your own images").
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..prompts import DEFAULT_TEMPLATE
from .base import SPLITS, DatasetSpec, ImageFiles
from .splits import (SOURCE_OFFICIAL, SPLIT_SEED, SplitData, class_folder_split, image_files, read_split_file,
                     trainval_test_split)


def _class_folders(path: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``path``."""
    return sorted(d.name for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_list(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _classnames(root: Path, folders: list[str]) -> tuple[str, ...]:
    """Names from ``classnames.txt`` (checked against the folders), else the folder names."""
    file = root / "classnames.txt"
    if not file.is_file():
        return tuple(f.replace("_", " ") for f in folders)
    names = _read_list(file)
    if len(names) != len(folders):
        raise ValueError(f"{file} lists {len(names)} class names but {root} has {len(folders)} class "
                         f"folders ({', '.join(folders[:5])}{', ...' if len(folders) > 5 else ''}); "
                         "write one name per line, in sorted folder order")
    return tuple(names)


def _templates(root: Path) -> tuple[str, ...]:
    """Templates from ``templates.txt`` (each with one ``{}``), else CLIP's default prompt."""
    file = root / "templates.txt"
    if not file.is_file():
        return (DEFAULT_TEMPLATE,)
    templates = _read_list(file)
    bad = [t for t in templates if t.count("{}") != 1]
    if bad or not templates:
        raise ValueError(f"{file}: every line must be a prompt template with exactly one '{{}}' for the "
                         f"class name, e.g. 'a photo of a {{}}.' (bad: {bad[:3]})")
    return tuple(templates)


def _split_folders(root: Path, folders: list[str], seed: int) -> SplitData:
    """train/ and test/ (and val/) folders, each one sub-folder per class."""
    def items(split: str):
        paths, labels = [], []
        for y, f in enumerate(folders):
            d = root / split / f
            files = image_files(d) if d.is_dir() else []
            paths += [f"{split}/{f}/{name}" for name in files]
            labels += [y] * len(files)
        return paths, labels

    if (root / "val").is_dir():
        parts = {s: items(s) for s in SPLITS}
        return SplitData({s: p for s, (p, _) in parts.items()}, {s: y for s, (_, y) in parts.items()},
                         SOURCE_OFFICIAL)
    return trainval_test_split(items("train"), items("test"), seed)


def _check_images(root: Path, data: SplitData, folders: list[str]) -> None:
    """Every class and every split needs images; say which folder is empty."""
    for s in SPLITS:
        if not data.paths[s]:
            hint = (" or remove the empty val/ folder (20% of each class's train images then become val)"
                    if s == "val" else "")
            raise ValueError(f"the {s} split of {root} has no images: put images in {root / s}/<class>/{hint}")
    counts = [0] * len(folders)
    for s in SPLITS:
        for y in data.labels[s]:
            counts[y] += 1
    empty = [f for f, n in zip(folders, counts) if n == 0]
    if empty:
        raise ValueError(f"class folder(s) without images in {root}: {', '.join(empty[:5])} "
                         f"(images end in .jpg, .jpeg, .png, .bmp, .gif, .tif(f) or .webp)")


def _dataset_name(root: Path) -> str:
    """A registry-style name: the folder's name plus a short hash of its full path."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name).strip("-") or "images"
    return f"folder-{slug}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


def read_folder_splits(root: Path, seed: int = SPLIT_SEED) -> tuple[list[str], SplitData]:
    """(class folders, splits) of an image directory, by the layout rules of this module."""
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    folders = _class_folders(root / "train" if has_splits else root)
    if not has_splits:
        stray = [f for f in folders if f in SPLITS]
        if stray:                 # e.g. val/ or test/ beside class folders: a split folder or a class?
            raise ValueError(f"{root} has {', '.join(s + '/' for s in stray)} beside class folders but not both "
                             "train/ and test/: use train/<class>/ and test/<class>/ (optional val/<class>/), "
                             "or one folder per class with no split folders")
    else:
        for s in ("test", "val"):
            extra = sorted(set(_class_folders(root / s)) - set(folders)) if (root / s).is_dir() else []
            if extra:             # classes come from train/: these would be dropped without a word
                raise ValueError(f"{root / s} has class folder(s) {extra[:5]} that {root / 'train'} lacks; "
                                 "every class needs training images: add them to train/ or remove them")
    if not folders:
        raise ValueError(f"{root} has no class folders: put the images of each class in their own "
                         "sub-folder (<dir>/<class>/*.jpg), or in train/<class>/ and test/<class>/")
    if (root / "split.json").is_file():
        return folders, read_split_file(root / "split.json", _classnames(root, folders))
    if has_splits:
        data = _split_folders(root, folders, seed)
    else:
        data = class_folder_split(root, folders, seed)
    _check_images(root, data, folders)
    return folders, data


def folder_dataset(path: str | Path, seed: int = SPLIT_SEED) -> DatasetSpec:
    """A DatasetSpec for an ImageFolder-style directory (see the module docstring for layouts)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    folders, data = read_folder_splits(root, seed)
    names = _classnames(root, folders)

    def build(split: str, data_root=None) -> ImageFiles:
        ds = ImageFiles(root, data.paths[split], data.labels[split], names)
        ds.split_source = data.source
        return ds

    return DatasetSpec(
        name=_dataset_name(root), classnames=names, templates=_templates(root), build=build, kind="folder",
        description=f"image folder {root} ({len(names)} classes, split: {data.source})", source=str(root),
        folder=str(root), extra={"path": str(root), "split_source": data.source, "sizes": data.sizes()})

