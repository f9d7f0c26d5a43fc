"""What the grid commands (sweep, ablate, curves, demo) and train refuse, and when: before any work."""
from __future__ import annotations

import json

import pytest

import vtclip.curves
import vtclip.experiments
import vtclip.sweep
from vtclip.cli import main
from vtclip.experiments import backbone_label, run_record_name
from vtclip.sweep import run_sweep


@pytest.fixture
def no_work(monkeypatch):
    """Any feature extraction fails the test: a refusal must come before it."""
    def work(*a, **k):
        raise AssertionError("work was done before the input was refused")
    for module in (vtclip.experiments, vtclip.sweep, vtclip.curves):   # imported above: each binds the real one
        monkeypatch.setattr(module, "load_task", work)


def _cli(capsys, *argv):
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["sweep", "--methods", "vtclip", "--shots", "1", "--seeds", "1", "1"], "--seeds: 1 given more than once"),
    (["sweep", "--methods", "vtclip", "vtclip", "--shots", "1"], "--methods: vtclip given more than once"),
    (["sweep", "--methods", "vtclp", "--shots", "1"], "Unknown method(s) ['vtclp']. Known methods: zeroshot"),
    (["sweep", "--methods", "vtclip", "--datasets", "pocket", "pocket-objects", "--shots", "1"],
     "--datasets: pocket-objects given more than once"),         # "pocket" stands for the suite anywhere
    (["sweep", "--methods", "vtclip", "--datasets", "pocket-shapez", "--shots", "1"], "Known datasets:"),
    (["sweep", "--methods", "vtclip", "--shots", "1", "--select", "heads=[1,2]", "--option", "heads=4"],
     "heads is given by --option and chosen by --select"),
    (["sweep", "--methods", "vtclip", "--shots", "1", "--variant", "mine"], "--variant names what"),
    (["sweep", "--methods", "linear-probe", "--shots", "1", "--select", "C=[]"],
     "--select C=[] lists no values: give the values to choose from on val, e.g. --select C=[0.1,1,10]"),
    (["sweep", "--methods", "linear-probe", "--shots", "1", "--select", "C"],
     "--select takes key=[V1,V2,...], got 'C' (e.g. --select C=[V1,V2,...])"),
    (["sweep", "--methods", "linear-probe", "--shots", "1", "--select", "C=[1,]"],
     "--select C=[1,]: the values must be a JSON list, e.g. --select C=[0.1,1,10]"),
    (["sweep", "--methods", "linear-probe", "--shots", "1", "--select", "=[1]"],
     "--select '=[1]' names no option before '='"),
    (["sweep", "--methods", "linear-probe", "--shots", "1", "--option", "=3"],
     "--option '=3' names no option before '=' (e.g. --option NAME=VALUE)"),
    (["sweep", "--methods", "vtclip", "--shots", "1", "--train", "epoch_on_val=False"],
     "epoch_on_val must be true or false"),
    (["sweep", "--methods", "vtclip", "--shots", "1", "--train", "lr=abc"], "lr must be a number > 0, got 'abc'"),
    (["sweep", "--methods", "vtclip", "--shots", "1", "--backbone", "RN5O"],
     "Unknown backbone 'RN5O'. Known backbones: "),               # was: every run failed, one by one
    (["curves", "--shots", "1", "--backbone", "pockett"], "Unknown backbone 'pockett'. Known backbones: "),
    (["curves", "--shots", "1", "--seeds", "2", "2"], "--seeds: 2 given more than once"),
    (["demo", "--seeds", "1", "1"], "--seeds: 1 given more than once"),
    (["demo", "--datasets", "toy-colours"], "toy-colours is not in it"),
    (["demo", "--smoke", "--preset", "paper"], "--smoke is --preset smoke; it cannot go with --preset paper"),
])
def test_a_grid_refuses_bad_input_before_any_work(capsys, tmp_path, no_work, argv, message):
    code, err = _cli(capsys, *argv, "--out", str(tmp_path / "out"))
    assert code == 2 and message in err, err
    assert not list((tmp_path / "out").glob("**/*.json"))


def test_out_must_be_a_folder_before_any_work(capsys, tmp_path, no_work):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    for argv in (["train", "--dataset", "toy-colours", "--preset", "smoke"], ["zeroshot", "--dataset", "toy-colours"],
                 ["sweep", "--methods", "vtclip", "--shots", "1"], ["curves", "--shots", "1"]):
        code, err = _cli(capsys, *argv, "--out", str(a_file))
        assert code == 2 and f"--out {a_file} is a file, not a folder" in err, (argv, err)
    assert a_file.read_text() == "mine"


def test_train_refuses_an_option_given_twice_and_a_head_file_it_did_not_write(capsys, tmp_path, no_work):
    code, err = _cli(capsys, "train", "--dataset", "toy-colours", "--heads", "8", "--option", "heads=4")
    assert code == 2 and "heads is given by --heads and by --option; give it once" in err
    head = tmp_path / run_record_name("vtclip", "pocket", "toy-colours", 16, 1).replace(".json", ".safetensors")
    head.write_bytes(b"someone's head")
    code, err = _cli(capsys, "train", "--dataset", "toy-colours", "--out", str(tmp_path), "--save-head")
    assert code == 2 and f"{head} already exists" in err and head.read_bytes() == b"someone's head"


def test_zeroshot_refuses_an_existing_record_before_encoding(capsys, tmp_path, no_work):
    taken = tmp_path / run_record_name("zeroshot", "pocket", "toy-colours", 0, 0)
    taken.write_text("{}")
    code, err = _cli(capsys, "zeroshot", "--dataset", "toy-colours", "--out", str(tmp_path))
    assert code == 2 and "already exists" in err


def test_a_summary_the_sweep_did_not_write_is_not_replaced(tmp_path, no_work):
    theirs = tmp_path / "summary.csv"
    theirs.write_text("model,accuracy\nmine,99\n")
    with pytest.raises(ValueError, match="is not a summary this sweep writes"):
        run_sweep(["vtclip"], "pocket", ["toy-colours"], [1], [1], tmp_path, progress=False)
    assert theirs.read_text() == "model,accuracy\nmine,99\n"


def test_a_backbone_folder_under_home_names_its_records_as_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models" / "mine").mkdir(parents=True)
    assert backbone_label("~/models/mine") == "mine" == backbone_label(str(tmp_path / "models" / "mine"))


def test_a_resumed_grid_refuses_records_of_other_options_or_another_spatial_map(tiny_hf_dir, tmp_path, capsys):
    # vtclip train names a non-default run like a default one; a sweep must not take it into its row
    train = ["train", "--backbone", str(tiny_hf_dir), "--dataset", "toy-colours", "--shots", "2", "--preset", "smoke"]
    kw = dict(backbone=str(tiny_hf_dir), datasets=["toy-colours"], shots=[2], seeds=[1, 2], preset="smoke",
              progress=False)
    assert main([*train, "--heads", "8", "--layers", "1", "--out", str(tmp_path / "defaults")]) == 0
    assert run_sweep(["vtclip"], out=tmp_path / "defaults", **kw)["ran"] == 1   # the defaults, spelled out
    assert main([*train, "--heads", "4", "--out", str(tmp_path / "heads")]) == 0
    with pytest.raises(ValueError, match=r"heads=4 \(this grid: '\(default\)'\).*mix two training recipes"):
        run_sweep(["vtclip"], out=tmp_path / "heads", **kw)
    assert main([*train, "--spatial", "projected", "--out", str(tmp_path / "spatial")]) == 0
    with pytest.raises(ValueError, match=r"spatial='projected' \(this grid: 'raw'\)"):
        run_sweep(["vtclip"], out=tmp_path / "spatial", **kw)
    # a run chosen on val keeps its chosen value in config.method: that is not another recipe
    assert main([*train, "--method", "clip-adapter", "--out", str(tmp_path / "val")]) == 0
    assert run_sweep(["clip-adapter"], out=tmp_path / "val", **kw)["ran"] == 1


def test_a_rerun_that_succeeds_clears_its_earlier_failure(tiny_hf_dir, tmp_path):
    out = tmp_path / "run"
    kw = dict(backbone=str(tiny_hf_dir), datasets=["toy-colours"], shots=[2], seeds=[1], preset="smoke",
              progress=False, out=out)
    (out / "failed").mkdir(parents=True)
    name = run_record_name("vtclip", str(tiny_hf_dir), "toy-colours", 2, 1)
    (out / "failed" / name).write_text(json.dumps({"error": "an earlier failure"}))
    assert run_sweep(["vtclip"], **kw)["ran"] == 1
    assert (out / name).exists() and not (out / "failed" / name).exists()


def test_pretraining_refuses_a_folder_holding_files_it_did_not_write(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"mine": true}')
    code, err = _cli(capsys, "pocket", "pretrain", "--tiny", "--steps", "2", "--out", str(tmp_path))
    assert code == 2 and "already holds config.json, which this run did not write" in err
    assert (tmp_path / "config.json").read_text() == '{"mine": true}' and len(list(tmp_path.iterdir())) == 1


def test_a_data_root_that_a_dataset_does_not_read_is_flagged(tmp_path):
    from vtclip.experiments import load_task

    with pytest.warns(UserWarning, match=r"--data-root .* is not used: pocket-objects is a pocket dataset"):
        load_task("pocket", "pocket-objects", data_root=tmp_path, progress=False, test=False)
