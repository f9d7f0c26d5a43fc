"""Sweeps: resumable, never overwriting, failures recorded, summary over seeds."""
from __future__ import annotations

import csv
import json

from vtclip.sweep import run_sweep


def test_sweep_resumes_records_failures_and_summarises(tiny_hf_dir, tmp_path):
    out = tmp_path / "run"
    kw = dict(backbone=str(tiny_hf_dir), datasets=["toy-colours"], out=out, preset="smoke", progress=False)
    first = run_sweep(["zeroshot", "vtclip"], shots=[2, 40], seeds=[1, 2], **kw)
    assert first == {"out": str(out), "runs": 8, "ran": 4, "failed": 4, "summary_rows": 2}
    failure = json.loads(next((out / "failed").iterdir()).read_text())
    assert failure["shots"] == 40 and "fewer training images" in failure["error"]
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    again = run_sweep(["zeroshot", "vtclip"], shots=[2], seeds=[1, 2, 3], **kw)
    assert again["ran"] == 2                                   # only seed 3 was missing
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert all(after[n] == t for n, t in before.items())      # finished records untouched
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["method"], r["n_seeds"]) for r in rows} == {("zeroshot", "3"), ("vtclip", "3")}
