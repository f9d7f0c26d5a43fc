"""The 11 datasets of CoOp's few-shot protocol: where their files go, their splits, and their prompts.

A dataset lives in ``<data root>/<folder>`` (data root = ``--data-root`` or ``$VTCLIP_HOME/data``), in
the layout of CoOp's DATASETS.md; torchvision's download layout is accepted too where it differs.
Its split is CoOp's ``split_zhou_<Name>.json`` when that file is present (``split_source`` =
"coop-split-file"), else made by CoOp's rule from the dataset's own annotations (``real_readers``).

Taught in: the appendix "Getting the datasets" (generated from this table by ``appendix.py``).
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

from .. import settings
from ..prompts import IMAGENET_ENSEMBLE
from . import real_readers as rd
from .base import DatasetSpec, ImageFiles, register
from .classnames import classnames, raw_source
from .splits import SPLIT_SEED, SplitData, read_split_file

_GDRIVE = "https://drive.google.com/file/d/{}/view"


@dataclass(frozen=True)
class Layout:
    """Where one dataset's files live and how its split is made."""

    name: str                        # registry name
    title: str                       # the dataset's usual name
    coop: str                        # CoOp's class name: the split file is split_zhou_<coop>.json
    folders: tuple[str, ...]         # folder under the data root: CoOp's first, then torchvision's
    image_dirs: tuple[str, ...]      # image folder inside it ("" = the folder); split-file paths start here
    images: tuple[str, ...]          # sub-folders of the image folder that must exist (() = itself)
    annotations: tuple[str, ...]     # files (relative to the folder) needed when there is no split file
    read: Callable[[Path, Path, int], SplitData]   # (folder, image folder, seed) -> splits, no split file
    rule: str                        # CoOp's split rule without a split file
    sizes: tuple[int, int, int]      # train/val/test images in CoOp's split
    urls: tuple[str, ...]            # where the images and annotations come from
    split_url: str = ""              # CoOp's split file (Google Drive, linked from CoOp's DATASETS.md)
    torchvision: str = ""            # torchvision.datasets class whose download gives a layout read here
    terms: str = ""                  # licence / terms of use, as stated by the dataset's authors
    paper: str = ""                  # the dataset's paper
    note: str = ""                   # how the unpacked files must sit, where easy to get wrong ({folder})

    @property
    def split_file(self) -> str:
        return f"split_zhou_{self.coop}.json"


_PER_CLASS = "per-class 50/20/30 train/val/test (CoOp)"
_TRAINVAL = "official test; official train(+val) split 80/20 per class into train/val (CoOp)"
_RESEARCH = "research and educational use; see the dataset's page"

LAYOUTS: tuple[Layout, ...] = (
    Layout("imagenet", "ImageNet (ILSVRC-2012)", "ImageNet", ("imagenet",), ("images", ""), ("train", "val"), (),
           rd.read_imagenet, f"official: test = ILSVRC val; val = {rd.IMAGENET_VAL_PER_CLASS} train images per class",
           (1_281_167 - 10_000, 10_000, 50_000), ("https://image-net.org/download.php",),
           torchvision="ImageNet", terms="ImageNet terms of access: non-commercial research and education",
           paper="Deng et al., CVPR 2009"),
    Layout("caltech101", "Caltech101", "Caltech101", ("caltech-101", "caltech101"), ("101_ObjectCategories",),
           (), (), rd.read_class_folders("caltech101"), _PER_CLASS, (4128, 1649, 2465),
           ("https://data.caltech.edu/records/mzrjq-6wc02",), _GDRIVE.format("1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
           "Caltech101", "CC BY 4.0 (CaltechDATA)", "Fei-Fei et al., CVPR Workshops 2004"),
    Layout("oxford_pets", "Oxford-IIIT Pets", "OxfordPets", ("oxford_pets", "oxford-iiit-pet"), ("images",), (),
           ("annotations/trainval.txt", "annotations/test.txt"), rd.read_oxford_pets, _TRAINVAL, (2944, 736, 3669),
           ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
            "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz"),
           _GDRIVE.format("1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"), "OxfordIIITPet", "CC BY-SA 4.0",
           "Parkhi et al., CVPR 2012"),
    Layout("stanford_cars", "Stanford Cars", "StanfordCars", ("stanford_cars",), ("",), ("cars_train", "cars_test"),
           ("devkit/cars_train_annos.mat", "cars_test_annos_withlabels.mat"), rd.read_stanford_cars, _TRAINVAL,
           (6509, 1635, 8041), ("https://ai.stanford.edu/~jkrause/cars/car_dataset.html (offline; use a mirror)",),
           _GDRIVE.format("1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"), "", _RESEARCH, "Krause et al., ICCV Workshops 2013"),
    Layout("oxford_flowers", "Oxford Flowers102", "OxfordFlowers", ("oxford_flowers", "flowers-102"), ("jpg",), (),
           ("imagelabels.mat",), rd.read_oxford_flowers, _PER_CLASS, (4093, 1633, 2463),
           ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
            "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat"),
           _GDRIVE.format("1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"), "Flowers102", _RESEARCH,
           "Nilsback & Zisserman, ICVGIP 2008"),
    Layout("food101", "Food-101", "Food101", ("food-101",), ("images",), (), (), rd.read_class_folders("food101"),
           _PER_CLASS, (50500, 20200, 30300), ("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",),
           _GDRIVE.format("1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"), "Food101",
           "see license_agreement.txt in the archive", "Bossard et al., ECCV 2014"),
    Layout("fgvc_aircraft", "FGVC-Aircraft", "FGVCAircraft", ("fgvc_aircraft", "fgvc-aircraft-2013b/data"),
           ("images",), (), ("images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt"),
           rd.read_fgvc_aircraft, "official variant train/val/test (CoOp keeps them)", (3334, 3333, 3333),
           ("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",), "",
           "FGVCAircraft", "non-commercial research only", "Maji et al., arXiv:1306.5151, 2013"),
    Layout("sun397", "SUN397", "SUN397", ("sun397",), ("SUN397",), (), ("Training_01.txt", "Testing_01.txt"),
           rd.read_sun397, _TRAINVAL + "; partition 01", (15880, 3970, 19850),
           ("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
            "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"),
           _GDRIVE.format("1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"), "", _RESEARCH, "Xiao et al., CVPR 2010",
           "Layout: {folder}/SUN397/<letter>/<class>/*.jpg, e.g. SUN397/a/abbey/: unpack SUN397.tar.gz "
           "inside {folder}, not beside it.\nWithout CoOp's split file, also Training_01.txt and "
           "Testing_01.txt from Partitions.zip, directly in {folder} (not in a sub-folder)."),
    Layout("dtd", "Describable Textures (DTD)", "DescribableTextures", ("dtd", "dtd/dtd"), ("images",), (), (),
           rd.read_class_folders("dtd"), _PER_CLASS, (2820, 1128, 1692),
           ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
           _GDRIVE.format("1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"), "DTD", "research use", "Cimpoi et al., CVPR 2014"),
    Layout("eurosat", "EuroSAT (RGB)", "EuroSAT", ("eurosat",), ("2750", "EuroSAT_RGB"), (), (),
           rd.read_class_folders("eurosat"), _PER_CLASS, (13500, 5400, 8100),
           ("https://huggingface.co/datasets/torchgeo/eurosat (EuroSAT.zip, as torchvision downloads it)",),
           _GDRIVE.format("1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"), "EuroSAT", "MIT", "Helber et al., IEEE JSTARS 2019"),
    Layout("ucf101", "UCF101 (middle frames)", "UCF101", ("ucf101",), ("UCF-101-midframes",), (),
           ("ucfTrainTestlist/trainlist01.txt", "ucfTrainTestlist/testlist01.txt"), rd.read_ucf101,
           _TRAINVAL + "; split 01", (7639, 1898, 3783),
           (_GDRIVE.format("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O") + " (CoOp's UCF-101-midframes.zip)",
            "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"),
           _GDRIVE.format("1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"), "", _RESEARCH, "Soomro et al., arXiv:1212.0402, 2012"),
)

#: One prompt table: CoOp's per-dataset template (trainers/zsclip.py CUSTOM_TEMPLATES); ImageNet uses
#: Tip-Adapter's 7-template ensemble (``vtclip.prompts.IMAGENET_ENSEMBLE``) for every method. CoOp's
#: and CLIP-Adapter's released code use the single "a photo of a {}." there, so on ImageNet our
#: zero-shot and CLIP-Adapter texts are the ensemble's, not theirs.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "imagenet": IMAGENET_ENSEMBLE,
    "caltech101": ("a photo of a {}.",),
    "oxford_pets": ("a photo of a {}, a type of pet.",),
    "stanford_cars": ("a photo of a {}.",),
    "oxford_flowers": ("a photo of a {}, a type of flower.",),
    "food101": ("a photo of {}, a type of food.",),
    "fgvc_aircraft": ("a photo of a {}, a type of aircraft.",),
    "sun397": ("a photo of a {}.",),
    "dtd": ("{} texture.",),
    "eurosat": ("a centered satellite photo of {}.",),
    "ucf101": ("a photo of a person doing {}.",),
}


@dataclass(frozen=True)
class Location:
    """Where a dataset was found: its folder, its image folder and its split file (if any)."""

    folder: Path
    image_dir: Path
    split_file: Path | None
    root: str | Path | None = None   # the data root it was looked for under, as given (None: the default)


def data_root(root: str | Path | None = None) -> Path:
    """The data root: ``root`` if given, else ``$VTCLIP_HOME/data``."""
    return Path(root).expanduser() if root else settings.home("data")


def locate(layout: Layout, root: str | Path | None = None) -> Location | None:
    """Find the dataset under the data root (or at the root, if named like it); None when absent."""
    base = data_root(root)
    at_root = [base] if base.name in {Path(f).name for f in layout.folders} else []   # --data-root .../dtd
    for folder in [base / f for f in layout.folders] + at_root:
        for d in layout.image_dirs:
            image_dir = folder / d if d else folder
            if all((image_dir / p).is_dir() for p in layout.images or ("",)):
                split = [p for p in (folder / layout.split_file, image_dir / layout.split_file) if p.is_file()]
                return Location(folder, image_dir, split[0] if split else None, root)
    return None


def expected_paths(layout: Layout, root: str | Path | None = None) -> list[Path]:
    """The exact paths the CoOp layout needs (image folders, then annotations used without a split file)."""
    folder = data_root(root) / layout.folders[0]
    image_dir = folder / layout.image_dirs[0] if layout.image_dirs[0] else folder
    return [image_dir / p for p in layout.images or ("",)] + [folder / a for a in layout.annotations]


def how_to_get(layout: Layout, root: str | Path | None = None, folder: Path | None = None) -> str:
    """Instructions: where to put the files (``folder``, by default CoOp's under the data root) and where
    to download them from; the check command names ``root`` when one is given."""
    folder = folder or data_root(root) / layout.folders[0]
    lines = [f"Put {layout.title} in {folder} (CoOp's layout; see the appendix 'Getting the datasets').",
             *([layout.note.format(folder=folder)] if layout.note else []),
             "Download: " + "; ".join(layout.urls)]
    if layout.split_url:
        lines.append(f"CoOp's split file: {layout.split_url} -> {folder / layout.split_file}")
    if layout.torchvision:
        verb = "unpacks the archives placed there" if layout.name == "imagenet" else "downloads it"
        target = folder if layout.name == "imagenet" else data_root(root)
        lines.append(f"Or: python -c \"import torchvision; torchvision.datasets.{layout.torchvision}"
                     f"('{target}', download=True)\" ({verb} in a layout vtclip reads)")
    if root:                  # the user's own data root: the command to run, as it is
        lines.append(f"Then: vtclip data check {layout.name} --data-root {shlex.quote(str(data_root(root)))}")
    else:
        lines.append(f"Then: vtclip data check {layout.name}  (data root: --data-root or $VTCLIP_HOME/data)")
    return "\n".join(lines)


def missing_message(layout: Layout, root: str | Path | None = None) -> str:
    """The error text for a dataset that is not where it should be."""
    need = "\n".join(f"  {p}" for p in expected_paths(layout, root))
    return (f"dataset {layout.name!r} not found under {data_root(root)}. Expected:\n{need}\n"
            f"(or just the image folder plus {layout.split_file}).\n{how_to_get(layout, root)}")


_CACHE: dict[tuple, SplitData] = {}


def load_splits(layout: Layout, loc: Location) -> SplitData:
    """The dataset's splits: its CoOp split file if present, else generated by CoOp's rule (cached)."""
    stamp = loc.split_file.stat().st_mtime_ns if loc.split_file else None
    key = (layout.name, str(loc.folder), str(loc.image_dir), str(loc.split_file), stamp, SPLIT_SEED)
    if key not in _CACHE:
        if loc.split_file is not None:
            _CACHE[key] = read_split_file(loc.split_file, classnames(layout.name))
        else:
            absent = [loc.folder / a for a in layout.annotations if not (loc.folder / a).is_file()]
            if absent:
                raise FileNotFoundError(
                    f"{layout.name}: no split file {loc.folder / layout.split_file} and the annotations to "
                    f"make CoOp's split are missing: {', '.join(map(str, absent))}.\n"
                    f"{how_to_get(layout, loc.root, loc.folder)}")
            from scipy.io.matlab import MatReadError

            try:
                data = layout.read(loc.folder, loc.image_dir, SPLIT_SEED)
            except FileNotFoundError as err:     # part of the dataset is there (class folders missing, ...)
                raise FileNotFoundError(f"{layout.name} is incomplete: {err}\n"
                                        f"{how_to_get(layout, loc.root, loc.folder)}") from err
            except (IndexError, KeyError, TypeError, MatReadError) as err:
                # a line without its label, a class the release does not have, a .mat that is not one
                raise ValueError(
                    f"{layout.name}: could not read the annotations in {loc.folder} "
                    f"({', '.join(layout.annotations)}): {type(err).__name__}: {err}. The files are "
                    f"damaged or of another release than CoOp's; fetch them again.\n"
                    f"{how_to_get(layout, loc.root, loc.folder)}") from err
            k = len(classnames(layout.name))
            bad = sorted({y for labels in data.labels.values() for y in labels if not 0 <= y < k})
            if bad:
                raise ValueError(f"{layout.name}: the annotations in {loc.folder} give labels {bad[:5]} outside "
                                 f"0..{k - 1} (after making them 0-based): damaged or another release's files; "
                                 f"fetch them again.\n{how_to_get(layout, loc.root, loc.folder)}")
            _CACHE[key] = data
    return _CACHE[key]


def build(layout: Layout, split: str, root: str | Path | None = None) -> ImageFiles:
    """One split of a real dataset as ``ImageFiles`` with ``split_source`` set."""
    loc = locate(layout, root)
    if loc is None:
        raise FileNotFoundError(missing_message(layout, root))
    data = load_splits(layout, loc)
    ds = ImageFiles(loc.image_dir, data.paths[split], data.labels[split], classnames(layout.name))
    ds.split_source = data.source
    return ds


def _register(layout: Layout) -> DatasetSpec:
    sizes = dict(zip(("train", "val", "test"), layout.sizes))
    return register(DatasetSpec(
        name=layout.name, classnames=classnames(layout.name), templates=TEMPLATES[layout.name],
        build=partial(build, layout), kind="real",
        description=f"{layout.title}: {len(classnames(layout.name))} classes, split: {layout.rule}",
        source=f"{layout.paper}; {layout.urls[0]}; terms: {layout.terms}", folder=layout.folders[0],
        extra={"layout": layout, "sizes": sizes, "split_file": layout.split_file,
               "classnames_source": raw_source(layout.name)}))


SPECS = {layout.name: _register(layout) for layout in LAYOUTS}
