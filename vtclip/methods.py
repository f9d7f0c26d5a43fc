"""The method registry: every classifier the trainer and the CLI know, built the same way.

``METHODS[name](ctx, **options) -> nn.Module`` builds a method from a ``MethodContext`` (frozen
backbone, class texts, few-shot features); every method maps (pooled, spatial) to logits.
Taught in: chapter 04 (VT-CLIP) and chapter 05 (baselines).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import options as opt
from .features import FeatureSet
from .prompts import zero_shot_logits
from .vtclip import VTCLIP


@dataclass
class MethodContext:
    """What a method may use when it is built: never the test split."""

    clip: object                 # the FrozenCLIP (CoOp needs its text tower)
    classnames: list[str]        # (K,) class names in label order
    templates: list[str]         # prompt templates of the dataset
    text: torch.Tensor           # (K, D) zero-shot class text features
    logit_scale: float           # CLIP's temperature
    train: FeatureSet            # few-shot training features (V views)
    val: FeatureSet | None       # few-shot validation features, for hyper-parameter choices
    dataset: str = ""            # the dataset's registry name, for per-dataset settings of a method's paper


class ZeroShot(nn.Module):
    """CLIP's zero-shot classifier: ``logit_scale * cos(image, class text)``; nothing to train."""

    name = "zeroshot"

    def __init__(self, text: torch.Tensor, logit_scale: float):
        super().__init__()
        self.register_buffer("text", text.detach().clone())   # (K, D)
        self.logit_scale = float(logit_scale)
        self.config = {}

    @classmethod
    def from_state(cls, state, logit_scale, config):
        return cls(state["text"], logit_scale)

    def forward(self, pooled: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        return zero_shot_logits(pooled, self.text, self.logit_scale)    # (B, K)


def build_zeroshot(ctx: MethodContext) -> ZeroShot:
    return ZeroShot(ctx.text, ctx.logit_scale)


def build_vtclip(ctx: MethodContext, heads: int = 8, layers: int = 1, ffn_ratio: float = 0.5,
                 dropout: float = 0.1, self_attn: bool = True, residual: bool = True) -> VTCLIP:
    """VT-CLIP with the paper's defaults (8 heads, 1 layer); C is read off the features."""
    return VTCLIP(ctx.text, ctx.logit_scale, d_visual=ctx.train.spatial.shape[-1], heads=heads,
                  layers=layers, ffn_ratio=ffn_ratio, dropout=dropout, self_attn=self_attn,
                  residual=residual)


#: name -> builder(ctx, **options)
METHODS: dict[str, Callable[..., nn.Module]] = {"zeroshot": build_zeroshot, "vtclip": build_vtclip}
#: name -> {option: the values it allows} (``vtclip.options``); baselines add theirs on import
OPTION_RULES: dict[str, dict[str, opt.Rule]] = {
    "vtclip": {"heads": opt.whole(1), "layers": opt.whole(1), "ffn_ratio": opt.number(0, lo_open=True),
               "dropout": opt.number(0, 1, hi_open=True), "self_attn": opt.flag(), "residual": opt.flag()},
}
#: name -> {option: values} that ``experiments.run_method`` chooses on the val split by default
#: (one training run per combination; an option passed explicitly is not searched)
VAL_GRIDS: dict[str, dict[str, tuple]] = {}
#: name -> class with ``from_state`` (for checkpoints)
METHOD_CLASSES: dict[str, type] = {"zeroshot": ZeroShot, "vtclip": VTCLIP}


def build_method(name: str, ctx: MethodContext, **options) -> nn.Module:
    """Build method ``name``; unknown names list the known ones, bad options say what they allow."""
    check_options(name, options)
    return METHODS[name](ctx, **options)


def check_options(name: str, options: dict) -> None:
    """Before any work: ``name`` is a method, and each option is one of its own, with a value it
    allows (``OPTION_RULES``, else its default's type); a ``ValueError`` naming the first that is not."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}. Known methods: {', '.join(METHODS)}")
    defaults = method_options(name)
    unknown = [k for k in options if k not in defaults]
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for method {name!r}. Its options: "
                         f"{', '.join(defaults) or 'none'}")
    rules = OPTION_RULES.get(name, {})
    for key, value in options.items():
        if key in rules:
            opt.check_option(name, key, value, rules[key])
        else:
            _check_option_type(name, key, value, defaults[key])


def method_options(name: str) -> dict:
    """The options ``build_method(name, ctx, **options)`` accepts: keyword -> default value."""
    params = list(inspect.signature(METHODS[name]).parameters.values())[1:]     # after ctx
    return {p.name: p.default for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _check_option_type(method: str, key: str, value, default) -> None:
    """An option's value must have its default's type (a whole number where an int is expected, ...)."""
    if default is None or default is inspect.Parameter.empty:
        return                                   # no default to go by (e.g. "chosen on val" when None)
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    else:
        return
    if not ok:
        raise ValueError(f"option {key}={value!r} of method {method!r} must be {want} (default {default!r})")


from . import baselines as _baselines  # noqa: F401,E402  (registers the baselines)
