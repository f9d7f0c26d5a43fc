"""Tip-Adapter and Tip-Adapter-F: a key-value cache of the few-shot images added to zero-shot CLIP.

Zhang, Zhang, Fang, Gao, Li, Dai, Qiao, Li, "Tip-Adapter: Training-free Adaption of CLIP for
Few-shot Classification", ECCV 2022. The cache's keys are the N few-shot image features (each
averaged over its augmented views, then L2-normalised), its values their one-hot labels L (N, K).
The views we average are the cached ones, each already unit length; the official
``build_cache_model`` averages the raw features, so a view with a larger norm weighs a little more
there, and keys differ from ours in the last digits.
For an image feature f (B, D):

    A      = exp(-beta * (1 - f @ keys.T))                     affinities             (B, N)
    logits = 100 * f @ W.T + alpha * A @ L                      (the paper)            (B, K)

We write ``logit_scale`` for the paper's 100 and scale the cache term by ``logit_scale / 100``, so
with OpenAI's CLIPs (logit_scale = 100) the logits are the paper's exactly, and for other models
the balance that alpha means is the paper's. alpha and beta are searched on the validation split
over Tip-Adapter's grid: beta in [0.1, B), 200 steps, alpha in [0.1, A), 20 steps, the first best
wins, where (B, A) is the official config's ``search_scale`` for the dataset (``SEARCH_SCALES``,
one entry per benchmark dataset: from (7, 3) for ImageNet to (50, 50) for Flowers102). Datasets
without an official config, the Pocket suite among them, use (7, 3).
The official code searches ImageNet's alpha, beta on its test set and Tip-Adapter-F picks
its epoch on the test set; here hyper-parameters come from val only and the last epoch is kept.

Tip-Adapter-F makes the keys a learnable linear layer initialised from the cache and fine-tunes it
through the shared trainer (the paper's schedule, ``train.METHOD_SCHEDULES["tip-adapter-f"]``: AdamW
1e-3, batch 256, 20 epochs, which the "paper" preset uses for this method); alpha,
beta come from the same val search before training (the official code trains with its config's initial
alpha, beta and searches only afterwards), and ``after_fit(val)`` re-searches them with
the tuned keys, as the official code does after training.
Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import options as opt
from ..features import FeatureSet
from ..prompts import zero_shot_logits

#: Tip-Adapter's default search: (largest beta, largest alpha) and their number of steps.
SEARCH_SCALE = (7.0, 3.0)
SEARCH_STEP = (200, 20)
#: The official per-dataset ``search_scale``, (beta's, alpha's), from gaopengcuhk/Tip-Adapter's
#: configs/<dataset>.yaml. ImageNet, Pets, DTD, EuroSAT and FGVC were read from that repository; the
#: other six from two forks of it (OE-Heart/Tip-Adapter, HiromasaYamsnishi/tip_adapter), which agree
#: with each other and with the five official files. Any other dataset uses SEARCH_SCALE.
SEARCH_SCALES = {"imagenet": (7.0, 3.0), "oxford_pets": (7.0, 3.0), "dtd": (13.0, 13.0),
                 "eurosat": (12.0, 10.0), "fgvc_aircraft": (30.0, 30.0), "caltech101": (12.0, 5.0),
                 "stanford_cars": (20.0, 10.0), "oxford_flowers": (50.0, 50.0), "food101": (10.0, 10.0),
                 "sun397": (12.0, 10.0), "ucf101": (7.0, 3.0)}


def search_grid(scale: float, steps: int) -> torch.Tensor:
    """Tip-Adapter's grid ``[i * (scale - 0.1) / steps + 0.1 for i in range(steps)]``: (steps,)."""
    return (0.1 + torch.arange(steps, dtype=torch.float64) * (scale - 0.1) / steps).float()


def cache_keys(train: FeatureSet) -> torch.Tensor:
    """Keys of the cache: each image's unit-length views averaged, renormalised: (N, D)."""
    return F.normalize(F.normalize(train.pooled.float(), dim=-1).mean(0), dim=-1)   # (V, N, D) -> (N, D)


class TipAdapter(nn.Module):
    """Zero-shot CLIP + the few-shot cache; nothing to train."""

    name = "tip-adapter"
    learnable_keys = False

    def __init__(self, text: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor,
                 logit_scale: float, alpha: float = 1.0, beta: float = 1.0, config: dict | None = None):
        super().__init__()
        if len(keys) != len(labels):
            raise ValueError(f"{len(keys)} cache keys but {len(labels)} labels")
        self.register_buffer("text", text.detach().clone().float())        # (K, D)
        keys = keys.detach().clone().float()                                # (N, D)
        if self.learnable_keys:
            self.keys = nn.Parameter(keys)
        else:
            self.register_buffer("keys", keys)
        self.register_buffer("labels", labels.detach().clone().long())     # (N,)
        self.register_buffer("alpha", torch.tensor(float(alpha)))          # buffers: a search's
        self.register_buffer("beta", torch.tensor(float(beta)))            # result is saved
        self.logit_scale = float(logit_scale)
        self.config = dict(config or {})

    @classmethod
    def from_state(cls, state: dict, logit_scale: float, config: dict) -> "TipAdapter":
        return cls(state["text"], state["keys"], state["labels"], logit_scale, config=config)

    def cosines(self, pooled: torch.Tensor) -> torch.Tensor:
        """``cos(f, keys)``: (B, D) -> (B, N)."""
        return F.normalize(pooled, dim=-1) @ self.keys.T

    def affinity(self, pooled: torch.Tensor, beta=None, cosines: torch.Tensor | None = None) -> torch.Tensor:
        """``exp(-beta (1 - cos(f, keys)))``: (B, D) -> (B, N). ``cosines``: ``self.cosines(pooled)``,
        if already computed (the val search reuses them for every beta)."""
        beta = self.beta if beta is None else beta
        return torch.exp(-beta * (1 - (self.cosines(pooled) if cosines is None else cosines)))   # (B, N)

    def cache_logits(self, pooled: torch.Tensor, beta=None, cosines: torch.Tensor | None = None) -> torch.Tensor:
        """The cache's vote ``A @ L`` scaled as the paper's (logit_scale / 100): (B, K)."""
        values = F.one_hot(self.labels, len(self.text)).to(pooled.dtype)   # (N, K) one-hot L
        return self.affinity(pooled, beta, cosines) @ values * (self.logit_scale / 100)   # (B, K)

    def forward(self, pooled: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        zs = zero_shot_logits(pooled, self.text, self.logit_scale)          # (B, K)
        return zs + self.alpha * self.cache_logits(pooled)

    @torch.no_grad()
    def search(self, val: FeatureSet, scale=SEARCH_SCALE, steps=SEARCH_STEP, fixed: dict | None = None) -> dict:
        """Set alpha, beta to the best val accuracy on Tip-Adapter's grid; returns the choice.

        ``fixed`` ({"alpha": a} or {"beta": b}) holds one of them at the given value and searches
        only the other."""
        if val is None or len(val) == 0:
            raise ValueError(f"{self.name}: searching alpha/beta needs the val split; pass alpha= and "
                             "beta= to fix them instead")
        fixed = fixed or {}
        pooled = val.pooled[0].to(self.text.device).float()                # (Nv, D)
        labels = val.labels.to(self.text.device)
        grid = {name: torch.tensor([float(fixed[name])]) if name in fixed else search_grid(scale[i], steps[i])
                for i, name in enumerate(("beta", "alpha"))}
        betas, alphas = grid["beta"], grid["alpha"]
        zs = zero_shot_logits(pooled, self.text, self.logit_scale)          # (Nv, K)
        acc = torch.empty(len(betas), len(alphas))
        cosines = self.cosines(pooled)                                      # (Nv, N), one for all betas
        for i, beta in enumerate(betas.tolist()):
            cache = self.cache_logits(pooled, beta, cosines)                # (Nv, K)
            logits = zs + alphas.to(zs.device)[:, None, None] * cache       # (nA, Nv, K)
            acc[i] = (logits.argmax(-1) == labels).float().mean(-1).cpu()   # (nA,)
        best = int(acc.flatten().argmax())                                  # first best (beta-major)
        beta, alpha = float(betas[best // len(alphas)]), float(alphas[best % len(alphas)])
        self.alpha.fill_(alpha)
        self.beta.fill_(beta)
        return {"alpha": alpha, "beta": beta, "val_acc": 100 * float(acc.flatten()[best])}


class TipAdapterF(TipAdapter):
    """Tip-Adapter with the cache keys as a learnable linear layer (fine-tuned by the trainer)."""

    name = "tip-adapter-f"
    learnable_keys = True

    def after_fit(self, val: FeatureSet | None) -> dict | None:
        """Re-search alpha, beta on val with the fine-tuned keys (the official code's last step)."""
        if val is None or not self.config.get("search", True):
            return None
        chosen = self.search(val, self.config.get("search_scale", SEARCH_SCALE),
                             self.config.get("search_step", SEARCH_STEP), self.config.get("fixed"))
        self.config["chosen_after_fit"] = chosen
        return chosen


def _build(cls, ctx, alpha, beta, search_scale, search_step):
    if search_scale is None:
        search_scale = SEARCH_SCALES.get(getattr(ctx, "dataset", ""), SEARCH_SCALE)
    fixed = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}
    search = len(fixed) < 2          # what is not given is searched on val; what is given stays
    config = dict(search=search, search_scale=list(search_scale), search_step=list(search_step), fixed=fixed)
    model = cls(ctx.text, cache_keys(ctx.train), ctx.train.labels, ctx.logit_scale,
                1.0 if alpha is None else alpha, 1.0 if beta is None else beta, config)
    model = model.to(ctx.text.device)
    if search:
        model.config["chosen"] = model.search(ctx.val, search_scale, search_step, fixed)
    return model


#: The values each option of ``build_tip_adapter(_f)`` allows (beta > 0: a cache entry's weight must
#: fall as its key moves away from the image; alpha >= 0: the cache adds its vote, never subtracts it).
OPTIONS = {"alpha": opt.number(0, none="searched on val"), "beta": opt.number(0, lo_open=True, none="searched on val"),
           "search_scale": opt.numbers(opt.number(0, lo_open=True), 2, none="the dataset's official scale"),
           "search_step": opt.numbers(opt.whole(1), 2)}


def build_tip_adapter(ctx, alpha: float | None = None, beta: float | None = None,
                      search_scale=None, search_step=SEARCH_STEP) -> TipAdapter:
    """Training-free Tip-Adapter; alpha and beta are searched on val, except one that is given (the
    grid's scale: the dataset's official one, ``SEARCH_SCALES``, unless ``search_scale`` is given)."""
    return _build(TipAdapter, ctx, alpha, beta, search_scale, search_step)


def build_tip_adapter_f(ctx, alpha: float | None = None, beta: float | None = None,
                        search_scale=None, search_step=SEARCH_STEP) -> TipAdapterF:
    """Tip-Adapter-F: the same cache and search, keys then fine-tuned by ``train.fit``."""
    return _build(TipAdapterF, ctx, alpha, beta, search_scale, search_step)
