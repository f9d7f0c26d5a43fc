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
The code: ``config`` (what is measured), ``costs`` (FLOP models), ``clock`` (clocks, memory and result rows),
``models`` (random-weight backbones), ``throughput`` (extraction, inference), ``training``
(epochs through ``vtclip.train.fit``), ``run`` (the record and the CLI).
"""
from __future__ import annotations

from .config import METHOD_OPTIONS, TRAIN_METHODS, BenchConfig
from .costs import head_flops, text_tower_flops
from .models import build_rn50, build_vit_b16
from .run import add_commands, cmd_bench, run_bench, save_record, table
from .throughput import bench_extraction, bench_inference
from .clock import check_device, peak_mib, reset_peak, timed
from .training import bench_training, extrapolate, train_epoch

__all__ = ["BenchConfig", "METHOD_OPTIONS", "TRAIN_METHODS", "add_commands", "bench_extraction",
           "bench_inference", "bench_training", "build_rn50", "build_vit_b16", "check_device", "cmd_bench",
           "extrapolate", "head_flops", "peak_mib", "reset_peak", "run_bench", "save_record", "table",
           "text_tower_flops", "timed", "train_epoch"]
