"""CoOp: learnable prompt context vectors fed through CLIP's frozen text encoder.

Zhou, Yang, Loy, Liu, "Learning to Prompt for Vision-Language Models", IJCV 2022. Each class prompt
is ``[SOS] ctx_1 ... ctx_M classname . [EOS]`` where the M context vectors are learned (shared by
all classes by default, "unified context"; class token at the end). Every step runs the K prompts
through the frozen text transformer and back-propagates through it into the context: the real
method, which is why its cost grows with the number of classes. Defaults follow the paper:
M = 16 random N(0, 0.02) vectors, or ``ctx_init="a photo of a"`` (M = its 4 tokens), trained with
CoOp's own schedule (SGD 2e-3, batch 32, cosine, ``TrainConfig.paper``). CoOp reports the last
epoch; nothing is chosen on the test split.

The module only *references* the frozen text tower: ``parameters()`` / ``state_dict()`` hold the
context vectors and the prompt token ids, nothing of the backbone. After ``load_checkpoint`` call
``model.attach_clip(clip)`` with the same backbone before using it.
Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import options as opt
from ..prompts import fill, zero_shot_logits
from .text_towers import text_tower


class CoOp(nn.Module):
    """Prompt learner + frozen text tower: ``forward(pooled (B, D), spatial) -> logits (B, K)``."""

    name = "coop"

    def __init__(self, token_ids: torch.Tensor, ctx: torch.Tensor, logit_scale: float, config: dict):
        super().__init__()
        self.register_buffer("token_ids", token_ids.clone())     # (K, L) "[SOS] X..X name . [EOS]"
        self.ctx = nn.Parameter(ctx.detach().clone().float())    # (M, W) unified or (K, M, W) per class
        self.logit_scale = float(logit_scale)
        self.config = dict(config)                               # n_ctx, ctx_init, csc, backbone, weights
        self.register_buffer("token_prefix", None, persistent=False)   # (K, 1, W) [SOS]
        self.register_buffer("token_suffix", None, persistent=False)   # (K, L-1-M, W) name . [EOS] pad
        self.tower = None                                        # plain attribute: not a sub-module
        self._cache = None                                       # eval-time text features

    @classmethod
    def from_state(cls, state: dict, logit_scale: float, config: dict) -> "CoOp":
        """An instance shaped like a saved one; call ``attach_clip(clip)`` before using it."""
        return cls(state["token_ids"], state["ctx"], logit_scale, config)

    def attach_clip(self, clip) -> "CoOp":
        """Reference the frozen text tower of ``clip`` and embed the fixed prompt tokens with it."""
        want = (self.config.get("backbone"), self.config.get("weights"))
        if want != (None, None) and want != (clip.name, clip.weights_tag):
            raise ValueError(f"this CoOp was trained on backbone {want[0]!r} (weights {want[1]!r}), "
                             f"not {clip.name!r} ({clip.weights_tag!r})")
        self.tower = text_tower(clip)
        self.to(clip.device)                                               # live beside the tower
        m = self.ctx.shape[-2]
        with torch.no_grad():
            emb = self.tower.embed(self.token_ids)                         # (K, L, W)
        self.token_prefix, self.token_suffix = emb[:, :1], emb[:, 1 + m:]
        self._cache = None
        return self

    def prompts(self) -> torch.Tensor:
        """The K prompt embeddings with the learnable context in place: (K, L, W)."""
        ctx = self.ctx
        if ctx.ndim == 2:                                                  # unified context
            ctx = ctx.expand(len(self.token_ids), -1, -1)                  # (K, M, W)
        return torch.cat([self.token_prefix, ctx.to(self.token_prefix.dtype), self.token_suffix], dim=1)

    def text_features(self) -> torch.Tensor:
        """Class text features (K, D) from the current context (through the frozen encoder)."""
        if self.tower is None:
            raise RuntimeError("CoOp needs the frozen CLIP text tower: call model.attach_clip(clip) "
                               "with the backbone it was trained on (e.g. after load_checkpoint)")
        cacheable = not self.training and not torch.is_grad_enabled()
        key = (self.ctx._version, self.ctx.data_ptr())
        if cacheable and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        text = self.tower.encode(self.prompts(), self.token_ids).float()   # (K, D)
        self._cache = (key, text) if cacheable else None
        return text

    def forward(self, pooled: torch.Tensor, spatial: torch.Tensor | None = None) -> torch.Tensor:
        return zero_shot_logits(pooled, self.text_features(), self.logit_scale)   # (B, K)


def context_from_init(tower, ctx_init: str) -> torch.Tensor:
    """The token embeddings of ``ctx_init`` (e.g. "a photo of a"): (M, W), M = its token count."""
    ids = tower.tokenize([ctx_init])                                       # (1, L)
    m = int(tower.eos_index(ids)[0]) - 1                                   # tokens between SOS and EOS
    if m < 1:
        raise ValueError(f"ctx_init {ctx_init!r} has no tokens")
    with torch.no_grad():
        return tower.embed(ids)[0, 1:1 + m].float()                        # (M, W)


def check_context_slot(tower, token_ids: torch.Tensor, prefix: str, n_ctx: int) -> None:
    """Positions 1..M of every class prompt must hold the M context tokens (they get replaced)."""
    want = tower.tokenize([prefix])[0, 1:1 + n_ctx]                        # (M,)
    if len(want) < n_ctx or not torch.equal(token_ids[:, 1:1 + n_ctx], want.expand(len(token_ids), -1)):
        raise ValueError(f"the context {prefix!r} does not tokenize into the first {n_ctx} "
                         "positions of every class prompt (context too long for the tokenizer?)")


def check_prompts_fit(clip, prompts, classnames, n_ctx: int) -> None:
    """Every class prompt must fit the text encoder's context: a tokenizer cuts a longer one down to it,
    class name first, and two classes could then share one prompt (``FrozenCLIP.token_counts``)."""
    counts, context = clip.token_counts(prompts)
    cut = [c for c, n in zip(classnames, counts) if n > context]
    if cut:
        raise ValueError(f"CoOp's prompt ({n_ctx} context tokens, then the class name) does not fit the text "
                         f"encoder's {context} tokens for {len(cut)} class(es), e.g. {cut[:3]}: their "
                         "names would be cut off. Use fewer context tokens (--option n_ctx=...).")


#: The values each option of ``build_coop`` allows.
OPTIONS = {"n_ctx": opt.whole(1), "ctx_init": opt.text(none="random context vectors"), "csc": opt.flag(),
           "init_std": opt.number(0, lo_open=True)}


def build_coop(ctx, n_ctx: int = 16, ctx_init: str | None = None, csc: bool = False,
               init_std: float = 0.02) -> CoOp:
    """CoOp with the paper's defaults (16 unified random context tokens, class token at the end).

    ``ctx_init`` starts from a phrase's embeddings (then ``n_ctx`` = its token count), so that the
    untrained model equals zero-shot CLIP with the prompt ``f"{ctx_init} {classname}."``;
    ``csc=True`` learns one context per class (the paper's class-specific variant).
    """
    tower = text_tower(ctx.clip)
    if ctx_init:
        vectors = context_from_init(tower, ctx_init)                       # (M, W)
        n_ctx = len(vectors)
        prefix = ctx_init
    else:
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
        width = tower.embed(tower.tokenize(["x"])).shape[-1]
        shape = (len(ctx.classnames), n_ctx, width) if csc else (n_ctx, width)
        vectors = torch.randn(*shape) * init_std             # (M, W), or (K, M, W) drawn per class: CoOp's init
        prefix = " ".join(["X"] * n_ctx)                                   # placeholders, replaced
    if csc and vectors.ndim == 2:                                          # from ctx_init: every class starts there
        vectors = vectors.expand(len(ctx.classnames), -1, -1)             # (K, M, W)
    prompts = [fill(prefix + " {}.", c) for c in ctx.classnames]
    token_ids = tower.tokenize(prompts)                                    # (K, L)
    check_context_slot(tower, token_ids, prefix, n_ctx)
    check_prompts_fit(ctx.clip, prompts, ctx.classnames, n_ctx)
    config = dict(n_ctx=n_ctx, ctx_init=ctx_init, csc=csc, init_std=init_std,
                  backbone=ctx.clip.name, weights=ctx.clip.weights_tag)
    model = CoOp(token_ids, vectors.to(token_ids.device), ctx.logit_scale, config)
    return model.attach_clip(ctx.clip)
