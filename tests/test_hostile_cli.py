"""Issue 22's hostile pass on the commands: ``--json`` stdout, unknown backbones, one-line warnings,
a head that cannot be saved, and record files whose content is another run's."""
from __future__ import annotations

import csv
import errno
import json
import shutil

import pytest

from vtclip.cli import main


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# 1. --json: stdout is the JSON object and nothing else

@pytest.mark.parametrize("command", ["demo", "sweep", "ablate", "curves"])
def test_json_stdout_is_the_json_object_alone(tiny_hf_dir, tmp_path, capsys, command):
    grid = ["--backbone", tiny_hf_dir, "--datasets", "toy-colours", "--seeds", "1", "--preset", "smoke",
            "--out", tmp_path / "out"]
    argv = {"demo": ["demo", "--smoke", "--datasets", "pocket-objects", "--seeds", "1", "--shots", "1"],
            "sweep": ["sweep", "--methods", "zeroshot", "vtclip", "--shots", "1", *grid],
            "ablate": ["ablate", "--groups", "residual", "--shots", "1", *grid],
            "curves": ["curves", "--shots", "1", *grid]}[command]
    code, out, _ = _run(capsys, *argv, "--json")
    assert code == 0
    result = json.loads(out)                            # one object, no table or account line before it
    if command == "demo":
        assert set(result["datasets"]) == {"pocket-objects"} and result["preset"] == "smoke"
    else:
        assert result["ran"] == {"sweep": 2, "ablate": 2, "curves": 1}[command]
        # without --json the account line and the table are printed
        code, out, _ = _run(capsys, *argv)
        assert code == 0 and f"{command}: 0 run(s) done" in out and "toy-colours" in out


# 2. an unknown backbone: one error before the grid starts

@pytest.mark.parametrize("command", ["sweep", "ablate"])
def test_a_grid_names_an_unknown_backbone_once_before_any_run(tmp_path, capsys, monkeypatch, command):
    import vtclip.sweep

    def no_work(*a, **k):
        raise AssertionError("a run started with an unknown backbone")
    monkeypatch.setattr(vtclip.sweep, "load_task", no_work)
    code, out, err = _run(capsys, command, "--backbone", "ViT-B/61", "--datasets", "toy-colours", "--shots", "1",
                          "--seeds", "1", "2", "--out", tmp_path / "out")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"vtclip {command}: error: Unknown backbone 'ViT-B/61'. Known backbones: ")
    assert "ViT-B/16" in lines[0] and "pocket" in lines[0]
    assert not (tmp_path / "out" / "failed").exists() and not list((tmp_path / "out").glob("*.json"))


# 3. --skip-bad-images: vtclip's own warning, one line

def test_skipped_images_are_one_vtclip_warning_line(tiny_hf_dir, tmp_path, capsys):
    from conftest import folder_with_a_corrupt_image

    root, bad, _ = folder_with_a_corrupt_image(tmp_path / "pets")
    code, out, err = _run(capsys, "zeroshot", "--backbone", tiny_hf_dir, "--dataset", root, "--skip-bad-images",
                          "--json")
    assert code == 0 and json.loads(out)["config"]["dropped_images"] == [f"test:{bad}"]
    warned = [line for line in err.splitlines() if "unreadable image" in line]
    assert len(warned) == 1 and warned[0].startswith("vtclip zeroshot: warning: ") and str(bad) in warned[0]
    assert "UserWarning" not in err and ".py:" not in err and "warnings.warn" not in err


# 4. --save-head: refused before training when it cannot be written; kept when saving fails after

def _train(tiny_hf_dir, out, *extra):
    return ["train", "--backbone", tiny_hf_dir, "--dataset", "toy-colours", "--shots", "2", "--preset", "smoke",
            "--out", out, "--save-head", *extra]


def test_a_head_name_the_file_system_refuses_is_refused_before_training(tiny_hf_dir, tmp_path, capsys,
                                                                        monkeypatch):
    import os

    import vtclip.experiments

    # a backbone folder with a long name: the record's temporary file name (".NAME.tmp-PID") just fits
    # in 255 bytes, the head's (7 bytes longer: .safetensors) does not
    backbone = tmp_path / ("b" * (209 - len(str(os.getpid()))))
    backbone.symlink_to(tiny_hf_dir, target_is_directory=True)

    def no_work(*a, **k):
        raise AssertionError("trained although the head could not be saved")
    monkeypatch.setattr(vtclip.experiments, "load_task", no_work)
    code, out, err = _run(capsys, *_train(backbone, tmp_path / "out"))
    head = tmp_path / "out" / f"vtclip__{backbone.name}__toy-colours__2shot__seed1.safetensors"
    assert code == 2 and err.startswith(f"vtclip train: error: --save-head: cannot write {head} "), err
    assert "File name too long" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "out").iterdir())                # no record, no probe left


@pytest.mark.parametrize("failure", ["OSError", "SafetensorError"])
def test_a_head_that_cannot_be_saved_after_training_is_kept_elsewhere(tiny_hf_dir, tmp_path, capsys, monkeypatch,
                                                                      failure):
    import tempfile

    import safetensors.torch
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    out, real = tmp_path / "out", safetensors.torch.save_file

    def disk_full_in_out(tensors, filename, metadata=None):     # the disk of --out fills during training
        if str(filename).startswith(str(out)):
            with open(filename, "wb") as f:                      # a part is written, then the disk is full
                f.write(b"\0" * 100)
            if failure == "OSError":
                raise OSError(errno.ENOSPC, "No space left on device", str(filename))
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                                  'message: "No space left on device" })')
        return real(tensors, filename, metadata)
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_in_out)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    code, stdout, err = _run(capsys, *_train(tiny_hf_dir, out))
    assert code == 1
    assert f"vtclip {tiny_hf_dir.name} toy-colours 2-shot seed 1: top-1 " in stdout   # the accuracy is shown
    (record_file,) = out.glob("*.json")                                     # and the record kept
    head = record_file.with_suffix(".safetensors")
    (line,) = [x for x in err.splitlines() if "could not save" in x]
    assert str(head) in line and "No space left on device" in line
    (kept,) = (tmp_path / "tmp").glob("*/*.safetensors")
    assert str(kept) in line and kept.name == head.name
    assert not head.exists() and not [p for p in out.iterdir() if p != record_file]   # no partial file left
    # the head kept is the trained one: the same tensors as the head of the same run on a disk with room
    monkeypatch.undo()
    assert _run(capsys, *_train(tiny_hf_dir, tmp_path / "room"))[0] == 0
    (saved,) = (tmp_path / "room").glob("*.safetensors")
    want, got = load_file(saved), load_file(kept)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)


# 5. a record file whose content is another run's is named and left out

def test_a_record_whose_content_is_not_its_names_is_named_and_left_out(tiny_hf_dir, tmp_path, capsys):
    from vtclip.experiments import BadRecordWarning, run_record_name
    from vtclip.sweep import load_records, run_sweep

    out, b = tmp_path / "run", str(tiny_hf_dir)
    kw = dict(backbone=b, datasets=["toy-colours"], out=out, preset="smoke", progress=False)
    assert run_sweep(["vtclip"], shots=[1, 2], seeds=[1], **kw)["ran"] == 2
    one = json.loads((out / run_record_name("vtclip", b, "toy-colours", 1, 1)).read_text())
    two = json.loads((out / run_record_name("vtclip", b, "toy-colours", 2, 1)).read_text())
    wrong = {run_record_name("vtclip", b, "toy-colours", 1, 2): one,                       # seed 1's record
             run_record_name("vtclip", b, "toy-colours", 2, 2): {**two, "shots": 8},
             run_record_name("vtclip", b, "toy-colours", 1, 3): {**one, "seed": 3, "method": "zeroshot"},
             run_record_name("vtclip", b, "toy-colours", 2, 3): {**two, "seed": 3, "dataset": "pocket-objects"},
             run_record_name("vtclip", b, "toy-colours", 1, 4): {**one, "seed": 4, "variant": "heads1"}}
    for name, record in wrong.items():
        (out / name).write_text(json.dumps(record))
    with pytest.warns(BadRecordWarning) as caught:
        result = run_sweep(["vtclip"], shots=[1, 2], seeds=[1, 2, 3, 4], **kw)
    messages = [str(w.message) for w in caught]
    for name in wrong:                                   # each named, with its path
        assert sum(str(out / name) in m and "its name" in m for m in messages) == 1, (name, messages)
    assert "shot" in " ".join(messages) and "seed" in " ".join(messages)
    # not counted as done, not trained over (a record is never replaced), not averaged
    assert (result["ran"], result["failed"], result["unreadable"]) == (1, 0, 5)   # 2-shot seed 4 was missing
    assert {(r["shots"], r["seed"]) for r in load_records(out)} == {(1, 1), (2, 1), (2, 4)}
    with open(out / "summary.csv") as f:
        rows = {(r["dataset"], r["shots"]): r["n_seeds"] for r in csv.DictReader(f)}
    assert rows == {("toy-colours", "1"): "1", ("toy-colours", "2"): "2"}
    assert json.loads((out / next(iter(wrong))).read_text()) == one               # left as it is


def test_a_curves_record_whose_content_is_not_its_names_is_not_already_there(tmp_path):
    from vtclip.curves import curves_name, load_curves, run_curves_grid

    out = tmp_path / "c"
    kw = dict(preset="smoke", progress=False)
    assert run_curves_grid("vtclip", "pocket", ["toy-colours"], 1, [1], out, **kw)["ran"] == 1
    first = out / curves_name("vtclip", "pocket", "toy-colours", 1, 1, None)
    shutil.copy(first, out / curves_name("vtclip", "pocket", "toy-colours", 1, 2, None))   # seed 1's, as seed 2
    with pytest.warns(UserWarning, match=r"seed2\.curves\.json .*its name"):
        result = run_curves_grid("vtclip", "pocket", ["toy-colours"], 1, [1, 2], out, **kw)
    assert (result["ran"], result["already_there"], result["unreadable"]) == (0, 1, 1)
    assert [r["seed"] for r in load_curves(out)] == [1]


def test_a_head_whose_record_cannot_be_written_is_kept_elsewhere(tiny_hf_dir, tmp_path, capsys, monkeypatch):
    """The record's write failing after training printed the record but saved the head nowhere."""
    import tempfile

    import vtclip.experiments

    def disk_full(record, out, name=None):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(vtclip.experiments, "write_record", disk_full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    code, stdout, err = _run(capsys, *_train(tiny_hf_dir, tmp_path / "out"))
    assert code == 1 and json.loads(stdout)["method"] == "vtclip"          # the record, printed
    (kept,) = (tmp_path / "tmp").glob("*/*.safetensors")
    (line,) = [x for x in err.splitlines() if "could not save the trained head" in x]
    assert line.startswith("vtclip train: ") and "its record could not be written" in line and str(kept) in line
