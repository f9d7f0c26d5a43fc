"""Prompt templates, prompt ensembles and zero-shot classification.

A class's text feature is the normalised mean of its normalised prompt embeddings over the
templates (CLIP's prompt ensembling). Taught in: chapter 01 (zero-shot CLIP).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

#: CLIP's single default prompt.
DEFAULT_TEMPLATE = "a photo of a {}."
#: The 7-template ensemble Tip-Adapter uses for ImageNet (from CLIP's ImageNet notebook). CoOp's and
#: CLIP-Adapter's released code prompt ImageNet with the single "a photo of a {}." instead.
IMAGENET_ENSEMBLE = (
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
)


def fill(template: str, classname: str) -> str:
    """Put ``classname`` into ``template`` (which must contain one ``{}``)."""
    if template.count("{}") != 1:
        raise ValueError(f"a prompt template needs exactly one '{{}}' for the class name: {template!r}")
    return template.format(classname.replace("_", " "))


@torch.no_grad()
def text_classifier(clip, classnames: Sequence[str], templates: Sequence[str] = (DEFAULT_TEMPLATE,),
                    batch_size: int = 256) -> torch.Tensor:
    """Zero-shot weights: one L2-normalised text feature per class, (K, D).

    Each class's prompts are embedded, normalised, averaged over ``templates`` and renormalised.
    """
    if isinstance(classnames, str):
        raise ValueError(f"text_classifier takes a list of class names, got the string {classnames!r}")
    if len(classnames) == 0:
        raise ValueError("text_classifier needs at least one class name (got an empty list)")
    if isinstance(templates, str) or len(templates) == 0:
        raise ValueError("templates must be a non-empty list of strings with one '{}' each")
    prompts = [fill(t, c) for c in classnames for t in templates]          # (K*T,)
    chunks = [clip.encode_text(prompts[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]
    emb = torch.cat(chunks).view(len(classnames), len(templates), -1)      # (K, T, D)
    return F.normalize(emb.mean(dim=1), dim=-1)                            # (K, D)


def zero_shot_logits(pooled: torch.Tensor, text: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """CLIP's classifier: ``logit_scale * cos(image, class text)``, (B, D) x (K, D) -> (B, K)."""
    return logit_scale * F.normalize(pooled, dim=-1) @ F.normalize(text, dim=-1).T
