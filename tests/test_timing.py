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
