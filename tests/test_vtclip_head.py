"""The VT-CLIP head: identity at init, shapes, attention, gradients, image-independence."""
from __future__ import annotations

import math

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


def _randomise(module, seed=1):
    """Random non-identity weights: LayerNorm gains around 1, biases ~0.2, linear maps ~1/sqrt(fan_in)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 2:
                p.copy_(noise / p.shape[1] ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * noise)
            else:
                p.copy_(0.2 * noise)
    return module


def test_no_residual_and_no_self_attention_options():
    text, pooled, spatial = _inputs()
    head = VTCLIPHead(32, 48, heads=4, residual=False, self_attn=False)
    assert head.blocks[0].self_attn is None
    assert torch.count_nonzero(head(text, spatial)) == 0     # only the (zero) update remains


@pytest.mark.parametrize("layers", [1, 2])
def test_no_residual_returns_the_updates_of_the_same_weights(layers):
    text, pooled, spatial = _inputs()
    with_res = _randomise(VTCLIPHead(32, 48, heads=4, layers=layers)).eval()
    without = VTCLIPHead(32, 48, heads=4, layers=layers, residual=False).eval()
    without.load_state_dict(with_res.state_dict())
    adapted = with_res(text, spatial)                                   # (B, K, D)
    assert (adapted - text).abs().max() > 0.1                           # far from identity
    torch.testing.assert_close(without(text, spatial), adapted - text, atol=0, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_no_self_attention_is_self_attention_with_a_zero_output(layers):
    text, pooled, spatial = _inputs()
    full = _randomise(VTCLIPHead(32, 48, heads=4, layers=layers)).eval()
    plain = VTCLIPHead(32, 48, heads=4, layers=layers, self_attn=False).eval()
    missing, unexpected = plain.load_state_dict(full.state_dict(), strict=False)
    assert missing == [] and unexpected and all(
        k.split(".")[2] in ("norm_sa", "self_attn") for k in unexpected)  # only the self-attention's
    assert not torch.allclose(plain(text, spatial), full(text, spatial), atol=1e-3)   # it contributes
    with torch.no_grad():
        for block in full.blocks:                                       # silence it, keep its inputs
            block.self_attn.out_proj.weight.zero_()
            block.self_attn.out_proj.bias.zero_()
    torch.testing.assert_close(plain(text, spatial), full(text, spatial), atol=1e-6, rtol=1e-6)
    with torch.no_grad():                                               # the cached inference path too
        torch.testing.assert_close(plain(text, spatial), full(text, spatial), atol=1e-6, rtol=1e-6)


# ---- an independent reference: the block written out with plain torch ops ----------------------
def _layer_norm(x, weight, bias, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)                      # biased variance
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def _attention(q, k, v, heads):
    """Per head: softmax(q k^T / sqrt(d)) v on channel slice h*d:(h+1)*d; heads concatenated.

    q (..., Nq, D), k and v (..., Nk, D) -> (..., Nq, D), maps (..., heads, Nq, Nk)."""
    d = q.shape[-1] // heads
    outs, maps = [], []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(d), dim=-1)
        outs.append(a @ v[..., sl])
        maps.append(a)
    return torch.cat(outs, dim=-1), torch.stack(maps, dim=-3)


def _reference_head(head, text, spatial, heads):
    """The documented pre-norm decoder block(s), with the head's parameters."""
    x, maps = text, []
    for block in head.blocks:
        P = {n: p.detach() for n, p in block.named_parameters()}
        if block.self_attn is not None:                                 # texts attend to each other
            h = _layer_norm(x, P["norm_sa.weight"], P["norm_sa.bias"])
            wq, wk, wv = P["self_attn.in_proj_weight"].chunk(3)
            bq, bk, bv = P["self_attn.in_proj_bias"].chunk(3)
            o, _ = _attention(h @ wq.T + bq, h @ wk.T + bk, h @ wv.T + bv, heads)
            x = x + o @ P["self_attn.out_proj.weight"].T + P["self_attn.out_proj.bias"]
        q = _layer_norm(x, P["norm_q.weight"], P["norm_q.bias"]) @ P["q_proj.weight"].T + P["q_proj.bias"]
        mem = _layer_norm(spatial, P["norm_kv.weight"], P["norm_kv.bias"])          # (B, HW, C)
        k = mem @ P["k_proj.weight"].T + P["k_proj.bias"]                            # (B, HW, D)
        v = mem @ P["v_proj.weight"].T + P["v_proj.bias"]
        o, a = _attention(q, k, v, heads)                               # texts attend to the image
        maps.append(a)
        x = x + o @ P["out_proj.weight"].T + P["out_proj.bias"]         # (B, K, D)
        f = _layer_norm(x, P["norm_ffn.weight"], P["norm_ffn.bias"]) @ P["ffn.0.weight"].T + P["ffn.0.bias"]
        f = 0.5 * f * (1 + torch.erf(f / math.sqrt(2)))                 # exact GELU
        x = x + f @ P["ffn.3.weight"].T + P["ffn.3.bias"]
    return x, maps                                                      # x = Tc + the updates


@pytest.mark.parametrize("layers", [1, 2])
def test_head_matches_a_hand_written_reference(layers):
    K, D, B, HW, C, heads, scale = 5, 32, 3, 7, 48, 4, 42.0
    text, pooled, spatial = _inputs(K, D, B, HW, C, seed=2)
    model = VTCLIP(text, scale, d_visual=C, heads=heads, layers=layers)
    _randomise(model.head, seed=3).eval()
    ref, ref_maps = _reference_head(model.head, text, spatial, heads)
    assert ref.shape == (B, K, D) and (ref - text).abs().max() > 0.1
    assert ref_maps[0].amax(-1).mean() > 2 / HW                        # attention is far from uniform
    torch.testing.assert_close(model.head(text, spatial), ref, atol=1e-5, rtol=1e-5)
    adapted, maps = model.head(text, spatial, return_attention=True)
    torch.testing.assert_close(adapted, ref, atol=1e-5, rtol=1e-5)
    for got, want in zip(maps, ref_maps, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model.head(text, spatial), ref, atol=1e-5, rtol=1e-5)
    cos = (pooled[:, None] * ref).sum(-1) / (pooled.norm(dim=-1)[:, None] * ref.norm(dim=-1))
    torch.testing.assert_close(model(pooled, spatial), scale * cos, atol=1e-4, rtol=1e-5)
    explained = model.explain(pooled, spatial)
    torch.testing.assert_close(explained["vtclip"], scale * cos, atol=1e-4, rtol=1e-5)


def test_bad_heads_and_layers_say_what_to_choose():
    with pytest.raises(ValueError, match=r"heads=4 does not divide .* d_text=30.*choose one of \[1, 2, 3, 5, 6, 10, 15, 30\]"):
        VisualGuidedAttention(30, 48, heads=4)
    with pytest.raises(ValueError, match="heads=0"):
        VisualGuidedAttention(30, 48, heads=0)
    with pytest.raises(ValueError, match="layers=-1"):
        VTCLIPHead(30, 48, heads=3, layers=-1)


def test_classes_with_one_text_feature_get_one_logit_trained_or_not():
    """The head has no per-class weights: two labels that share a name (CLIP's ImageNet list has
    two such pairs; see the datasets appendix) are scored the same, before and after training."""
    from vtclip.features import FeatureSet
    from vtclip.train import TrainConfig, fit

    text, pooled, spatial = _inputs(K=6, B=24, HW=9, C=24)
    text[4] = text[1]                                                     # label 4 shares label 1's name
    model = VTCLIP(text, 50.0, d_visual=24, heads=4, layers=2)
    labels = torch.arange(24) % 6
    fit(model, FeatureSet(pooled[None], spatial[None], labels, (3, 3)), TrainConfig.smoke(epochs=3))
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "out_proj" in n)   # trained
    logits = model(pooled, spatial)
    torch.testing.assert_close(logits[:, 4], logits[:, 1], atol=0, rtol=0)
    assert not torch.equal(logits[:, 2], logits[:, 1])
