"""CLIP-Adapter: a small bottleneck MLP on the image feature, blended with the original.

Gao, Geng, Zhang, Ma, Fang, Zhang, Li, Qiao, "CLIP-Adapter: Better Vision-Language Models with
Feature Adapters", arXiv 2110.04544 (2021), IJCV 132 (2024). The visual-adapter variant (the one
the paper reports best):

    x  = ReLU(ReLU(f @ W1) @ W2)          W1: (D, D/4), W2: (D/4, D), no biases     (B, D)
    f' = alpha * x + (1 - alpha) * f      residual ratio alpha                       (B, D)
    logits = logit_scale * cos(f', class texts)   with the fixed zero-shot texts     (B, K)

The paper reports a per-dataset best alpha (0.2 for generic datasets such as ImageNet, larger,
0.6-0.8, for fine-grained ones) without naming a validation split for that search. Here runs choose
alpha from ``ALPHA_GRID`` on the val split (``experiments.run_method``: one training run per value,
the best val accuracy wins, the smallest alpha on ties); ``build_clip_adapter(ctx, alpha=...)`` or
``--option alpha=...`` fixes it instead. The adapter starts from a random init (not zero-shot) and is
trained by the shared trainer with CoOp's schedule, as in the paper's code. ``f`` is our
L2-normalised pooled feature.
Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import options as opt
from ..prompts import zero_shot_logits


#: residual ratios searched on val (the paper's range of per-dataset choices)
ALPHA_GRID = (0.2, 0.4, 0.6, 0.8)


class ClipAdapter(nn.Module):
    """Fixed zero-shot texts + a trainable residual bottleneck adapter on the image feature."""

    name = "clip-adapter"

    def __init__(self, text: torch.Tensor, logit_scale: float, alpha: float = 0.2, reduction: int = 4):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha (residual ratio) must be in [0, 1], got {alpha}")
        dim = text.shape[-1]
        hidden = max(1, dim // reduction)
        self.register_buffer("text", text.detach().clone().float())    # (K, D), frozen
        self.adapter = nn.Sequential(nn.Linear(dim, hidden, bias=False), nn.ReLU(),
                                     nn.Linear(hidden, dim, bias=False), nn.ReLU())
        self.alpha = float(alpha)
        self.logit_scale = float(logit_scale)
        self.config = dict(alpha=alpha, reduction=reduction)

    @classmethod
    def from_state(cls, state: dict, logit_scale: float, config: dict) -> "ClipAdapter":
        return cls(state["text"], logit_scale, **config)

    def adapt(self, pooled: torch.Tensor) -> torch.Tensor:
        """The blended image feature ``alpha * A(f) + (1 - alpha) * f``: (B, D) -> (B, D)."""
        return self.alpha * self.adapter(pooled) + (1 - self.alpha) * pooled

    def forward(self, pooled: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        return zero_shot_logits(self.adapt(pooled), self.text, self.logit_scale)   # (B, K)


#: The values each option of ``build_clip_adapter`` allows.
OPTIONS = {"alpha": opt.number(0, 1), "reduction": opt.whole(1)}


def build_clip_adapter(ctx, alpha: float = 0.2, reduction: int = 4) -> ClipAdapter:
    """CLIP-Adapter (visual adapter) with the paper's defaults: reduction 4, alpha 0.2."""
    return ClipAdapter(ctx.text, ctx.logit_scale, alpha, reduction).to(ctx.text.device)
