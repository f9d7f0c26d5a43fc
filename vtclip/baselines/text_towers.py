"""A frozen CLIP text tower with an embeddings-in entry point, for both families (CoOp needs it).

``encode_text`` starts from token ids; prompt learning must start one step later, from token
*embeddings*, some of which are learnable. ``text_tower(clip)`` returns an object with

    tokenize(texts)            -> ids (K, L)
    embed(ids)                 -> token embeddings (K, L, W)
    encode(embeddings, ids)    -> text features (K, D)   (positions, causal transformer,
                                                           final layer norm, EOS pooling, projection)

so that ``encode(embed(ids), ids)`` equals the library's own text embedding. The tower is only
referenced, never copied: gradients flow *through* its frozen weights into the embeddings.
Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

from typing import Sequence

import torch


class HFTextTower:
    """The text tower of a transformers ``CLIPModel`` (OpenAI ViTs, local dirs, Pocket CLIP)."""

    def __init__(self, clip):
        self.clip = clip
        self.model = clip.model                       # CLIPModel (frozen)
        self.text = clip.model.text_model             # CLIPTextModel: embeddings, encoder, final LN
        impl = getattr(self.text.config, "_attn_implementation", "eager")
        if impl not in (None, "eager", "sdpa"):
            raise ValueError(f"CoOp's text path supports eager/sdpa attention, not {impl!r}")

    @property
    def dtype(self) -> torch.dtype:
        return self.text.embeddings.token_embedding.weight.dtype

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.clip.tokenize(texts)["input_ids"]                     # (K, L), padded to longest

    def eos_index(self, ids: torch.Tensor) -> torch.Tensor:
        """Position of each prompt's EOS token, as transformers' CLIPTextModel finds it: (K,)."""
        if self.text.eos_token_id == 2:       # legacy configs (OpenAI's): EOS has the highest id
            return ids.argmax(dim=-1)
        return (ids == self.text.eos_token_id).int().argmax(dim=-1)     # first EOS (pad may equal it)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text.embeddings.token_embedding(ids)                  # (K, L, W)

    def encode(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings (K, L, W) -> projected text features (K, D), unnormalised."""
        length = x.shape[1]
        h = self.text.embeddings(inputs_embeds=x.to(self.dtype))          # + positions, (K, L, W)
        causal = torch.full((length, length), torch.finfo(h.dtype).min, device=h.device,
                            dtype=h.dtype).triu(1)                        # (L, L), 0 on/below diagonal
        h = self.text.encoder(inputs_embeds=h, attention_mask=causal[None, None]).last_hidden_state
        h = self.text.final_layer_norm(h)                                 # (K, L, W)
        pooled = h[torch.arange(len(h), device=h.device), self.eos_index(ids)]   # (K, W)
        return self.model.text_projection(pooled)                         # (K, D)


class OpenCLIPTextTower:
    """The text tower of an open_clip ``CLIP`` (the paper's RN50/RN101)."""

    def __init__(self, clip):
        self.clip = clip
        self.model = clip.model
        if not hasattr(self.model, "token_embedding"):
            raise ValueError(f"{clip.name}: CoOp needs an open_clip CLIP with a built-in text "
                             "transformer (token_embedding), not a CustomTextCLIP")

    @property
    def dtype(self) -> torch.dtype:
        return self.model.transformer.get_cast_dtype()

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (K, L), cut after the longest prompt's EOS when pooling looks for the EOS."""
        ids = self.clip.tokenizer(list(texts)).to(self.clip.device)      # (K, context_length)
        if self.model.text_pool_type in ("argmax", "eos"):
            # causal attention: positions after the EOS never reach it, so dropping them is exact
            ids = ids[:, :int(self.eos_index(ids).max()) + 1]            # (K, L)
        return ids

    def eos_index(self, ids: torch.Tensor) -> torch.Tensor:
        eos = getattr(self.model, "text_eos_id", None)
        if self.model.text_pool_type == "eos" and eos is not None:
            return (ids == eos).int().argmax(dim=-1)
        return ids.argmax(dim=-1)                                         # (K,) OpenAI's EOS = max id

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.token_embedding(ids).to(self.dtype)             # (K, L, W)

    def encode(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings (K, L, W) -> projected text features (K, D), as ``CLIP.encode_text``."""
        from open_clip.transformer import text_global_pool

        m, length = self.model, x.shape[1]
        x = x.to(self.dtype) + m.positional_embedding[:length].to(self.dtype)   # (K, L, W)
        mask = None if m.attn_mask is None else m.attn_mask[:length, :length]   # (L, L) causal
        x = m.ln_final(m.transformer(x, attn_mask=mask))                  # (K, L, W)
        x = text_global_pool(x, ids, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
        if isinstance(m.text_projection, torch.nn.Linear):
            return m.text_projection(x)                                   # (K, D)
        return x @ m.text_projection if m.text_projection is not None else x


def text_tower(clip):
    """The embeddings-in text tower of a FrozenCLIP of either family."""
    family = getattr(clip, "family", None)
    if family == "transformers":
        return HFTextTower(clip)
    if family == "open_clip":
        return OpenCLIPTextTower(clip)
    raise ValueError(f"no text tower for a backbone of family {family!r} "
                     "(CoOp supports transformers and open_clip CLIPs)")
