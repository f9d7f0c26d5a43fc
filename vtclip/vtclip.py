"""VT-CLIP: class text features attend to the image's spatial map before pooling.

Per layer, a transformer decoder block over the K class texts (pre-norm):

    x = x + SelfAttn(LN(x))                         # texts look at each other    (K, D)
    x = x + CrossAttn(q=LN(x), k=v=LN(Vs))          # texts look at the image     (B, K, D)
    x = x + FFN(LN(x))                              #                             (B, K, D)

and the adapted texts are ``VTc = x_L = Tc + sum of the layers' updates`` (the paper's
``VTc = CrossAttn(Vs, Vs, Tc) + Tc``). The three output projections start at zero, so an untrained
head returns ``Tc`` exactly and classification starts at zero-shot accuracy. Logits are
``logit_scale * cos(pooled image feature, VTc)``.
Taught in: chapter 03 (cross-attention).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class VisualGuidedAttention(nn.Module):
    """One decoder block: text self-attention, text-to-image cross-attention, feed-forward."""

    def __init__(self, d_text: int, d_visual: int, heads: int = 8, ffn_ratio: float = 0.5,
                 dropout: float = 0.1, self_attn: bool = True):
        super().__init__()
        if not ffn_ratio > 0:
            raise ValueError(f"ffn_ratio={ffn_ratio}: the feed-forward layer has ffn_ratio x d_text hidden "
                             "units, so it must be > 0 (the paper's default is 0.5)")
        if heads < 1 or d_text % heads:
            divisors = [h for h in range(1, min(d_text, 64) + 1) if d_text % h == 0]
            raise ValueError(f"heads={heads} does not divide the text width d_text={d_text}: each head "
                             f"takes d_text / heads channels; choose one of {divisors}")
        self.heads = heads
        self.self_attn = None
        if self_attn:
            self.norm_sa = nn.LayerNorm(d_text)
            self.self_attn = nn.MultiheadAttention(d_text, heads, dropout=dropout, batch_first=True)
        self.norm_q = nn.LayerNorm(d_text)
        self.norm_kv = nn.LayerNorm(d_visual)
        self.q_proj = nn.Linear(d_text, d_text)
        self.k_proj = nn.Linear(d_visual, d_text)     # key/value dim C may differ from D
        self.v_proj = nn.Linear(d_visual, d_text)
        self.out_proj = nn.Linear(d_text, d_text)
        hidden = max(1, int(d_text * ffn_ratio))
        self.norm_ffn = nn.LayerNorm(d_text)
        self.ffn = nn.Sequential(nn.Linear(d_text, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, d_text))
        self.dropout = nn.Dropout(dropout)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Zero every update's output projection: the block then returns its input unchanged."""
        last = [self.out_proj, self.ffn[-1]] + ([self.self_attn.out_proj] if self.self_attn else [])
        for lin in last:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def text_self_attention(self, x: torch.Tensor) -> torch.Tensor:
        """x + SelfAttn(LN(x)) over the class axis: (..., K, D) -> (..., K, D)."""
        if self.self_attn is None:
            return x
        h = self.norm_sa(x)
        squeeze = h.ndim == 2
        h = h.unsqueeze(0) if squeeze else h                        # (B or 1, K, D)
        h = self.self_attn(h, h, h, need_weights=False)[0]
        return x + (h.squeeze(0) if squeeze else h)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(..., N, D) -> (..., heads, N, D/heads)."""
        return t.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def text_part(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image-independent half: self-attended texts and their queries.

        (K, D) -> (K, D), (h, K, d); or per image (B, K, D) -> (B, K, D), (B, h, K, d).
        """
        x = self.text_self_attention(x)                             # (K, D) or (B, K, D)
        return x, self.split_heads(self.q_proj(self.norm_q(x)))    # queries (h, K, d) or (B, h, K, d)

    def attend(self, x: torch.Tensor, q: torch.Tensor, visual: torch.Tensor,
               return_attention: bool = False):
        """The image-dependent half: cross-attention to ``visual`` (B, HW, C) and the FFN -> (B, K, D)."""
        mem = self.norm_kv(visual)                                  # (B, HW, C)
        k = self.split_heads(self.k_proj(mem))                      # (B, h, HW, d)
        v = self.split_heads(self.v_proj(mem))                      # (B, h, HW, d)
        q = q.expand(k.shape[0], *q.shape[-3:])                     # (B, h, K, d), a view
        attn = None
        if return_attention:
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)  # (B, h, K, HW)
            ctx = self.dropout(attn) @ v                            # (B, h, K, d)
        else:
            p = self.dropout.p if self.training else 0.0
            ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=p)   # (B, h, K, d)
        ctx = ctx.transpose(-3, -2).flatten(-2)                     # (B, K, D)
        x = x + self.dropout(self.out_proj(ctx))                    # broadcasts (K, D) over B
        x = x + self.dropout(self.ffn(self.norm_ffn(x)))            # (B, K, D)
        return (x, attn) if return_attention else x

    def forward(self, x: torch.Tensor, visual: torch.Tensor, return_attention: bool = False):
        """Texts ``x`` (K, D) or (B, K, D) attend to ``visual`` (B, HW, C) -> (B, K, D)."""
        return self.attend(*self.text_part(x), visual, return_attention=return_attention)


class VTCLIPHead(nn.Module):
    """A stack of ``layers`` visual-guided attention blocks with the outer residual onto the texts."""

    def __init__(self, d_text: int, d_visual: int, heads: int = 8, layers: int = 1,
                 ffn_ratio: float = 0.5, dropout: float = 0.1, self_attn: bool = True,
                 residual: bool = True):
        super().__init__()
        if layers < 0:
            raise ValueError(f"layers={layers}: a head has 0 or more decoder layers (0 = the texts unchanged)")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout}: the probability of zeroing an activation, in [0, 1)")
        self.config = dict(d_text=d_text, d_visual=d_visual, heads=heads, layers=layers,
                           ffn_ratio=ffn_ratio, dropout=dropout, self_attn=self_attn, residual=residual)
        self.residual = residual
        self.blocks = nn.ModuleList(
            VisualGuidedAttention(d_text, d_visual, heads, ffn_ratio, dropout, self_attn)
            for _ in range(layers))

    def forward(self, text: torch.Tensor, spatial: torch.Tensor, return_attention: bool = False):
        """Adapt class texts (K, D) to each image's spatial map (B, HW, C): -> (B, K, D).

        With ``return_attention`` also returns the cross-attention maps, one (B, h, K, HW) per layer.
        """
        x, maps = text, []
        for i, block in enumerate(self.blocks):
            # layer 1's queries depend on the class set only; later layers' on the image too
            x, q = self.first_text_part(text) if i == 0 else block.text_part(x)
            if return_attention:
                x, a = block.attend(x, q, spatial, return_attention=True)
                maps.append(a)
            else:
                x = block.attend(x, q, spatial)
        x = x.expand(spatial.shape[0], *text.shape) if x.ndim == 2 else x   # layers == 0
        adapted = x if self.residual else x - text                    # VTc = Tc + updates
        return (adapted, maps) if return_attention else adapted

    def first_text_part(self, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer 1's image-independent work (text self-attention, queries), once per class set.

        In inference (eval mode, no gradients) the result is kept and reused while ``text`` and
        the block's weights are unchanged; "unchanged" is checked by exact comparison with stored
        copies (``torch.equal``, about a millisecond), so in-place edits, ``load_state_dict`` and
        ``.to()`` can never serve a stale result. In training it is recomputed every call (the
        weights move and gradients must flow).
        """
        block = self.blocks[0]
        if self.training or torch.is_grad_enabled():
            return block.text_part(text)
        inputs = [text, *block.parameters()]
        cached = self.__dict__.get("_text_cache")               # plain attribute: not in state_dict
        if cached is not None and len(cached[0]) == len(inputs) and all(
                a.shape == b.shape and a.device == b.device and a.dtype == b.dtype and torch.equal(a, b)
                for a, b in zip(cached[0], inputs)):
            return cached[1]
        out = block.text_part(text)                                 # (K, D), (h, K, d)
        self.__dict__["_text_cache"] = ([t.detach().clone() for t in inputs], out)
        return out


def vtclip_logits(pooled: torch.Tensor, adapted: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """``logit_scale * cos(image, adapted class text)``: (B, D), (B, K, D) -> (B, K).

    Equal to normalising both sides first, but divides the (B, K) dot products by the norms
    instead of the (B, K, D) texts: one pass fewer over the largest tensor, forward and backward.
    """
    pooled = F.normalize(pooled, dim=-1)                               # (B, D)
    dots = torch.einsum("bd,bkd->bk", pooled, adapted)                 # (B, K)
    return logit_scale * dots / adapted.norm(dim=-1).clamp_min(1e-12)  # F.normalize's eps


class VTCLIP(nn.Module):
    """The classifier: fixed zero-shot class texts + a trainable ``VTCLIPHead``.

    ``forward(pooled (B, D), spatial (B, HW, C)) -> logits (B, K)``, the interface every method
    in vtclip shares.

    The update a class receives depends on the class only through its text feature (the query), so
    classes whose zero-shot texts are nearly equal get nearly equal updates. Where zero-shot is also
    confidently wrong, training first drives the logits to uniform (loss ln K, train accuracy at
    chance) and leaves that plateau slowly: on ``pocket-symbols`` (mean text-text cosine 0.90) CoOp's
    SGD schedule stays there for all 200 epochs, while AdamW or a 10x learning rate get out
    (chapter 3, "When training cannot leave zero-shot"), and so does the head without
    self-attention among the texts on two seeds of three (chapter 7's ablations). Where the
    *image* features are concentrated as well (a 3-class folder whose pooled Pocket features have
    mean pairwise cosine 0.9995, issue 22's hostile pass), the head stays at zero-shot with AdamW
    and a 10x learning rate too, while a linear probe on the same features gains: use a method with
    free per-class weights (linear probe, Tip-Adapter-F) there.
    """

    name = "vtclip"

    def __init__(self, text: torch.Tensor, logit_scale: float, d_visual: int, **head_kwargs):
        super().__init__()
        self.register_buffer("text", text.detach().clone())          # (K, D), frozen
        self.logit_scale = float(logit_scale)
        self.config = dict(d_visual=d_visual, **head_kwargs)         # JSON-able, for checkpoints
        self.head = VTCLIPHead(text.shape[-1], d_visual, **head_kwargs)

    @classmethod
    def from_state(cls, state: dict, logit_scale: float, config: dict) -> "VTCLIP":
        """An untrained instance shaped like a saved one (then ``load_state_dict(state)``)."""
        return cls(state["text"], logit_scale, **config)

    def forward(self, pooled: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        return vtclip_logits(pooled, self.head(self.text, spatial), self.logit_scale)

    @torch.no_grad()
    def explain(self, pooled: torch.Tensor, spatial: torch.Tensor) -> dict:
        """Logits before/after adaptation and the attention maps (for pictures)."""
        adapted, maps = self.head(self.text, spatial, return_attention=True)
        return {"zeroshot": vtclip_logits(pooled, self.text.expand_as(adapted), self.logit_scale),
                "vtclip": vtclip_logits(pooled, adapted, self.logit_scale),
                "attention": maps}                                    # [(B, h, K, HW)] per layer
