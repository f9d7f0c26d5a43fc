"""The VT-CLIP head: identity at init, shapes, attention, gradients, image-independence."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtclip.prompts import zero_shot_logits
from vtclip.vtclip import VTCLIP, VisualGuidedAttention, VTCLIPHead


def _inputs(K=5, D=32, B=3, HW=7, C=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    text = F.normalize(torch.randn(K, D, generator=g), dim=-1)
    return text, torch.randn(B, D, generator=g), torch.randn(B, HW, C, generator=g)


@pytest.mark.parametrize("layers", [1, 2])
def test_untrained_head_is_zero_shot(layers):
    text, pooled, spatial = _inputs()
    model = VTCLIP(text, 100.0, d_visual=48, heads=4, layers=layers)
    model.train()  # dropout on: the zeroed projections still make every update exactly 0
    torch.testing.assert_close(model.head(text, spatial), text.expand(3, -1, -1), atol=0, rtol=0)
    torch.testing.assert_close(model(pooled, spatial), zero_shot_logits(pooled, text, 100.0),
                               atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("K,HW,C,D", [(5, 7, 48, 32), (100, 49, 2048, 64), (3, 196, 16, 16)])
def test_shapes_for_k_hw_c_d(K, HW, C, D):
    text, pooled, spatial = _inputs(K, D, 2, HW, C)
    head = VTCLIPHead(D, C, heads=4)
    adapted, maps = head(text, spatial, return_attention=True)
    assert adapted.shape == (2, K, D)
    assert len(maps) == 1 and maps[0].shape == (2, 4, K, HW)


def test_attention_rows_sum_to_one_and_match_fused_path():
    text, pooled, spatial = _inputs()
    model = VTCLIP(text, 100.0, d_visual=48, heads=4)
    for p in model.parameters():            # leave the identity init: a generic trained state
        p.data.add_(0.1 * torch.randn_like(p))
    model.eval()
    adapted, maps = model.head(text, spatial, return_attention=True)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(3, 4, 5))
    torch.testing.assert_close(adapted, model.head(text, spatial), atol=1e-5, rtol=1e-5)


def test_gradient_reaches_only_the_head():
    text, pooled, spatial = _inputs()
    spatial.requires_grad_(True)
    model = VTCLIP(text, 100.0, d_visual=48, heads=4)
    F.cross_entropy(model(pooled, spatial), torch.tensor([0, 1, 2])).backward()
    assert model.text.grad is None and not model.text.requires_grad
    names = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert names and all(n.startswith("head.") for n in names)
    # zero-initialised output projections receive gradient first (they are what moves off identity)
    assert "head.blocks.0.out_proj.weight" in names


def test_image_independent_text_part_is_shared():
    """Layer 1's text self-attention and queries are per class set, not per image: the same
    adapted texts come out whether an image is processed alone or in a batch."""
    text, pooled, spatial = _inputs(B=4)
    head = VTCLIPHead(32, 48, heads=4).eval()
    for p in head.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    batch = head(text, spatial)
    alone = torch.cat([head(text, spatial[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)


def test_no_residual_and_no_self_attention_options():
    text, pooled, spatial = _inputs()
    head = VTCLIPHead(32, 48, heads=4, residual=False, self_attn=False)
    assert head.blocks[0].self_attn is None
    assert torch.count_nonzero(head(text, spatial)) == 0     # only the (zero) update remains


def test_bad_heads_and_layers_say_what_to_choose():
    with pytest.raises(ValueError, match=r"heads=4 does not divide .* d_text=30.*choose one of \[1, 2, 3, 5, 6, 10, 15, 30\]"):
        VisualGuidedAttention(30, 48, heads=4)
    with pytest.raises(ValueError, match="heads=0"):
        VisualGuidedAttention(30, 48, heads=0)
    with pytest.raises(ValueError, match="layers=-1"):
        VTCLIPHead(30, 48, heads=3, layers=-1)
