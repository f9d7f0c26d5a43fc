"""Dev-split curves: the dev split is the train images outside the draw, and the test split is never read."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vtclip import curves, features
from vtclip.datasets import few_shot


def test_dev_split_is_the_rest_of_the_train_split():
    labels = np.arange(60) % 3
    dev = curves.dev_indices(labels, 4, seed=2, num_classes=3)
    drawn = few_shot(labels, 4, 2, 3)
    assert np.intersect1d(dev, drawn).size == 0
    assert sorted(np.concatenate([dev, drawn]).tolist()) == list(range(60))
    assert not np.array_equal(dev, curves.dev_indices(labels, 4, seed=3, num_classes=3))   # follows the seed
    with pytest.raises(ValueError, match="no dev images"):
        curves.dev_indices(labels, 20, seed=1, num_classes=3)


def test_curves_record_every_epoch_and_never_read_the_test_split(tiny_hf_dir, tmp_path, monkeypatch, capsys):
    splits = []
    real_extract = features.extract

    def spy(clip, dataset, **kw):                       # records which splits get encoded
        splits.append(kw["split"])
        return real_extract(clip, dataset, **kw)

    monkeypatch.setattr(features, "extract", spy)
    from vtclip.cli import main

    argv = ["curves", "--backbone", str(tiny_hf_dir), "--datasets", "toy-colours", "--shots", "2",
            "--seeds", "1", "2", "--preset", "smoke", "--option", "heads=2", "--out", str(tmp_path / "c")]
    assert main(argv) == 0
    assert "test" not in splits and {"train", "val"} <= set(splits)
    paths = sorted((tmp_path / "c").glob("*.curves.json"))
    assert [p.name.split("__")[0] for p in paths] == ["vtclip+heads2-smoke"] * 2   # variant: options + non-paper preset
    rec = json.loads(paths[0].read_text())
    assert "top1" not in rec and rec["config"]["method"] == {"heads": 2}
    assert rec["weights"].startswith(f"local:{tiny_hf_dir.name}:")
    assert len(rec["history"]) == rec["config"]["train"]["epochs"] == 3
    assert {"train_acc", "val_acc", "dev_acc"} <= set(rec["history"][0])
    from vtclip.datasets import get_dataset

    assert rec["n_dev"] + rec["n_train"] == len(get_dataset("toy-colours").split("train"))
    assert rec["n_train"] == 2 * rec["num_classes"] and rec["n_dev"] > 0
    recs = [json.loads(p.read_text()) for p in paths]
    table = capsys.readouterr().out.splitlines()[-1].split()       # the grid's line: its records, summarised
    assert table[:3] == ["toy-colours", "2", f"{np.mean([r['zeroshot']['dev_acc'] for r in recs]):.1f}"]
    assert table[3] == f"{np.mean([r['history'][-1]['dev_acc'] for r in recs]):.1f}"
    before = [p.stat().st_mtime_ns for p in paths]
    assert main(argv) == 0                              # resumes: both records exist, nothing rewritten
    assert [p.stat().st_mtime_ns for p in paths] == before
    paths[0].write_text(json.dumps({**rec, "weights": "pocket:someotherone"}))
    with pytest.raises(ValueError, match="mix two checkpoints"):    # records of other weights: no resume
        from vtclip.curves import run_curves_grid

        run_curves_grid("vtclip", str(tiny_hf_dir), ["toy-colours"], 2, [1, 2], tmp_path / "c", "smoke",
                        "heads2-smoke", progress=False, heads=2)
    from vtclip.sweep import load_records

    assert load_records(tmp_path / "c") == []           # curves are not result records


def test_fit_monitor_scores_the_given_set_each_epoch(tiny_hf_dir):
    from vtclip.curves import dev_features
    from vtclip.experiments import fewshot_features, load_task
    from vtclip.methods import build_method
    from vtclip.train import TrainConfig, evaluate, fit

    task = load_task(str(tiny_hf_dir), "toy-colours", progress=False, test=False)
    assert task.test is None
    cfg = TrainConfig.smoke(epochs=2)
    train, val = fewshot_features(task, 2, 1, cfg.views, progress=False)
    dev = dev_features(task, 2, 1, progress=False)
    ctx = task.context(train, val)
    torch.manual_seed(0)
    model = build_method("vtclip", ctx, heads=2)
    history = fit(model, train, cfg, monitor={"dev": dev})
    assert "val_acc" not in history[-1]
    assert history[-1]["dev_acc"] == pytest.approx(evaluate(model, dev)["top1"])


def test_summary_takes_means_over_seeds_and_the_val_picked_epoch():
    def rec(seed, dev, val, zs):
        return {"variant": "v", "dataset": "d", "seed": seed, "zeroshot": {"dev_acc": zs},
                "history": [{"dev_acc": a, "val_acc": b, "train_acc": 100.0} for a, b in zip(dev, val)]}

    rows = curves.summary([rec(1, [50, 60, 40], [10, 30, 30], 45), rec(2, [70, 50, 60], [20, 10, 20], 55)])
    assert len(rows) == 1
    row = rows[0]
    assert row["zeroshot_dev"] == 50 and row["last_dev"] == 50 and row["last_dev_std"] == 10
    assert (row["best_dev"], row["best_epoch"]) == (60, 1)          # mean curve: 60, 55, 50
    assert row["val_picked_dev"] == (60 + 70) / 2                    # first best val: epochs 2 and 1
    other = {**rec(3, [10, 20], [5, 5], 30), "shots": 8}            # another draw size: its own row
    rows = curves.summary([{**rec(1, [50, 60, 40], [10, 30, 30], 45), "shots": 4}, other])
    assert [(r["shots"], r["epochs"]) for r in rows] == [(4, 3), (8, 2)]
    probe = {**rec(4, [10, 20, 30], [5, 5, 5], 30), "shots": 4, "method": "linear-probe"}
    rows = curves.summary([{**rec(1, [50, 60, 40], [10, 30, 30], 45), "shots": 4, "method": "vtclip"}, probe])
    assert [(r["method"], r["seeds"]) for r in rows] == [("linear-probe", 1), ("vtclip", 1)]   # not pooled
    with pytest.raises(FileNotFoundError, match="vtclip curves"):
        curves.load_curves("/nonexistent-folder")


def test_dev_curves_can_put_optimiser_steps_on_the_axis():
    import matplotlib

    matplotlib.use("Agg")
    from vtclip.plot import dev_curves

    def rec(variant, n_train, epochs):
        return {"variant": variant, "dataset": "d", "n_train": n_train, "zeroshot": {"dev_acc": 50.0},
                "config": {"train": {"batch_size": 32}},
                "history": [{"dev_acc": 50.0 + e, "train_acc": 60.0} for e in range(epochs)]}

    records = [rec("4 shots", 32, 3), rec("8 shots", 65, 2)]        # 1 and ceil(65 / 32) = 3 steps an epoch
    by_epoch = dev_curves(records).axes[0].lines
    assert list(by_epoch[0].get_xdata()) == [1, 2, 3]
    dev_lines = [ln for ln in dev_curves(records, x="step").axes[0].lines if ln.get_label().endswith("shots")]
    assert [list(ln.get_xdata()) for ln in dev_lines] == [[1, 2, 3], [3, 6]]
    with pytest.raises(ValueError, match="x must be 'epoch' or 'step'"):
        dev_curves(records, x="steps")
    same_name = [{**r, "variant": "default", "method": "vtclip", "shots": k} for r, k in zip(records, (4, 8))]
    with pytest.raises(ValueError, match=r"variant 'default' come from .*would average them"):
        dev_curves(same_name)                                           # two draw sizes: never one line


def test_curves_refuse_to_mix_recipes_under_one_variant_and_methods_with_nothing_to_train(
        tiny_hf_dir, tmp_path, monkeypatch):
    from vtclip.curves import run_curves_grid

    kw = dict(method="vtclip", backbone=str(tiny_hf_dir), datasets=["toy-colours"], shots=2, out=tmp_path / "c",
              variant="mine", progress=False)
    run_curves_grid(seeds=[1], preset="smoke", heads=2, **kw)
    with pytest.raises(ValueError, match=r"trained with epochs=3 \(this grid: 20\)"):   # another schedule
        run_curves_grid(seeds=[2], preset="fast", heads=2, **kw)
    with pytest.raises(ValueError, match=r"heads=2 \(this grid: 4\)"):                  # other options
        run_curves_grid(seeds=[2], preset="smoke", heads=4, **kw)
    assert len(list((tmp_path / "c").glob("*.curves.json"))) == 1
    assert run_curves_grid(seeds=[2], preset="smoke", heads=2, **kw)["ran"] == 1       # the same: extends
    dev_splits = []
    monkeypatch.setattr(curves, "dev_features", lambda *a, **k: dev_splits.append(a))
    with pytest.raises(ValueError, match="tip-adapter has no parameters to train"):
        run_curves_grid(**{**kw, "method": "tip-adapter", "variant": "tip"}, seeds=[1], preset="smoke")
    assert dev_splits == []                         # refused before the dev split (most of train) is encoded
