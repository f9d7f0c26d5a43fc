"""One training epoch of each trainable method, through the project's own trainer."""
from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F

from ..features import FeatureSet
from ..methods import MethodContext, build_method
from ..train import TrainConfig, fit
from .config import METHOD_OPTIONS, TRAIN_METHODS, BenchConfig
from .clock import autocast, log, peak_mib, reset_peak, result


class _OnTheFly:
    """A FeatureSet look-alike whose features the encoder computes when the trainer indexes them.

    ``fit`` reads ``train.pooled[views, idx]`` then ``train.spatial[views, idx]``: the first read
    encodes a batch of synthetic pixels, the second returns that batch's spatial map. So the
    project's own trainer runs unchanged with the frozen encoder inside every step.
    """

    views = 1

    def __init__(self, clip, labels: torch.Tensor, batch: int, precision: str):
        self.clip, self.labels, self.precision = clip, labels, precision
        self.pixels = torch.randn(batch, 3, clip.image_size, clip.image_size, device=clip.device)
        self.pooled, self.spatial, self.last = _Lookup(self, "pooled"), _Lookup(self, "spatial"), None

    def __len__(self) -> int:
        return len(self.labels)

    def encode(self, n: int) -> None:
        with autocast(self.clip.device, self.precision):
            self.last = self.clip.encode_image(self.pixels[:n])    # pooled (n, D), spatial (n, HW, C)


class _Lookup:
    def __init__(self, owner: _OnTheFly, field: str):
        self.owner, self.field = owner, field

    def __getitem__(self, key):
        if self.field == "pooled":
            self.owner.encode(len(key[1]))
        return getattr(self.owner.last, self.field)


def training_problem(clip, k: int, cfg: BenchConfig, n_fit: int):
    """A K-class, ``shots``-shot context (random features) and the subset ``fit`` will run on."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    g, dev = torch.Generator().manual_seed(cfg.seed), clip.device
    d, c, hw = clip.embed_dim, clip.spatial_dim(), math.prod(grid_of(clip))
    n = k * cfg.shots
    labels = torch.arange(k).repeat(cfg.shots).to(dev)                    # (N,) class-interleaved
    pooled = F.normalize(torch.randn(1, n, d, generator=g), dim=-1).to(dev)   # (1, N, D)
    # the context needs only pooled features (Tip-Adapter-F's cache keys) and C: no (N, HW, C) array
    ctx_train = FeatureSet(pooled, torch.zeros(1, 1, hw, c, device=dev).expand(1, n, hw, c), labels,
                           grid_of(clip))
    torch.manual_seed(cfg.seed)        # drawn on the device: a GPU epoch's map is 6.4 GB (RN50, fp32)
    fit_train = FeatureSet(pooled[:, :n_fit], torch.randn(1, n_fit, hw, c, device=dev),
                           labels[:n_fit], grid_of(clip))                 # what the timed steps read
    names = [IMAGENET_CLASSNAMES[i % len(IMAGENET_CLASSNAMES)] for i in range(k)]
    text = F.normalize(torch.randn(k, d, generator=g), dim=-1).to(dev)    # (K, D)
    return MethodContext(clip, names, ["a photo of a {}."], text, clip.logit_scale, ctx_train, None), fit_train


def grid_of(clip) -> tuple[int, int]:
    """(H, W) of the spatial map, from one tiny forward pass (cached on the backbone)."""
    if not hasattr(clip, "_bench_grid"):
        px = torch.zeros(1, 3, clip.image_size, clip.image_size, device=clip.device)
        clip._bench_grid = clip.encode_image(px).grid
    return clip._bench_grid


def train_epoch(clip, method: str, k: int, cfg: BenchConfig, on_the_fly: bool) -> dict:
    """Seconds per epoch (K * shots images) and peak memory of ``method`` trained by ``fit``."""
    device = clip.device
    steps_per_epoch = math.ceil(k * cfg.shots / cfg.train_batch)
    steps = steps_per_epoch if cfg.train_steps is None else min(cfg.train_steps, steps_per_epoch)
    n_fit = min(steps * cfg.train_batch, k * cfg.shots)
    ctx, feats = training_problem(clip, k, cfg, n_fit)
    torch.manual_seed(cfg.seed)
    model = build_method(method, ctx, **METHOD_OPTIONS.get(method, {})).to(device)
    if on_the_fly:
        feats = _OnTheFly(clip, feats.labels, cfg.train_batch, "bf16")
    repeats = cfg.on_the_fly_repeats if on_the_fly else cfg.train_repeats
    tcfg = TrainConfig(epochs=1 + repeats, batch_size=cfg.train_batch, warmup_epochs=0,
                       views=1, seed=cfg.seed, progress=False)
    reset_peak(device)
    history = fit(model, feats, tcfg)                      # epoch 1 is the warm-up
    per_step = statistics.median(row["seconds"] for row in history[1:]) / steps
    return {"epoch_s": per_step * steps_per_epoch, "peak_mib": peak_mib(device), "steps_timed": steps,
            "steps_per_epoch": steps_per_epoch, "repeats": repeats}


def bench_training(clip, cfg: BenchConfig) -> list[dict]:
    """One epoch of each method at K = ``classes``, cached and on the fly."""
    rows = []
    for on_the_fly in (False, True):
        mode = "on_the_fly" if on_the_fly else "cached"
        for method in TRAIN_METHODS:
            ks = cfg.coop_classes if method == "coop" and cfg.coop_classes else (cfg.classes,)
            runs = {k: train_epoch(clip, method, k, cfg, on_the_fly) for k in ks}
            est = extrapolate(runs, cfg.classes, math.ceil(cfg.classes * cfg.shots / cfg.train_batch))
            note = epoch_note(runs, cfg, est)
            tag = f"train_epoch/{method}/{mode}/K={cfg.classes}"
            log(f"{tag}: {est['epoch_s']:.2f} s/epoch ({note})")
            rows += [result(tag, est["epoch_s"], "s/epoch", note=note),
                     result(f"{tag}/peak_memory", est["peak_mib"], "MiB", note=note)]
    return rows


def extrapolate(runs: dict, k: int, steps_k: int) -> dict:
    """The run at ``k`` itself, or a least-squares line in K through the runs, evaluated at ``k``."""
    if k in runs:
        return runs[k]
    ks = sorted(runs)

    def line(field):
        xs, ys = ks, [runs[x][field] for x in ks]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        # noise can tilt a two-point line downwards: never go below the largest measured K's value
        return max(my + slope * (k - mx), ys[-1])

    # per-epoch time at K is (steps per epoch at K) x (per-step time, linear in K)
    runs = {x: {**runs[x], "per_step": runs[x]["epoch_s"] / runs[x]["steps_per_epoch"]} for x in ks}
    return {"epoch_s": line("per_step") * steps_k, "peak_mib": line("peak_mib"),
            "measured_at_k": {x: round(runs[x]["per_step"], 4) for x in ks}}


def epoch_note(runs: dict, cfg: BenchConfig, est: dict) -> str:
    first = next(iter(runs.values()))
    if "measured_at_k" in est:
        return (f"extrapolated: per-step time measured at K={list(runs)} "
                f"({est['measured_at_k']} s/step, {first['steps_timed']} step(s) x {first['repeats']} "
                f"epoch(s) each), fitted linearly in K (floored at the largest K's value), "
                f"x {math.ceil(cfg.classes * cfg.shots / cfg.train_batch)} steps/epoch at K={cfg.classes}")
    if first["steps_timed"] < first["steps_per_epoch"]:
        return (f"extrapolated: median of {first['repeats']} timed run(s) of {first['steps_timed']} "
                f"step(s), x {first['steps_per_epoch']} steps/epoch")
    return f"measured: full epoch of {first['steps_per_epoch']} steps, median of {first['repeats']}"
