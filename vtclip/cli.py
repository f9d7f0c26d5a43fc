"""The ``vtclip`` command. ``--json`` makes a command print one JSON object as its last line.

Each command group lives next to the code it drives; this file only wires them together.
"""
from __future__ import annotations

import argparse
import json
import sys


def _print_json(obj) -> None:
    print(json.dumps(obj, default=float))


def cmd_zeroshot(args) -> int:
    from .experiments import run_zeroshot

    record = run_zeroshot(args.backbone, args.dataset, spatial=args.spatial,
                          data_root=args.data_root, out=args.out)
    if args.json:
        _print_json(record)
    else:
        print(f"zero-shot {record['backbone']} on {record['dataset']}: top-1 {record['top1']:.2f}% "
              f"({record['n_test']} test images, chance {100 / record['num_classes']:.1f}%)")
    return 0


def add_common(p: argparse.ArgumentParser, dataset: bool = True) -> None:
    """Options most commands share."""
    p.add_argument("--backbone", default="pocket", help="backbone name or local CLIP directory")
    if dataset:
        p.add_argument("--dataset", required=True, help="registered dataset or image-folder path")
    p.add_argument("--data-root", default=None, help="where datasets live (default $VTCLIP_HOME/data)")
    p.add_argument("--spatial", default="raw", choices=["raw", "projected"])
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vtclip", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("zeroshot", help="zero-shot accuracy of a backbone on a dataset")
    add_common(p)
    p.add_argument("--out", default=None, help="directory to write the result record into")
    p.set_defaults(func=cmd_zeroshot)

    for hook in _command_groups():
        hook(sub)
    return parser


def _command_groups():
    """Command groups defined beside the code they drive (each adds its sub-parsers)."""
    import importlib

    for module, fn in [("vtclip.datasets.cli", "add_commands"), ("vtclip.pocket.cli", "add_commands"),
                       ("vtclip.experiments", "add_commands"), ("vtclip.bench", "add_commands")]:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:   # a real import error inside the module: surface it
                raise
            continue                 # that group is not part of this version yet
        yield getattr(mod, fn)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"vtclip {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
