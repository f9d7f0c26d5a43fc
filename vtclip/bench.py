"""Speed and memory benchmarks: ``vtclip bench [--device cpu|cuda] [--json] [--quick] [--out FILE]``.

Real-size architectures with random weights (RN50 through open_clip, ViT-B/16 through transformers)
and synthetic pixels, so nothing is downloaded. Every timing has warm-up runs, CUDA
synchronisation around the timed region and is the median of repeats. Measured:

* feature-extraction throughput at 224 px (fp32; bf16/fp16 autocast and channels-last on a GPU);
* one training epoch of VT-CLIP, CLIP-Adapter, Tip-Adapter-F and CoOp on a 16-shot x 1000-class
  problem, through the project's own trainer (``vtclip.train.fit``), with cached features and with
  features computed on the fly; time and peak memory. On a CPU only a few steps are timed and the
  epoch is extrapolated (steps per epoch x time per step), and CoOp is timed at a few smaller K and
  extrapolated linearly in K to 1000 (its cost is the frozen text tower run on K prompts); the
  record says so for every such number;
* inference of VT-CLIP vs zero-shot CLIP end to end (pixels -> logits, same backbone, batch and
  precision) for K = 10, 100, 1000: images/s and peak memory.

Peak memory is ``torch.cuda.max_memory_allocated`` on a GPU, and on a CPU the whole process's peak
resident set (``VmHWM``, reset before each measurement), which includes the backbone's weights.
Taught in: appendix "What it costs" (book/appendix_cost.ipynb).
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .features import FeatureSet
from .methods import MethodContext, ZeroShot, build_method
from .train import TrainConfig, fit
from .vtclip import VTCLIP

TRAIN_METHODS = ("vtclip", "clip-adapter", "tip-adapter-f", "coop")
#: options that skip work outside an epoch (Tip-Adapter-F's val search of alpha, beta)
METHOD_OPTIONS = {"tip-adapter-f": dict(alpha=1.0, beta=1.0)}


@dataclass(frozen=True)
class BenchConfig:
    """What ``vtclip bench`` measures and how often."""

    device: str = "cpu"                  # "cpu" or "cuda"
    quick: bool = False                  # tiny architectures, seconds (tests); numbers not meaningful
    image_size: int = 224                # input resolution of the real-size backbones
    extract_batch: tuple = (16, 8)       # images per batch for (RN50, ViT-B/16) throughput
    precisions: tuple = ("fp32",)        # extraction precisions (bf16/fp16 = CUDA autocast)
    channels_last: tuple = (False, True)  # RN50 memory formats to try
    warmup: int = 1                      # untimed runs before every measurement
    repeats: int = 3                     # timed runs; the median is reported
    classes: int = 1000                  # K of the training problem (ImageNet-sized)
    shots: int = 16                      # images per class: an epoch is classes * shots images
    train_batch: int = 32                # images per training step (the paper's batch)
    train_steps: int | None = 2          # steps timed per epoch (None: the full epoch)
    train_repeats: int = 2               # timed epochs (after one warm-up epoch)
    on_the_fly_repeats: int = 1          # the same with the encoder in every step (slow on a CPU)
    coop_classes: tuple | None = (100, 250)  # K at which CoOp is timed, then extrapolated; None: `classes`
    infer_classes: tuple = (10, 100, 1000)   # K for the inference comparison
    infer_batch: int = 16                # images per inference batch
    seed: int = 0                        # seeds the random weights, pixels and features

    @classmethod
    def cpu(cls, **kw) -> "BenchConfig":
        """A CPU run of ~15 min on 2 cores: one timed step per epoch, extrapolated epochs."""
        return cls(**{**dict(train_steps=1), **kw})

    @classmethod
    def cuda(cls, **kw) -> "BenchConfig":
        """A GPU run: full epochs, K = 1000 for every method, bf16/fp16 and channels-last."""
        return cls(**{**dict(device="cuda", extract_batch=(256, 256), precisions=("fp32", "bf16", "fp16"),
                             warmup=3, repeats=10, train_steps=None, train_repeats=2, on_the_fly_repeats=2,
                             coop_classes=None, infer_batch=256), **kw})

    @classmethod
    def quick_run(cls, device: str = "cpu", **kw) -> "BenchConfig":
        """Seconds: tiny architectures of both families and small K (for tests)."""
        return cls(**{**dict(device=device, quick=True, image_size=64, extract_batch=(2, 2),
                             warmup=1, repeats=1, classes=20, shots=2, train_batch=4, train_steps=1,
                             train_repeats=1, coop_classes=(5, 10), infer_classes=(5, 20),
                             infer_batch=2), **kw})


def log(msg: str) -> None:
    """Progress to stderr (stdout stays the table / the JSON line)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def check_device(name: str) -> torch.device:
    """``cpu`` or ``cuda``; a clear error for anything else or for CUDA without a GPU."""
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}: vtclip bench runs on 'cpu' or 'cuda'")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device "
                           f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu")
    return torch.device(name)


# ---- cost models (FLOPs = 2 per multiply-add; layer norms, softmax and dropout left out) -----
def head_flops(K: int, HW: int, C: int, D: int, layers: int = 1, ffn_ratio: float = 0.5, B: int = 1) -> dict:
    """FLOPs of ``VTCLIPHead``'s forward: once per class set, per image, and in total for B images.

    Layer 1's text self-attention and queries depend on the class set only; a later layer's inputs
    depend on the image, so it pays both parts per image. Heads do not change the count (h x d = D).
    """
    hidden = max(1, int(D * ffn_ratio))
    class_set = 2 * (4 * K * D * D + 2 * K * K * D       # self-attention: in/out projections, scores, mix
                     + K * D * D)                         # queries
    image = 2 * (2 * HW * C * D                           # keys and values of the HW positions
                 + 2 * K * HW * D                         # scores and weighted sum, all heads
                 + K * D * D                              # output projection
                 + 2 * K * D * hidden)                    # feed-forward
    per_image = image + (layers - 1) * (class_set + image)
    return {"class_set": class_set, "per_image": per_image, "total": class_set + B * per_image}


def text_tower_flops(K: int, L: int, W: int, layers: int, D: int) -> int:
    """Forward FLOPs of a CLIP text transformer on K prompts of L tokens (width W, MLP 4W) + projection."""
    per_layer = 2 * (K * L * 12 * W * W + 2 * K * L * L * W)   # projections + MLP, scores + mix
    return layers * per_layer + 2 * K * W * D


# ---- timing and memory ----------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA allocator stats, or the process's VmHWM on Linux)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass   # not Linux: the peak then covers the whole process lifetime


def peak_mib(device: torch.device) -> float:
    """Peak memory since ``reset_peak``, MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (synchronised): seconds."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None and device.type == "cuda")


# ---- backbones (random weights, real architectures) -----------------------------------------
def build_rn50(cfg: BenchConfig, device: torch.device):
    """open_clip RN50 with random weights (or a tiny ModifiedResNet with ``quick``)."""
    import open_clip

    from .backbones import OpenCLIPBackbone

    torch.manual_seed(cfg.seed)
    if cfg.quick:
        model = open_clip.CLIP(embed_dim=64, vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=16),
                               text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
        name = "RN-tiny"
    else:
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)      # "no pretrained weights loaded": intended
        try:
            model = open_clip.create_model("RN50", pretrained=None)
        finally:
            logging.getLogger().setLevel(level)
        name = "RN50"
    clip = OpenCLIPBackbone(model, open_clip.image_transform(cfg.image_size, is_train=False),
                            open_clip.get_tokenizer("RN50"), name, "random")
    return clip.to(device)


def build_vit_b16(cfg: BenchConfig, device: torch.device):
    """A transformers CLIP with the ViT-B/16 configuration and random weights (tiny with ``quick``)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from .backbones import HFCLIPBackbone

    torch.manual_seed(cfg.seed)
    if cfg.quick:
        config = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2),
                            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=64, patch_size=16),
                            projection_dim=32)
    else:   # CLIPConfig's defaults are OpenAI's base towers; patch 16 makes it ViT-B/16
        config = CLIPConfig(text_config={}, vision_config=dict(patch_size=16, image_size=224),
                            projection_dim=512)
    size = config.vision_config.image_size
    proc = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    clip = HFCLIPBackbone(CLIPModel(config).eval(), None, proc,
                          "ViT-tiny" if cfg.quick else "ViT-B/16", "random")
    return clip.to(device)


# ---- 1. feature extraction ------------------------------------------------------------------
def bench_extraction(clip, cfg: BenchConfig, device, batch: int, channels_last: bool = False) -> list[dict]:
    """Images/s of ``clip.encode_image`` on synthetic decoded pixels, per precision."""
    pixels = torch.randn(batch, 3, clip.image_size, clip.image_size, device=device)
    if channels_last:
        clip.model.to(memory_format=torch.channels_last)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    rows = []
    for precision in cfg.precisions:
        def step():
            with autocast(device, precision):
                clip.encode_image(pixels)
        reset_peak(device)
        seconds = statistics.median(timed(step, device, cfg.warmup, cfg.repeats))
        tag = f"extract/{clip.name}/{precision}" + ("/channels_last" if channels_last else "")
        log(f"{tag}: {batch / seconds:.1f} images/s")
        rows += [result(tag, batch / seconds, "images/s", batch=batch),
                 result(f"{tag}/peak_memory", peak_mib(device), "MiB", batch=batch)]
    if channels_last:
        clip.model.to(memory_format=torch.contiguous_format)
    return rows


def result(what: str, value: float, unit: str, **extra) -> dict:
    return {"what": what, "value": round(float(value), 4), "unit": unit, **extra}


# ---- 2. training epochs ---------------------------------------------------------------------
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


# ---- 3. inference: VT-CLIP vs zero-shot -----------------------------------------------------
def bench_inference(clip, cfg: BenchConfig) -> list[dict]:
    """End to end (pixels -> logits) images/s and peak memory; the two are timed alternately."""
    device, rows = clip.device, []
    pixels = torch.randn(cfg.infer_batch, 3, clip.image_size, clip.image_size, device=device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    for k in cfg.infer_classes:
        ctx, _ = training_problem(clip, k, replace(cfg, shots=1), 1)
        torch.manual_seed(cfg.seed)
        models = {"zeroshot": ZeroShot(ctx.text, ctx.logit_scale),
                  "vtclip": VTCLIP(ctx.text, ctx.logit_scale, d_visual=clip.spatial_dim())}
        for p in models["vtclip"].parameters():        # off the identity init: a trained-like head
            p.data.add_(0.02 * torch.randn_like(p))
        models = {name: m.to(device).eval() for name, m in models.items()}
        times, peaks = {name: [] for name in models}, {name: 0.0 for name in models}
        with torch.no_grad():
            for r in range(cfg.warmup + cfg.repeats):      # alternate: contention hits both alike
                for name, model in models.items():
                    def step():
                        with autocast(device, precision):
                            f = clip.encode_image(pixels)
                            model(f.pooled, f.spatial)
                    reset_peak(device)
                    seconds = timed(step, device, 0, 1)[0]
                    peaks[name] = max(peaks[name], peak_mib(device))
                    if r >= cfg.warmup:
                        times[name].append(seconds)
        for name in models:
            rate = cfg.infer_batch / statistics.median(times[name])
            log(f"infer/{clip.name}/{name}/K={k}: {rate:.2f} images/s")
            rows += [result(f"infer/{clip.name}/{name}/K={k}", rate, "images/s", batch=cfg.infer_batch,
                            precision=precision),
                     result(f"infer/{clip.name}/{name}/K={k}/peak_memory", peaks[name], "MiB")]
        ratio = statistics.median(times["vtclip"]) / statistics.median(times["zeroshot"])
        rows.append(result(f"vtclip_over_zeroshot_infer_k{k}", ratio, "x time per image",
                           note="target <= 1.5 at K=1000 (issue 8)" if k == 1000 else ""))
    return rows


# ---- the whole run ----------------------------------------------------------------------------
def environment(device: torch.device) -> tuple[str, dict]:
    """The device's name and the library versions."""
    import open_clip
    import torchvision
    import transformers

    from . import __version__

    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "transformers": transformers.__version__,
                "open_clip": open_clip.__version__, "vtclip": __version__, "cuda": torch.version.cuda}
    return name, versions


def value(rows: list[dict], what: str) -> float:
    return next(r["value"] for r in rows if r["what"] == what)


def derived(rows: list[dict], cfg: BenchConfig, rn: str) -> list[dict]:
    """The issue's ratios and the full-run estimate, from the measured rows."""
    k = cfg.classes
    out = []
    for mode, suffix in (("cached", ""), ("on_the_fly", "_on_the_fly")):
        ratio = (value(rows, f"train_epoch/coop/{mode}/K={k}") /
                 value(rows, f"train_epoch/vtclip/{mode}/K={k}"))
        out.append(result(f"coop_over_vtclip_epoch{suffix}", ratio, "x time per epoch",
                          note=f"K={k}; target >= 50 (issue 8)" if not suffix else f"K={k}"))
    best = max(r["value"] for r in rows if r["what"].startswith(f"extract/{rn}/") and r["unit"] == "images/s")
    views, epochs = TrainConfig().views, 50
    total = views * k * cfg.shots / best + epochs * value(rows, f"train_epoch/vtclip/cached/K={k}")
    out.append(result("vtclip_fewshot_total_estimate", total, "s",
                      note=f"{views} views x {k * cfg.shots} images / best {rn} extraction rate + "
                           f"{epochs} cached epochs of VT-CLIP; target <= 120 s on an H100 (issue 8)"))
    return out


def run_bench(cfg: BenchConfig, note: str = "") -> dict:
    """Every measurement of ``cfg``: the JSON record (ARCHITECTURE.md shape)."""
    device = check_device(cfg.device)
    start, load0 = time.perf_counter(), os.getloadavg()
    name, versions = environment(device)
    log(f"device {name}, torch threads {torch.get_num_threads()}, quick={cfg.quick}")
    rn = build_rn50(cfg, device)
    rows = [r for cl in cfg.channels_last for r in bench_extraction(rn, cfg, device, cfg.extract_batch[0], cl)]
    vit = build_vit_b16(cfg, device)
    rows += bench_extraction(vit, cfg, device, cfg.extract_batch[1])
    del vit
    rows += bench_inference(rn, cfg)
    rows += bench_training(rn, cfg)
    rows += derived(rows, cfg, rn.name)
    settings = {**asdict(cfg), "training_backbone": rn.name, "inference_backbone": rn.name,
                "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                "load_average_start": [round(x, 2) for x in load0],
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
                "train": "vtclip.train.fit, SGD, 1 cached view per image, bf16 autocast on CUDA; "
                         "Tip-Adapter-F with fixed alpha, beta (its val search is not part of an epoch); "
                         "CoOp: 16 random context tokens, real ImageNet class names, back-propagation "
                         "through the frozen text tower",
                "memory": "CUDA: torch.cuda.max_memory_allocated; CPU: peak resident set of the whole "
                          "process (VmHWM), including backbone weights",
                "seconds": round(time.perf_counter() - start, 1), "note": note}
    return {"device": name, "versions": versions, "settings": settings, "results": rows,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def save_record(record: dict, out: str | Path | None = None) -> Path:
    """Write the record to ``out`` or ``results/bench/<device>_<time>.json``; never overwrite."""
    if out is None:
        kind = "cuda" if record["settings"]["device"] == "cuda" else "cpu"
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        quick = "_quick" if record["settings"]["quick"] else ""
        out = Path("results") / "bench" / f"bench_{kind}{quick}_{stamp}.json"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(out, "x") as fh:                       # "x": fails if the file exists
            json.dump(record, fh, indent=1)
    except FileExistsError:
        raise FileExistsError(f"{out} already exists; not overwriting it (pass another --out)") from None
    return out


def table(record: dict) -> str:
    """The results as an aligned text table."""
    lines = [f"vtclip bench on {record['device']} (torch {record['versions']['torch']})",
             f"{'what':<52}{'value':>12}  unit"]
    for r in record["results"]:
        lines.append(f"{r['what']:<52}{r['value']:>12.4g}  {r['unit']}")
    return "\n".join(lines)


def cmd_bench(args) -> int:
    cfg = (BenchConfig.quick_run(args.device) if args.quick
           else BenchConfig.cuda() if args.device == "cuda" else BenchConfig.cpu())
    check_device(cfg.device)                              # fail before any work
    if args.out and Path(args.out).exists():
        raise FileExistsError(f"{args.out} already exists; not overwriting it (pass another --out)")
    record = run_bench(cfg, note=args.note or "")
    path = save_record(record, args.out)
    print(table(record))
    print(f"record written to {path}")
    if args.json:
        print(json.dumps(record))
    return 0


def add_commands(sub) -> None:
    """Register ``vtclip bench``."""
    p = sub.add_parser("bench", help="speed and memory: extraction, training epochs, inference vs K")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quick", action="store_true", help="tiny architectures, seconds (a smoke test)")
    p.add_argument("--out", default=None, help="record path (default results/bench/bench_<device>_<time>.json)")
    p.add_argument("--note", default=None, help="free text stored in the record (e.g. 'CPU shared')")
    p.add_argument("--json", action="store_true", help="print the record as one JSON line last")
    p.set_defaults(func=cmd_bench)
