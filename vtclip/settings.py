"""Environment switches: where caches live, which device to use, how the feature cache stores maps.

Quick trials are a preset, not a switch: ``--preset smoke`` (``TrainConfig.smoke``), ``vtclip demo --smoke``.

Taught in: the book's introduction ("Running the book").
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

#: Root of everything vtclip downloads or caches (weights, datasets, feature caches).
VTCLIP_HOME = Path(os.environ.get("VTCLIP_HOME", Path.home() / ".cache" / "vtclip")).expanduser()
#: The repository root (where ``data/`` and ``results/`` live in a source checkout).
REPO_ROOT = Path(__file__).resolve().parents[1]
#: Shipped assets (Pocket CLIP checkpoint, split files we create).
DATA_DIR = REPO_ROOT / "data"


def get_device(prefer: str | None = None) -> torch.device:
    """The device to run on: ``prefer``, else ``$VTCLIP_DEVICE``, else CUDA when present, else CPU."""
    name = prefer or os.environ.get("VTCLIP_DEVICE")
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but torch sees no CUDA device; "
                               "use 'cpu' or unset VTCLIP_DEVICE")
        try:
            return torch.device(name)
        except RuntimeError:
            where = "" if prefer else " (from VTCLIP_DEVICE)"
            raise ValueError(f"{name!r}{where} is not a torch device; use cpu, cuda, cuda:1, ...") from None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def home(*parts: str) -> Path:
    """A path under ``VTCLIP_HOME`` (read at call time so tests can redirect it)."""
    root = Path(os.environ.get("VTCLIP_HOME", VTCLIP_HOME)).expanduser()
    return root.joinpath(*parts)


#: How the feature cache stores spatial maps (``$VTCLIP_CACHE_DTYPE``): float16 halves the disk a real
#: dataset's maps take (16-shot ImageNet, 10 views: about 45 instead of 90 GiB with ViT-B/16).
CACHE_DTYPES = ("float32", "float16")


def cache_dtype(name: str | None = None) -> str:
    """``name`` (a ``store_dtype`` argument), else ``$VTCLIP_CACHE_DTYPE`` (read at call time), else
    ``float32``; a dtype the cache cannot store is refused, naming where it came from."""
    where = "store_dtype" if name else "VTCLIP_CACHE_DTYPE"
    name = name or os.environ.get("VTCLIP_CACHE_DTYPE") or "float32"
    if name not in CACHE_DTYPES:
        raise ValueError(f"{where}={name!r}: the feature cache stores {' or '.join(CACHE_DTYPES)}")
    return name
