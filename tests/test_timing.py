"""Chapter 5's epoch timer: each method on its own paper schedule, never overwriting a record."""
from __future__ import annotations

import json
import statistics

import pytest

from vtclip import timing


def test_each_method_is_timed_on_its_own_schedule(tiny_hf_dir):
    epochs, rounds = 1, 3     # each run trains epochs + 1 epochs; its first is dropped: 3 timings (odd)
    result = timing.epoch_times(str(tiny_hf_dir), "toy-colours", shots=4, seed=1,
                                methods=("vtclip", "tip-adapter-f"), epochs=epochs, rounds=rounds)
    rows = result["methods"]
    assert result["weights"].startswith("local:")                     # which checkpoint was timed
    assert (rows["vtclip"]["optimizer"], rows["vtclip"]["batch_size"]) == ("sgd", 32)
    assert (rows["tip-adapter-f"]["optimizer"], rows["tip-adapter-f"]["batch_size"]) == ("adamw", 256)
    n = rows["vtclip"]["images_per_epoch"]
    assert rows["vtclip"]["steps_per_epoch"] == -(-n // 32) and rows["tip-adapter-f"]["steps_per_epoch"] == 1
    assert rows["vtclip"]["ratio_to_vtclip"] == 1.0
    for row in rows.values():                             # the timed epochs: every round's, less its first
        assert len(row["epoch_seconds"]) == epochs * rounds
        # an odd count: the median is one of the (rounded) timings, so it is exactly the reported one
        assert row["seconds_per_epoch"] == statistics.median(row["epoch_seconds"])
    median = {m: statistics.median(row["epoch_seconds"]) for m, row in rows.items()}
    ratio = median["tip-adapter-f"] / median["vtclip"]
    assert rows["tip-adapter-f"]["ratio_to_vtclip"] == round(ratio, 2)
    with pytest.raises(ValueError, match="epochs and rounds must be at least 1"):
        timing.epoch_times(str(tiny_hf_dir), "toy-colours", epochs=0)


def test_an_existing_record_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "epoch_times.json"
    out.write_text(json.dumps({"mine": True}))
    with pytest.raises(SystemExit):
        timing.main(["--out", str(out)])
    assert "already exists" in capsys.readouterr().err and json.loads(out.read_text()) == {"mine": True}


def test_a_method_with_nothing_to_train_is_refused(tiny_hf_dir):
    with pytest.raises(ValueError, match="tip-adapter has no parameters to train, and timing measures training"):
        timing.epoch_times(str(tiny_hf_dir), "toy-colours", shots=2, seed=1, methods=("tip-adapter",),
                           epochs=1, rounds=1)


@pytest.mark.parametrize("args, says", [
    (["--dataset", "nope"], "Unknown dataset 'nope'. Known datasets:"),
    (["--methods", "vtclip", "nope"], "unknown method(s) 'nope'. Known methods:"),
    (["--methods", "vtclip", "coop", "vtclip"], "method(s) vtclip named more than once"),
    (["--shots", "0"], "shots must be a whole number of at least 1"),
])
def test_main_refuses_bad_input_before_any_work(tiny_hf_dir, args, says, capsys):
    from vtclip import settings

    argv = ["--backbone", str(tiny_hf_dir), "--dataset", "toy-colours", "--shots", "2", "--methods", "vtclip",
            "--epochs", "1", "--rounds", "1", *args]          # later flags win: each case's own value
    assert timing.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m vtclip.timing: error: ") and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1                       # one line, as `vtclip`'s commands
    assert not settings.home("features").exists()                  # not a single feature was extracted


def test_a_method_with_nothing_to_train_stops_the_run_before_any_timing(tiny_hf_dir, monkeypatch, capsys):
    trained = []
    real_fit = timing.fit

    def counting_fit(model, *args, **kw):
        trained.append(type(model).__name__)
        return real_fit(model, *args, **kw)

    monkeypatch.setattr(timing, "fit", counting_fit)
    code = timing.main(["--backbone", str(tiny_hf_dir), "--dataset", "toy-colours", "--shots", "2",
                        "--methods", "vtclip", "zeroshot", "--epochs", "1", "--rounds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "zeroshot has no parameters to train" in err and "Traceback" not in err
    assert trained == []                            # VT-CLIP, first in line, was not timed for nothing


def test_out_is_written_whole_and_a_file_made_meanwhile_is_kept(tiny_hf_dir, tmp_path, monkeypatch, capsys):
    argv = ["--backbone", str(tiny_hf_dir), "--dataset", "toy-colours", "--shots", "2", "--methods", "vtclip",
            "--epochs", "1", "--rounds", "1", "--out"]
    out = tmp_path / "runs" / "times.json"
    assert timing.main([*argv, str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["methods"]["vtclip"]["images_per_epoch"] == 2 * 4 and capsys.readouterr().out == ""
    assert sorted(p.name for p in out.parent.iterdir()) == ["times.json"]          # no temporary file left

    # another run (or the user) makes the file while this one is timing: it is kept, and the
    # measurement is printed instead of lost
    other = tmp_path / "runs" / "other.json"
    real = timing.epoch_times

    def meanwhile(*args, **kw):
        result = real(*args, **kw)
        other.write_text('{"mine": true}')
        return result

    monkeypatch.setattr(timing, "epoch_times", meanwhile)
    assert timing.main([*argv, str(other)]) == 2
    captured = capsys.readouterr()
    assert json.loads(other.read_text()) == {"mine": True}
    assert json.loads(captured.out)["methods"]["vtclip"]["images_per_epoch"] == 2 * 4
    assert captured.err.splitlines()[-1].startswith(f"python -m vtclip.timing: error: {other} already exists")
    assert sorted(p.name for p in out.parent.iterdir()) == ["other.json", "times.json"]
