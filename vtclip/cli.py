"""The ``vtclip`` command. ``--json`` makes a command print one JSON object and nothing else on stdout.

Each command group lives next to the code it drives; this file only wires them together.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from .options import USER_ERRORS, add_skip_bad_images, parse_options, table_unless_json
from .options import print_json as _print_json


def cmd_zeroshot(args) -> int:
    from .experiments import run_zeroshot

    record = run_zeroshot(args.backbone, args.dataset, spatial=args.spatial,
                          data_root=args.data_root, out=args.out, skip_bad_images=args.skip_bad_images)
    return report(args, record, f"zero-shot {record['backbone']} on {record['dataset']}: top-1 "
                                f"{record['top1']:.2f}% ({record['n_test']} test images, "
                                f"chance {100 / record['num_classes']:.1f}%)")


def report(args, record: dict, line: str) -> int:
    """Print a run's one-line summary, or its record as JSON with ``--json``."""
    if args.json:
        _print_json(record)
    else:
        print(line)
    return 0


def cmd_train(args) -> int:
    from .experiments import (check_out, check_record_free, check_writable, keep_result, load_task, run_method,
                              run_record_name, write_record)
    from .datasets import get_dataset
    from .methods import check_options
    from .train import TrainConfig

    cfg = TrainConfig.preset(args.preset, get_dataset(args.dataset).name, args.shots, method=args.method)
    if args.epochs is not None:
        cfg = cfg.replace(epochs=args.epochs)
    if args.save_head and not args.out:
        raise ValueError("--save-head saves the method next to its record: give --out DIR as well")
    if args.method != "vtclip" and (args.heads, args.layers) != (None, None):
        raise ValueError(f"--heads/--layers are VT-CLIP's; {args.method} takes --option KEY=VALUE "
                         "(its options are listed if you give an unknown one)")
    options = {k: v for k, v in (("heads", args.heads), ("layers", args.layers)) if v is not None}
    given = parse_options(args.option)
    twice = sorted(set(options) & set(given))
    if twice:
        raise ValueError(f"{twice[0]} is given by --{twice[0]} and by --option; give it once")
    options.update(given)
    check_options(args.method, options)       # before any work: C=-5 would train to chance
    if args.out:                             # before any work: never overwrite, never waste the training
        check_out(args.out)
        check_record_free(args.out, args.method, args.backbone, args.dataset, args.shots, args.seed)
        record_file = Path(args.out) / run_record_name(args.method, args.backbone, args.dataset, args.shots,
                                                       args.seed)
        head = record_file.with_suffix(".safetensors")
        if args.save_head and head.exists():
            raise FileExistsError(f"{head} already exists; not overwriting it. Use another --out directory "
                                  "or move that file away.")
        check_writable(args.out, "--out", record_file.name)      # the files' own names too (a long backbone
        if args.save_head:                                       # folder name can be one too many)
            check_writable(args.out, "--save-head", head.name)
    task = load_task(args.backbone, args.dataset, args.spatial, args.data_root, progress=not args.json,
                     skip_bad_images=args.skip_bad_images)
    record, model, _ = run_method(task, args.method, args.shots, args.seed, cfg.replace(progress=not args.json),
                                  progress=not args.json, **options)
    if args.out:
        path = keep_result(lambda: write_record(record, args.out), record, record_file)
        if path is None:                     # the record is printed instead; the head goes where it can
            if args.save_head:
                save_head(model, record_file.with_suffix(".safetensors"), record_file.name,
                          beside_record=False)
            return 1
    saved = not args.save_head or save_head(model, path.with_suffix(".safetensors"), path.name)
    report(args, record, f"{record['method']} {record['backbone']} {record['dataset']} "
                         f"{args.shots}-shot seed {args.seed}: top-1 {record['top1']:.2f}% "
                         f"({record['n_test']} test images, {record['train_seconds']:.1f}s training)")
    return 0 if saved else 1


def save_head(model, head: Path, record: str, beside_record: bool = True) -> bool:
    """Save the trained method as ``head`` (beside its ``record``); if that fails (a disk that filled
    during training), or the record itself could not be written there (``beside_record=False``),
    save it in a new temporary folder instead and say on stderr where, so that the training is not
    lost. Whether ``head`` itself was written."""
    import tempfile

    from .train import save_checkpoint

    why = f"its record could not be written to {head.parent} either"
    if beside_record:
        try:
            save_checkpoint(model, head, extra={"record": record})
            return True
        except OSError as err:
            why = err
    try:
        kept = save_checkpoint(model, Path(tempfile.mkdtemp(prefix="vtclip-head-")) / head.name,
                               extra={"record": record})
        where = f"it is saved in {kept} instead: move it to {head} once there is room"
    except OSError as again:
        where = f"nor in a temporary folder ({again}), so only its record is kept"
    print(f"vtclip train: could not save the trained head to {head} ({why}); {where}", file=sys.stderr)
    return False


def cmd_demo(args) -> int:
    from .experiments import pocket_suite, run_demo
    from .train import TrainConfig

    import torch

    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    outside = [d for d in args.datasets or () if d not in pocket_suite()]
    if outside:
        raise ValueError(f"the demo runs on the Pocket suite, and {', '.join(outside)} is not in it: pick from "
                         f"{', '.join(pocket_suite())} (vtclip sweep runs any dataset)")
    if args.smoke and args.preset not in (None, "smoke"):
        raise ValueError(f"--smoke is --preset smoke; it cannot go with --preset {args.preset}")
    preset = "smoke" if args.smoke else args.preset or "fast"
    cfg = TrainConfig.preset(preset, shots=args.shots)
    result = run_demo(args.backbone, args.datasets, shots=args.shots, seeds=tuple(args.seeds),
                      cfg=cfg.replace(progress=False), out=args.out, progress=not args.json)
    result["preset"] = preset
    with table_unless_json(args.json):
        print(f"\n{result['backbone']} CLIP, {result['shots']} shots, seeds {result['seeds']}, {preset} schedule "
              f"({result['seconds']:.0f} s). Top-1 accuracy (%) on the Pocket suite (Pocket world, not real data):")
        print(f"{'dataset':<22}{'chance':>8}{'zero-shot':>11}{'VT-CLIP':>16}")
        for name, row in result["datasets"].items():
            print(f"{name:<22}{row['chance']:>8.1f}{row['zeroshot']:>11.1f}"
                  f"{row['vtclip']:>10.1f} ± {row['vtclip_std']:.1f}")
    if args.json:
        _print_json(result)
    return 0


def add_common(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    """Options most commands share."""
    p.add_argument("--backbone", default="pocket", help="backbone name or local CLIP directory")
    if dataset:
        p.add_argument("--dataset", required=True, help="registered dataset or image-folder path")
    p.add_argument("--data-root", default=None, help="where datasets live (default $VTCLIP_HOME/data)")
    p.add_argument("--spatial", default="raw", choices=["raw", "projected"])
    add_skip_bad_images(p)
    p.add_argument("--json", action="store_true", help="print only one JSON object (no table)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtclip", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("zeroshot", help="zero-shot accuracy of a backbone on a dataset")
    add_common(p)
    p.add_argument("--out", default=None, help="directory to write the result record into")
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("train", help="train a method on K shots and evaluate on the test split")
    add_common(p)
    p.add_argument("--method", default="vtclip", help="vtclip, zeroshot, or a baseline")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--preset", default="paper", choices=["paper", "fast", "smoke"])
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--heads", type=int, default=None, help="VT-CLIP attention heads (default 8)")
    p.add_argument("--layers", type=int, default=None, help="VT-CLIP decoder layers (default 1)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a method option, repeatable (e.g. alpha=0.5, n_ctx=4, ffn_ratio=1.0)")
    p.add_argument("--out", default=None, help="directory for the result record")
    p.add_argument("--save-head", action="store_true", help="also save the trained method (safetensors)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("demo", help="offline main job: zero-shot vs VT-CLIP on the Pocket suite")
    p.add_argument("--backbone", default="pocket")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--datasets", nargs="+", default=None, help="a subset of the Pocket suite (default: all)")
    p.add_argument("--preset", default=None, choices=["fast", "paper", "smoke"],
                   help="training schedule: fast (AdamW, 20 epochs; the default, ~2 min on 2 cores), "
                        "paper (CoOp's schedule, as in results/pocket; ~6 min), smoke (seconds)")
    p.add_argument("--smoke", action="store_true", help="same as --preset smoke")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: the head's small matrices gain nothing from more, "
                        "and the spare core renders images for the feature extractor)")
    p.add_argument("--out", default=None, help="also write every run's record here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)

    for hook in _command_groups():
        hook(sub)
    return parser


def _command_groups():
    """Command groups defined beside the code they drive (each adds its sub-parsers)."""
    import importlib

    for module, fn in [("vtclip.datasets.cli", "add_commands"), ("vtclip.pocket.cli", "add_commands"),
                       ("vtclip.sweep", "add_commands"), ("vtclip.ablations", "add_commands"),
                       ("vtclip.curves", "add_commands"),
                       ("vtclip.bench", "add_commands")]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if not module.startswith(str(err.name)):   # a real import error inside it: surface it
                raise
            continue                 # that group is not part of this version yet
        yield getattr(mod, fn)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_as_interrupt(), _own_warnings_as_lines(args.command):
            return args.func(args) or 0
    except USER_ERRORS as err:
        print(f"vtclip {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:         # Ctrl-C or SIGTERM: one line instead of a traceback
        pretraining = getattr(args, "pocket_command", None) == "pretrain"
        left = PRETRAIN_INTERRUPTED if pretraining else INTERRUPTED
        if isinstance(err, Terminated):      # 128 + the signal's number, as shells report it
            print(f"vtclip {args.command}: terminated (SIGTERM). {left}", file=sys.stderr)
            return 143
        print(f"\nvtclip {args.command}: interrupted. {left}", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _own_warnings_as_lines(command: str):
    """Show vtclip's own warnings (unreadable records, unused files) as one line each, as errors are:
    ``vtclip sweep: warning: ...``, without Python's file, line number and source line. Other
    libraries' warnings keep Python's format."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.split(".")[0] != "vtclip":
            return previous(message, category, filename, lineno, file, line)
        print(f"vtclip {command}: warning: {message}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


class Terminated(KeyboardInterrupt):
    """SIGTERM (what Slurm, ``timeout`` and ``kill`` send) raised where the program is, as Ctrl-C is: every
    ``except BaseException`` / ``finally`` that removes a half-written file runs for it too."""


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into ``Terminated`` while a command runs; the previous handler afterwards."""
    if threading.current_thread() is not threading.main_thread():   # only the main thread may set handlers
        yield
        return
    pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != pid:               # a forked DataLoader worker: end as it did before
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: What an interrupted command leaves behind (every file vtclip writes appears whole or not at all).
INTERRUPTED = ("No file is left half-written: records, caches, summaries and checkpoints are written whole "
               "or not at all. Finished runs are kept, and a sweep, ablate or curves command run again "
               "skips them.")
PRETRAIN_INTERRUPTED = ("Its last checkpoint (resume.pt, saved every few hundred steps) is whole: run the same "
                        "command with --resume to continue from it.")


if __name__ == "__main__":
    sys.exit(main())
