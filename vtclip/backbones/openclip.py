"""open_clip adapter: OpenAI's ResNet CLIPs (RN50, RN101 — the VT-CLIP paper's family).

Spatial maps of a ModifiedResNet:
* ``raw``       — the layer4 output before attention pooling (the paper's Vs; 2048 ch for RN50);
* ``projected`` — the attention pool's value and output projections applied at every position
                  (the "value trick"), which puts each position in the joint space (D channels).

How the projected map is computed, exactly (``project_positions``): with ``x_i`` the layer4 feature
at position i (C channels) and ``pos`` the pool's positional embedding ((HW + 1, C); row 0 belongs
to the mean token the pool prepends),

    projected_i = c_proj(v_proj(x_i + pos[1 + i]))                          # (D,)

The positional embedding is added *before* the value projection, as the pool itself does: its
output is ``c_proj(sum_j a_j v_proj(t_j))`` over the tokens ``t_j = [mean(x), x_1..x_HW] + pos``
with attention weights ``a_j`` summing to 1, and v_proj and c_proj are affine, so the pooled
embedding is the attention-weighted mean of exactly these per-position features (and of the mean
token's). That keeps the map in the space the image embedding lives in, which is what VT-CLIP's
cosine head compares text features with; ``test_projected_map_is_the_attention_pool_value_path``
checks the identity. MaskCLIP (Zhou et al., 2022) instead applies v_proj and c_proj to ``x_i``
alone, without the positional embedding: its maps do not depend on the grid, so they work at other
resolutions, and they differ from ours by the constant-per-position term ``c_proj.W v_proj.W pos[1+i]``.
Ours needs the native grid (7 x 7 for RN50 at 224 px; other sizes are refused, the embedding is not
interpolated).
Taught in: chapter 02 (spatial features).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import torch

from .. import settings
from .base import FrozenCLIP, WeightsUnavailableError
from .digest import file_sha256
from .hf import cached_hub_file

#: open_clip model names we load with OpenAI's weights, and the file name of those weights.
OPEN_CLIP_MODELS = {"RN50": "RN50.pt", "RN101": "RN101.pt"}
#: SHA-256 of OpenAI's released files: the hex part of their download URLs, which open_clip checks too.
OPENAI_SHA256 = {"RN50": "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762",
                 "RN101": "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599"}


class OpenCLIPBackbone(FrozenCLIP):
    """A frozen open_clip ``CLIP`` whose vision tower is a ModifiedResNet."""

    family = "open_clip"

    def __init__(self, model, preprocess, tokenizer, name: str, weights_tag: str,
                 spatial: str = "raw", dtype: torch.dtype = torch.float32):
        super().__init__(name, weights_tag, spatial, dtype)
        visual = model.visual
        if not hasattr(visual, "attnpool"):
            raise ValueError(f"{name}: only ResNet (ModifiedResNet) open_clip models are supported; "
                             "load ViT models through transformers (e.g. 'ViT-B/16')")
        self.model = model.to(dtype)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.image_size = int(visual.image_size if isinstance(visual.image_size, int)
                              else visual.image_size[0])
        self.raw_dim = visual.attnpool.k_proj.in_features           # C (2048 for RN50)
        self.embed_dim = visual.attnpool.c_proj.out_features        # D (1024 for RN50)
        self.freeze()

    def _logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.float()

    def token_counts(self, texts: Sequence[str]) -> tuple[list[int], int]:
        return [len(self.tokenizer.encode(t)) + 2 for t in texts], self.tokenizer.context_length   # + SOS, EOS

    def _encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(self.device)               # (K, L)
        return self.model.encode_text(tokens)                        # (K, D)

    def feature_map(self, pixels: torch.Tensor) -> torch.Tensor:
        """The ResNet's layer4 output, before attention pooling: (B, C, H, W)."""
        v = self.model.visual
        return v.layer4(v.layer3(v.layer2(v.layer1(v.stem(pixels)))))

    def _encode_image(self, pixels: torch.Tensor, spatial: str):
        fmap = self.feature_map(pixels)                              # (B, C, H, W)
        pooled = self.model.visual.attnpool(fmap)                    # (B, D)
        if spatial == "raw":
            return pooled, fmap
        return pooled, self.project_positions(fmap)

    def project_positions(self, fmap: torch.Tensor) -> torch.Tensor:
        """Value trick: c_proj(v_proj(x + pos)) at every position, (B, C, H, W) -> (B, D, H, W)."""
        pool = self.model.visual.attnpool
        b, c, h, w = fmap.shape
        if pool.positional_embedding.shape[0] != h * w + 1:
            raise ValueError(f"{self.name}: the attention pool's positional embedding covers "
                             f"{pool.positional_embedding.shape[0] - 1} positions, the map has {h * w}; "
                             f"use {self.image_size}px images")
        x = fmap.flatten(2).transpose(1, 2)                          # (B, HW, C)
        x = x + pool.positional_embedding[1:].to(x.dtype)            # (B, HW, C)
        x = pool.c_proj(pool.v_proj(x))                              # (B, HW, D)
        return x.transpose(1, 2).reshape(b, -1, h, w)                # (B, D, H, W)


def weights_path(name: str):
    """Where we look for OpenAI's weights of ``name`` before trying to download them."""
    return settings.home("weights", OPEN_CLIP_MODELS[name])


def _unusable_file(name: str, local: Path, err: Exception) -> str:
    """Two lines for a local weights file open_clip could not load: which file, what it holds, what to do
    (torch's own message lists every key of the model, 11,000 characters for RN50)."""
    text = str(err)
    if "Error(s) in loading state_dict" in text:
        what = f"tensors of another model ({_key_summary(text)})"
    else:
        first = text.strip().splitlines()[0][:200] if text.strip() else ""
        what = f"nothing open_clip can read as weights ({type(err).__name__}: {first})"
    return (f"{local} holds {what}, not {name}'s weights.\nReplace it with OpenAI's {name}.pt (or open_clip's "
            f"open_clip_pytorch_model.bin for {name}), or delete it to download {name}'s weights.")


def _key_summary(text: str) -> str:
    """``12 missing, e.g. "a", "b"; 3 unexpected, e.g. "c"`` from torch's ``load_state_dict`` message."""
    parts = []
    for label in ("Missing", "Unexpected"):
        found = re.search(rf"{label} key\(s\) in state_dict: (.*)", text)
        if found:
            keys = re.findall(r'"([^"]+)"', found.group(1))
            parts.append(f"{len(keys)} {label.lower()}, e.g. {', '.join(keys[:2])}")
    shapes = text.count("size mismatch for ")
    if shapes:
        parts.append(f"{shapes} of another shape")
    return "; ".join(parts) or "other names or shapes"


def weights_tag_of(name: str, local: Path, hub_copy: Path | None = None) -> str:
    """``openai`` for OpenAI's weights: a local file with OpenAI's published SHA-256, or the hub's copy
    (``hub_copy``, in the download cache) as the hub served it; ``local:<file>:<digest>`` for any other
    local file and ``altered:<file>:<digest>`` for a hub copy whose bytes are not the ones the hub
    served, so that replacing either changes every cache key and record (a local file was tagged
    ``openai`` whatever it held)."""
    if local.is_file():
        sha = file_sha256(local)
        return "openai" if sha == OPENAI_SHA256[name] else f"local:{local.name}:{sha[:12]}"
    served = _served_sha256(hub_copy) if hub_copy is not None else None
    if served is None:    # open_clip's download from OpenAI's URL (it checks the SHA-256), or a cache of copies
        return "openai"
    sha = file_sha256(hub_copy)
    return "openai" if sha == served else f"altered:{hub_copy.name}:{sha[:12]}"


def _served_sha256(path: Path) -> str | None:
    """The SHA-256 the hub served a file of its download cache with, or None where the cache cannot say.

    The snapshot's file is a link to ``blobs/<etag>``, and a large (LFS) file's etag is its SHA-256
    (the hub's cache layout; ``blobs/<etag>`` may link on to a shared store, so only the first link
    is read). A cache that holds copies instead of links (e.g. on Windows) cannot say.
    """
    try:
        etag = Path(os.readlink(path)).name
    except OSError:
        return None
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def find_hub_copy(name: str, cache: Path) -> Path | None:
    """The file in the download cache that open_clip loads OpenAI's weights of ``name`` from (its
    safetensors version first, as open_clip looks), or None if there is none."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from open_clip.pretrained import get_pretrained_cfg

    repo, filename = os.path.split(get_pretrained_cfg(name, "openai").get("hf_hub", ""))   # "org/repo/", file
    filename = filename or HF_WEIGHTS_NAME
    candidates = ([HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []) + [filename]
    found = (cached_hub_file(repo, f, cache) for f in candidates) if repo else ()
    return next((f for f in found if f is not None), None)


@contextlib.contextmanager
def _root_log_muted():
    """Silence the root logger for a moment (open_clip reports errors there as well as raising them)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        root.setLevel(level)


def load_open_clip(name: str, spatial: str = "raw", dtype: torch.dtype = torch.float32,
                   device: torch.device | str = "cpu", pretrained: bool = True) -> OpenCLIPBackbone:
    """Build ``name`` (RN50/RN101) with OpenAI's weights (local file first, then the hub)."""
    import open_clip

    cache = settings.home("hub")
    local = weights_path(name)
    source = str(local) if local.is_file() else "openai"
    if not pretrained:
        source = None
    elif local.is_file() and local.stat().st_size == 0:
        raise WeightsUnavailableError(f"{local} is empty (0 bytes): a copy or download cut short. Replace it with "
                                      f"OpenAI's {name}.pt, or delete it to download {name}'s weights.")
    try:
        # OpenAI trained every CLIP with QuickGELU; open_clip's plain "RN50" config builds nn.GELU (and
        # only warns), which would put every text feature off. OpenAI's own RN50.pt is a TorchScript
        # archive, which torch.load refuses under weights_only=True: a file the user placed from
        # OpenAI's release is trusted and loaded in full.
        with _root_log_muted():          # open_clip logs a failed download, then raises it; ours says it
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=source, cache_dir=str(cache), device=device, force_quick_gelu=True,
                weights_only=not local.is_file())
    except Exception as err:  # open_clip raises RuntimeError/OSError/HF errors when offline
        if source == str(local):
            raise WeightsUnavailableError(_unusable_file(name, local, err)) from err
        raise WeightsUnavailableError(
            f"Could not load OpenAI weights for {name}: {err}\n"
            f"Looked for a local file at {local} and in the download cache {cache}.\n"
            f"To place them by hand, download {name}.pt (OpenAI's CLIP release, or "
            f"'open_clip_pytorch_model.bin' from the hub repo timm/{name.lower().replace('rn', 'resnet')}"
            f"_clip.openai) on a machine with internet and copy it to {local}."
        ) from err
    tag = weights_tag_of(name, local, find_hub_copy(name, cache)) if pretrained else "random"
    tokenizer = open_clip.get_tokenizer(name)
    return OpenCLIPBackbone(model, preprocess, tokenizer, name, tag, spatial, dtype)
