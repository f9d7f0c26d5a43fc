"""Method options, output folders and results that must not be lost: refused or kept before and after the work."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from vtclip.cli import main
from vtclip.experiments import check_out, keep_result, write_record
from vtclip.methods import check_options


@pytest.mark.parametrize("method, option, allowed", [
    ("linear-probe", "C=-5", "C=-5 of method 'linear-probe' must be a number > 0 (or null: searched on val)"),
    ("linear-probe", "C=0", "C=0 of method 'linear-probe' must be a number > 0"),
    ("linear-probe", "C=abc", "C=abc of method 'linear-probe' must be a number > 0"),
    ("linear-probe", "C=NaN", "C=NaN of method 'linear-probe' must be a number > 0"),
    ("tip-adapter", "beta=-100", "beta=-100 of method 'tip-adapter' must be a number > 0"),
    ("tip-adapter-f", "alpha=-1", "alpha=-1 of method 'tip-adapter-f' must be a number >= 0"),
    ("clip-adapter", "alpha=1.5", "alpha=1.5 of method 'clip-adapter' must be a number >= 0 and <= 1"),
    ("coop", "n_ctx=0", "n_ctx=0 of method 'coop' must be a whole number >= 1"),
    ("vtclip", "dropout=1", "dropout=1 of method 'vtclip' must be a number >= 0 and < 1"),
])
def test_out_of_range_options_are_refused_before_any_work(method, option, allowed, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--method", method, "--dataset", "toy-colours", "--option", option, "--out", str(out)]
    assert main(argv) == 2                           # these recorded chance accuracy before
    err = capsys.readouterr().err.strip()
    assert allowed in err and len(err.splitlines()) == 1
    assert not out.exists()                          # refused before the folder, the model, the features


def test_allowed_options_pass():
    check_options("linear-probe", {"C": 0.5, "grid": [1, 10]})
    check_options("tip-adapter", {"alpha": 0, "beta": 5.5, "search_scale": [7, 3], "search_step": [10, 5]})
    check_options("linear-probe", {"C": None})      # null: searched on val


def test_grids_refuse_bad_options_and_name_the_flag_of_a_missing_equals_sign(tmp_path, capsys):
    base = ["sweep", "--methods", "tip-adapter", "--datasets", "toy-colours", "--shots", "1", "--seeds", "1",
            "--preset", "smoke", "--out", str(tmp_path / "run")]
    assert main(base + ["--option", "beta=-100"]) == 2
    assert "beta=-100 of method 'tip-adapter' must be a number > 0" in capsys.readouterr().err
    assert main(base + ["--select", "beta=[1, -2]"]) == 2
    assert "beta=-2 of method 'tip-adapter'" in capsys.readouterr().err
    assert main(base + ["--train", "epochs"]) == 2
    assert "--train takes key=value, got 'epochs'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _small_files_only():
    resource.setrlimit(resource.RLIMIT_FSIZE, (16384, 16384))   # a "disk" with 16 KiB left per file
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)               # a write past it fails with EFBIG


def test_an_out_folder_that_cannot_take_a_file_is_refused_before_any_work(tmp_path):
    env = {**os.environ, "VTCLIP_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "vtclip.cli", "train", "--dataset", "toy-colours", "--shots", "1",
                          "--preset", "smoke", "--out", str(out)], env=env, capture_output=True, text=True,
                         preexec_fn=_small_files_only, timeout=300)
    assert run.returncode == 2, run.stderr
    assert f"--out {out}: cannot write there (File too large)" in run.stderr
    assert not (tmp_path / "home" / "features").exists()        # no work done
    assert list(out.iterdir()) == []                            # and no probe left


def test_a_finished_result_that_cannot_be_written_is_printed(tmp_path, capsys):
    record = {"method": "zeroshot", "backbone": "pocket", "dataset": "toy-colours", "shots": 0, "seed": 0,
              "top1": 61.5}
    (tmp_path / "gone").write_text("a file where the folder was")
    assert keep_result(lambda: write_record(record, tmp_path / "gone"), record, tmp_path / "gone" / "r.json") is None
    out, err = capsys.readouterr()
    assert json.loads(out) == record
    assert f"could not write {tmp_path / 'gone' / 'r.json'}" in err and "save it by hand" in err
    assert check_out(tmp_path / "ok") == tmp_path / "ok"           # a writable folder passes, probe removed
    assert list((tmp_path / "ok").iterdir()) == []


@pytest.mark.parametrize("command, flag, done", [("eval", "--write", "Zero-shot top-1"),
                                                 ("probe", "--out", "Feature breadth")])
def test_pocket_results_to_a_folder_that_cannot_take_a_file_are_refused_before_any_work(tmp_path, command, flag,
                                                                                       done):
    env = {**os.environ, "VTCLIP_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}

    def pocket(target, **limits):
        return subprocess.run([sys.executable, "-m", "vtclip.cli", "pocket", command, flag, str(target)], env=env,
                              capture_output=True, text=True, timeout=300, **limits)

    target = tmp_path / "full" / f"{command}.json"
    target.parent.mkdir()
    run = pocket(target, preexec_fn=_small_files_only)
    assert run.returncode == 2, run.stderr
    assert f"{flag}: cannot write {target} (File too large)" in run.stderr
    assert done not in run.stdout                               # no work done
    assert list(target.parent.iterdir()) == []
    target.write_text("an earlier result")                      # never replaced
    run = pocket(target)
    assert run.returncode == 2 and f"{target} already exists; not overwriting it" in run.stderr
    assert target.read_text() == "an earlier result"
    run = pocket(tmp_path / "nowhere" / "r.json")
    assert run.returncode == 2 and f"its folder {tmp_path / 'nowhere'} does not exist" in run.stderr, run.stderr
