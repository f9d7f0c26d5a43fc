"""CoOp: prompt context learned through the frozen text tower, for both CLIP families."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtclip.baselines.coop import CoOp
from vtclip.features import FeatureSet
from vtclip.methods import MethodContext, build_method
from vtclip.prompts import text_classifier, zero_shot_logits
from vtclip.train import TrainConfig, evaluate, fit, load_checkpoint, save_checkpoint, trainable

NAMES = ["cat", "dog", "bird", "red star"]       # words of the tiny tokenizer's vocabulary
FAMILIES = ["tiny_hf", "tiny_rn"]


def teacher_task(clip, shots=8, noise=0.3, seed=0):
    """Images near the text features of ANOTHER prompt ("the blue {c}."): a prompt learner has
    to move its context towards that prompt to classify them."""
    target = clip.encode_text([f"the blue {c}." for c in NAMES])        # (K, D)
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(NAMES)).repeat_interleave(shots)
    d = target.shape[1]
    pooled = target[labels] + noise * torch.randn(2, len(labels), d, generator=g) / d ** 0.5   # (2, N, D)
    return FeatureSet(F.normalize(pooled, dim=-1), torch.zeros(2, len(labels), 1, 4), labels, (1, 1))


def make_ctx(clip, train=None):
    text = text_classifier(clip, NAMES, ["a photo of a {}."])           # (K, D)
    return MethodContext(clip, NAMES, ["a photo of a {}."], text, clip.logit_scale, train, None)


@pytest.fixture(params=FAMILIES)
def clip(request):
    return request.getfixturevalue(request.param)


def images(clip, n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, clip.embed_dim, generator=g), dim=-1)   # (n, D)


def test_prompt_init_equals_zero_shot(clip):
    ctx = make_ctx(clip)
    model = build_method("coop", ctx, ctx_init="a photo of a")
    assert model.ctx.shape == (4, model.token_prefix.shape[-1])          # n_ctx = 4 tokens
    p = images(clip)
    torch.testing.assert_close(model(p, None), zero_shot_logits(p, ctx.text, clip.logit_scale),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.text_features(), clip._encode_text(
        [f"a photo of a {c}." for c in NAMES]), atol=1e-5, rtol=1e-5)


def test_gradients_reach_the_context_and_nothing_else(clip):
    torch.manual_seed(0)
    model = build_method("coop", make_ctx(clip), n_ctx=4)
    assert trainable(model) == [model.ctx] and model.ctx.shape[0] == 4
    assert set(model.state_dict()) == {"ctx", "token_ids"}              # no backbone weights
    loss = F.cross_entropy(model(images(clip), None), torch.tensor([0, 1, 2, 3, 0, 1]))
    loss.backward()
    assert model.ctx.grad is not None and model.ctx.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in clip.parameters())


def test_class_specific_context_has_one_per_class(clip):
    model = build_method("coop", make_ctx(clip), n_ctx=3, csc=True)
    assert model.ctx.shape[:2] == (len(NAMES), 3)
    assert model(images(clip), None).shape == (6, len(NAMES))
    assert not torch.equal(model.ctx[0], model.ctx[1])          # each class draws its own context (CoOp)


def test_training_through_the_text_tower_improves_train_accuracy(clip):
    train = teacher_task(clip)
    torch.manual_seed(0)
    model = build_method("coop", make_ctx(clip, train), n_ctx=4)
    before = evaluate(model, train)["top1"]
    history = fit(model, train, TrainConfig.smoke(epochs=20, lr=1e-2, batch_size=16))
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, train)["top1"] >= before + 10, before


def test_eval_cache_follows_the_context(clip):
    model = build_method("coop", make_ctx(clip), ctx_init="a photo of a").eval()
    p = images(clip)
    with torch.no_grad():
        first = model(p, None)
        model.ctx.add_(torch.randn_like(model.ctx))                     # an optimizer step
        assert not torch.allclose(model(p, None), first)


def test_checkpoint_round_trip_needs_the_clip(clip, tmp_path):
    torch.manual_seed(0)
    model = build_method("coop", make_ctx(clip), n_ctx=4)
    path = save_checkpoint(model, tmp_path / "coop.safetensors")
    with pytest.raises(ValueError, match="needs its backbone"):
        load_checkpoint(path)
    again = load_checkpoint(path, clip=clip)
    assert isinstance(again, CoOp) and again.config == model.config
    p = images(clip)
    torch.testing.assert_close(again(p, None), model(p, None), atol=0, rtol=0)


def test_attach_to_another_backbone_is_refused(tiny_hf, tiny_rn):
    model = build_method("coop", make_ctx(tiny_hf), n_ctx=4)
    with pytest.raises(ValueError, match="trained on backbone"):
        model.attach_clip(tiny_rn)


def test_context_too_long_for_the_tokenizer(tiny_hf):
    with pytest.raises(ValueError, match="does not tokenize"):
        build_method("coop", make_ctx(tiny_hf), n_ctx=32)               # tiny context: 32 tokens


def test_a_prompt_longer_than_the_context_is_refused_not_cut(clip):
    # L text positions: [SOS] + (L - 4) context tokens + "red star" + "." + [EOS] is one too many, so
    # the tokenizer would drop the end of that class's prompt; the one-word names still fit
    length = clip.token_counts(["a"])[1]                                 # 32 (tiny HF), 16 (tiny RN)
    too_long = rf"does not fit the text encoder's {length} tokens for 1 class\(es\), e.g. \['red star'\]"
    with pytest.raises(ValueError, match=too_long):
        build_method("coop", make_ctx(clip), n_ctx=length - 4)
    assert build_method("coop", make_ctx(clip), n_ctx=length - 5).ctx.shape[0] == length - 5


def test_a_class_name_ending_in_punctuation_is_not_taken_for_a_cut_prompt():
    import vtclip as vt

    clip = vt.load_clip("pocket", device="cpu")                      # "(big)." ends in one merged token ")."
    names = ["red circle (big)", "blue star"]
    text = text_classifier(clip, names, ["a photo of a {}."])
    ctx = MethodContext(clip, names, ["a photo of a {}."], text, clip.logit_scale, None, None)
    ids = clip.tokenize(["(big)."])["input_ids"][0]
    assert ids.tolist().count(clip.tokenize(["."])["input_ids"][0, 1].item()) == 0   # no bare "." token
    assert build_method("coop", ctx, n_ctx=8).ctx.shape[0] == 8
