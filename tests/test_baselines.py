"""The baselines (linear probe, CLIP-Adapter, Tip-Adapter, Tip-Adapter-F) in the shared framework."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from vtclip.baselines import BASELINES, TipAdapter
from vtclip.baselines.clip_adapter import ALPHA_GRID
from vtclip.baselines.linear_probe import solve, train_samples
from vtclip.baselines.tip_adapter import SEARCH_SCALE, SEARCH_STEP, cache_keys, search_grid
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


#: What each method trains (CoOp: test_coop.py): the linear probe is solved in closed form and frozen,
#: CLIP-Adapter trains its two bias-free bottleneck layers, Tip-Adapter nothing, Tip-Adapter-F its keys.
TRAINED = {"linear-probe": [], "clip-adapter": ["adapter.0.weight", "adapter.2.weight"],
           "tip-adapter": [], "tip-adapter-f": ["keys"]}


def frozen_tensors(ctx, model):
    """The frozen inputs a method must never train in place: the context's text and cached image
    features, and the model's own buffers (its copy of the texts, the cache labels, ...)."""
    feats = [t for split in (ctx.train, ctx.val) for t in (split.pooled, split.spatial)]
    return [ctx.text, *feats, *model.buffers()]


def shared_storage(model, tensors):
    """Names of trainable parameters whose memory overlaps one of ``tensors`` (views included)."""
    frozen = {t.untyped_storage().data_ptr() for t in tensors}
    return [n for n, q in model.named_parameters()
            if q.requires_grad and q.untyped_storage().data_ptr() in frozen]


def test_every_method_s_trained_parameters_are_listed():
    assert set(TRAINED) == set(BASELINES) - {"coop"}


@pytest.mark.parametrize("name", [n for n in BASELINES if n != "coop"])   # CoOp: test_coop.py
def test_shapes_own_parameters_and_checkpoint_round_trip(task, name, tmp_path):
    train, val, test, text = task
    torch.manual_seed(0)
    ctx = make_ctx(train, val, text)
    model = build_method(name, ctx)
    p, s = test.pooled[0, :7], test.spatial[0, :7]
    assert model(p, s).shape == (7, len(text))
    assert [n for n, q in model.named_parameters() if q.requires_grad] == TRAINED[name]
    assert len(trainable(model)) == len(TRAINED[name])
    assert shared_storage(model, frozen_tensors(ctx, model)) == []
    before = [t.clone() for t in frozen_tensors(ctx, model)[:5]]
    fit(model, train, TrainConfig.smoke(epochs=2))
    for old, now in zip(before, frozen_tensors(ctx, model)[:5]):     # training moved none of them
        assert torch.equal(old, now)
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


def test_clip_adapter_blends_the_adapted_feature_as_the_paper_writes(task):
    train, val, test, text = task
    scale, alpha = 37.0, 0.6
    ctx = make_ctx(train, val, text)
    model = build_method("clip-adapter", replace(ctx, logit_scale=scale), alpha=alpha)
    g = torch.Generator().manual_seed(3)
    w1, w2 = torch.randn(4, 16, generator=g), torch.randn(16, 4, generator=g) / 2
    with torch.no_grad():
        model.adapter[0].weight.copy_(w1)
        model.adapter[2].weight.copy_(w2)
    p = test.pooled[0, :30]                                              # (30, D), unit norm
    inner = p @ w1.T                                                     # (30, D/4) before the first ReLU
    hidden = torch.relu(inner) @ w2.T                                    # (30, D) before the last ReLU
    assert (inner < 0).any() and (hidden < 0).any() and (hidden > 0).any()   # both ReLUs matter here
    adapted = alpha * torch.relu(hidden) + (1 - alpha) * p
    torch.testing.assert_close(model.adapt(p), adapted, atol=1e-6, rtol=1e-5)
    expected = scale * F.normalize(adapted, dim=-1) @ F.normalize(text, dim=-1).T
    torch.testing.assert_close(model(p, None), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(p, None), zero_shot_logits(p, text, scale), atol=1e-2)


# ---- Tip-Adapter(-F) ----------------------------------------------------------------------------
def test_tip_adapter_alpha_zero_is_zero_shot(task):
    train, val, test, text = task
    model = build_method("tip-adapter", make_ctx(train, val, text), alpha=0.0, beta=5.0)
    p = test.pooled[0]
    torch.testing.assert_close(model(p, None), ZeroShot(text, SCALE)(p))
    assert trainable(model) == [] and model.config["search"] is False


def tip_reference(pooled, text, train_pooled, train_labels, alpha, beta, scale, keys=None):
    """Tip-Adapter's logits written out: keys = each image's views normalised, averaged and
    renormalised; ``zs + alpha * exp(-beta (1 - f keys^T)) onehot(labels) * scale / 100``."""
    if keys is None:
        keys = train_pooled / train_pooled.norm(dim=-1, keepdim=True)    # (V, N, D)
        keys = keys.mean(0)
        keys = keys / keys.norm(dim=-1, keepdim=True)                    # (N, D)
    f = pooled / pooled.norm(dim=-1, keepdim=True)
    t = text / text.norm(dim=-1, keepdim=True)
    onehot = torch.zeros(len(train_labels), len(text))
    onehot[torch.arange(len(train_labels)), train_labels] = 1.0
    cache = torch.exp(-beta * (1 - f @ keys.T)) @ onehot                # (B, K)
    return scale * f @ t.T + alpha * cache * scale / 100


@pytest.mark.parametrize("name", ["tip-adapter", "tip-adapter-f"])
def test_tip_adapter_logits_match_the_paper_s_formula(task, name):
    train, val, test, text = task
    g = torch.Generator().manual_seed(5)
    # views of different norms: the keys must normalise every view before averaging
    raw = train.pooled * (0.5 + 2 * torch.rand(train.pooled.shape[:2] + (1,), generator=g))
    train_raw = FeatureSet(raw, train.spatial, train.labels, train.grid)
    ctx = replace(make_ctx(train_raw, val, text), logit_scale=37.0)
    model = build_method(name, ctx, alpha=0.7, beta=3.0)
    p = 2.5 * test.pooled[0, :40]                                        # not unit norm either
    expected = tip_reference(p, text, raw, train.labels, 0.7, 3.0, 37.0)
    torch.testing.assert_close(model(p, None), expected, atol=1e-5, rtol=1e-5)
    naive = F.normalize(raw.mean(0), dim=-1)                             # average first: other keys
    assert not torch.allclose(model.keys, naive, atol=1e-3)
    cache = expected - zero_shot_logits(p, text, 37.0)
    assert cache.abs().max() > 0.1                                       # the cache term is not negligible
    if name == "tip-adapter-f":                                          # tuned keys are used as they are
        with torch.no_grad():
            model.keys.add_(0.3 * torch.randn(model.keys.shape, generator=g))
        expected = tip_reference(p, text, None, train.labels, 0.7, 3.0, 37.0, keys=model.keys.detach())
        torch.testing.assert_close(model(p, None), expected, atol=1e-5, rtol=1e-5)


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
    train, val, test, text = task
    ctx = make_ctx(train, val, text)
    assert build_method("tip-adapter", ctx).config["search_scale"] == [7.0, 3.0]          # no config: default
    assert build_method("tip-adapter", replace(ctx, dataset="dtd")).config["search_scale"] == [13.0, 13.0]
    config = build_method("tip-adapter-f", replace(ctx, dataset="fgvc_aircraft")).config
    assert config["search_scale"] == [30.0, 30.0]
    chosen = config["chosen"]
    assert chosen["alpha"] in search_grid(30.0, 20).tolist() and chosen["beta"] in search_grid(30.0, 200).tolist()
    # on this task val prefers a strong cache: an alpha beyond the default grid, [0.1, 3)
    assert chosen["alpha"] > SEARCH_SCALE[1]
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



@pytest.mark.parametrize("given", [{"alpha": 0.5}, {"beta": 4.0}])
def test_tip_adapter_searches_only_what_is_not_given(task, given):
    train, val, _, text = task
    (name, value), = given.items()
    other = "beta" if name == "alpha" else "alpha"
    both = build_method("tip-adapter", make_ctx(train, val, text)).config["chosen"]
    model = build_method("tip-adapter", make_ctx(train, val, text), **given)
    chosen = model.config["chosen"]
    assert float(getattr(model, name)) == chosen[name] == value              # kept as given
    # the other is the best of its grid with this one held: no grid value beats it on val
    i = ("beta", "alpha").index(other)
    grid = search_grid(SEARCH_SCALE[i], SEARCH_STEP[i])
    accs = []
    for v in grid.tolist():
        getattr(model, other).fill_(v)
        accs.append(evaluate(model, val)["top1"])
    best = max(accs)
    assert chosen["val_acc"] == pytest.approx(best) and chosen[other] == pytest.approx(grid[accs.index(best)].item())
    assert chosen[name] != both[name]                                     # not what a full search picks
    tuned = build_method("tip-adapter-f", make_ctx(train, val, text), **given)
    fit(tuned, train, TrainConfig.smoke(epochs=2, lr=1e-2))
    assert float(getattr(tuned, name)) == tuned.after_fit(val)[name] == value   # the re-search keeps it too


# ---- end to end: run_method on the toy dataset with a tiny CLIP -------------------------------------
def test_every_baseline_runs_through_run_method(tiny_hf):
    from vtclip.experiments import load_task, run_method

    task = load_task(tiny_hf, "toy-colours", progress=False)
    # an unbalanced test split (10, 6, 3, 1 images per class): a model that predicts one class
    # scores 50, 30, 15 or 5 here, never the 25 it scores on the balanced val split
    labels = task.test.labels
    keep = torch.cat([(labels == c).nonzero()[:n, 0] for c, n in enumerate((10, 6, 3, 1))])
    task.test = FeatureSet(task.test.pooled[:, keep], task.test.spatial[:, keep], labels[keep], task.test.grid)
    cfg = TrainConfig.smoke()
    for name in BASELINES:
        options = {"n_ctx": 4} if name == "coop" else {}               # tiny model: 16-token context
        record, model, _ = run_method(task, name, shots=2, seed=1, cfg=cfg, progress=False, **options)
        assert record["method"] == name and model.name == name and record["n_test"] == 20
        with torch.no_grad():                                          # the returned model, on test
            logits = model.eval()(task.test.pooled[0].float(), task.test.spatial[0].float())
        top1 = (logits.argmax(-1) == task.test.labels).float().mean().item() * 100
        assert record["top1"] == round(top1, 2), (name, record["top1"], top1)
        if name.startswith("tip-adapter"):          # the alpha, beta searched on val are in the record
            searched = record["config"]["searched_on_val"]
            assert set(searched) == {"alpha", "beta", "val_acc"}
            if name == "tip-adapter":
                assert (float(model.alpha), float(model.beta)) == (searched["alpha"], searched["beta"])
        if name == "linear-probe":                  # so is the C it chose, with its val accuracy
            searched = record["config"]["searched_on_val"]
            assert searched["C"] == model.config["C"] and [searched["C"], searched["val_acc"]] in model.config["search"]


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


def test_the_test_split_is_scored_once_last_and_never_steers_a_run(tiny_hf, monkeypatch):
    """Whatever a run chooses (the epoch, an option, Tip-Adapter's alpha and beta, before and after
    fine-tuning) it chooses on val: the test features are scored once, after everything else."""
    import vtclip.train
    from vtclip.experiments import load_task, run_method

    task = load_task(tiny_hf, "toy-colours", progress=False)
    scored = []                                  # the features each scoring call read, by storage
    predict, search = vtclip.train.predict, TipAdapter.search

    def spy_predict(model, feats, *a, **k):
        scored.append(feats.pooled.data_ptr())
        return predict(model, feats, *a, **k)

    def spy_search(self, val, *a, **k):
        scored.append(val.pooled.data_ptr())
        return search(self, val, *a, **k)
    monkeypatch.setattr(vtclip.train, "predict", spy_predict)
    monkeypatch.setattr(TipAdapter, "search", spy_search)
    test = task.test.pooled.data_ptr()
    for method, cfg in [("vtclip", TrainConfig.smoke(epoch_on_val=True)), ("clip-adapter", TrainConfig.smoke()),
                        ("tip-adapter", TrainConfig.smoke()), ("tip-adapter-f", TrainConfig.smoke())]:
        scored.clear()
        record, _, _ = run_method(task, method, shots=2, seed=2, cfg=cfg, progress=False)
        assert len(scored) > 1 and scored[-1] == test and test not in scored[:-1], method
        assert record["seed"] == record["config"]["train"]["seed"] == 2, method     # the run's seed trains it


def test_run_method_keeps_the_clip_adapter_alpha_best_on_val():
    # Pocket CLIP on pocket-pairs, two shots, seed 1: the four alphas score 75/75/78/81 on val
    from vtclip.experiments import fewshot_features, load_task, run_method

    task = load_task("pocket", "pocket-pairs", progress=False)
    cfg = TrainConfig.smoke()
    record, model, _ = run_method(task, "clip-adapter", shots=2, seed=1, cfg=cfg, progress=False)
    scores = [acc for _, acc in record["config"]["selected_on_val"]["val_top1"]]
    assert len(set(scores)) > 2, scores                   # a test of the choice, not of a tie-break
    best = scores.index(max(scores))
    assert model.alpha == ALPHA_GRID[best] and record["config"]["method"] == {"alpha": ALPHA_GRID[best]}
    _, val = fewshot_features(task, 2, 1, cfg.views, progress=False)
    assert evaluate(model, val)["top1"] == pytest.approx(max(scores), abs=0.01)   # scored on val


def test_run_method_progress_false_silences_the_trainers_bar(tiny_hf, capsys):
    """``progress=False`` reaches the trainer (``cfg.progress``), not only feature extraction."""
    from vtclip.experiments import load_task, run_method

    task = load_task(tiny_hf, "toy-colours", progress=False)
    cfg = TrainConfig.smoke().replace(progress=True)
    capsys.readouterr()
    run_method(task, "vtclip", shots=2, seed=1, cfg=cfg, progress=False)
    assert "train vtclip" not in capsys.readouterr().err
    run_method(task, "vtclip", shots=2, seed=1, cfg=cfg, progress=True)
    assert "train vtclip" in capsys.readouterr().err
