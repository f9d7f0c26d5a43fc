"""Linear probe: L2-regularised logistic regression on the frozen pooled features.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021,
and CoOp's few-shot protocol (Zhou et al., IJCV 2022): a softmax classifier ``W f + b`` trained
**from scratch** on the few-shot features (it does not start from, nor use, the zero-shot texts),
with the regularisation strength C chosen on the validation split. We solve it in torch with
full-batch L-BFGS (no sklearn) on sklearn's objective ``C * sum(CE) + ||W||^2 / 2`` (bias not
penalised), every augmented train view being one sample. C is searched as in CoOp's ``lpclip``: a
coarse log grid, then a few halvings of the step around the best (on val, never test). Four
differences from ``lpclip``: it fits one un-augmented feature per image, where we fit every cached
view; it fits the raw image features, where we fit the L2-normalised ones every other method sees;
sklearn's L-BFGS there runs up to 1000 iterations, ours up to ``max_iter=300`` (or until the
gradient is below 1e-7); and on ties its grid order keeps the largest C, where ours (ascending,
first best) keeps the smallest. With one to four val images per class ties are common, so the
chosen C can differ.

The builder solves it; the module is then frozen, so ``train.fit`` has nothing to do.
``solver="trainer"`` instead starts from zero weights and lets the shared trainer fit it (weight
decay as the regulariser): plain softmax regression, for comparison.
Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .. import options as opt
from ..features import FeatureSet


class LinearProbe(nn.Module):
    """``logits = W f + b`` on the L2-normalised pooled feature; ``logit_scale`` is not used."""

    name = "linear-probe"

    def __init__(self, dim: int, num_classes: int, logit_scale: float, C: float | None = None,
                 solver: str = "lbfgs"):
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.logit_scale = float(logit_scale)       # kept for the shared interface only
        self.config = dict(dim=dim, num_classes=num_classes, C=C, solver=solver)

    @classmethod
    def from_state(cls, state: dict, logit_scale: float, config: dict) -> "LinearProbe":
        model = cls(config["dim"], config["num_classes"], logit_scale, config["C"], config["solver"])
        model.config = dict(config)
        return model.requires_grad_(config["solver"] != "lbfgs")

    def forward(self, pooled: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(F.normalize(pooled, dim=-1))                    # (B, K)


def train_samples(train: FeatureSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Every view of every image as a sample: (V*N, D) features, (V*N,) labels."""
    x = F.normalize(train.pooled.float(), dim=-1).flatten(0, 1)           # (V, N, D) -> (V*N, D)
    return x, train.labels.to(x.device).repeat(train.views)               # view-major, like x


def solve(x: torch.Tensor, y: torch.Tensor, num_classes: int, C: float,
          max_iter: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``mean CE + ||W||^2 / (2 C n)`` (sklearn's objective / (C n)) with L-BFGS."""
    w = torch.zeros(num_classes, x.shape[1], device=x.device, requires_grad=True)   # (K, D)
    b = torch.zeros(num_classes, device=x.device, requires_grad=True)               # (K,)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=10,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")
    l2 = 1.0 / (2 * C * len(x))

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + l2 * w.pow(2).sum()       # (n, K) logits
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return ((x @ w.T + b).argmax(-1) == y).float().mean().item()


def search_c(x, y, xv, yv, num_classes: int, grid=(1e-6, 1e-4, 1e-2, 1, 1e2, 1e4, 1e6),
             refine: int = 4, max_iter: int = 300) -> tuple[float, tuple, list]:
    """Best C on val: the coarse ``grid`` (log-spaced), then ``refine`` halvings of the log step.

    Returns (C, (W, b) fitted on train with that C, [(C, val accuracy), ...] in search order).
    """
    tried = {}

    def trial(c):
        if c not in tried:
            wb = solve(x, y, num_classes, c, max_iter)
            tried[c] = (accuracy(*wb, xv, yv), wb)
        return tried[c][0]

    for c in grid:
        trial(c)
    best = max(grid, key=trial)                                           # first best on ties
    step = math.log10(grid[1] / grid[0]) / 2 if len(grid) > 1 else 0.0
    for _ in range(refine if step else 0):
        for c in (best * 10 ** -step, best * 10 ** step):
            if trial(c) > trial(best):
                best = c
        step /= 2
    history = [(c, 100 * acc) for c, (acc, _) in tried.items()]
    return best, tried[best][1], history


#: The values each option of ``build_linear_probe`` allows.
OPTIONS = {"C": opt.number(0, lo_open=True, none="searched on val"), "solver": opt.choice("lbfgs", "trainer"),
           "grid": opt.numbers(opt.number(0, lo_open=True)), "refine": opt.whole(0), "max_iter": opt.whole(1)}


def build_linear_probe(ctx, C: float | None = None, solver: str = "lbfgs",
                       grid=(1e-6, 1e-4, 1e-2, 1, 1e2, 1e4, 1e6), refine: int = 4,
                       max_iter: int = 300) -> LinearProbe:
    """A linear probe solved on ``ctx.train`` with C searched on ``ctx.val`` (or the given C)."""
    if solver not in ("lbfgs", "trainer"):
        raise ValueError(f"solver must be 'lbfgs' or 'trainer', got {solver!r}")
    dim, k = ctx.train.pooled.shape[-1], len(ctx.classnames)
    model = LinearProbe(dim, k, ctx.logit_scale, C, solver).to(ctx.train.pooled.device)
    if solver == "trainer":
        return model
    x, y = train_samples(ctx.train)
    if C is None:
        if ctx.val is None or len(ctx.val) == 0:
            raise ValueError("linear-probe searches C on the val split; none was given (pass C=...)")
        xv = F.normalize(ctx.val.pooled[0].float(), dim=-1).to(x.device)  # (Nv, D)
        C, (w, b), history = search_c(x, y, xv, ctx.val.labels.to(x.device), k, list(grid),
                                      refine, max_iter)
        model.config.update(C=C, search=[[c, round(a, 2)] for c, a in history],
                            chosen={"C": C, "val_acc": round(dict(history)[C], 2)})   # in the run's record
    else:
        w, b = solve(x, y, k, C, max_iter)
    with torch.no_grad():
        model.linear.weight.copy_(w)
        model.linear.bias.copy_(b)
    return model.requires_grad_(False)                 # solved: nothing left for train.fit
