"""Frozen CLIP backbones with pooled and spatial image features: ``load_clip(name)``.

Families: open_clip ResNets (``RN50``, ``RN101``), transformers ViTs (``ViT-B/32``, ``ViT-B/16``,
``ViT-L/14``, or any local CLIP directory) and the shipped ``pocket`` model.
Taught in: chapter 02 (spatial features).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import settings
from .base import SPATIAL_MODES, FrozenCLIP, ImageFeatures, WeightsUnavailableError
from .hf import HF_MODELS, HFCLIPBackbone, load_hf_clip, sampled_digest
from .openclip import OPEN_CLIP_MODELS, OpenCLIPBackbone, load_open_clip

#: The shipped Pocket CLIP checkpoint (transformers format, world v2: ``vtclip.pocket.world``).
POCKET_DIR = settings.DATA_DIR / "pocket-clip"
KNOWN_BACKBONES = (*OPEN_CLIP_MODELS, *HF_MODELS, "pocket")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_clip(name: str, spatial: str = "raw", device: torch.device | str | None = None,
              precision: str = "fp32") -> FrozenCLIP:
    """Load a frozen CLIP by name (see ``KNOWN_BACKBONES``) or from a local transformers directory.

    ``spatial`` picks the default map of ``encode_image`` ("raw" or "projected"); ``precision``
    is fp32 (always on CPU) or fp16/bf16 (GPU only).
    """
    device = settings.get_device(str(device) if device is not None else None)
    if precision not in _DTYPES:
        raise ValueError(f"precision must be one of {list(_DTYPES)}, got {precision!r}")
    if precision != "fp32" and device.type == "cpu":
        raise ValueError(f"precision {precision} needs a GPU; use fp32 on the CPU")
    dtype = _DTYPES[precision]
    if name in OPEN_CLIP_MODELS:
        clip = load_open_clip(name, spatial, dtype, device)
    elif name == "pocket":
        folder = POCKET_DIR
        if not (folder / "config.json").is_file():
            raise WeightsUnavailableError(
                f"The Pocket CLIP checkpoint is missing from {folder}. It ships with the "
                "repository (git clone it, then pip install -e .), or rebuild it with "
                "`vtclip pocket pretrain`.")
        clip = load_hf_clip(folder, spatial, dtype, device, name=name,
                            weights_tag=f"pocket:{sampled_digest(folder)}")
    else:
        check_backbone(name)
        clip = load_hf_clip(name, spatial, dtype, device)
    return clip.to(device)


def check_backbone(name: str) -> None:
    """Raise ``ValueError`` listing the known backbones unless ``name`` is one, or a local folder
    (whose files ``load_clip`` checks): grids call it before any work."""
    if not (name in OPEN_CLIP_MODELS or name == "pocket" or name in HF_MODELS or Path(name).expanduser().is_dir()):
        raise ValueError(f"Unknown backbone {name!r}. Known backbones: {', '.join(KNOWN_BACKBONES)}; "
                         "or pass the path of a local transformers CLIP directory.")


__all__ = ["load_clip", "check_backbone", "FrozenCLIP", "ImageFeatures", "WeightsUnavailableError", "KNOWN_BACKBONES",
           "SPATIAL_MODES", "OpenCLIPBackbone", "HFCLIPBackbone", "load_hf_clip", "load_open_clip",
           "POCKET_DIR"]
