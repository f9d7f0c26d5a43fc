"""Data-parallel extraction: 2 CPU processes (gloo) write the cache entry a single process would."""
from __future__ import annotations

import math
import os

import pytest
import torch

from vtclip import distributed, features
from vtclip.datasets import get_dataset

INDICES = [0, 3, 5, 17, 18, 30, 41, 44, 50, 63, 7]   # 11 images: the last rank's shard is shorter


def _rank_main(rank: int, world: int, init_file: str, clip_dir: str, cache_dir: str, out_dir: str):
    """One rank: join the group, extract its shard, save what it got back."""
    import torch.distributed as dist

    import vtclip as vt

    torch.set_num_threads(1)       # first: no intra-op thread pool is ever started in a forked rank
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        clip = vt.load_clip(clip_dir, device="cpu")
        ds = get_dataset("toy-colours").split("train")
        feats = distributed.extract(clip, ds, dataset_name="toy-colours", split="train", indices=INDICES,
                                    views=2, augment=True, seed=3, batch_size=4, num_workers=0,
                                    cache_dir=cache_dir, progress=False)
        torch.save({"pooled": feats.pooled, "spatial": feats.spatial, "labels": feats.labels},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_shards_cover_every_index_once():
    for n, world in [(11, 2), (10, 3), (4, 4), (7, 1), (10, 8), (5, 4), (6, 4)]:
        parts = [range(n)[distributed.shard(n, r, world)] for r in range(world)]
        assert [i for p in parts for i in p] == list(range(n))
        assert max(len(p) for p in parts) == math.ceil(n / world)
        assert min(len(p) for p in parts) >= 1               # ceil-sized shards left (10, 8) ranks 5-7 empty


def test_two_gloo_processes_equal_single_process(tiny_hf_dir, tmp_path):
    import vtclip as vt

    cache_dir, out_dir = tmp_path / "cache", tmp_path / "out"
    out_dir.mkdir()
    # fork: the ranks inherit the imported modules (spawn would re-import torch twice, ~10 s each)
    torch.multiprocessing.start_processes(
        _rank_main, args=(2, str(tmp_path / "init"), str(tiny_hf_dir), str(cache_dir), str(out_dir)),
        nprocs=2, join=True, start_method="fork")
    got = [torch.load(out_dir / f"rank{r}.pt") for r in range(2)]

    torch.set_num_threads(1)
    clip = vt.load_clip(str(tiny_hf_dir), device="cpu")
    ds = get_dataset("toy-colours").split("train")
    kw = dict(dataset_name="toy-colours", split="train", indices=INDICES, views=2, augment=True, seed=3,
              batch_size=4, num_workers=0, progress=False)
    single = features.extract(clip, ds, cache=False, **kw)               # computed here, no cache
    assert single.pooled.shape[:2] == (2, len(INDICES))
    for r in range(2):                                                    # rank 0 built, rank 1 loaded
        torch.testing.assert_close(got[r]["pooled"], single.pooled, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[r]["spatial"], single.spatial, atol=1e-5, rtol=1e-5)
        assert torch.equal(got[r]["labels"], single.labels)
    # views differ (seeded crops), so equality above is not the trivial one
    assert not torch.allclose(single.pooled[0], single.pooled[1])
    # the entry rank 0 wrote is the one single-process extraction looks up (same key): a cache hit
    entries = list((cache_dir / "toy-colours").iterdir())
    assert len(entries) == 1
    (entries[0] / "pooled.npy").unlink()            # a hit must read this folder: break it on purpose
    # (features.load_entry may name the missing file inside its own "damaged entry" RuntimeError)
    with pytest.raises((FileNotFoundError, RuntimeError), match=r"pooled\.npy"):
        features.extract(clip, ds, cache=True, cache_dir=cache_dir, **kw)


def test_without_process_group_is_single_process_extract(tiny_hf, tmp_path):
    ds = get_dataset("toy-colours").split("train")
    kw = dict(dataset_name="toy-colours", split="train", indices=INDICES[:3], num_workers=0,
              progress=False)
    a = distributed.extract(tiny_hf, ds, cache_dir=tmp_path, **kw)
    assert len(list((tmp_path / "toy-colours").iterdir())) == 1          # it wrote the entry, as extract does
    b = features.extract(tiny_hf, ds, cache=False, **kw)                  # computed afresh, never the entry
    torch.testing.assert_close(a.pooled, b.pooled)
    torch.testing.assert_close(a.spatial, b.spatial)
    assert torch.equal(a.labels, b.labels)
    assert a.labels.tolist() == [int(ds.labels[i]) for i in INDICES[:3]] and a.grid == b.grid


def test_extract_run_fills_exactly_the_caches_a_training_run_reads(tiny_hf, tmp_path):
    # `python -m vtclip.distributed` is only useful if `vtclip train` then hits every entry it wrote
    from vtclip import settings
    from vtclip.experiments import fewshot_features, load_task

    distributed.extract_run(tiny_hf, "toy-colours", shots=2, seed=3, views=2, progress=False)
    root = settings.home("features", "toy-colours")
    written = sorted(p.name for p in root.iterdir())
    assert len(written) == 3                                      # test, K-shot train (2 views), val
    task = load_task(tiny_hf, "toy-colours", progress=False)
    train, val = fewshot_features(task, shots=2, seed=3, views=2, progress=False)
    assert sorted(p.name for p in root.iterdir()) == written       # every read was a hit: nothing new
    assert train.pooled.shape[:2] == (2, 2 * 4) and len(val) == 2 * 4 and len(task.test) == 64


def as_one_torchrun_process(monkeypatch):
    """The environment torchrun gives the only process of a one-process group, on a free local port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                 "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)


def test_main_says_what_is_missing_without_a_traceback(tmp_path, monkeypatch, capsys):
    # under torchrun a missing checkpoint was a traceback per rank; now the message alone, exit 2
    as_one_torchrun_process(monkeypatch)
    code = distributed.main(["--backbone", "RN50", "--dataset", "dtd", "--backend", "gloo"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("python -m vtclip.distributed (rank 0): error: Could not load OpenAI weights for RN50")
    assert err.rstrip().endswith("weights/RN50.pt.")                  # where to put the file
    assert not torch.distributed.is_initialized()                  # the group is left cleanly


def test_main_without_torchrun_says_how_to_run_it(monkeypatch, capsys):
    # plain `python -m vtclip.distributed` was torch's rendezvous traceback ("RANK expected, but not set")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    code = distributed.main(["--backbone", "pocket", "--dataset", "toy-colours"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("python -m vtclip.distributed: error: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set")
    assert "torchrun --nproc_per_node=N -m vtclip.distributed" in err
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize("args, says", [
    (["--dataset", "nope"], "Unknown dataset 'nope'. Known datasets:"),
    (["--dataset", "toy-colours", "--shots", "0"], "shots must be a whole number of at least 1"),
    (["--dataset", "toy-colours", "--shots", "2", "--views", "0"], "--views must be at least 1, got 0"),
])
def test_main_checks_its_arguments_before_joining_the_group(args, says, monkeypatch, capsys):
    as_one_torchrun_process(monkeypatch)
    joined, real_init = [], distributed.init
    monkeypatch.setattr(distributed, "init", lambda *a, **kw: joined.append(a) or real_init(*a, **kw))
    code = distributed.main(["--backbone", "pocket", "--backend", "gloo", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("python -m vtclip.distributed (rank 0): error: ") and says in err
    assert joined == [] and not torch.distributed.is_initialized()        # every rank stops before it

