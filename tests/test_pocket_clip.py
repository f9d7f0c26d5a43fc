"""Pocket CLIP: the shipped checkpoint, the contrastive loss and short pretraining runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vtclip as vt
from vtclip.backbones import POCKET_DIR
from vtclip.pocket import render
from vtclip.pocket.pretrain import (PocketConfig, _optimizer, build_model, contrastive_loss, make_batch,
                                    pretrain, to_pixels, train_step)
from vtclip.pocket.suite import zeroshot_suite
from vtclip.pocket.tokenizer import build_tokenizer

GOLDEN = POCKET_DIR / "golden_subset.json"


@pytest.fixture(scope="module")
def pocket():
    return vt.load_clip("pocket", device="cpu")


# ---- the shipped checkpoint ---------------------------------------------------------------------
def test_shipped_checkpoint_loads_offline_with_its_files(pocket):
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json",
                 "preprocessor_config.json", "training.json"):
        assert (POCKET_DIR / name).is_file(), name
    assert sum(f.stat().st_size for f in POCKET_DIR.iterdir()) < 20e6
    assert pocket.name == "pocket" and pocket.image_size == 64
    f = pocket.encode_image(torch.zeros(2, 3, 64, 64))
    assert f.grid == (8, 8) and f.pooled.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in pocket.parameters())


def test_shipped_checkpoint_reproduces_golden_zero_shot_subset(pocket):
    golden = json.loads(GOLDEN.read_text())
    rows = zeroshot_suite(pocket, limit=golden["limit"])
    assert set(rows) == set(golden["datasets"])
    for name, row in rows.items():
        assert row["n_test"] == golden["datasets"][name]["n_test"]
        assert abs(row["top1"] - golden["datasets"][name]["top1"]) <= 0.5, (name, row)


def test_preprocess_of_a_render_equals_training_pixels(pocket):
    rng = np.random.default_rng(0)
    scenes = [render.sample_scene(rng) for _ in range(4)]
    mine = torch.stack([pocket.preprocess(render.render(s)) for s in scenes])
    torch.testing.assert_close(mine, to_pixels(render.render_batch(scenes)), atol=1e-5, rtol=0)


def test_shipped_tokenizer_files_agree(pocket):
    from transformers import CLIPTokenizer

    slow = CLIPTokenizer(vocab=json.loads((POCKET_DIR / "vocab.json").read_text()),
                         merges=[tuple(line.split()) for line in
                                 (POCKET_DIR / "merges.txt").read_text().splitlines()[1:]])
    text = "a photo of a small red triangle on a checked background."
    assert slow(text)["input_ids"] == pocket.tokenizer(text)["input_ids"] == build_tokenizer()(text)["input_ids"]


# ---- the loss -----------------------------------------------------------------------------------
def test_contrastive_loss_is_clip_loss_for_one_positive_each():
    torch.manual_seed(0)
    img, txt = torch.randn(6, 8), torch.randn(6, 8)
    logits = 10 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    ref = (F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))) / 2
    torch.testing.assert_close(contrastive_loss(img, txt, torch.tensor(10.0)), ref)
    pos = torch.eye(6, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True          # a second true pair changes the targets
    assert not torch.isclose(contrastive_loss(img, txt, torch.tensor(10.0), pos), ref)


def test_batches_are_deterministic_and_positives_are_true_captions():
    cfg, tok = PocketConfig.tiny(), build_tokenizer(2048)
    a, b = make_batch(cfg, 3, tok), make_batch(cfg, 3, tok)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["pixel_values"], make_batch(cfg, 4, tok)["pixel_values"])
    assert a["positives"].diagonal().all() and a["positives"].sum() > len(a["positives"])


# ---- pretraining --------------------------------------------------------------------------------
def test_short_pretraining_lowers_loss_and_saves_a_loadable_clip(tmp_path):
    cfg = PocketConfig.tiny(steps=60)
    tok = build_tokenizer(cfg.num_merges)
    held_out = make_batch(cfg, 10_000, tok)                  # a batch no training step sees

    def loss_of(model):
        with torch.no_grad():
            out = model(input_ids=held_out["input_ids"], attention_mask=held_out["attention_mask"],
                        pixel_values=held_out["pixel_values"])
            return float(contrastive_loss(out.image_embeds, out.text_embeds, model.logit_scale.exp(),
                                          held_out["positives"]))

    before = loss_of(build_model(cfg).eval())
    record = pretrain(cfg, tmp_path / "run", progress=False, log_every=10)
    clip = vt.load_clip(str(tmp_path / "run"), device="cpu")
    after = loss_of(clip.model)
    assert after < before - 0.2, (before, after)
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]
    assert not (tmp_path / "run" / "resume.pt").exists()


def test_pretraining_is_deterministic_and_resumes_exactly(tmp_path):
    cfg = PocketConfig.tiny(steps=12).replace(checkpoint_every=4)
    pretrain(cfg, tmp_path / "a", progress=False)
    assert pretrain(cfg, tmp_path / "b", progress=False, stop_after=6) is None
    assert (tmp_path / "b" / "resume.pt").is_file()
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(cfg, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match="different config"):
        pretrain(cfg.replace(seed=1), tmp_path / "b", resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="nothing to resume .* drop --resume"):
        pretrain(cfg, tmp_path / "typo", resume=True, progress=False)   # refused, not a fresh start
    assert not (tmp_path / "typo").exists()
    pretrain(cfg, tmp_path / "b", resume=True, progress=False)
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    before = (tmp_path / "a" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a finished Pocket CLIP .* Pass --out NEW_DIR"):
        pretrain(cfg, tmp_path / "a", progress=False)          # a finished checkpoint is never overwritten
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == before


def test_an_interrupted_save_leaves_the_run_resumable(tmp_path, monkeypatch):
    from vtclip.pocket import pretrain as module

    cfg = PocketConfig.tiny(steps=8).replace(checkpoint_every=4)
    real = module.image_processor

    def interrupted(cfg):                                       # the save stops half-way (say, Ctrl-C)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "image_processor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "run", progress=False)
    left = {p.name for p in (tmp_path / "run").iterdir()}
    assert "model.safetensors" not in left and "resume.pt" in left   # not finished, and resumable
    monkeypatch.setattr(module, "image_processor", real)
    pretrain(cfg, tmp_path / "run", resume=True, progress=False)
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".") or p.name == "resume.pt"]
    vt.load_clip(str(tmp_path / "run"), device="cpu")


@pytest.mark.slow
def test_shipped_recipe_reproduces_the_shipped_runs_first_logged_loss():
    """The code still trains the shipped model: same config, same first 25 steps (to 1e-4).

    Catches any drift in the renderer, captions, tokenizer, initialisation, loss or optimiser that
    would make `vtclip pocket pretrain` train something other than what ships.
    """
    record = json.loads((POCKET_DIR / "training.json").read_text())
    cfg = PocketConfig(**record["config"])
    assert cfg == PocketConfig.shipped()
    first = record["history"][0]                            # mean loss of steps 1..first["step"]
    # (any thread count: these steps give the same loss to 1e-6 with 1 or 2 threads)
    tok = build_tokenizer(cfg.num_merges, cfg.context_length)
    model = build_model(cfg).train()
    opt, sched = _optimizer(model, cfg)
    losses = [train_step(model, make_batch(cfg, step, tok), opt, sched, cfg) for step in range(first["step"])]
    assert abs(np.mean(losses) - first["loss"]) <= 2e-4, (np.mean(losses), first)


def test_cli_eval_prints_only_json_and_never_overwrites_its_file(capsys, tmp_path):
    from vtclip.cli import main

    out = tmp_path / "zeroshot.json"
    argv = ["pocket", "eval", "--datasets", "pocket-objects", "--limit", "16", "--json", "--write", str(out)]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)                        # the JSON alone, no table
    row = result["datasets"]["pocket-objects"]
    assert result["backbone"] == "pocket" and row["n_test"] == 16 and row["chance"] == 12.5
    written = json.loads(out.read_text())
    assert written["datasets"] == result["datasets"] and written["weights"] == vt.load_clip("pocket").weights_tag
    before = out.read_bytes()
    assert main(argv) == 2                                              # the file exists: refused, untouched
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before


def test_cli_demo_json_has_the_contract_shape(capsys, tmp_path):
    from vtclip.cli import main
    from vtclip.sweep import load_records

    assert main(["demo", "--smoke", "--seeds", "1", "2", "--datasets", "pocket-pairs", "--json",
                 "--out", str(tmp_path / "demo")]) == 0
    result = json.loads(capsys.readouterr().out)                  # --json: the JSON object alone
    assert result["backbone"] == "pocket" and result["shots"] == 16 and result["seeds"] == [1, 2]
    assert result["preset"] == "smoke" and result["seconds"] > 0
    row = result["datasets"]["pocket-pairs"]
    committed = json.loads((vt.settings.REPO_ROOT / "results" / "pocket" / "zeroshot.json").read_text())
    assert abs(row["zeroshot"] - committed["datasets"]["pocket-pairs"]["top1"]) < 0.5
    assert len(row["vtclip_seeds"]) == 2 and row["vtclip"] == pytest.approx(np.mean(row["vtclip_seeds"]), abs=0.01)
    assert row["vtclip_std"] == round(float(np.std(row["vtclip_seeds"])), 2)
    # one record per seed, in order: seeds 1 and 2 may score alike, so the table alone cannot show
    # that the demo trained each seed rather than one seed twice
    records = sorted(load_records(tmp_path / "demo"), key=lambda r: r["seed"])
    assert [(r["seed"], r["top1"]) for r in records] == list(zip((1, 2), row["vtclip_seeds"], strict=True))
    # cross-check every number against a direct run of the same recipe (smoke preset, 16 shots)
    from vtclip.experiments import load_task, run_method
    from vtclip.methods import ZeroShot
    from vtclip.train import TrainConfig, evaluate

    clip = vt.load_clip("pocket")                                       # as the demo loads it
    task = load_task(clip, "pocket-pairs", progress=False)
    assert row["chance"] == round(100 / task.spec.num_classes, 2)
    assert row["zeroshot"] == round(evaluate(ZeroShot(task.text, clip.logit_scale), task.test)["top1"], 2)
    for seed, acc in zip((1, 2), row["vtclip_seeds"], strict=True):
        record, model, history = run_method(task, "vtclip", 16, seed, TrainConfig.smoke(progress=False),
                                            progress=False)
        assert record["top1"] == acc, (seed, record["top1"], acc)
        assert record["top1"] == round(evaluate(model, task.test)["top1"], 2)
        # the head was trained: its loss fell over the three smoke epochs, and it left its identity
        # init, where it scores exactly zero-shot, for a better test accuracy
        assert len(history) == 3 and history[-1]["loss"] < history[0]["loss"]
        assert acc > row["zeroshot"], (seed, acc, row["zeroshot"])


def test_pretrain_arguments_are_checked_before_any_work(capsys, tmp_path):
    from vtclip.cli import main

    for flag, value, why in (("--seed", "-1", "--seed must be >= 0, got -1"),
                             ("--steps", "0", "--steps must be positive, got 0")):
        assert main(["pocket", "pretrain", "--tiny", "--out", str(tmp_path / "p"), flag, value]) == 2
        assert why in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
