"""Readers of the 11 datasets' own annotation files, used when no CoOp split file is present.

Each reader maps (dataset folder, image folder, seed) to a :class:`SplitData` following the rule
CoOp's ``datasets/<name>.py`` applies (https://github.com/KaiyangZhou/CoOp): official splits where
CoOp keeps them, per-class 50/20/30 or an 80/20 train/val split of the official train set otherwise.

Taught in: the appendix "Getting the datasets".
"""
from __future__ import annotations

from pathlib import Path

from .classnames import raw_names, ucf101_folder
from .splits import (SOURCE_OFFICIAL, SplitData, class_folder_split, from_indices, generated, image_files,
                     split_per_class, trainval_test_split)

#: ImageNet has no official val split apart from the test set (ILSVRC val): we hold out this many
#: training images per class as val (CoOp uses the test set as val; we keep the test set unseen).
IMAGENET_VAL_PER_CLASS = 10


def _lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a text file."""
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")]


def _wnid_items(split_dir: Path, wnids: list[str]) -> tuple[list[str], list[int]]:
    """(relative paths, labels) of ``split_dir/<wnid>/*`` with label = position of the wnid."""
    paths, labels = [], []
    for y, wnid in enumerate(wnids):
        files = image_files(split_dir / wnid) if (split_dir / wnid).is_dir() else []
        paths += [f"{split_dir.name}/{wnid}/{f}" for f in files]
        labels += [y] * len(files)
    return paths, labels


def read_imagenet(folder: Path, image_dir: Path, seed: int) -> SplitData:
    """train/<wnid>/ -> train + val (10 per class held out); val/<wnid>/ (ILSVRC val) -> test."""
    wnids = sorted(d.name for d in (image_dir / "train").iterdir() if d.is_dir())
    if len(wnids) != 1000:
        raise FileNotFoundError(f"{image_dir / 'train'} holds {len(wnids)} class folders; ImageNet needs all "
                                "1000 wnid folders (label = position of the wnid in sorted order).")
    val_dirs = {d.name for d in (image_dir / "val").iterdir() if d.is_dir()}
    if val_dirs != set(wnids):
        raise FileNotFoundError(
            f"{image_dir / 'val'} must hold the ILSVRC-2012 validation images sorted into the same 1000 wnid "
            f"folders as train/ (found {len(val_dirs)} folders). torchvision.datasets.ImageNet(root, split='val') "
            "sorts them from the devkit, as does the widely used valprep.sh script.")
    train = _wnid_items(image_dir / "train", wnids)
    test = _wnid_items(image_dir / "val", wnids)
    return trainval_test_split(train, test, seed, n_val=IMAGENET_VAL_PER_CLASS, names=wnids)


def read_class_folders(name: str):
    """A reader for a dataset stored one folder per class (Caltech101, DTD, EuroSAT, Food101)."""
    def read(folder: Path, image_dir: Path, seed: int) -> SplitData:
        return class_folder_split(image_dir, raw_names(name), seed)

    return read


def read_oxford_pets(folder: Path, image_dir: Path, seed: int) -> SplitData:
    """annotations/trainval.txt (80/20 into train/val) and annotations/test.txt (official test)."""
    def items(fname: str):
        rows = [ln.split() for ln in _lines(folder / "annotations" / fname)]
        return [f"{r[0]}.jpg" for r in rows], [int(r[1]) - 1 for r in rows]

    return trainval_test_split(items("trainval.txt"), items("test.txt"), seed, names=raw_names("oxford_pets"))


def _mat_annotations(path: Path, image_folder: str) -> tuple[list[str], list[int]]:
    """Stanford Cars annotations .mat -> (``image_folder/fname`` paths, 0-based labels)."""
    from scipy.io import loadmat

    annos = loadmat(str(path))["annotations"][0]
    return ([f"{image_folder}/{a['fname'][0]}" for a in annos],
            [int(a["class"][0, 0]) - 1 for a in annos])


def read_stanford_cars(folder: Path, image_dir: Path, seed: int) -> SplitData:
    """devkit/cars_train_annos.mat (80/20 into train/val) and cars_test_annos_withlabels.mat (test)."""
    train = _mat_annotations(folder / "devkit" / "cars_train_annos.mat", "cars_train")
    test = _mat_annotations(folder / "cars_test_annos_withlabels.mat", "cars_test")
    return trainval_test_split(train, test, seed, names=raw_names("stanford_cars"))


def read_oxford_flowers(folder: Path, image_dir: Path, seed: int) -> SplitData:
    """imagelabels.mat (label of image_{i:05d}.jpg) -> per-class 50/20/30 (CoOp ignores setid.mat)."""
    from scipy.io import loadmat

    labels = [int(y) - 1 for y in loadmat(str(folder / "imagelabels.mat"))["labels"].ravel()]
    paths = [f"image_{i + 1:05d}.jpg" for i in range(len(labels))]
    index = split_per_class(labels, paths, 0.5, 0.2, seed, names=raw_names("oxford_flowers"))
    return from_indices(paths, labels, index, generated(seed))


def read_fgvc_aircraft(folder: Path, image_dir: Path, seed: int) -> SplitData:
    """images_variant_{train,val,test}.txt: the official variant splits, kept as they are."""
    label = {v: i for i, v in enumerate(raw_names("fgvc_aircraft"))}
    paths, labels = {}, {}
    for split in ("train", "val", "test"):
        rows = [ln.split(" ", 1) for ln in _lines(folder / f"images_variant_{split}.txt")]
        paths[split] = [f"{r[0]}.jpg" for r in rows]
        labels[split] = [label[r[1]] for r in rows]
    return SplitData(paths, labels, SOURCE_OFFICIAL)


def read_sun397(folder: Path, image_dir: Path, seed: int) -> SplitData:
    """Training_01.txt (80/20 into train/val) and Testing_01.txt (test) of the official partitions."""
    label = {p: i for i, p in enumerate(raw_names("sun397"))}

    def items(fname: str):
        rel = [ln.lstrip("/") for ln in _lines(folder / fname)]
        return rel, [label[p.rsplit("/", 1)[0]] for p in rel]

    return trainval_test_split(items("Training_01.txt"), items("Testing_01.txt"), seed, names=raw_names("sun397"))


def read_ucf101(folder: Path, image_dir: Path, seed: int) -> SplitData:
    """ucfTrainTestlist/trainlist01.txt (80/20 into train/val) and testlist01.txt, one mid frame per video."""
    label = {a: i for i, a in enumerate(raw_names("ucf101"))}

    def items(fname: str):
        videos = [ln.split()[0] for ln in _lines(folder / "ucfTrainTestlist" / fname)]
        actions = [v.split("/")[0] for v in videos]
        paths = [f"{ucf101_folder(a)}/{Path(v).stem}.jpg" for a, v in zip(actions, videos)]
        return paths, [label[a] for a in actions]

    return trainval_test_split(items("trainlist01.txt"), items("testlist01.txt"), seed, names=raw_names("ucf101"))
