"""Timing, peak memory and the record's result rows: synchronised, warmed-up, median of repeats."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch


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



def result(what: str, value: float, unit: str, **extra) -> dict:
    return {"what": what, "value": round(float(value), 4), "unit": unit, **extra}
