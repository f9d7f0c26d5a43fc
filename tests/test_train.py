"""The trainer, checkpoints, result records and the CLI's errors."""
from __future__ import annotations

import copy
import json
import stat

import pytest
import torch
import torch.nn.functional as F

from vtclip.cli import main
from vtclip.experiments import write_record
from vtclip.features import FeatureSet
from vtclip.train import TrainConfig, evaluate, fit, load_checkpoint, predict, save_checkpoint
from vtclip.vtclip import VTCLIP


def local_pattern_task(n_per_class=24, K=4, D=16, C=24, HW=9, seed=0):
    """Features whose label is written into ONE random spatial position (a class pattern in
    noise). As in CLIP, the pooled feature is a projection of the mean token, so the pattern is
    diluted in it (1/HW) and the class texts are random: zero-shot is near chance, while a head
    that attends to the right position can move each class text towards its images."""
    g = torch.Generator().manual_seed(seed)
    patterns = 3 * F.normalize(torch.randn(K, C, generator=g), dim=-1) * C ** 0.5
    labels = torch.arange(K).repeat_interleave(n_per_class)
    n = len(labels)
    spatial = torch.randn(2, n, HW, C, generator=g)                 # 2 views
    where = torch.randint(HW, (2, n), generator=g)
    spatial[torch.arange(2)[:, None], torch.arange(n)[None], where] += patterns[labels]
    proj = torch.randn(C, D, generator=g) / C ** 0.5
    pooled = F.normalize(spatial.mean(2) @ proj, dim=-1)           # (2, n, D)
    text = F.normalize(torch.randn(K, D, generator=g), dim=-1)
    return FeatureSet(pooled, spatial, labels, (3, 3)), text


def test_training_improves_train_accuracy():
    feats, text = local_pattern_task()
    torch.manual_seed(0)
    model = VTCLIP(text, 50.0, d_visual=24, heads=4, dropout=0.0)
    before = evaluate(model, feats)["top1"]
    history = fit(model, feats, TrainConfig.smoke(epochs=60, lr=3e-3, batch_size=16))
    after = evaluate(model, feats)["top1"]
    assert history[-1]["loss"] < history[0]["loss"]
    assert after >= before + 30, (before, after)


def test_label_smoothing_reaches_the_loss():
    # one view and one batch: epoch 1's loss is the smoothed cross-entropy of the untrained head
    feats, text = local_pattern_task()
    one = FeatureSet(feats.pooled[:1], feats.spatial[:1], feats.labels, feats.grid)
    losses = {}
    for eps in (0.0, 0.3):
        torch.manual_seed(0)
        model = VTCLIP(text, 50.0, d_visual=24, heads=4, dropout=0.0)
        expected = F.cross_entropy(predict(model, one), one.labels, label_smoothing=eps).item()
        history = fit(model, one, TrainConfig.smoke(epochs=1, batch_size=len(one), label_smoothing=eps))
        assert history[0]["loss"] == pytest.approx(expected, rel=1e-5), eps
        losses[eps] = expected
    assert abs(losses[0.3] - losses[0.0]) > 0.1                 # the two settings are told apart


def test_fit_is_deterministic_under_a_seed():
    """cfg.seed alone fixes view sampling, batch order and dropout: the global RNG's state going into
    ``fit`` changes nothing, and another cfg.seed changes the run."""
    feats, text = local_pattern_task()
    torch.manual_seed(0)
    init = VTCLIP(text, 50.0, d_visual=24, heads=4, dropout=0.1)      # one initialisation for every run

    def run(global_seed, cfg_seed):
        model = copy.deepcopy(init)
        torch.manual_seed(global_seed)                                 # whatever ran before fit
        history = fit(model, feats, TrainConfig.smoke(epochs=4, seed=cfg_seed))
        return [(h["loss"], h["train_acc"]) for h in history], model.state_dict()

    (h1, w1), (h2, w2) = run(11, 7), run(12345, 7)
    assert h1 == h2
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    h3, w3 = run(11, 8)
    assert [loss for loss, _ in h3] != [loss for loss, _ in h1]
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


def test_epoch_on_val_keeps_the_first_best_val_epoch():
    every, text = local_pattern_task(n_per_class=30)
    i = torch.arange(len(every.labels))
    tr, va = i[i % 30 < 24], i[i % 30 >= 24]                        # 24 train, 6 val images per class
    feats = FeatureSet(every.pooled[:, tr], every.spatial[:, tr], every.labels[tr], every.grid)
    val = FeatureSet(every.pooled[:1, va], every.spatial[:1, va], every.labels[va], every.grid)
    cfg = TrainConfig.smoke(epochs=8, lr=3e-3, batch_size=16)      # val peaks at epoch 3, then ties
    torch.manual_seed(0)
    last = VTCLIP(text, 50.0, d_visual=24, heads=4)
    history = fit(last, feats, cfg, val=val)
    accs = [h["val_acc"] for h in history]
    torch.manual_seed(0)
    kept = VTCLIP(text, 50.0, d_visual=24, heads=4)
    history2 = fit(kept, feats, cfg.replace(epoch_on_val=True), val=val)
    assert [h["val_acc"] for h in history2] == accs                 # same run, only the ending differs
    chosen = [h["epoch"] for h in history2 if h.get("kept")]
    assert chosen == [accs.index(max(accs)) + 1]
    assert evaluate(kept, val)["top1"] == pytest.approx(max(accs))
    assert chosen[0] < len(accs)                                    # an earlier epoch: other weights
    assert not torch.equal(kept(feats.pooled[0], feats.spatial[0]), last(feats.pooled[0], feats.spatial[0]))
    with pytest.raises(ValueError, match="no val set"):
        fit(VTCLIP(text, 50.0, d_visual=24, heads=4), feats, cfg.replace(epoch_on_val=True))


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    feats, text = local_pattern_task()
    model = VTCLIP(text, 50.0, d_visual=24, heads=4, layers=2)
    fit(model, feats, TrainConfig.smoke(epochs=2))
    path = save_checkpoint(model, tmp_path / "head.safetensors")
    again = load_checkpoint(path)
    assert again.config == model.config
    p, s = feats.pooled[0], feats.spatial[0]
    torch.testing.assert_close(again(p, s), model(p, s), atol=0, rtol=0)
    record = write_record({"method": "vtclip", "backbone": "b", "dataset": "d", "shots": 1, "seed": 1}, tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(record.stat().st_mode)   # as readable as a record


def test_an_interrupted_checkpoint_save_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    feats, text = local_pattern_task()
    model = VTCLIP(text, 50.0, d_visual=24, heads=4)
    path = save_checkpoint(model, tmp_path / "head.safetensors")
    before = path.read_bytes()
    fit(model, feats, TrainConfig.smoke(epochs=2))                      # other weights to save

    def interrupted(self, target):
        raise KeyboardInterrupt
    monkeypatch.setattr(type(path), "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(model, path)
    monkeypatch.undo()
    assert path.read_bytes() == before


def test_paper_preset_follows_coop_schedule():
    assert TrainConfig.paper("dtd", 16).epochs == 200
    assert TrainConfig.paper("dtd", 4).epochs == 100
    assert TrainConfig.paper("dtd", 1).epochs == 50
    assert TrainConfig.paper("imagenet", 16).epochs == 50
    # other shot counts: the schedule of the largest listed count below them
    assert [TrainConfig.paper("dtd", k).epochs for k in (3, 7, 24, 64)] == [100, 100, 200, 200]
    with pytest.raises(ValueError, match="shots must be a whole number >= 1, got 0"):
        TrainConfig.paper("dtd", 0)
    cfg = TrainConfig.paper("dtd", 16)
    assert (cfg.batch_size, cfg.lr, cfg.optimizer, cfg.warmup_epochs) == (32, 2e-3, "sgd", 1)
    from vtclip.train import make_optimizer     # CoOp's SGD: momentum 0.9, weight decay 5e-4

    opt, _ = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg, steps_per_epoch=1)
    assert type(opt) is torch.optim.SGD
    assert (opt.param_groups[0]["momentum"], opt.param_groups[0]["weight_decay"]) == (0.9, 5e-4)


class ViewSpy(torch.nn.Module):
    """Logits from a linear layer; records, in training, which (view, image) each row came from."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)
        self.seen = []

    def forward(self, pooled, spatial):
        if self.training:
            self.seen.append(pooled[:, :2].round().long().tolist())      # [(view, image), ...]
        return self.linear(pooled[:, :2])


def test_each_epoch_shows_every_image_once_in_a_random_view():
    views, n, epochs = 4, 10, 12
    v, i = torch.meshgrid(torch.arange(views), torch.arange(n), indexing="ij")
    pooled = torch.stack([v, i], -1).float()                             # (V, N, 2): its own address
    feats = FeatureSet(pooled, torch.zeros(views, n, 1, 2), torch.arange(n) % 2, (1, 1))
    model = ViewSpy()
    fit(model, feats, TrainConfig.smoke(epochs=epochs, batch_size=3))
    steps = -(-n // 3)
    assert len(model.seen) == epochs * steps
    for e in range(epochs):
        rows = [r for batch in model.seen[e * steps:(e + 1) * steps] for r in batch]
        assert sorted(image for _, image in rows) == list(range(n))       # every image once per epoch
    drawn = [view for batch in model.seen for view, _ in batch]
    assert set(drawn) == set(range(views))                                # every view is used ...
    per_image = {image: {view for batch in model.seen for view, im in batch if im == image} for image in range(n)}
    assert all(len(vs) > 1 for vs in per_image.values())                  # ... and not one per image


def test_records_are_never_overwritten(tmp_path):
    rec = {"method": "vtclip", "backbone": "ViT-B/16", "dataset": "dtd", "shots": 16, "seed": 1, "top1": 1.0}
    path = write_record(rec, tmp_path)
    assert path.name == "vtclip__ViT-B-16__dtd__16shot__seed1.json"
    with pytest.raises(FileExistsError, match="not overwriting"):
        write_record({**rec, "top1": 99.0}, tmp_path)
    assert json.loads(path.read_text())["top1"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]       # no temp files left


# ---- the CLI end to end on the tiny model ------------------------------------------------------
def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_zeroshot_and_train_json(tiny_hf_dir, tmp_path, capsys, monkeypatch):
    import vtclip as vt
    from vtclip import features
    from vtclip.backbones.hf import weights_digest
    from vtclip.datasets import get_dataset
    from vtclip.methods import ZeroShot
    from vtclip.prompts import text_classifier

    code, out, _ = _run(capsys, "zeroshot", "--backbone", str(tiny_hf_dir), "--dataset", "toy-colours", "--json")
    rec = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and isinstance(rec["top1"], float) and rec["n_test"] == 64
    assert rec["weights"] == f"local:{tiny_hf_dir.name}:{weights_digest(tiny_hf_dir)}"   # which checkpoint
    # the record's top1 is the test accuracy, computed here on its own: fresh features, no cache
    clip = vt.load_clip(str(tiny_hf_dir), device="cpu")
    spec = get_dataset("toy-colours")
    test = features.extract(clip, spec.split("test"), dataset_name=spec.name, split="test", cache=False,
                            num_workers=0, progress=False)
    assert len(test) == 64
    zeroshot = ZeroShot(text_classifier(clip, spec.classnames, spec.templates), clip.logit_scale)
    assert rec["top1"] == round(evaluate(zeroshot, test)["top1"], 2)
    code, out, _ = _run(capsys, "train", "--backbone", str(tiny_hf_dir), "--dataset", "toy-colours",
                        "--shots", "4", "--preset", "smoke", "--out", str(tmp_path), "--save-head", "--json")
    rec = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and rec["method"] == "vtclip" and rec["shots"] == 4 and rec["config"]["train"]["epochs"] == 3
    assert len(list(tmp_path.glob("*.json"))) == 1 and len(list(tmp_path.glob("*.safetensors"))) == 1
    # ... and for the trained method, the test accuracy of the head saved next to the record
    (head,) = tmp_path.glob("*.safetensors")
    assert rec["n_test"] == 64 and rec["top1"] == round(evaluate(load_checkpoint(head), test)["top1"], 2)
    # a record already there: refused before any feature is extracted or anything trained
    import vtclip.experiments

    def no_work(*a, **k):
        raise AssertionError("train did work before refusing an existing record")
    monkeypatch.setattr(vtclip.experiments, "load_task", no_work)
    code, _, err = _run(capsys, "train", "--backbone", str(tiny_hf_dir), "--dataset", "toy-colours",
                        "--shots", "4", "--preset", "smoke", "--out", str(tmp_path))
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("args,message", [
    (["--shots", "40"], "fewer training images ('red': 16"),
    (["--shots", "0"], "shots must be a whole number of at least 1, got 0"),
    (["--heads", "7"], "heads=7 does not divide the text width d_text=24"),
    (["--option", "droput=0.2"], "Unknown option(s) ['droput'] for method 'vtclip'. Its options: heads, layers"),
    (["--epochs", "-1"], "TrainConfig: epochs must be a whole number >= 0 (0: no training), got -1"),
    (["--option", "layers=1.5"], "option layers=1.5 of method 'vtclip' must be a whole number >= 1"),
    (["--option", "ffn_ratio=-1"], "option ffn_ratio=-1 of method 'vtclip' must be a number > 0"),
    (["--method", "clip-adapter", "--heads", "4"], "--heads/--layers are VT-CLIP's; clip-adapter takes --option"),
    (["--method", "magic"], "Known methods: zeroshot, vtclip"),
    (["--dataset", "imagenot"], "Known datasets:"),
    (["--backbone", "RN5O"], "Known backbones:"),
])
def test_cli_bad_arguments(tiny_hf_dir, capsys, args, message):
    base = {"--backbone": str(tiny_hf_dir), "--dataset": "toy-colours", "--shots": "4", "--method": "vtclip"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    code, _, err = _run(capsys, "train", "--preset", "smoke", *[x for kv in base.items() for x in kv])
    assert code == 2 and message in err


def test_train_config_refuses_meaningless_values_and_names_them():
    with pytest.raises(ValueError, match=r"batch_size must be a whole number >= 1, got 0; lr must be a number > 0, got -0.1"):
        TrainConfig(batch_size=0, lr=-0.1)
    # values of the wrong type, as --train KEY=VALUE can give them: named, not a TypeError or a truthy string
    with pytest.raises(ValueError, match=r"lr must be a number > 0, got 'abc'"):
        TrainConfig(lr="abc")
    with pytest.raises(ValueError, match=r"epoch_on_val must be true or false \(on the command line: epoch_on_val=true"):
        TrainConfig(epoch_on_val="False")
    with pytest.raises(ValueError, match=r"epochs must be a whole number >= 0 \(0: no training\), got True; amp must be"):
        TrainConfig(epochs=True, amp="no")
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adamw', got 'adam'"):
        TrainConfig.fast().replace(optimizer="adam")
    with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\), got 1.0"):
        TrainConfig(label_smoothing=1.0)
    assert TrainConfig(epochs=0).epochs == 0                  # 0 epochs: evaluate the untrained method
    with pytest.raises(ValueError, match="warmup_epochs=1 leaves no epoch of the schedule when epochs=1"):
        TrainConfig(epochs=1)
    with pytest.raises(ValueError, match="epoch_on_val=True chooses among epochs, but epochs=0"):
        TrainConfig(epochs=0, epoch_on_val=True)


def test_history_lr_is_the_rate_each_epoch_trained_at():
    feats, text = local_pattern_task(n_per_class=8)               # 32 images: one step per epoch at batch 32
    model = VTCLIP(text, 50.0, d_visual=24, heads=4)
    cfg = TrainConfig.paper(shots=16).replace(epochs=3, progress=False)   # 1 warm-up epoch, batch 32
    lrs = [h["lr"] for h in fit(model, feats, cfg)]
    assert lrs == pytest.approx([cfg.warmup_lr, cfg.lr, cfg.lr / 2])   # warm-up, then cosine over 2 steps


def test_save_head_needs_out(tiny_hf_dir, capsys):
    code, _, err = _run(capsys, "train", "--backbone", str(tiny_hf_dir), "--dataset", "toy-colours",
                        "--shots", "4", "--preset", "smoke", "--save-head")
    assert code == 2 and "--save-head saves the method next to its record: give --out DIR" in err


def test_paper_preset_follows_tip_adapter_f_own_schedule():
    cfg = TrainConfig.preset("paper", "dtd", 2, method="tip-adapter-f")
    assert (cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.lr, cfg.adam_eps, cfg.warmup_epochs) == \
        (20, 256, "adamw", 1e-3, 1e-4, 0)
    assert TrainConfig.preset("paper", "dtd", 2, method="coop") == TrainConfig.paper("dtd", 2)
    assert TrainConfig.paper("eurosat", 16, "tip-adapter-f").epochs == 100     # its configs/eurosat.yaml
    from vtclip.train import make_optimizer

    opt, _ = make_optimizer([torch.nn.Parameter(torch.zeros(2))], cfg, steps_per_epoch=1)
    assert opt.param_groups[0]["eps"] == 1e-4 and opt.param_groups[0]["weight_decay"] == 0.01


def _test_features_without(clip, spec, bad):
    """The test split's features computed here, with ``bad`` filtered out by hand (no cache)."""
    from vtclip import features

    ds = spec.split("test")                                          # every file, the corrupt one too
    keep = [i for i, p in enumerate(ds.paths) if ds.root / p != bad]
    assert len(keep) == len(ds.paths) - 1
    good = copy.copy(ds)
    good.paths, good.labels = [ds.paths[i] for i in keep], ds.labels[keep]
    return features.extract(clip, good, dataset_name=spec.name, split="test", cache=False,
                            num_workers=0, progress=False)


def test_skip_bad_images_leaves_out_exactly_the_corrupt_file(tiny_hf_dir, tmp_path, capsys):
    from conftest import folder_with_a_corrupt_image

    import vtclip as vt
    from vtclip.datasets import get_dataset
    from vtclip.methods import ZeroShot
    from vtclip.prompts import text_classifier

    root, bad, n_test_files = folder_with_a_corrupt_image(tmp_path / "pets")
    assert n_test_files == 11
    zeroshot = ("zeroshot", "--backbone", str(tiny_hf_dir), "--dataset", str(root), "--json")
    # without the flag: the run stops, and the error names the file
    code, out, err = _run(capsys, *zeroshot)
    assert code == 2 and "cannot read image" in err and str(bad) in err and "--skip-bad-images" in err
    # with it: that file, and only it, is left out and recorded
    code, out, err = _run(capsys, *zeroshot, "--skip-bad-images")     # said in one line of vtclip's own
    assert "vtclip zeroshot: warning: " in err and "left out 1 unreadable image" in err
    rec = json.loads(out)
    assert code == 0 and rec["config"]["dropped_images"] == [f"test:{bad}"]
    assert rec["n_test"] == n_test_files - 1
    clip = vt.load_clip(str(tiny_hf_dir), device="cpu")
    spec = get_dataset(str(root))
    test = _test_features_without(clip, spec, bad)
    assert rec["top1"] == round(evaluate(ZeroShot(text_classifier(clip, spec.classnames, spec.templates),
                                                  clip.logit_scale), test)["top1"], 2)
    # a trained method: same record of the dropped file, scored on the other test images
    out_dir = tmp_path / "records"
    code, out, _ = _run(capsys, "train", "--backbone", str(tiny_hf_dir), "--dataset", str(root), "--shots", "2",
                        "--preset", "smoke", "--skip-bad-images", "--out", str(out_dir), "--save-head", "--json")
    rec = json.loads(out)
    assert code == 0 and rec["config"]["dropped_images"] == [f"test:{bad}"]
    assert rec["n_test"] == n_test_files - 1
    (head,) = out_dir.glob("*.safetensors")
    assert rec["top1"] == round(evaluate(load_checkpoint(head), test)["top1"], 2)
