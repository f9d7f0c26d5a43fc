"""`vtclip bench`: the quick run end to end, its record, errors; the head's fast paths are exact."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vtclip import bench
from vtclip.cli import main
from vtclip.vtclip import VTCLIPHead, vtclip_logits


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_quick_bench_writes_the_record(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["bench", "--quick", "--device", "cpu", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)                 # --json: the record and nothing else
    record = json.loads(out.read_text())
    assert printed == record
    assert set(record) >= {"device", "versions", "settings", "results"}
    assert record["versions"]["torch"] == torch.__version__ and record["settings"]["quick"]
    rows = {r["what"]: r for r in record["results"]}
    for r in rows.values():
        assert set(r) >= {"what", "value", "unit"} and r["value"] == r["value"]   # no NaN
    for method in bench.TRAIN_METHODS:
        for mode in ("cached", "on_the_fly"):
            assert rows[f"train_epoch/{method}/{mode}/K=20"]["value"] > 0
    assert "extrapolated" in rows["train_epoch/coop/cached/K=20"]["note"]     # CoOp timed at K=5, 10
    for k in (5, 20):
        assert rows[f"infer/RN-tiny/vtclip/K={k}"]["unit"] == "images/s"
    assert {"extract/RN-tiny/fp32", "extract/ViT-tiny/fp32", "extract/RN-tiny/fp32/channels_last"} <= set(rows)
    ratio = rows["coop_over_vtclip_epoch"]["value"]
    assert ratio == pytest.approx(rows["train_epoch/coop/cached/K=20"]["value"]
                                  / rows["train_epoch/vtclip/cached/K=20"]["value"], rel=1e-3)
    assert "vtclip_over_zeroshot_infer_k20" in rows
    # never overwrite a record
    assert main(["bench", "--quick", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert json.loads(out.read_text()) == record


def test_bad_devices_fail_clearly(capsys):
    assert main(["bench", "--quick", "--device", "tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["bench", "--quick", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_an_unsupported_device_is_refused_not_benchmarked_on_the_cpu(tmp_path, capsys):
    # `--device mps` (or cuda:0) without --quick used to run the full CPU benchmark; the --out of a
    # record that exists is refused too, but only after the device: the message must be about it
    out = tmp_path / "b.json"
    out.write_text('{"mine": true}')
    for device in ("mps", "cuda:0"):
        assert main(["bench", "--device", device, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"vtclip bench: error: unknown device {device!r}") and "'cpu' or 'cuda'" in err
    assert json.loads(out.read_text()) == {"mine": True}


def test_a_failed_save_leaves_no_record_and_no_temporary_file(tmp_path):
    # the record is written whole or not at all: a half-written file would also block the rerun
    bad = {"settings": {"device": "cpu", "quick": True}, "x": 1, "results": [object()]}
    with pytest.raises(TypeError, match="not JSON serializable"):
        bench.save_record(bad, tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []
    path = bench.save_record({**bad, "results": []}, tmp_path / "r.json")        # the rerun is not blocked
    assert json.loads(path.read_text())["results"] == [] and list(tmp_path.iterdir()) == [path]


def test_save_record_never_overwrites(tmp_path):
    path = bench.save_record({"settings": {"device": "cpu", "quick": True}, "x": 1}, tmp_path / "r.json")
    with pytest.raises(FileExistsError, match="already exists; not overwriting it"):
        bench.save_record({"settings": {"device": "cpu", "quick": True}, "x": 2}, path)
    assert json.loads(path.read_text())["x"] == 1


def test_extrapolation_in_k():
    # per-step time 1 + 0.01 K (s), 10 steps per epoch at the measured K; 500 at K = 1000
    runs = {k: {"epoch_s": 10 * (1 + 0.01 * k), "steps_per_epoch": 10, "peak_mib": 100 + k}
            for k in (100, 250)}
    est = bench.extrapolate(runs, 1000, 500)
    assert est["epoch_s"] == pytest.approx(500 * 11.0)
    assert est["peak_mib"] == pytest.approx(1100)
    # noise tilts the line down: per step 4.0 s at K=100, 3.5 s at K=250 -> 1.0 s at K=1000 on the
    # line; the floor (the largest measured K's 3.5 s per step) holds instead
    noisy = {100: {**runs[100], "epoch_s": 40.0}, 250: runs[250]}
    assert bench.extrapolate(noisy, 1000, 500)["epoch_s"] == pytest.approx(500 * 3.5)
    tilted_up = {100: {**runs[100], "epoch_s": 30.0}, 250: runs[250]}   # 3.0 s, 3.5 s: the line, 6.0 s
    assert bench.extrapolate(tilted_up, 1000, 500)["epoch_s"] == pytest.approx(500 * 6.0)
    assert bench.extrapolate({1000: runs[100]}, 1000, 500) is runs[100]          # measured: as is


def test_timed_counts_repeats_and_synchronises(monkeypatch):
    from vtclip.bench import clock

    events, device = [], torch.device("cpu")
    real_sync = clock.sync

    def counting_sync(dev):
        events.append(("sync", dev))
        return real_sync(dev)

    monkeypatch.setattr(clock, "sync", counting_sync)
    times = bench.timed(lambda: events.append("fn"), device, warmup=2, repeats=3)
    assert len(times) == 3 and all(t >= 0 for t in times)
    # warm-up calls untimed (no sync), then every timed call between two syncs on the device
    assert events == ["fn", "fn"] + [("sync", device), "fn", ("sync", device)] * 3
    assert sum(e != "fn" for e in events) == 2 * 3


def test_logits_equal_normalise_then_dot_with_gradients():
    g = torch.Generator().manual_seed(0)
    pooled, adapted = torch.randn(4, 16, generator=g), torch.randn(4, 7, 16, generator=g, requires_grad=True)
    ref = 50.0 * torch.einsum("bd,bkd->bk", F.normalize(pooled, dim=-1), F.normalize(adapted, dim=-1))
    got = vtclip_logits(pooled, adapted, 50.0)
    torch.testing.assert_close(got, ref)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), adapted)
    (g_got,) = torch.autograd.grad(got.square().sum(), adapted)
    torch.testing.assert_close(g_got, g_ref, rtol=1e-5, atol=1e-4)


def test_class_set_work_is_cached_in_inference_and_never_stale():
    torch.manual_seed(0)
    head = VTCLIPHead(32, 48, heads=4).eval()
    text, spatial = F.normalize(torch.randn(6, 32), dim=-1), torch.randn(3, 5, 48)
    for p in head.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    with torch.no_grad():
        first = head.first_text_part(text)
        assert head.first_text_part(text.clone())[1] is first[1]          # equal inputs: reused
        fresh = head.blocks[0].text_part(text)
        torch.testing.assert_close(first[1], fresh[1])
        out = head(text, spatial)
        head.blocks[0].q_proj.weight.data.mul_(2)                         # an edit autograd never sees
        assert head.first_text_part(text)[1] is not first[1]
        torch.testing.assert_close(head(text, spatial), head.blocks[0](text, spatial))
        assert not torch.allclose(head(text, spatial), out)
        other = F.normalize(torch.randn(6, 32), dim=-1)                    # another class set
        torch.testing.assert_close(head(other, spatial), head.blocks[0](other, spatial))
    head.train()                                                          # training: never cached
    assert head.first_text_part(text)[1].requires_grad


@pytest.mark.parametrize("K,HW,C,D,layers,B", [(7, 5, 48, 32, 1, 2), (12, 9, 16, 64, 2, 3)])
def test_head_flop_model_equals_torch_count(K, HW, C, D, layers, B):
    from torch.utils.flop_counter import FlopCounterMode

    head = VTCLIPHead(D, C, heads=4, layers=layers, dropout=0.0).train()   # eval's fused MHA is uncounted
    with FlopCounterMode(display=False) as counter:
        head(F.normalize(torch.randn(K, D), dim=-1), torch.randn(B, HW, C))
    assert bench.head_flops(K, HW, C, D, layers, 0.5, B)["total"] == counter.get_total_flops()
