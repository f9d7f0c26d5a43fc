"""Bring your own images: any ImageFolder-style directory is a dataset (``get_dataset("path/to/dir")``).

Layouts, checked in this order:
- ``split.json`` in the directory: CoOp's split-file format, paths relative to the directory (the
  class names and their order still come from the class folders, as below, and must match it; an
  entry inside a class folder carries that folder's label, no image is listed twice, and no split
  shares an image with another);
- ``train/<class>/*`` and ``test/<class>/*`` (optional ``val/<class>/*``): those splits; without
  ``val/``, 20% of each class's train images become val;
- ``<class>/*``: one folder per class, split per class 50/20/30 (train/val/test).
Generated splits are seeded (``SPLIT_SEED``) hashes of the file paths, so they are deterministic.
A folder needs at least two classes. Every class needs training images, and val images when ``val/``
exists (two training images without it). Records of runs on a folder carry its content digest
(``fingerprint``), so a grid never mixes runs on two versions of its images.
Optional files: ``classnames.txt`` (one name per line, in sorted folder order) and ``templates.txt``
(one prompt template per line, each with one ``{}``). Files the layout does not read (loose in the
root, in a sub-folder of a class folder, or with another extension) are listed by ``vtclip data check``
and named in one warning on loading (``UnusedFilesWarning``); they are never read.

Taught in: the appendix "Getting the datasets" (section "Your own images").
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

from ..prompts import DEFAULT_TEMPLATE
from .base import SPLITS, DatasetSpec, ImageFiles
from .splits import (IMAGE_EXTENSIONS, SOURCE_OFFICIAL, SPLIT_SEED, SplitData, class_folder_split, image_files,
                     is_dir, read_split_file, trainval_test_split)

#: Files an image folder may hold beside its class folders (read as settings, not images).
SETTINGS_FILES = ("classnames.txt", "templates.txt", "split.json")
_EXTENSIONS = "images end in .jpg, .jpeg, .png, .bmp, .gif, .tif(f) or .webp"
#: What an image folder's loader reads, for messages about the files it does not.
READ_RULE = f"only images directly in a class folder are read ({_EXTENSIONS}): move the ones you want into one"


class UnusedFilesWarning(UserWarning):
    """An image folder holds files its layout does not read (see :func:`unused_files`)."""


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

    has_val = (root / "val").is_dir()
    parts = {s: items(s) for s in SPLITS if s != "val" or has_val}
    _check_splits(root, {s: p for s, (p, _) in parts.items()})
    # per class: train images (two without val/: one of them becomes val), and val images where val/ exists
    _check_classes(root, "train", folders, parts["train"][1], 1 if has_val else 2,
                   "" if has_val else "; without a val/ folder, 20% of each class's train images (at least one) "
                   "become val, so every class needs 2")
    if has_val:
        _check_classes(root, "val", folders, parts["val"][1], 1,
                       " (or remove val/: 20% of each class's train images then become val)")
        return SplitData({s: p for s, (p, _) in parts.items()}, {s: y for s, (_, y) in parts.items()},
                         SOURCE_OFFICIAL)
    return trainval_test_split(parts["train"], parts["test"], seed, names=folders)


def _check_splits(root: Path, paths: dict[str, list[str]]) -> None:
    """Every split needs images; say which split folder is empty."""
    for s, listed in paths.items():
        if not listed:
            hint = (" or remove the empty val/ folder (20% of each class's train images then become val)"
                    if s == "val" else "")
            others = sorted(p for p in (root / s).glob("*/*") if p.is_file()) if (root / s).is_dir() else []
            found = (f" (its class folders hold {len(others)} other file(s), e.g. {others[0].relative_to(root)}; "
                     f"images are files ending in {', '.join(sorted(IMAGE_EXTENSIONS))})" if others else "")
            raise ValueError(f"the {s} split of {root} has no images{found}: put images in {root / s}/<class>/{hint}")


def _check_classes(root: Path, split: str, folders: list[str], labels: list[int], need: int, why: str) -> None:
    """Every class needs ``need`` images in ``root/split/<class>/``; name the folders that have fewer."""
    counts = [0] * len(folders)
    for y in labels:
        counts[y] += 1
    short = [f"{f}/ ({n})" for f, n in zip(folders, counts) if n < need]
    if short:
        what = f"fewer than {need} {split} images" if need > 1 else f"no {split} images"
        listed = ", ".join(short[:5]) + (", ..." if len(short) > 5 else "")
        raise ValueError(f"{len(short)} class(es) have {what}: {listed} in {root / split}; put images in those "
                         f"folders ({_EXTENSIONS}){why}")


def _check_images(root: Path, data: SplitData, folders: list[str]) -> None:
    """Every class and every split needs images; say which folder is empty."""
    _check_splits(root, data.paths)
    counts = [0] * len(folders)
    for s in SPLITS:
        for y in data.labels[s]:
            counts[y] += 1
    empty = [f for f, n in zip(folders, counts) if n == 0]
    if empty:
        raise ValueError(f"class folder(s) without images in {root}: {', '.join(empty[:5])} ({_EXTENSIONS})")


def unused_files(root: Path, folders: list[str]) -> list[tuple[str, str]]:
    """(path relative to ``root``, why) of every file under ``root`` that the layout does not read.

    Hidden files and folders (``.*``) and the settings files are not listed. With ``split.json``
    the file decides what is read, so nothing is listed then.
    """
    root = Path(root)
    if (root / "split.json").is_file():
        return []
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    out = []

    def rel(path: str) -> str:
        return Path(os.path.relpath(path, root)).as_posix()

    def every_file(folder: str, why: str) -> None:
        for d, subdirs, files in os.walk(folder):
            subdirs[:] = sorted(x for x in subdirs if not x.startswith("."))
            out.extend((rel(os.path.join(d, f)), why) for f in sorted(files) if not f.startswith("."))

    def class_folder(folder: str) -> None:
        for e in sorted(os.scandir(folder), key=lambda e: e.name):
            if e.name.startswith("."):
                continue
            if is_dir(e):
                every_file(e.path, "in a sub-folder of a class folder")
            elif os.path.splitext(e.name)[1].lower() not in IMAGE_EXTENSIONS:
                out.append((rel(e.path), "an extension that is not read"))

    def top(folder: str, level: str, classes) -> None:
        for e in sorted(os.scandir(folder), key=lambda e: e.name):
            if e.name.startswith(".") or (level == "root" and e.name in SETTINGS_FILES and e.is_file()):
                continue
            if not is_dir(e):
                out.append((rel(e.path), "not in a class folder"))
            elif e.name in classes:
                class_folder(e.path)
            elif has_splits and level == "root" and e.name in SPLITS:
                top(e.path, "split", folders)
            else:
                every_file(e.path, "in a folder that is neither train/, val/ nor test/")

    top(str(root), "root", () if has_splits else folders)
    return out


def unused_message(root: Path, unused: list[tuple[str, str]]) -> str:
    """One line: how many files are not used, why, a few of each."""
    by_why: dict[str, list[str]] = {}
    for path, why in unused:
        by_why.setdefault(why, []).append(path)
    parts = [f"{len(paths)} {why} ({', '.join(paths[:3])}{', ...' if len(paths) > 3 else ''})"
             for why, paths in by_why.items()]
    return f"{len(unused)} file(s) in {root} not used: {'; '.join(parts)}; {READ_RULE}"


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
    if len(folders) == 1:         # every prediction would be right: "chance 100 %"
        where = root / "train" if has_splits else root
        raise ValueError(f"{where} has one class folder ({folders[0]}/); a classifier needs at least 2 classes: "
                         "add a sub-folder of images for each other class")
    if (root / "split.json").is_file():
        data = read_split_file(root / "split.json", _classnames(root, folders))
        _check_split_labels(root / "split.json", data, folders)
        return folders, data
    if has_splits:
        data = _split_folders(root, folders, seed)
    else:
        data = class_folder_split(root, folders, seed)
    _check_images(root, data, folders)
    return folders, data


def _check_split_labels(path: Path, data: SplitData, folders: list[str]) -> None:
    """An entry inside a class folder (``<class>/...`` or ``<split>/<class>/...``) must carry that
    folder's label: labels follow the sorted class folders, so another label is a mislabelled image."""
    index = {f: y for y, f in enumerate(folders)}
    wrong = []
    for s in SPLITS:
        for p, y in zip(data.paths[s], data.labels[s]):
            parts = Path(p).parts
            folder = parts[0] if parts and parts[0] in index else (
                parts[1] if len(parts) > 2 and parts[0] in SPLITS and parts[1] in index else None)
            if folder is not None and index[folder] != y:
                wrong.append(f"{p} has label {y} ({folders[y]}) but is in {folder}/ (label {index[folder]})")
    if wrong:
        order = ", ".join(f"{y} {f}" for y, f in enumerate(folders[:6])) + (", ..." if len(folders) > 6 else "")
        raise ValueError(f"{path}: {len(wrong)} entr(y/ies) give a label other than their class folder's: "
                         f"{'; '.join(wrong[:3])}. Labels follow the sorted class folders ({order}); "
                         "correct the labels or move the images")


def fingerprint(root: Path, data: SplitData, names, templates) -> str:
    """A short digest of what a run on the folder sees: class names, prompts, and every split's
    paths, labels and file contents. Records carry it, so a grid never averages runs on two contents
    (an image replaced by another of the same size included)."""
    h = hashlib.sha1(json.dumps([list(names), list(templates), data.source]).encode())
    for s in SPLITS:
        for path, label in zip(data.paths[s], data.labels[s]):
            h.update(f"\n{s}:{label}:{path}:{file_digest(root / path)}".encode())
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """A digest of a file's bytes ("-" for one that cannot be read: a broken link, which reading the
    image will name). Kept per process for an unchanged file (same size, modification time, inode),
    so loading a folder again does not read its images again."""
    try:
        st = path.stat()
    except OSError:
        return "-"
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _DIGESTS:
        h = hashlib.blake2b(digest_size=12)
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return "-"
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


_DIGESTS: dict[tuple, str] = {}


def folder_dataset(path: str | Path, seed: int = SPLIT_SEED) -> DatasetSpec:
    """A DatasetSpec for an ImageFolder-style directory (see the module docstring for layouts)."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    folders, data = read_folder_splits(root, seed)
    names, templates = _classnames(root, folders), _templates(root)
    unused = unused_files(root, folders)
    if unused:   # one text per folder: Python's default filter shows it once, however often the folder is loaded
        warnings.warn(unused_message(root, unused) + " (`vtclip data check` lists them)", UnusedFilesWarning,
                      stacklevel=2)

    def build(split: str, data_root=None) -> ImageFiles:
        ds = ImageFiles(root, data.paths[split], data.labels[split], names)
        ds.split_source = data.source
        return ds

    return DatasetSpec(
        name=_dataset_name(root), classnames=names, templates=templates, build=build, kind="folder",
        description=f"image folder {root} ({len(names)} classes, split: {data.source})", source=str(root),
        folder=str(root), extra={"path": str(root), "split_source": data.source, "sizes": data.sizes(),
                                 "unused": unused, "fingerprint": fingerprint(root, data, names, templates)})

