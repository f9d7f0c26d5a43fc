"""Data-parallel feature extraction under ``torchrun``: each rank encodes a shard, rank 0 writes the cache.

When one GPU is too slow to encode a dataset (ImageNet's test split, 10 augmented views of 16 shots),
start one process per GPU. Every rank loads the same frozen backbone, encodes a contiguous shard of
the images (with the same seeded crops a single process would use: the crop of image ``i`` depends
only on the seed, the view and ``i``), the shards are gathered on rank 0 and rank 0 writes the very
cache entry ``vtclip.features.extract`` would have written (same key, same layout). A later
single-process run (``vtclip train``, a sweep, a chapter) then only loads it. Run it as::

    # 4 GPUs, NCCL: the test split and the 16-shot train (10 views) + val features of seed 1
    torchrun --nproc_per_node=4 -m vtclip.distributed --backbone RN50 --dataset imagenet --shots 16 --seed 1
    vtclip train --method vtclip --backbone RN50 --dataset imagenet --shots 16 --seed 1   # cache hits

    # on a CPU (gloo backend), e.g. to try it: 2 processes
    torchrun --nproc_per_node=2 -m vtclip.distributed --backbone pocket --dataset <name> --shots 16 --seed 1

The backend is NCCL when CUDA is present and gloo otherwise (``--backend`` overrides). Rank ``r``
uses ``cuda:$LOCAL_RANK``. Features pass through rank 0's memory view by view, so rank 0 needs room
for one view of the whole split (``features.cache_size_bytes`` tells how much).
Taught in: appendix "What it costs" (book/appendix_cost.ipynb).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from . import features, settings
from .features import FeatureSet


def init(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the ``torchrun`` process group (once): -> (rank, world size, this rank's device)."""
    cuda = torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def shard(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` items, balanced: sizes differ by at most one, so no
    rank is left empty while ``n >= world`` (an empty rank would fail while the others wait)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def gather_rows(part: torch.Tensor, n: int, world: int, comm_device: torch.device) -> torch.Tensor | None:
    """Concatenate every rank's ``part`` (rows of shard ``r``) on rank 0: (n, ...) there, None elsewhere.

    Collective gathers need equal shapes, so each part is padded to ceil(n / world) rows first and
    trimmed back to its shard's length on rank 0.
    """
    size = math.ceil(n / world)
    padded = torch.zeros(size, *part.shape[1:], dtype=part.dtype, device=comm_device)
    padded[:len(part)] = part.to(comm_device)                             # (size, ...)
    bucket = [torch.empty_like(padded) for _ in range(world)] if dist.get_rank() == 0 else None
    dist.gather(padded, bucket, dst=0)
    if dist.get_rank() != 0:
        return None
    parts = [b[:s.stop - s.start] for b, s in zip(bucket, (shard(n, r, world) for r in range(world)))]
    return torch.cat(parts).cpu()                                         # (n, ...) in index order


def extract(clip, dataset, *, dataset_name: str, split: str, indices=None, views: int = 1,
            augment: bool = False, seed: int | None = 0, batch_size: int = 128,
            num_workers: int | None = None, cache: bool = True, cache_dir: str | Path | None = None,
            store_dtype: str | None = None, progress: bool = True) -> FeatureSet | None:
    """``features.extract``, data-parallel over the ranks of the current process group.

    Every rank must call it with the same arguments. Returns the features on rank 0; on the other
    ranks the features loaded back from the cache entry (``cache=True``) or None. Without an
    initialised process group (or with one rank) it is exactly ``features.extract``.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return features.extract(clip, dataset, dataset_name=dataset_name, split=split, indices=indices,
                                views=views, augment=augment, seed=seed, batch_size=batch_size,
                                num_workers=num_workers, cache=cache, cache_dir=cache_dir,
                                store_dtype=store_dtype, progress=progress)
    rank, world = dist.get_rank(), dist.get_world_size()
    store_dtype = settings.cache_dtype(store_dtype)            # $VTCLIP_CACHE_DTYPE, as train reads it
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    if len(indices) < world:
        raise ValueError(f"{len(indices)} images cannot be split over {world} ranks; use fewer processes")
    key = features.cache_key(clip, dataset_name, split, dataset, indices, views, augment, seed, store_dtype)
    entry = features.entry_dir(key, dataset_name, cache_dir)
    if cache and entry.is_dir():
        return features.load_entry(entry, key)
    mine = indices[shard(len(indices), rank, world)]                      # this rank's images
    transform = features.view_transform(clip, dataset, augment)
    workers = features.default_workers() if num_workers is None else num_workers
    comm = clip.device if dist.get_backend() == "nccl" else torch.device("cpu")
    p, s, grid = features.encode_views(clip, dataset, mine, transform, views, seed if augment else None,
                                       batch_size, workers, f"{dataset_name}/{split} ({views} x {len(mine)} "
                                       f"images, rank 0 of {world})", progress and rank == 0, store_dtype)
    pooled = [gather_rows(p[v], len(indices), world, comm) for v in range(views)]       # (N, D) on rank 0
    spatial = [gather_rows(s[v], len(indices), world, comm)
               for v in range(views)]
    feats = None
    if rank == 0:
        feats = FeatureSet(torch.stack(pooled), torch.stack(spatial),
                           torch.as_tensor(dataset.labels[indices]), grid)
        if cache:
            features.write_entry(entry, key, feats)
    dist.barrier()                                                        # the entry exists from here
    if rank != 0 and cache:
        feats = features.load_entry(entry, key)
    return feats


def extract_run(clip, dataset: str, shots: int | None, seed: int, views: int, data_root=None,
                progress: bool = True) -> None:
    """Fill the caches a ``vtclip train`` run reads: test split; K-shot train (views) and val."""
    from .datasets.base import check_draw, few_shot, few_shot_val, get_dataset

    spec = get_dataset(dataset)
    if shots is not None:
        check_draw(shots, seed)                   # before any work: --shots 0 is a mistake, not "no shots"
    test = spec.split("test", data_root)
    extract(clip, test, dataset_name=spec.name, split="test", progress=progress)
    if shots is not None:
        train, val = spec.split("train", data_root), spec.split("val", data_root)
        extract(clip, train, dataset_name=spec.name, split="train", views=views, augment=True, seed=seed,
                indices=few_shot(train.labels, shots, seed, spec.num_classes, classnames=spec.classnames),
                progress=progress)
        extract(clip, val, dataset_name=spec.name, split="val",
                indices=few_shot_val(val.labels, shots, seed, spec.num_classes), progress=progress)


def check_launch() -> None:
    """A ``RuntimeError`` unless ``torchrun`` (or a launcher like it) set what ``init`` reads: this
    process's rank, the world size and where the group meets."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not set: this command is one process of a group and "
                           "runs under torchrun, e.g. `torchrun --nproc_per_node=N -m vtclip.distributed "
                           "--dataset D ...` (N processes, one per GPU); in a single process, "
                           "`vtclip train` extracts the same features itself")


def main(argv=None) -> int:
    """``torchrun --nproc_per_node=N -m vtclip.distributed --backbone B --dataset D [--shots K --seed S]``."""
    from .backbones import load_clip
    from .options import USER_ERRORS
    from .datasets.base import check_draw, get_dataset
    from .train import TrainConfig

    p = argparse.ArgumentParser(prog="python -m vtclip.distributed", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="pocket")
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--spatial", default="raw", choices=["raw", "projected"])
    p.add_argument("--shots", type=int, default=None, help="also the K-shot train/val features")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--views", type=int, default=TrainConfig().views, help="augmented train views")
    p.add_argument("--backend", default=None, choices=["nccl", "gloo"])
    args = p.parse_args(argv)
    rank = os.environ.get("RANK")                    # known before the group is joined: torchrun sets it
    try:
        check_launch()
        get_dataset(args.dataset)                    # unknown names list the known ones
        if args.shots is not None:
            check_draw(args.shots, args.seed)
        if args.views < 1:
            raise ValueError(f"--views must be at least 1, got {args.views}")
        rank, world, device = init(args.backend)
        clip = load_clip(args.backbone, spatial=args.spatial, device=device)
        extract_run(clip, args.dataset, args.shots, args.seed, args.views, args.data_root, progress=rank == 0)
        if rank == 0:
            print(f"features of {args.dataset} ({args.backbone}) cached by {world} processes under "
                  f"{settings.home('features')}")
    except USER_ERRORS as err:                     # as `vtclip`'s own commands: the message, exit 2
        where = "" if rank is None else f" (rank {rank})"
        print(f"python -m vtclip.distributed{where}: error: {err}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
