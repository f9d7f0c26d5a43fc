"""The baselines VT-CLIP is compared with, registered into ``methods.METHODS`` on import.

``linear-probe``, ``clip-adapter``, ``coop``, ``tip-adapter`` and ``tip-adapter-f``: each an
``nn.Module`` with ``forward(pooled (B, D), spatial (B, HW, C)) -> logits (B, K)``, built by
``builder(ctx: MethodContext, **options)`` with its paper's defaults and trained (if at all) by the
shared ``train.fit``. Hyper-parameters a paper tunes are chosen on the val split, never on test.
Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

from ..methods import METHOD_CLASSES, METHODS, OPTION_RULES, VAL_GRIDS
from . import clip_adapter, coop, linear_probe, tip_adapter
from .clip_adapter import ALPHA_GRID, ClipAdapter, build_clip_adapter
from .coop import CoOp, build_coop
from .linear_probe import LinearProbe, build_linear_probe
from .tip_adapter import TipAdapter, TipAdapterF, build_tip_adapter, build_tip_adapter_f

#: name -> (builder, class): what this package adds to the registry.
BASELINES = {
    "linear-probe": (build_linear_probe, LinearProbe),
    "clip-adapter": (build_clip_adapter, ClipAdapter),
    "coop": (build_coop, CoOp),
    "tip-adapter": (build_tip_adapter, TipAdapter),
    "tip-adapter-f": (build_tip_adapter_f, TipAdapterF),
}

#: name -> the values each of its options allows
RULES = {"linear-probe": linear_probe.OPTIONS, "clip-adapter": clip_adapter.OPTIONS, "coop": coop.OPTIONS,
         "tip-adapter": tip_adapter.OPTIONS, "tip-adapter-f": tip_adapter.OPTIONS}

for _name, (_builder, _cls) in BASELINES.items():
    METHODS.setdefault(_name, _builder)
    METHOD_CLASSES.setdefault(_name, _cls)
    OPTION_RULES.setdefault(_name, RULES[_name])
VAL_GRIDS.setdefault("clip-adapter", {"alpha": ALPHA_GRID})

__all__ = ["BASELINES", "ClipAdapter", "CoOp", "LinearProbe", "TipAdapter", "TipAdapterF"]
