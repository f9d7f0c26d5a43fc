"""The whole run: every measurement, the derived ratios, the record on disk and the CLI."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..train import TrainConfig
from .config import BenchConfig
from .models import build_rn50, build_vit_b16
from .throughput import bench_extraction, bench_inference
from .clock import check_device, log, result
from .training import bench_training


def environment(device: torch.device) -> tuple[str, dict]:
    """The device's name and the library versions."""
    import open_clip
    import torchvision
    import transformers

    from .. import __version__

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


def record_path(record: dict, out: str | Path | None = None) -> Path:
    """``out``, or ``results/bench/bench_<device>[_quick]_<time>.json``."""
    if out is not None:
        return Path(out)
    kind = "cuda" if record["settings"]["device"] == "cuda" else "cpu"
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    quick = "_quick" if record["settings"]["quick"] else ""
    return Path("results") / "bench" / f"bench_{kind}{quick}_{stamp}.json"


def save_record(record: dict, out: str | Path | None = None) -> Path:
    """Write the record to ``record_path(record, out)``, atomically; never overwrite."""
    from ..experiments import write_new

    return write_new(record_path(record, out), json.dumps(record, indent=1), advice="Pass another --out.")


def check_target(out: str | Path | None) -> None:
    """Before any work: the record's file is new and its folder can be written (made if need be)."""
    from ..experiments import check_writable

    folder = Path(out).parent if out else Path("results") / "bench"
    if out and Path(out).exists():
        raise FileExistsError(f"{out} already exists; not overwriting it (pass another --out)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out or folder}: cannot create {folder} ({err.strerror}); pass another --out") from None
    check_writable(folder, "--out" if out else "the default --out folder")


def table(record: dict) -> str:
    """The results as an aligned text table."""
    lines = [f"vtclip bench on {record['device']} (torch {record['versions']['torch']})",
             f"{'what':<52}{'value':>12}  unit"]
    for r in record["results"]:
        lines.append(f"{r['what']:<52}{r['value']:>12.4g}  {r['unit']}")
    return "\n".join(lines)


def cmd_bench(args) -> int:
    check_device(args.device)                             # fail before any work: only cpu or cuda
    cfg = (BenchConfig.quick_run(args.device) if args.quick
           else BenchConfig.cuda() if args.device == "cuda" else BenchConfig.cpu())
    check_target(args.out)
    record = run_bench(cfg, note=args.note or "")
    from ..experiments import keep_result

    target = record_path(record, args.out)
    path = keep_result(lambda: save_record(record, target), record, target)
    if path is None:                                      # printed as JSON: the numbers are not lost
        return 1
    if args.json:
        print(json.dumps(record))
    else:
        print(table(record))
        print(f"record written to {path}")
    return 0


def add_commands(sub) -> None:
    """Register ``vtclip bench``."""
    p = sub.add_parser("bench", help="speed and memory: extraction, training epochs, inference vs K")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when present)")
    p.add_argument("--quick", action="store_true", help="tiny architectures, seconds (a smoke test)")
    p.add_argument("--out", default=None, help="record path (default results/bench/bench_<device>_<time>.json)")
    p.add_argument("--note", default=None, help="free text stored in the record (e.g. 'CPU shared')")
    p.add_argument("--json", action="store_true", help="print only the record, as one JSON object (no table)")
    p.set_defaults(func=cmd_bench)
