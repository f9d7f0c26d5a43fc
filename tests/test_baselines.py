"""The baselines (linear probe, CLIP-Adapter, Tip-Adapter, Tip-Adapter-F) in the shared framework."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vtclip.baselines import BASELINES, TipAdapter
from vtclip.baselines.clip_adapter import ALPHA_GRID
from vtclip.baselines.linear_probe import solve, train_samples
from vtclip.baselines.tip_adapter import cache_keys, search_grid
from vtclip.features import FeatureSet
from vtclip.methods import METHOD_CLASSES, METHODS, MethodContext, ZeroShot, build_method
from vtclip.prompts import zero_shot_logits
from vtclip.train import TrainConfig, evaluate, fit, load_checkpoint, save_checkpoint, trainable

SCALE = 50.0


def pooled_split(centres, n_per_class, views, seed, image_noise=1.0, view_noise=0.3):
    """Images around their class centre, each seen under ``views`` slightly different views."""
    g = torch.Generator().manual_seed(seed)
    k, d = centres.shape
    labels = torch.arange(k).repeat_interleave(n_per_class)
    images = centres[labels] + image_noise * torch.randn(len(labels), d, generator=g) / d ** 0.5
    pooled = images + view_noise * torch.randn(views, len(labels), d, generator=g) / d ** 0.5
    spatial = torch.zeros(views, len(labels), 1, 4)                  # unused by these methods
    return FeatureSet(F.normalize(pooled, dim=-1), spatial, labels, (1, 1))


def pooled_task(K=4, D=16, shots=12, seed=0, text_noise=1.5):
    """Train (2 views), val and test splits of a pooled-feature task whose class texts are noisy
    copies of the class centres: zero-shot is well above chance but far from perfect."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(K, D, generator=g), dim=-1)
    text = F.normalize(centres + text_noise * torch.randn(K, D, generator=g) / D ** 0.5, dim=-1)
    train = pooled_split(centres, shots, 2, seed + 1)
    val = pooled_split(centres, 4, 1, seed + 2)
    test = pooled_split(centres, 50, 1, seed + 3)
    return train, val, test, text


def make_ctx(train, val, text):
    names = [f"class{i}" for i in range(len(text))]
    return MethodContext(None, names, ["a photo of a {}."], text, SCALE, train, val)


@pytest.fixture(scope="module")
def task():
    return pooled_task()


def test_every_baseline_is_registered():
    for name, (builder, cls) in BASELINES.items():
        assert METHODS[name] is builder and METHOD_CLASSES[name] is cls and cls.name == name


@pytest.mark.parametrize("name", [n for n in BASELINES if n != "coop"])   # CoOp: test_coop.py
def test_shapes_own_parameters_and_checkpoint_round_trip(task, name, tmp_path):
    train, val, test, text = task
    torch.manual_seed(0)
    model = build_method(name, make_ctx(train, val, text))
    p, s = test.pooled[0, :7], test.spatial[0, :7]
    assert model(p, s).shape == (7, len(text))
    own = {id(q) for q in model.parameters()}
    assert all(id(q) in own for q in trainable(model))
    fit(model, train, TrainConfig.smoke(epochs=2))
    again = load_checkpoint(save_checkpoint(model, tmp_path / f"{name}.safetensors"))
    assert type(again) is type(model) and again.config == model.config
    torch.testing.assert_close(again(p, s), model(p, s), atol=0, rtol=0)
    assert [n for n, q in again.named_parameters() if q.requires_grad] == \
        [n for n, q in model.named_parameters() if q.requires_grad]


# ---- linear probe -------------------------------------------------------------------------------
def test_linear_probe_solves_the_regularised_objective(task):
    train, _, _, text = task
    x, y = train_samples(train)
    assert x.shape == (2 * len(train), 16) and torch.equal(y[:len(train)], train.labels)
    w, b = solve(x, y, len(text), C=1.0)
    w.requires_grad_(True)
    b.requires_grad_(True)
    loss = F.cross_entropy(x @ w.T + b, y) + w.pow(2).sum() / (2 * 1.0 * len(x))
    loss.backward()                                        # optimum: the gradient vanishes
    assert w.grad.abs().max() < 1e-4 and b.grad.abs().max() < 1e-4


def test_linear_probe_picks_c_on_val_and_beats_chance(task):
    train, val, test, text = task
    model = build_method("linear-probe", make_ctx(train, val, text), refine=2)
    assert trainable(model) == [] and fit(model, train, TrainConfig.smoke()) == []
    tried = dict(model.config["search"])
    assert model.config["C"] in tried and tried[model.config["C"]] == max(tried.values())
    assert evaluate(model, val)["top1"] == pytest.approx(max(tried.values()))
    assert evaluate(model, test)["top1"] > 60                          # chance is 25
    strong = build_method("linear-probe", make_ctx(train, val, text), C=1e-6)
    assert strong.linear.weight.abs().max() < 1e-3                       # C -> 0: W -> 0


def test_linear_probe_needs_val_or_c(task):
    train, _, _, text = task
    with pytest.raises(ValueError, match="val split"):
        build_method("linear-probe", make_ctx(train, None, text))


def test_linear_probe_trainer_mode_learns_with_fit(task):
    train, val, _, text = task
    model = build_method("linear-probe", make_ctx(train, val, text), solver="trainer")
    assert evaluate(model, train)["top1"] == 25.0                       # zero weights: class 0
    fit(model, train, TrainConfig.smoke(epochs=30, lr=3e-2))
    assert evaluate(model, train)["top1"] > 80


# ---- CLIP-Adapter -------------------------------------------------------------------------------
def test_clip_adapter_parameters_and_alpha_zero_is_zero_shot(task):
    train, val, test, text = task
    model = build_method("clip-adapter", make_ctx(train, val, text), alpha=0.0)
    assert [tuple(q.shape) for q in trainable(model)] == [(4, 16), (16, 4)]   # no biases
    p = test.pooled[0]
    torch.testing.assert_close(model(p, None), zero_shot_logits(p, text, SCALE))


def test_clip_adapter_training_improves_train_accuracy(task):
    train, val, _, text = task
    torch.manual_seed(0)
    model = build_method("clip-adapter", make_ctx(train, val, text), alpha=0.5)
    before = evaluate(model, train)["top1"]
    history = fit(model, train, TrainConfig.smoke(epochs=40, lr=1e-2))
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, train)["top1"] >= before + 15, before


# ---- Tip-Adapter(-F) ----------------------------------------------------------------------------
def test_tip_adapter_alpha_zero_is_zero_shot(task):
    train, val, test, text = task
    model = build_method("tip-adapter", make_ctx(train, val, text), alpha=0.0, beta=5.0)
    p = test.pooled[0]
    torch.testing.assert_close(model(p, None), ZeroShot(text, SCALE)(p))
    assert trainable(model) == [] and model.config["search"] is False


def test_tip_adapter_search_needs_val_or_fixed_values(task):
    train, _, _, text = task
    with pytest.raises(ValueError, match="needs the val split"):
        build_method("tip-adapter", make_ctx(train, None, text))
    assert build_method("tip-adapter", make_ctx(train, None, text), alpha=1.0, beta=2.0).beta == 2.0


def test_tip_adapter_cache_holding_the_image_votes_for_its_label(task):
    train, _, test, text = task
    f = test.pooled[0, :20]                                              # (20, D)
    labels = test.labels[:20]
    rest = train.pooled[0]                                               # other images in the cache
    keys = torch.cat([f, rest])                                          # (20 + N, D)
    model = TipAdapter(text, keys, torch.cat([labels, train.labels]), SCALE, alpha=1.0, beta=50.0)
    torch.testing.assert_close(model.affinity(f).diagonal(), torch.ones(20), atol=1e-4, rtol=0)
    assert torch.equal(model.cache_logits(f).argmax(-1), labels)


def test_tip_adapter_search_uses_the_paper_grid_and_val(task):
    train, val, test, text = task
    grid = search_grid(7.0, 200)
    assert len(grid) == 200 and grid[0] == pytest.approx(0.1) and grid[-1] < 7.0
    model = build_method("tip-adapter", make_ctx(train, val, text))
    chosen = model.config["chosen"]
    assert float(model.alpha) == chosen["alpha"] and float(model.beta) == chosen["beta"]
    assert evaluate(model, val)["top1"] == pytest.approx(chosen["val_acc"])
    zs = evaluate(ZeroShot(text, SCALE), val)["top1"]
    assert chosen["val_acc"] >= zs                                       # the cache helps on val
    torch.testing.assert_close(model.keys, cache_keys(train))
    assert model.keys.shape == (len(train), 16)


def test_tip_adapter_searches_the_dataset_s_official_scale(task):
    from dataclasses import replace

    train, val, test, text = task
    ctx = make_ctx(train, val, text)
    assert build_method("tip-adapter", ctx).config["search_scale"] == [7.0, 3.0]          # no config: default
    assert build_method("tip-adapter", replace(ctx, dataset="dtd")).config["search_scale"] == [13.0, 13.0]
    chosen = build_method("tip-adapter-f", replace(ctx, dataset="fgvc_aircraft")).config
    assert chosen["search_scale"] == [30.0, 30.0] and chosen["chosen"]["alpha"] < 30.0
    assert build_method("tip-adapter", replace(ctx, dataset="dtd"), search_scale=(2.0, 2.0)).config[
        "search_scale"] == [2.0, 2.0]                                                     # given: kept


def test_every_benchmark_dataset_has_tip_adapter_s_official_scale():
    from vtclip.baselines.tip_adapter import SEARCH_SCALES
    from vtclip.datasets.real import SPECS

    assert set(SEARCH_SCALES) == set(SPECS)          # a renamed dataset would fall back to (7, 3) silently
    assert SEARCH_SCALES["oxford_flowers"] == (50.0, 50.0) and SEARCH_SCALES["caltech101"] == (12.0, 5.0)


def test_tip_adapter_f_trains_only_the_keys_and_improves(task):
    train, val, _, text = task
    model = build_method("tip-adapter-f", make_ctx(train, val, text), alpha=1.0, beta=1.0)
    assert trainable(model) == [model.keys]
    before = evaluate(model, train)["top1"]
    history = fit(model, train, TrainConfig.smoke(epochs=20, lr=1e-2))
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, train)["top1"] >= before + 5, before
    assert not torch.allclose(model.keys, cache_keys(train))
    assert model.after_fit(val) is None and float(model.alpha) == 1.0    # given values are kept


def test_tip_adapter_f_re_searches_alpha_beta_after_fit(task):
    train, val, _, text = task
    model = build_method("tip-adapter-f", make_ctx(train, val, text))   # alpha, beta from val
    fit(model, train, TrainConfig.smoke(epochs=5, lr=1e-2))
    chosen = model.after_fit(val)                                        # with the tuned keys
    assert chosen == model.config["chosen_after_fit"] and float(model.beta) == chosen["beta"]
    assert chosen["val_acc"] == pytest.approx(evaluate(model, val)["top1"])


# ---- end to end: run_method on the toy dataset with a tiny CLIP -------------------------------------
def test_every_baseline_runs_through_run_method(tiny_hf):
    from vtclip.experiments import load_task, run_method

    task = load_task(tiny_hf, "toy-colours", progress=False)
    cfg = TrainConfig.smoke()
    for name in BASELINES:
        options = {"n_ctx": 4} if name == "coop" else {}               # tiny model: 16-token context
        record, model, _ = run_method(task, name, shots=2, seed=1, cfg=cfg, progress=False, **options)
        assert record["method"] == name and 0 <= record["top1"] <= 100 and model.name == name


def test_run_method_chooses_clip_adapter_alpha_on_val(tiny_hf):
    from vtclip.experiments import load_task, run_method

    task = load_task(tiny_hf, "toy-colours", progress=False)
    cfg = TrainConfig.smoke()
    record, model, _ = run_method(task, "clip-adapter", shots=2, seed=1, cfg=cfg, progress=False)
    sel = record["config"]["selected_on_val"]
    assert [c["alpha"] for c, _ in sel["val_top1"]] == list(ALPHA_GRID)          # the default grid
    best = max(acc for _, acc in sel["val_top1"])
    first_best = next(c for c, acc in sel["val_top1"] if acc == best)          # ties: the first (smallest)
    assert sel["chosen"] == first_best == {"alpha": model.alpha}
    assert record["config"]["method"] == first_best
    # each candidate's val accuracy is that of a model trained with it (same seed): recompute one
    _, again, _ = run_method(task, "clip-adapter", shots=2, seed=1, cfg=cfg, progress=False,
                             alpha=sel["val_top1"][-1][0]["alpha"])
    from vtclip.experiments import fewshot_features

    _, val = fewshot_features(task, 2, 1, cfg.views, progress=False)
    assert evaluate(again, val)["top1"] == pytest.approx(sel["val_top1"][-1][1], abs=0.01)
    # an explicit alpha is not searched
    fixed, _, _ = run_method(task, "clip-adapter", shots=2, seed=1, cfg=cfg, progress=False, alpha=0.2)
    assert "selected_on_val" not in fixed["config"] and fixed["config"]["method"] == {"alpha": 0.2}
