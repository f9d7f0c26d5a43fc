"""The frozen-CLIP interface every backbone adapter implements.

Taught in: chapter 02 (spatial features).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be found locally nor downloaded."""


@dataclass
class ImageFeatures:
    """What ``encode_image`` returns: the pooled embedding and the map it was pooled from."""

    pooled: torch.Tensor   # (B, D) L2-normalised image embedding
    spatial: torch.Tensor  # (B, H*W, C) per-position features before pooling
    grid: tuple[int, int]  # (H, W) of the spatial map

    def to(self, *args, **kwargs) -> "ImageFeatures":
        return ImageFeatures(self.pooled.to(*args, **kwargs), self.spatial.to(*args, **kwargs), self.grid)


SPATIAL_MODES = ("raw", "projected")


class FrozenCLIP(nn.Module):
    """A pretrained CLIP with frozen weights: ``encode_text``, ``encode_image``, ``preprocess``.

    Subclasses implement ``_tokens_to_text`` / ``_image_forward``; this class owns freezing,
    device/dtype handling and the input checks shared by every family.
    """

    family = "base"

    def __init__(self, name: str, weights_tag: str, spatial: str = "raw",
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        if spatial not in SPATIAL_MODES:
            raise ValueError(f"spatial must be one of {SPATIAL_MODES}, got {spatial!r}")
        self.name = name                # e.g. "RN50", "ViT-B/16", "pocket"
        self.weights_tag = weights_tag  # identifies the weights (for cache keys)
        self.spatial_mode = spatial     # default spatial map of encode_image
        self.dtype = dtype              # compute dtype of the towers
        self.preprocess: Callable = None  # PIL image -> (3, S, S) tensor; set by subclasses

    # ---- subclass hooks -------------------------------------------------------------------
    image_size: int    # input resolution (pixels)
    embed_dim: int     # D, the joint embedding size
    raw_dim: int       # C of the "raw" spatial map

    def _encode_text(self, texts: Sequence[str]) -> torch.Tensor: ...      # (K, D) unnormalised

    def token_counts(self, texts: Sequence[str]) -> tuple[list[int], int]:
        """Tokens of each text with its start and end tokens, untruncated, and the context length."""
        raise NotImplementedError
    def _encode_image(self, pixels: torch.Tensor, spatial: str): ...       # pooled, (B,C,H,W) map

    # ---- public API -----------------------------------------------------------------------
    def freeze(self) -> "FrozenCLIP":
        """Switch to eval mode and turn off gradients of every backbone weight."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "FrozenCLIP":
        return super().train(False)  # frozen: batch-norm statistics and dropout never change

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def spatial_dim(self, spatial: str | None = None) -> int:
        """C of the spatial map in mode ``spatial`` (default: this model's mode)."""
        return self.raw_dim if (spatial or self.spatial_mode) == "raw" else self.embed_dim

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed prompts: (K,) strings -> (K, D) L2-normalised float32."""
        if isinstance(texts, str) or len(texts) == 0:
            raise ValueError("encode_text takes a non-empty list of strings "
                             f"(got {texts!r}); wrap a single prompt in a list")
        counts, context = self.token_counts(list(texts))
        long = [(t, n) for t, n in zip(texts, counts) if n > context]
        if long:                          # the tokenizer would cut them: two classes could share a text
            raise ValueError(f"{len(long)} prompt(s) are longer than {self.name}'s text context of {context} "
                             f"tokens and would be cut off, e.g. {long[0][0]!r} ({long[0][1]} tokens). "
                             "Shorten the class names or the prompt templates.")
        return F.normalize(self._encode_text(list(texts)).float(), dim=-1)

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor, spatial: str | None = None) -> ImageFeatures:
        """Embed preprocessed images (B, 3, S, S) -> pooled (B, D) and spatial (B, HW, C)."""
        spatial = spatial or self.spatial_mode
        if spatial not in SPATIAL_MODES:
            raise ValueError(f"spatial must be one of {SPATIAL_MODES}, got {spatial!r}")
        self._check_pixels(pixels)
        pixels = pixels.to(self.device, self.dtype)
        pooled, fmap = self._encode_image(pixels, spatial)      # (B, D), (B, C, H, W)
        grid = tuple(fmap.shape[-2:])
        tokens = fmap.flatten(2).transpose(1, 2)                 # (B, HW, C)
        return ImageFeatures(F.normalize(pooled.float(), dim=-1), tokens.float(), grid)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature, exp(t) (100 for OpenAI's models)."""
        return float(self._logit_scale().exp())

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        if not torch.is_tensor(pixels) or pixels.ndim != 4 or pixels.shape[1] != 3:
            shape = tuple(pixels.shape) if torch.is_tensor(pixels) else type(pixels).__name__
            raise ValueError(f"{self.name}: encode_image expects a (B, 3, {self.image_size}, "
                             f"{self.image_size}) tensor, got {shape}; use clip.preprocess on PIL images")
        if not pixels.is_floating_point():
            raise ValueError(f"{self.name}: encode_image expects normalised float pixels, got {pixels.dtype}; "
                             "use clip.preprocess on PIL images")
        if tuple(pixels.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"{self.name}: images must be {self.image_size}x{self.image_size} "
                             f"pixels, got {tuple(pixels.shape[-2:])}; use clip.preprocess")

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, D={self.embed_dim}, raw C={self.raw_dim}, "
                f"image_size={self.image_size}, spatial={self.spatial_mode!r}")
