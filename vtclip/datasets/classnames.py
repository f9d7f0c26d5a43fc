"""Class names of the 11 protocol datasets, in CoOp's label order.

``classnames.json`` holds each dataset's own label strings (folder names, annotation names); this
module applies CoOp's cleaning rules to them (each rule names the CoOp file it comes from, in
https://github.com/KaiyangZhou/CoOp). ImageNet's 1000 names are CLIP's cleaned names as shipped by
open_clip (``open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES``), in the sorted-wnid label order.

Taught in: the appendix "Getting the datasets".
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

_JSON = Path(__file__).with_name("classnames.json")

#: CoOp datasets/caltech101.py: folders left out, and folders renamed.
CALTECH_IGNORED = ("BACKGROUND_Google", "Faces_easy")
CALTECH_RENAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
#: CoOp datasets/eurosat.py NEW_CNAMES.
EUROSAT_RENAMES = {
    "AnnualCrop": "Annual Crop Land", "Forest": "Forest", "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road", "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings", "River": "River",
    "SeaLake": "Sea or Lake",
}


@lru_cache(maxsize=None)
def _table() -> dict:
    return json.loads(_JSON.read_text(encoding="utf-8"))


def raw_names(name: str) -> tuple[str, ...]:
    """The dataset's own label strings in label order (folder names, ClassName.txt paths, ...)."""
    return tuple(_table()[name]["raw"])


def raw_source(name: str) -> str:
    """Where :func:`raw_names` comes from (one line)."""
    if name == "imagenet":
        return "open_clip.zero_shot_metadata.IMAGENET_CLASSNAMES (CLIP's cleaned names, sorted-wnid order)"
    return _table()[name]["source"]


def ucf101_folder(action: str) -> str:
    """CoOp's UCF-101-midframes folder of a classInd.txt action: 'ApplyEyeMakeup' -> 'Apply_Eye_Makeup'."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))    # CoOp datasets/ucf101.py


def cars_name(raw: str) -> str:
    """CoOp's Stanford Cars name: the year moves to the front ('AM General Hummer SUV 2000' -> '2000 AM ...')."""
    *words, year = raw.split(" ")                              # CoOp datasets/stanford_cars.py
    return " ".join([year, *words])


def sun397_name(path: str) -> str:
    """CoOp's SUN397 name: 'a/apartment_building/outdoor' -> 'outdoor apartment building'."""
    parts = path.split("/")[1:][::-1]                          # CoOp datasets/sun397.py
    return " ".join(parts).replace("_", " ")


def _clean(name: str) -> str:
    return name.replace("_", " ")


def _imagenet() -> tuple[str, ...]:
    """open_clip's IMAGENET_CLASSNAMES, read from its source file (importing open_clip takes seconds)."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("open_clip")
    source = Path(spec.origin).with_name("zero_shot_metadata.py") if spec and spec.origin else None
    if source is not None and source.is_file():
        for node in ast.parse(source.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "IMAGENET_CLASSNAMES":
                return tuple(ast.literal_eval(node.value))
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES   # layout changed: import it

    return tuple(IMAGENET_CLASSNAMES)


_RULES = {
    "caltech101": lambda r: _clean(CALTECH_RENAMES.get(r, r)),
    "oxford_pets": lambda r: _clean(r.lower()),
    "stanford_cars": cars_name,
    "oxford_flowers": str,
    "food101": _clean,
    "fgvc_aircraft": str,
    "sun397": sun397_name,
    "dtd": str,
    "eurosat": lambda r: EUROSAT_RENAMES[r],
    "ucf101": lambda r: _clean(ucf101_folder(r)),
}


@lru_cache(maxsize=None)
def classnames(name: str) -> tuple[str, ...]:
    """Cleaned class names of dataset ``name`` in label order (CoOp's names, '_' read as a space)."""
    if name == "imagenet":
        return _imagenet()
    return tuple(_RULES[name](r) for r in raw_names(name))


def same_name(a: str, b: str) -> bool:
    """Whether two spellings name the same class ('Apply_Eye_Makeup' == 'apply eye makeup')."""
    def norm(s: str) -> str:
        return re.sub(r"[\s_\-]+", " ", s.strip().lower())

    return norm(a) == norm(b)
