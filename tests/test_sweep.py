"""Sweeps: resumable, never overwriting, failures recorded, summary over seeds."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from vtclip.sweep import load_records, run_sweep, summarize


def test_sweep_resumes_records_failures_and_summarises(tiny_hf_dir, tmp_path):
    out = tmp_path / "run"
    kw = dict(backbone=str(tiny_hf_dir), datasets=["toy-colours"], out=out, preset="smoke", progress=False)
    first = run_sweep(["zeroshot", "vtclip"], shots=[2, 40], seeds=[1, 2], **kw)
    errors = first.pop("errors")
    assert first == {"out": str(out), "runs": 8, "ran": 4, "failed": 4, "unreadable": 0,
                     "summary_rows": 2}
    failure = json.loads(next((out / "failed").iterdir()).read_text())
    assert failure["shots"] == 40 and "fewer training images" in failure["error"]
    assert len(errors) == 4 and all("40-shot" in e and "fewer training images" in e for e in errors)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    again = run_sweep(["zeroshot", "vtclip"], shots=[2], seeds=[1, 2, 3], **kw)
    assert (again["ran"], again["failed"]) == (2, 0)            # only seed 3 was missing; the rest skipped
    from vtclip.sweep import grid_table

    table = grid_table(out, str(tiny_hf_dir), ["zeroshot", "vtclip"], {None: {}}, ["toy-colours"], [2, 40],
                       [1, 2, 3]).splitlines()
    vt = [r["top1"] for r in load_records(out) if r["method"] == "vtclip"]
    assert table[-1].split() == ["toy-colours", "vtclip", f"{np.mean(vt):.1f}", "±", f"{np.std(vt):.1f}", "-"]
    assert "seeds 1 2 3" in table[0] and "brackets" not in table[0]
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert all(after[n] == t for n, t in before.items())      # finished records untouched
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["method"], r["n_seeds"]) for r in rows} == {("zeroshot", "3"), ("vtclip", "3")}
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]      # no temp file left behind
    for row in rows:                                           # mean and std over the seeds' own records
        top1 = [r["top1"] for r in load_records(out) if r["method"] == row["method"]]
        assert len(top1) == 3 and float(row["top1_mean"]) == round(float(np.mean(top1)), 2)
        assert float(row["top1_std"]) == round(float(np.std(top1)), 2)



def test_an_interrupted_summary_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    from vtclip.experiments import write_record

    rec = {"method": "vtclip", "backbone": "pocket", "dataset": "pocket-objects", "shots": 1, "top1": 50.0}
    write_record({**rec, "seed": 1}, tmp_path)
    summarize(tmp_path)
    before = (tmp_path / "summary.csv").read_bytes()
    write_record({**rec, "seed": 2, "top1": 70.0}, tmp_path)

    def interrupted(self, target):
        raise KeyboardInterrupt
    monkeypatch.setattr(type(tmp_path), "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        summarize(tmp_path)
    monkeypatch.undo()
    assert (tmp_path / "summary.csv").read_bytes() == before           # not half of the new one
    assert summarize(tmp_path)[0]["n_seeds"] == 2                      # and a rerun writes it

def test_missing_weights_stop_the_sweep_at_once(tmp_path):
    from vtclip.backbones import WeightsUnavailableError

    out = tmp_path / "run"
    with pytest.raises(WeightsUnavailableError, match="RN50.pt"):
        run_sweep(["zeroshot", "vtclip"], backbone="RN50", datasets=["toy-colours"], shots=[1, 2],
                  seeds=[1, 2, 3], out=out, preset="smoke", progress=False)
    assert not (out / "failed").exists()               # not 12 copies of the same failure


def test_pocket_means_the_whole_suite():
    from vtclip.datasets import DATASETS
    from vtclip.experiments import dataset_names

    suite = dataset_names(["pocket"])                           # the control first, then the gap datasets
    assert suite == ["pocket-objects", "pocket-textures", "pocket-symbols", "pocket-pairs", "pocket-crowds",
                     "pocket-blurred"]
    assert all(DATASETS[d].name == d for d in suite)
    assert dataset_names(["pocket-crowds", "dtd"]) == ["pocket-crowds", "dtd"]      # names pass through


def test_sweep_refuses_to_resume_records_of_other_weights(tiny_hf_dir, tmp_path):
    import pytest

    out = tmp_path / "run"
    kw = dict(backbone=str(tiny_hf_dir), datasets=["toy-colours"], out=out, preset="smoke", progress=False)
    run_sweep(["zeroshot"], shots=[2], seeds=[1], **kw)
    path = next(out.glob("zeroshot__*.json"))
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "weights": "local:other-checkpoint:0123"}))
    with pytest.raises(ValueError, match="mix two checkpoints") as err:
        run_sweep(["zeroshot"], shots=[2], seeds=[1, 2], **kw)
    assert "local:other-checkpoint:0123" in str(err.value) and record["weights"] in str(err.value)
    assert not (out / path.name.replace("seed1", "seed2")).exists()          # nothing ran
    # extending the folder checks the records already there too, not only the grid's own files:
    # another seed of the same row, or another method, would sit beside the foreign record
    for methods, seeds in ((["zeroshot"], [2]), (["vtclip"], [3])):
        with pytest.raises(ValueError, match="mix two checkpoints"):
            run_sweep(methods, shots=[2], seeds=seeds, **kw)
    assert len(list(out.glob("*.json"))) == 1
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "weights"}))
    with pytest.raises(ValueError, match="no weights tag"):
        run_sweep(["zeroshot"], shots=[2], seeds=[1, 2], **kw)


def test_sweep_variants_are_separate_records_with_their_options(tiny_hf_dir, tmp_path):
    from vtclip.ablations import table, variants
    from vtclip.sweep import load_records

    chosen = {k: v for k, v in variants(["heads", "residual"]).items() if k in ("default", "heads1", "no-residual")}
    assert chosen["heads1"] == {"options": {"heads": 1, "layers": 1, "self_attn": True, "residual": True},
                                "spatial": "raw"}
    out = tmp_path / "abl"
    result = run_sweep(["vtclip"], str(tiny_hf_dir), ["toy-colours"], [2], [1], out, preset="smoke",
                       progress=False, variants=chosen)
    assert (result["ran"], result["failed"]) == (3, 0)
    assert len(list(out.glob("vtclip+heads1__*__toy-colours__2shot__seed1.json"))) == 1   # variant in the name
    records = {r["variant"]: r for r in load_records(out)}
    assert set(records) == {"default", "heads1", "no-residual"}
    assert records["heads1"]["config"]["method"]["heads"] == 1
    assert records["no-residual"]["config"]["method"]["residual"] is False
    with open(out / "summary.csv") as f:
        assert {r["variant"] for r in csv.DictReader(f)} == {"default", "heads1", "no-residual"}
    rows = table(load_records(out), "heads")
    assert [r["value"] for r in rows] == [1, 8]                # values without records are left out
    assert rows[0]["datasets"]["toy-colours"][0] == records["heads1"]["top1"]
    assert rows[0]["average"] == records["heads1"]["top1"]     # one dataset: its mean
    other = {**records["heads1"], "shots": 4}                    # a record of another grid
    with pytest.raises(ValueError, match=r"mix \(backbone, shots\)"):
        table(load_records(out) + [other], "heads")
    from vtclip.ablations import markdown

    md = markdown(load_records(out), ["heads", "residual"]).splitlines()
    assert len(md) == 2 + 4 and md[3].startswith("| heads | **8** |") and "| residual onto the texts | off |" in md[5]


def test_ablation_variants_change_one_setting_each():
    from vtclip.ablations import DEFAULT, variants

    vs = variants()
    assert len(vs) == 1 + 5 + 3 + 1 + 1 + 1                   # default + heads + layers + spatial + 2 switches
    for name, v in vs.items():
        setting = {**v["options"], "spatial": v["spatial"]}
        changed = {k for k in DEFAULT if setting[k] != DEFAULT[k]}
        assert len(changed) == (0 if name == "default" else 1), name
    import pytest

    with pytest.raises(ValueError, match="known: heads"):
        variants(["colour"])


def test_ablate_command_runs_the_group_and_resumes(tiny_hf_dir, tmp_path, capsys):
    from vtclip.cli import main

    argv = ["ablate", "--groups", "residual", "--backbone", str(tiny_hf_dir), "--datasets", "toy-colours",
            "--shots", "2", "--seeds", "1", "--preset", "smoke", "--out", str(tmp_path / "abl")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "ablate: 2 run(s) done, 0 failed, 0 already there" in printed
    assert sorted(p.name.split("__")[0] for p in (tmp_path / "abl").glob("*.json")) == \
        ["vtclip+default", "vtclip+no-residual"]
    table = printed.splitlines()[-3:]                      # the grid's table: its own records' numbers
    assert table[0].split() == ["dataset", "method", "2", "shots"]
    for line in table[1:]:
        dataset, label, top1 = line.split()
        record = next((tmp_path / "abl").glob(f"{label}__*__{dataset}__2shot__seed1.json"))
        assert top1 == f"{json.loads(record.read_text())['top1']:.1f}"
    assert main(argv) == 0
    assert "0 run(s) done, 0 failed, 2 already there" in capsys.readouterr().out


def test_sweep_select_chooses_on_val_as_a_variant(tiny_hf_dir, tmp_path, capsys):
    from vtclip.cli import main
    from vtclip.sweep import load_records

    argv = ["sweep", "--methods", "vtclip", "--backbone", str(tiny_hf_dir), "--datasets", "toy-colours",
            "--shots", "2", "--seeds", "1", "--preset", "smoke", "--select", "heads=[1,2]",
            "--out", str(tmp_path / "sel")]
    assert main(argv) == 0
    (record,) = load_records(tmp_path / "sel")
    assert record["variant"] == "val-heads"
    sel = record["config"]["selected_on_val"]
    assert [c["heads"] for c, _ in sel["val_top1"]] == [1, 2] and record["config"]["method"] == sel["chosen"]
    assert main(argv[:-4] + ["--select", "heads=2", "--out", str(tmp_path / "bad")]) == 2
    assert "JSON list" in capsys.readouterr().err


def test_sweep_option_and_train_make_a_named_variant(tiny_hf_dir, tmp_path, capsys):
    from vtclip.cli import main
    from vtclip.sweep import load_records

    argv = ["sweep", "--methods", "vtclip", "--backbone", str(tiny_hf_dir), "--datasets", "toy-colours",
            "--shots", "2", "--seeds", "1", "--preset", "smoke", "--option", "dropout=0.5",
            "--train", "epoch_on_val=true", "--out", str(tmp_path / "v")]
    assert main(argv) == 0
    (record,) = load_records(tmp_path / "v")
    assert record["variant"] == "dropout0.5-epoch_on_val"
    assert record["config"]["method"] == {"dropout": 0.5} and record["config"]["train"]["epoch_on_val"] is True
    assert 1 <= record["config"]["epoch_chosen_on_val"] <= record["config"]["train"]["epochs"]
    assert main(argv[:-4] + ["--train", "epochs_on_val=true", "--out", str(tmp_path / "bad")]) == 2
    assert "unknown TrainConfig field" in capsys.readouterr().err


def test_sweep_on_an_image_folder_resumes(tiny_hf_dir, tmp_path):
    import numpy as np
    from PIL import Image

    for c, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        (tmp_path / "colours" / f"class{c}").mkdir(parents=True)
        for i in range(10):
            image = Image.fromarray(np.full((32, 32, 3), colour, np.uint8))
            image.save(tmp_path / "colours" / f"class{c}" / f"{i}.png")
    kw = dict(backbone=str(tiny_hf_dir), datasets=[str(tmp_path / "colours")], shots=[1], seeds=[1],
              out=tmp_path / "run", preset="smoke", progress=False)
    assert run_sweep(["zeroshot"], **kw)["ran"] == 1
    again = run_sweep(["zeroshot"], **kw)          # records carry the folder dataset's name, not the path
    assert (again["ran"], again["failed"]) == (0, 0)


def test_sweep_refuses_zero_shots_before_loading_anything(tmp_path):
    import pytest

    with pytest.raises(ValueError, match=r"shots must be a whole number of at least 1, got 0"):
        run_sweep(["vtclip"], "pocket", ["toy-colours"], [0, 2], [1], tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()                   # nothing loaded, nothing written


def test_a_variant_cannot_set_the_seed_or_progress(tmp_path):
    import argparse

    import pytest

    from vtclip.sweep import run_grid

    args = argparse.Namespace(train=["seed=7"], option=None, select=None, variant=None, datasets=["toy-colours"],
                              backbone="pocket", seeds=[1], out=str(tmp_path / "run"), preset="smoke",
                              data_root=None, json=True)
    with pytest.raises(ValueError, match="--train seed: set by the grid itself"):
        run_grid("sweep", ["vtclip"], args, [2])
    assert not (tmp_path / "run").exists()


def test_demo_refuses_an_existing_record_before_training(tiny_hf_dir, tmp_path):
    import pytest

    from vtclip.experiments import run_demo, run_record_name

    out = tmp_path / "demo"
    out.mkdir()
    taken = out / run_record_name("vtclip", str(tiny_hf_dir), "toy-colours", 2, 2)
    taken.write_text("{}")
    with pytest.raises(FileExistsError, match="already exists"):
        run_demo(str(tiny_hf_dir), ["toy-colours"], shots=2, seeds=(1, 2), out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [taken.name]       # seed 1 was not trained either


def test_sweep_refuses_to_resume_records_of_another_recipe(tiny_hf_dir, tmp_path):
    import pytest

    out = tmp_path / "run"
    kw = dict(backbone=str(tiny_hf_dir), datasets=["toy-colours"], out=out, progress=False)
    run_sweep(["vtclip"], shots=[2], seeds=[1], preset="smoke", **kw)
    with pytest.raises(ValueError, match=r"trained with epochs=3 \(this grid: 20\).*mix two training recipes"):
        run_sweep(["vtclip"], shots=[2], seeds=[1, 2], preset="fast", **kw)
    with pytest.raises(ValueError, match="mix two training recipes"):     # a new seed of that row: the same
        run_sweep(["vtclip"], shots=[2], seeds=[2], preset="fast", **kw)
    assert not list(out.glob("*seed2.json"))                               # nothing ran
    again = run_sweep(["vtclip"], shots=[2], seeds=[1, 2], preset="smoke", **kw)   # same recipe: resumes
    assert (again["ran"], again["failed"]) == (1, 0)
    # a variant named by hand: its options are checked too, not only its name
    run_sweep(["vtclip"], shots=[2], seeds=[1], preset="smoke", variants={"mine": {"options": {"heads": 2}}}, **kw)
    with pytest.raises(ValueError, match=r"heads=2 \(this grid: 4\)"):
        run_sweep(["vtclip"], shots=[2], seeds=[2], preset="smoke", variants={"mine": {"options": {"heads": 4}}}, **kw)


def test_sweep_and_curves_skip_bad_images_only_when_asked(tiny_hf_dir, tmp_path, capsys):
    from conftest import folder_with_a_corrupt_image

    from vtclip.cli import main

    root, bad, n_test = folder_with_a_corrupt_image(tmp_path / "pets")
    sweep = ["sweep", "--backbone", str(tiny_hf_dir), "--datasets", str(root), "--methods", "zeroshot", "vtclip",
             "--shots", "2", "--seeds", "1", "--preset", "smoke", "--json"]
    # without the flag: every run fails, is recorded under failed/ with the file's name, and no record is written
    assert main([*sweep, "--out", str(tmp_path / "strict")]) == 1
    failures = [json.loads(p.read_text()) for p in (tmp_path / "strict" / "failed").iterdir()]
    assert len(failures) == 2 and all(str(bad) in f["error"] and "--skip-bad-images" in f["error"] for f in failures)
    assert load_records(tmp_path / "strict") == []
    capsys.readouterr()
    # with it: both runs finish on the other test images, and their records name the file left out
    assert main([*sweep, "--out", str(tmp_path / "lenient"), "--skip-bad-images"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["ran"] == 2                 # --json: stdout is the JSON object alone
    warned = [line for line in printed.err.splitlines() if "unreadable image" in line]
    assert warned and all(line.startswith("vtclip sweep: warning: ") and "left out 1 unreadable image(s), e.g. "
                          f"{bad} (a run's record lists them in dropped_images)" in line for line in warned)
    assert ".py:" not in printed.err                           # one line, not Python's file/line/source form
    records = load_records(tmp_path / "lenient")
    assert sorted(r["method"] for r in records) == ["vtclip", "zeroshot"]
    assert all(r["config"]["dropped_images"] == [f"test:{bad}"] and r["n_test"] == n_test - 1 for r in records)

    # curves read train and val only: a corrupt train image stops them unless the flag is given
    root, bad, n_train = folder_with_a_corrupt_image(tmp_path / "cars", split="train")
    curves = ["curves", "--backbone", str(tiny_hf_dir), "--datasets", str(root), "--shots", "2", "--seeds", "1",
              "--preset", "smoke", "--json"]
    assert main([*curves, "--out", str(tmp_path / "c1")]) == 2
    assert str(bad) in capsys.readouterr().err
    assert main([*curves, "--out", str(tmp_path / "c2"), "--skip-bad-images"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["ran"] == 1 and "vtclip curves: warning: " in printed.err
    (path,) = (tmp_path / "c2").glob("*.curves.json")
    rec = json.loads(path.read_text())
    assert rec["config"]["dropped_images"] == [f"train:{bad}"] and rec["n_train"] + rec["n_dev"] == n_train - 1


def test_ablation_figure_needs_the_default_row():
    import matplotlib

    matplotlib.use("Agg")
    from vtclip.plot import ablations

    rows = [{"value": v, "datasets": {"d": (50.0 + v, 1.0)}, "average": 50.0 + v} for v in (2, 8)]
    fig = ablations({"heads": rows}, default={"heads": 8})
    assert [list(ln.get_ydata()) for ln in fig.axes[0].lines if ln.get_label() == "average"] == [[-6.0, 0.0]]
    with pytest.raises(ValueError, match=r"no row for its default value 8 \(values: \[2\]\)"):
        ablations({"heads": rows[:1]}, default={"heads": 8})


def test_ctrl_c_ends_a_sweep_in_one_line_and_the_rerun_resumes(tiny_hf_dir, tmp_path, capsys, monkeypatch):
    from vtclip import sweep
    from vtclip.cli import main

    out, real = tmp_path / "run", sweep.run_method

    def interrupted_at_seed_2(task, method, k, seed, *args, **kwargs):
        if seed == 2:
            raise KeyboardInterrupt                              # Ctrl-C while the second run trains
        return real(task, method, k, seed, *args, **kwargs)

    argv = ["sweep", "--methods", "vtclip", "--backbone", str(tiny_hf_dir), "--datasets", "toy-colours",
            "--shots", "2", "--seeds", "1", "2", "--preset", "smoke", "--out", str(out)]
    monkeypatch.setattr(sweep, "run_method", interrupted_at_seed_2)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "vtclip sweep: interrupted. No file is left half-written" in err and "Traceback" not in err
    left = [p.name for p in out.iterdir() if p.name != ".vtclip.lock"]   # no temp file, no failed/ entry
    assert len(left) == 1 and left[0].endswith("__toy-colours__2shot__seed1.json")
    assert json.loads((out / left[0]).read_text())["seed"] == 1  # whole
    monkeypatch.undo()
    assert main(argv) == 0
    assert "1 run(s) done, 0 failed, 1 already there" in capsys.readouterr().out


def test_a_sweep_lets_a_finished_datasets_test_features_go(tiny_hf_dir, tmp_path, monkeypatch):
    """Real test splits hold GiBs of spatial maps: when the dataset-major grid moves on, the last
    dataset's task (its test features) is freed before the next one loads."""
    import gc
    import weakref

    from vtclip import sweep
    from vtclip.datasets import base

    monkeypatch.setitem(base.DATASETS, "toy-colours-2", base.DATASETS["toy-colours"])
    real, loaded, alive_at_load = sweep.load_task, [], []

    def load_task(*args, **kwargs):
        gc.collect()
        alive_at_load.append([ref() is not None for ref in loaded])
        task = real(*args, **kwargs)
        loaded.append(weakref.ref(task))
        return task

    monkeypatch.setattr(sweep, "load_task", load_task)
    run_sweep(["zeroshot"], str(tiny_hf_dir), ["toy-colours", "toy-colours-2"], [2], [1], tmp_path / "run",
              preset="smoke", progress=False)
    assert alive_at_load == [[], [False]]


def test_the_cache_dtype_switch_stores_fp16_says_so_and_is_not_mixed_on_resume(tiny_hf_dir, tmp_path, monkeypatch):
    """VTCLIP_CACHE_DTYPE=float16 halves a real dataset's cache; records name it, and a folder of
    float32 records is not extended with float16 runs (the numbers move slightly)."""
    out = tmp_path / "run"
    kw = dict(backbone=str(tiny_hf_dir), datasets=["toy-colours"], out=out, preset="smoke", progress=False)
    run_sweep(["zeroshot", "vtclip"], shots=[2], seeds=[1], **kw)
    assert {r["config"]["cache_dtype"] for r in load_records(out)} == {"float32"}
    monkeypatch.setenv("VTCLIP_CACHE_DTYPE", "float16")
    with pytest.raises(ValueError, match=r"cache_dtype='float32' \(this grid: 'float16'\).*VTCLIP_CACHE_DTYPE"):
        run_sweep(["vtclip"], shots=[2], seeds=[1, 2], **kw)
    half = tmp_path / "half"
    run_sweep(["zeroshot", "vtclip"], shots=[2], seeds=[1], **{**kw, "out": half})
    assert {r["config"]["cache_dtype"] for r in load_records(half)} == {"float16"}
    from vtclip import settings

    entries = [json.loads(m.read_text())["key"] for m in settings.home("features").glob("*/*/meta.json")]
    assert {k["store_dtype"] for k in entries} == {"float32", "float16"}     # both kinds in the cache
    monkeypatch.setenv("VTCLIP_CACHE_DTYPE", "bfloat16")
    with pytest.raises(ValueError, match="VTCLIP_CACHE_DTYPE='bfloat16': the feature cache stores float32 or float16"):
        run_sweep(["vtclip"], shots=[2], seeds=[3], **{**kw, "out": tmp_path / "bf"})


def test_a_sweep_shows_its_extractions_progress(tiny_hf_dir, tmp_path, capsys):
    """A real dataset's extraction takes many minutes: the grid's bar is not all a sweep shows."""
    run_sweep(["vtclip"], str(tiny_hf_dir), ["toy-colours"], [2], [1], tmp_path / "run", preset="smoke")
    err = capsys.readouterr().err
    assert "toy-colours/test (1 x" in err and "toy-colours/train (" in err and "sweep:" in err


def test_a_sweep_refuses_to_extend_a_row_across_changed_images(tiny_hf_dir, tmp_path):
    import numpy as np
    import pytest
    from PIL import Image

    def add(c, n, start=0):
        (tmp_path / "colours" / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(start, start + n):
            Image.fromarray(np.full((32, 32, 3), 60 * c + i, np.uint8)).save(tmp_path / "colours" / f"class{c}" / f"{i}.png")

    add(0, 5), add(1, 5)
    kw = dict(backbone=str(tiny_hf_dir), datasets=[str(tmp_path / "colours")], shots=[1], progress=False,
              out=tmp_path / "run", preset="smoke")
    assert run_sweep(["zeroshot"], seeds=[1], **kw)["ran"] == 1
    (record,) = load_records(tmp_path / "run")
    assert len(record["data"]) == 16
    add(0, 20, start=5)                  # the folder grows: its split, and n_test, change
    with pytest.raises(ValueError, match=r"zeroshot__.*seed1\.json \(and 0 more record\(s\) there\) was measured on "
                                         r".*colours with content .* and 4 test images; it now has .* and 10 test "
                                         r"images .*new --out folder"):
        run_sweep(["zeroshot"], seeds=[2], **kw)
    assert len(load_records(tmp_path / "run")) == 1


def test_unreadable_records_are_named_and_left_out(tmp_path):
    import pytest

    from vtclip.experiments import BadRecordWarning

    assert run_sweep(["zeroshot"], "pocket", ["toy-colours"], [1], [1], tmp_path, progress=False)["ran"] == 1
    good = (tmp_path / "zeroshot__pocket__toy-colours__1shot__seed1.json").read_text()
    bad = {"truncated": '{"method": "zeroshot", "back', "binary": b"\x89PNG\x00\xff", "empty": "{}",
           "list": "[1, 2]", "texttop1": good.replace('"top1": ', '"top1": "abc", "was": '),
           "nullshots": good.replace('"shots": 1', '"shots": null')}
    for i, (what, text) in enumerate(bad.items()):
        path = tmp_path / f"zeroshot__pocket__{what}__1shot__seed{i}.json"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.warns(BadRecordWarning) as caught:
        result = run_sweep(["zeroshot"], "pocket", ["toy-colours"], [1], [1, 2], tmp_path, progress=False)
    assert (result["ran"], result["failed"], result["summary_rows"]) == (1, 0, 1)
    named = " ".join(str(w.message) for w in caught)
    for what in bad:                                   # each named once, though the grid reads them often
        assert sum(f"zeroshot__pocket__{what}__1shot__seed" in str(w.message) for w in caught) == 1, what
    assert "its top1 is 'abc', not a percentage" in named and "its shots is None, not a whole number" in named
    assert "Delete it to have that run done again" in named


def test_one_grid_per_out_folder_and_a_rerun_clears_stale_failures(tmp_path):
    from filelock import FileLock

    from vtclip.curves import run_curves_grid

    out = tmp_path / "run"
    assert run_sweep(["zeroshot"], "pocket", ["toy-colours"], [1], [1], out, progress=False)["ran"] == 1
    other = FileLock(out / ".vtclip.lock")        # another process's sweep, between its runs
    other.acquire()
    try:
        with pytest.raises(ValueError, match=r"--out .*run is in use by another vtclip process .*another --out"):
            run_sweep(["zeroshot"], "pocket", ["toy-colours"], [1], [1, 2], out, progress=False)
        with pytest.raises(ValueError, match="in use by another vtclip process"):
            run_curves_grid("vtclip", "pocket", ["toy-colours"], 1, [1], out, preset="smoke", progress=False)
    finally:
        other.release()
    name = "zeroshot__pocket__toy-colours__1shot__seed1.json"
    (out / "failed").mkdir()
    (out / "failed" / name).write_text('{"error": "FileExistsError: written by the other sweep"}')
    result = run_sweep(["zeroshot"], "pocket", ["toy-colours"], [1], [1], out, progress=False)
    assert (result["ran"], result["failed"]) == (0, 0)
    assert not (out / "failed").exists()           # the run is done: its failure was stale


def test_a_finished_run_whose_record_cannot_be_written_is_printed(tmp_path, capsys, monkeypatch):
    import shutil

    from vtclip import sweep

    out, real = tmp_path / "run", sweep.run_method

    def folder_gone_when_done(*args, **kwargs):
        result = real(*args, **kwargs)
        shutil.rmtree(out)                        # the results folder vanishes while the run trains
        out.write_text("a file where the folder was")
        return result

    monkeypatch.setattr(sweep, "run_method", folder_gone_when_done)
    from vtclip.cli import main

    code = main(["sweep", "--methods", "vtclip", "--datasets", "toy-colours", "--shots", "1", "--seeds", "1",
                 "--preset", "smoke", "--out", str(out), "--json"])
    stdout, err = capsys.readouterr()
    result = json.loads(stdout)                  # under --json stdout is the sweep's account alone ...
    assert (code, result["ran"], result["failed"]) == (1, 0, 1)   # a failed run: exit 1
    record = json.loads(err[err.index("{\n"):err.index("\n}\n") + 2])     # ... and the record on stderr
    assert (record["method"], record["seed"]) == ("vtclip", 1) and 0 <= record["top1"] <= 100
    assert "could not write" in err and "printed above on stderr: save it by hand" in err


def test_a_curves_record_that_cannot_be_written_is_printed(tmp_path, capsys, monkeypatch):
    import shutil

    from vtclip import curves

    out, real = tmp_path / "run", curves.run_curves

    def folder_gone_when_done(*args, **kwargs):
        result = real(*args, **kwargs)
        shutil.rmtree(out)
        out.write_text("a file where the folder was")
        return result

    monkeypatch.setattr(curves, "run_curves", folder_gone_when_done)
    with pytest.raises(OSError, match="could not write .*its record is printed on stderr"):
        curves.run_curves_grid("vtclip", "pocket", ["toy-colours"], 1, [1], out, preset="smoke", progress=False)
    stdout, err = capsys.readouterr()
    assert stdout == ""                          # a grid's stdout is its own account
    assert json.loads(err[err.index("{\n"):err.index("\n}\n") + 2])["kind"] == "curves"


def test_the_cli_names_an_unreadable_record_in_one_line_and_does_not_count_it_as_done(tmp_path, capsys):
    """The warning is one ``vtclip sweep: warning:`` line (no Python file, line or source), and the
    account says the run was left out rather than "already there"."""
    from vtclip.cli import main

    argv = ["sweep", "--methods", "zeroshot", "--datasets", "toy-colours", "--shots", "1", "--seeds", "1", "2",
            "--out", str(tmp_path)]
    (tmp_path / "zeroshot__pocket__toy-colours__1shot__seed2.json").write_text('{"method": "zer')
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "1 run(s) done, 0 failed, 0 already there, 1 left out as unreadable" in out
    lines = [line for line in err.splitlines() if "seed2.json" in line]
    assert len(lines) == 1 and lines[0].startswith("vtclip sweep: warning: ") and "left out" in lines[0]
    assert "warnings.warn" not in err and ".py:" not in err


def test_a_summary_of_records_all_left_out_is_not_kept_stale(tmp_path):
    """Every record left out (here: one whose content is another seed's): summary.csv kept the old
    row, as if the run were still there."""
    import pytest

    from vtclip.experiments import BadRecordWarning

    kw = dict(datasets=["toy-colours"], shots=[1], seeds=[1], out=tmp_path, preset="smoke", progress=False)
    assert run_sweep(["zeroshot"], "pocket", **kw)["summary_rows"] == 1
    record = tmp_path / "zeroshot__pocket__toy-colours__1shot__seed1.json"
    record.write_text(record.read_text().replace('"seed": 1', '"seed": 3'))
    with pytest.warns(BadRecordWarning, match="its content says seed3, its name seed1"):
        result = run_sweep(["zeroshot"], "pocket", **kw)
    assert (result["summary_rows"], result["unreadable"]) == (0, 1)
    with open(tmp_path / "summary.csv") as f:
        assert list(csv.DictReader(f)) == []                  # the header only: no row of a left-out run
