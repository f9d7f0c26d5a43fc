"""Train/val/test splits as CoOp makes them: read a ``split_zhou_*.json`` file, or generate one.

Generated splits rank each class's images by a seeded hash of their relative path (BLAKE2b of
``"<seed>:<path>"``), so the split depends only on the file names and the seed: the same on every
machine, whatever the listing order or the NumPy version. The counts follow CoOp's rules:
``round(n * p)`` images per class (Python's ``round``), at least one for val and one for test.

Taught in: chapter 04 (few-shot protocol) and the appendix "Getting the datasets".
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import SPLITS
from .classnames import same_name

#: Seed of every generated split (CoOp's released split files were made with seed 1).
SPLIT_SEED = 1
#: ``split_source`` values: where a dataset's split came from.
SOURCE_FILE = "coop-split-file"
SOURCE_OFFICIAL = "official"
#: Image file endings listed in class folders (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def generated(seed: int = SPLIT_SEED, official_test: bool = False) -> str:
    """The ``split_source`` of a split made here: ``generated(seed=1)`` (or ``official-test+...``)."""
    return ("official-test+" if official_test else "") + f"generated(seed={seed})"


@dataclass
class SplitData:
    """Image paths (relative to the image folder) and labels of every split, and their source."""

    paths: dict[str, list[str]]     # split -> relative image paths
    labels: dict[str, list[int]]    # split -> class index of each path
    source: str                     # "coop-split-file", "official" or "generated(seed=...)"

    def sizes(self) -> dict[str, int]:
        return {s: len(self.paths[s]) for s in SPLITS}


def read_split_file(path: str | Path, classnames: Sequence[str]) -> SplitData:
    """Read CoOp's ``{"train"|"val"|"test": [[relpath, label, classname], ...]}`` exactly as written.

    Labels must lie in ``range(len(classnames))``; the file's class names are compared with
    ``classnames`` (a warning for a few differences, an error when over 10% differ: wrong file).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = {s: [(p, y, str(c)) for p, y, c in data[s]] for s in SPLITS}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not a CoOp split file: expected a JSON object with keys "
                         f"{list(SPLITS)}, each a list of [relative path, label, class name] ({err})") from err
    wrong = [(s, [p, y, c]) for s, rows in entries.items() for p, y, c in rows
             if not isinstance(p, str) or not p or type(y) is not int]
    if wrong:                     # int("3") or int(2.7) would pass a wrong label on without a word
        s, row = wrong[0]
        raise ValueError(f"{path}: {len(wrong)} entr(y/ies) are not [relative path, whole-number label, class "
                         f"name], e.g. {json.dumps(row)} in {s!r}; write each label as a JSON integer (0, 1, ...) "
                         "and each path as a non-empty string")
    seen = {y: c for rows in entries.values() for _, y, c in rows}
    bad = sorted(y for y in seen if not 0 <= y < len(classnames))
    if bad:
        raise ValueError(f"{path} has labels {bad[:5]} outside 0..{len(classnames) - 1}; "
                         "is it the split file of another dataset?")
    _check_names(seen, classnames, path)
    paths = {s: [p for p, _, _ in rows] for s, rows in entries.items()}
    check_split_paths(path, paths)
    return SplitData(paths, {s: [y for _, y, _ in rows] for s, rows in entries.items()}, SOURCE_FILE)


def check_split_paths(where, paths: dict[str, list[str]]) -> None:
    """Refuse an image listed twice in one split (it would count twice) or in two splits (a test image
    that was trained on, or chosen on, makes test accuracy a training accuracy)."""
    for s in SPLITS:
        twice = sorted({p for p, n in Counter(paths[s]).items() if n > 1})
        if twice:
            raise ValueError(f"{where}: {len(twice)} image(s) listed more than once in {s!r} "
                             f"({', '.join(twice[:3])}{', ...' if len(twice) > 3 else ''}); list each once")
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            both = sorted(set(paths[a]) & set(paths[b]))
            if both:
                raise ValueError(f"{where}: {len(both)} image(s) are in both {a!r} and {b!r} "
                                 f"({', '.join(both[:3])}{', ...' if len(both) > 3 else ''}); the splits must "
                                 "not share images, or the accuracy measured on one is partly a training score")


class SplitNamesWarning(UserWarning):
    """A split file spells a few class names differently from vtclip's table (labels used as written)."""


def _check_names(seen: dict[int, str], classnames: Sequence[str], path: Path) -> None:
    """Compare the split file's class names with ours; raise when the label order looks wrong."""
    diff = [(y, c, classnames[y]) for y, c in sorted(seen.items()) if not same_name(c, classnames[y])]
    if not diff:
        return
    shown = "; ".join(f"label {y}: file says {c!r}, vtclip says {ours!r}" for y, c, ours in diff[:5])
    swapped = [(y, c, z) for y, c, _ in diff for z, ours in enumerate(classnames) if z != y and same_name(c, ours)]
    if swapped:                   # not a spelling: the file's name for y is our name for another label
        y, c, z = swapped[0]
        raise ValueError(f"{path}: label {y} is called {c!r} there, which is vtclip's name of label {z} "
                         f"({len(swapped)} such label(s)): the file's label order differs from this "
                         "dataset's; it belongs to another dataset or version.")
    if len(diff) > max(1, len(seen) // 10):
        raise ValueError(f"{path}: {len(diff)} of {len(seen)} class names differ from this dataset's "
                         f"label order ({shown}); it belongs to another dataset or version.")
    warnings.warn(f"{path}: {len(diff)} class name(s) spelled differently ({shown}); "
                  "labels are used as written, names from vtclip's table", SplitNamesWarning, stacklevel=3)


def image_files(folder: str | Path) -> list[str]:
    """Names of the image files directly in ``folder``, sorted; hidden files are skipped.

    Links named like images are listed even when they lead nowhere (dangling, or a loop): left out
    here they would vanish without a word; listed, reading them names them (``--skip-bad-images``
    leaves them out, ``vtclip data check`` reports them).
    """
    return sorted(e.name for e in os.scandir(folder)
                  if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                  and (e.is_symlink() or e.is_file()) and not is_dir(e))


def is_dir(entry: os.DirEntry) -> bool:
    """``entry.is_dir()``, false for a link that cannot be followed (a loop raises ``ELOOP`` there)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def hash_rank(keys: Sequence[str], seed: int) -> np.ndarray:
    """A seeded pseudo-random 64-bit key per string, independent of machine and library versions."""
    digest = [hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest() for k in keys]
    return np.array([int.from_bytes(d, "little") for d in digest], dtype=np.uint64)


def _per_class(labels: np.ndarray, keys: Sequence[str], seed: int):
    """Yield (class, indices of that class in seeded-hash order)."""
    rank = hash_rank(keys, seed)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        yield int(c), idx[np.argsort(rank[idx], kind="stable")]


def _class(c: int, names: Sequence[str] | None) -> str:
    """How messages name class ``c``: by its name (folder) when known, else by its label."""
    return f"class {names[c]!r}" if names is not None and 0 <= c < len(names) else f"class {c}"


def split_per_class(labels: Sequence[int], keys: Sequence[str], p_train: float = 0.5,
                    p_val: float = 0.2, seed: int = SPLIT_SEED,
                    names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """CoOp's per-class train/val/test split (50/20/30 by default) -> sorted indices per split.

    ``names`` (per label) only name the classes in errors.
    """
    labels = np.asarray(labels)
    out = {s: [] for s in SPLITS}
    for c, idx in _per_class(labels, keys, seed):
        n = len(idx)
        if n < 3:
            raise ValueError(f"{_class(c, names)} has {n} image(s); a train/val/test split needs at least 3 "
                             "per class")
        n_val = max(1, round(n * p_val))
        n_train = min(round(n * p_train), n - n_val - 1)
        out["train"].append(idx[:n_train])
        out["val"].append(idx[n_train:n_train + n_val])
        out["test"].append(idx[n_train + n_val:])
    return {s: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64) for s, v in out.items()}


def split_trainval(labels: Sequence[int], keys: Sequence[str], p_val: float = 0.2, seed: int = SPLIT_SEED,
                   n_val: int | None = None, names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CoOp's per-class train/val split of an official train(+val) set -> (train, val) sorted indices.

    ``round(n * p_val)`` images per class go to val (at least 1), or ``n_val`` when given. ``names``
    (per label) only name the classes in errors.
    """
    labels = np.asarray(labels)
    train, val = [], []
    for c, idx in _per_class(labels, keys, seed):
        if len(idx) < 2:
            raise ValueError(f"{_class(c, names)} has {len(idx)} training image(s); a train/val split needs 2 "
                             "(one for train, one for val)")
        k = max(1, min(len(idx) - 1, n_val if n_val is not None else round(len(idx) * p_val)))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def from_indices(paths: Sequence[str], labels: Sequence[int], index: dict[str, np.ndarray],
                 source: str) -> SplitData:
    """A SplitData that takes ``index[split]`` out of one list of (path, label)."""
    return SplitData({s: [paths[i] for i in index[s]] for s in SPLITS},
                     {s: [int(labels[i]) for i in index[s]] for s in SPLITS}, source)


def class_folder_split(image_dir: Path, folders: Sequence[str], seed: int = SPLIT_SEED,
                       p_train: float = 0.5, p_val: float = 0.2) -> SplitData:
    """Generate CoOp's per-class split of ``image_dir/<folder>/*`` (label = position in ``folders``)."""
    missing = [f for f in folders if not (image_dir / f).is_dir()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} class folder(s) missing in {image_dir}: "
                                f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}")
    paths, labels, few = [], [], []
    for y, f in enumerate(folders):
        files = image_files(image_dir / f)
        paths += [f"{f}/{name}" for name in files]
        labels += [y] * len(files)
        if 0 < len(files) < 3:   # empty folders are the caller's to judge (image folders refuse them)
            few.append(f"{f}/ ({len(files)})")
    if few:
        raise ValueError(f"{len(few)} class folder(s) in {image_dir} have fewer than the 3 images a train/val/test "
                         f"split needs (one each): {', '.join(few[:5])}{', ...' if len(few) > 5 else ''}; "
                         "add images to them")
    index = split_per_class(labels, paths, p_train, p_val, seed, names=folders)
    return from_indices(paths, labels, index, generated(seed))


def trainval_test_split(trainval: tuple[list[str], list[int]], test: tuple[list[str], list[int]],
                        seed: int = SPLIT_SEED, p_val: float = 0.2, n_val: int | None = None,
                        names: Sequence[str] | None = None) -> SplitData:
    """Official test set; the official train(+val) set split per class into train and val (CoOp's 80/20)."""
    paths, labels = trainval
    train_idx, val_idx = split_trainval(labels, paths, p_val, seed, n_val, names)
    return SplitData({"train": [paths[i] for i in train_idx], "val": [paths[i] for i in val_idx],
                      "test": list(test[0])},
                     {"train": [labels[i] for i in train_idx], "val": [labels[i] for i in val_idx],
                      "test": list(test[1])}, generated(seed, official_test=True))
