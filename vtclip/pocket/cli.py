"""``vtclip pocket pretrain``, ``eval`` and ``probe``: build and measure Pocket CLIP.

Taught in: chapter 0 (the Pocket world).
"""
from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
from pathlib import Path

from .. import settings
from ..options import table_unless_json

RESULTS = settings.REPO_ROOT / "results" / "pocket" / "zeroshot.json"


def cmd_pretrain(args) -> int:
    from .pretrain import PocketConfig, pretrain

    base = PocketConfig.tiny() if args.tiny else PocketConfig.v1() if args.world == "v1" else PocketConfig.shipped()
    overrides = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size,
                                   "seed": args.seed, "threads": args.threads}.items() if v is not None}
    for k, v in overrides.items():
        if v < (0 if k == "seed" else 1):
            raise ValueError(f"--{k.replace('_', '-')} must be {'>= 0' if k == 'seed' else 'positive'}, got {v}")
    cfg = base.replace(**overrides)
    out = Path(args.out or settings.DATA_DIR / "pocket-clip")
    record = pretrain(cfg, out, resume=args.resume, progress=not args.json)
    summary = {"out": str(out), "steps": cfg.steps, "batch_size": cfg.batch_size, "seed": cfg.seed,
               "wall_seconds": record["wall_seconds"], "final_loss": record["final_loss"],
               "parameters": record["parameters"]}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"Pocket CLIP ({record['parameters'] / 1e6:.2f} M parameters) saved to {out}: "
              f"{cfg.steps} steps in {record['wall_seconds']:.0f} s, final loss {record['final_loss']:.3f}")
    return 0


def cmd_eval(args) -> int:
    from ..backbones import load_clip
    from ..experiments import keep_result
    from .suite import zeroshot_suite

    if args.write:                                      # before any work: never replaced, and writable
        check_target(args.write, "--write")
    clip = load_clip(args.backbone)
    rows = zeroshot_suite(clip, args.datasets, limit=args.limit)
    result = {"backbone": clip.name, "weights": clip.weights_tag, "datasets": rows,
              **({"limit": args.limit} if args.limit else {})}
    if args.write and keep_result(lambda: write_results(result, args.write, "eval", clip), result,
                                  args.write) is None:
        return 1
    with table_unless_json(args.json):
        print(f"Zero-shot top-1 (%) of {clip.name} on the Pocket suite:")
        print(f"{'dataset':<22}{'chance':>8}{'top-1':>8}{'n_test':>8}")
        for name, row in rows.items():
            print(f"{name:<22}{row['chance']:>8.1f}{row['top1']:>8.1f}{row['n_test']:>8}")
    if args.json:
        print(json.dumps(result))
    return 0


def cmd_probe(args) -> int:
    from ..backbones import load_clip
    from ..experiments import keep_result
    from .probe import feature_breadth, headroom

    if args.out:                                        # before any work: never replaced, and writable
        check_target(args.out, "--out")
    clip = load_clip(args.backbone)
    result = {"backbone": clip.name, "weights": clip.weights_tag, "breadth": feature_breadth(clip),
              "headroom": headroom(clip)}
    if args.out and keep_result(lambda: write_results(result, args.out, "probe", clip), result,
                                args.out) is None:
        return 1
    with table_unless_json(args.json):
        print(f"Feature breadth of {clip.name} (top-1 %, v2 scenes): linear probe / zero-shot")
        for attr, row in result["breadth"].items():
            print(f"  {attr:<10}{row['probe']:>7.1f}{row['zeroshot']:>7.1f}   chance {row['chance']:.1f}")
        print("Headroom on the suite's val splits: zero-shot -> linear probe")
        for name, row in result["headroom"].items():
            print(f"  {name:<18}{row['zeroshot']:>7.1f} ->{row['probe']:>6.1f}")
    if args.json:
        print(json.dumps(result))
    return 0


def check_target(path, flag: str) -> None:
    """Before any work: the file ``path`` (given as ``flag``) is new, its folder exists and takes a file."""
    from ..experiments import check_writable

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; not overwriting it. Give {flag} a new file, or delete "
                              "that one.")
    if not path.parent.is_dir():
        raise ValueError(f"{flag} {path}: its folder {path.parent} does not exist; create it or give another file")
    check_writable(path.parent, flag, path.name)


def write_results(result: dict, path, command: str, clip) -> Path:
    """Write the result of ``vtclip pocket COMMAND`` with its provenance (command line, machine and
    CPU threads, time) to the file ``path``, atomically and never over an existing file."""
    import torch

    from ..experiments import device_name, write_record

    path = Path(path)
    line = f"vtclip pocket {command} " + " ".join(shlex.quote(a) for a in sys.argv[3:]) \
        if sys.argv[1:3] == ["pocket", command] else f"vtclip pocket {command} --json"
    record = {**result, "command": line, "machine": device_name(clip.device),
              "threads": torch.get_num_threads(),
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    return write_record(record, path.parent, path.name)


def add_commands(subparsers) -> None:
    """Add ``vtclip pocket pretrain|eval`` to the main parser."""
    pocket = subparsers.add_parser("pocket", help="the Pocket world: pretrain / evaluate Pocket CLIP")
    sub = pocket.add_subparsers(dest="pocket_command", required=True)

    p = sub.add_parser("pretrain", help="contrastively pretrain Pocket CLIP on rendered scenes")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (default: shipped recipe)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step")
    p.add_argument("--seed", type=int, default=None, help="initialisation + data stream seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="output directory (default data/pocket-clip)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/resume.pt")
    p.add_argument("--tiny", action="store_true", help="a tiny model (seconds; for tests)")
    p.add_argument("--world", choices=("v1", "v2"), default="v2",
                   help="v2: the shipped checkpoint's recipe (PocketConfig.shipped); v1: the retired "
                        "first world's (PocketConfig.v1)")
    p.add_argument("--json", action="store_true", help="print only one JSON object (no table)")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("eval", help="zero-shot top-1 on every Pocket dataset")
    p.add_argument("--backbone", default="pocket", help="backbone name or local CLIP directory")
    p.add_argument("--datasets", nargs="+", default=None, help="subset of the Pocket suite")
    p.add_argument("--limit", type=int, default=None, help="only the first N test images of each")
    p.add_argument("--write", default=None, metavar="FILE",
                   help=f"also write the result with provenance (e.g. {RESULTS.relative_to(settings.REPO_ROOT)})")
    p.add_argument("--json", action="store_true", help="print only one JSON object (no table)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("probe", help="feature breadth (linear probe vs zero-shot per scene attribute) "
                                     "and headroom on the suite's val splits")
    p.add_argument("--backbone", default="pocket", help="backbone name or local CLIP directory")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the result as JSON (never replaced)")
    p.add_argument("--json", action="store_true", help="print only one JSON object (no table)")
    p.set_defaults(func=cmd_probe)
