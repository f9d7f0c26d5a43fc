"""``vtclip data list`` and ``vtclip data check NAME``: where dataset files go and what is missing.

Taught in: the appendix "Getting the datasets".
"""
from __future__ import annotations

import errno
import json
import os
import warnings
from pathlib import Path

from ..options import table_unless_json
from .base import DATASETS, SPLITS, check_images, get_dataset
from .real import Layout, data_root, expected_paths, how_to_get, load_splits, locate


def _row(spec, root) -> dict:
    """One dataset's line of ``data list``."""
    row = {"name": spec.name, "kind": spec.kind, "classes": spec.num_classes,
           "sizes": spec.extra.get("sizes"), "present": True, "root": None}
    layout = spec.extra.get("layout")
    if isinstance(layout, Layout):
        loc = locate(layout, root)
        row.update(present=loc is not None, split_file=bool(loc and loc.split_file),
                   root=str(loc.folder if loc else data_root(root) / layout.folders[0]))
    return row


def cmd_list(args) -> int:
    rows = [_row(spec, args.data_root) for spec in DATASETS.values()]
    if args.json:                            # the JSON alone: a script reads one object, not a table
        print(json.dumps({"data_root": str(data_root(args.data_root)), "datasets": rows}))
        return 0
    print(f"data root: {data_root(args.data_root)}  (--data-root or $VTCLIP_HOME/data)")
    print(f"{'name':<22}{'classes':>8}{'train/val/test (CoOp)':>24}  {'present':<8} where")
    for r in rows:
        sizes = "/".join(map(str, r["sizes"].values())) if isinstance(r["sizes"], dict) else "-"
        where = r["root"] or f"built in ({r['kind']})"
        print(f"{r['name']:<22}{r['classes']:>8}{sizes:>24}  {'yes' if r['present'] else 'no':<8} {where}")
    return 0


def _missing_files(image_dir: Path, paths: list[str]) -> list[str]:
    """The listed paths that are not readable files, each with why if it is a broken link."""
    return [str(image_dir / p) + _broken_link(image_dir / p) for p in paths if not (image_dir / p).is_file()]


def _broken_link(path: Path) -> str:
    """`` (a link to X, which does not exist)`` / `` (a symbolic link loop)`` for a link that leads nowhere."""
    if not path.is_symlink():
        return ""
    try:
        path.resolve(strict=True)
    except RuntimeError:                           # Python 3.11 reports a loop so
        return " (a symbolic link loop)"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return " (a symbolic link loop)"
    return f" (a link to {os.readlink(path)}, which does not exist)"


def _check_real(spec, args, report: dict) -> int:
    """Check a registered real dataset; fill ``report``; return the exit code."""
    layout = spec.extra["layout"]
    loc = locate(layout, args.data_root)
    if loc is None:
        report["missing"] = [str(p) for p in expected_paths(layout, args.data_root) if not p.exists()]
        print(f"{spec.name}: NOT FOUND. Missing:\n" + "\n".join(f"  {p}" for p in report["missing"]))
        print(how_to_get(layout, args.data_root))
        return 1
    report.update(present=True, root=str(loc.folder), image_dir=str(loc.image_dir),
                  split_file=str(loc.split_file) if loc.split_file else None)
    print(f"{spec.name}: found in {loc.folder}\n  images: {loc.image_dir}")
    print(f"  split: {loc.split_file or 'no ' + layout.split_file + ' -> ' + layout.rule}")
    try:
        data = load_splits(layout, loc)
    except (FileNotFoundError, ValueError) as err:
        report["missing"] = [str(err)]
        print(f"  cannot make the split: {err}")
        return 1
    report.update(split_source=data.source, sizes=data.sizes())
    return _check_files(loc.image_dir, data.paths, report, spec.extra.get("sizes"))


def _check_files(image_dir: Path, paths: dict, report: dict, coop_sizes: dict | None = None) -> int:
    """Every listed image must exist; print the sizes (next to CoOp's, for its datasets)."""
    expected = coop_sizes or {}
    for s in SPLITS:
        print(f"  {s:<5} {len(paths[s]):>8} images" + (f"  (CoOp: {expected[s]})" if s in expected else ""))
    missing = [p for s in SPLITS for p in _missing_files(image_dir, paths[s])]
    report["missing"] = missing
    if missing:
        print(f"  {len(missing)} listed image(s) missing, e.g.:\n" + "\n".join(f"    {p}" for p in missing[:5]))
        return 1
    return 0


def _check_decoding(spec, args, report: dict) -> int:
    """--images: decode every image of every split; list the unreadable ones."""
    bad, why = [], {}
    for s in SPLITS:
        bad += check_images(spec.split(s, args.data_root), progress=not args.json, reasons=why)
    report["bad_images"], report["bad_image_reasons"] = bad, why
    print(f"  {len(bad)} unreadable image(s)" + "".join(f"\n    {p}: {why[p]}" for p in bad[:20]) +
          (f"\n    ... and {len(bad) - 20} more (--json lists them all)" if len(bad) > 20 else ""))
    if bad:
        print("  remove or replace them, or leave them out of a run with --skip-bad-images (vtclip train, "
              "zeroshot, sweep, ablate, curves): the record then lists them in `dropped_images`")
    return 1 if bad else 0


def _report_unused(spec, report: dict) -> None:
    """An image folder's files that its layout does not read (a note: they do not fail the check)."""
    from .folder import READ_RULE

    unused = spec.extra.get("unused", [])
    report["unused"] = [{"path": path, "why": why} for path, why in unused]
    if unused:
        print(f"  {len(unused)} file(s) not used ({READ_RULE}):" +
              "".join(f"\n    {path}  ({why})" for path, why in unused[:20]) +
              (f"\n    ... and {len(unused) - 20} more (--json lists them all)" if len(unused) > 20 else ""))


def cmd_check(args) -> int:
    from .folder import UnusedFilesWarning

    with warnings.catch_warnings():       # the check lists them itself
        warnings.simplefilter("ignore", UnusedFilesWarning)
        spec = get_dataset(args.name)
    report = {"name": spec.name, "kind": spec.kind, "classes": spec.num_classes, "present": True,
              "missing": [], "bad_images": []}
    with table_unless_json(args.json):
        code = _check_report(spec, args, report)
    if args.json:
        print(json.dumps(report))
    return code


def _check_report(spec, args, report: dict) -> int:
    """``data check``'s table (the checks themselves), filling ``report``; returns the exit code."""
    if isinstance(spec.extra.get("layout"), Layout):
        report["present"] = False
        code = _check_real(spec, args, report)
    else:
        print(f"{spec.name}: {spec.description or spec.kind}")
        code = 0
        if spec.kind == "folder":      # a split.json may list files that are not there
            report["split_source"] = spec.extra["split_source"]
            report["sizes"] = spec.extra["sizes"]
            print(f"  split: {spec.extra['split_source']}")
            code = _check_files(Path(spec.extra["path"]), {s: spec.split(s).paths for s in SPLITS}, report)
            _report_unused(spec, report)
    if code == 0 and args.images:
        code = _check_decoding(spec, args, report)
    elif args.images:                  # decoding would stop at the first missing file
        report["decoded"] = False
        print("  images not decoded (--images): put the missing files listed above in place, or remove "
              "them from the split, then check again")
    if code == 0:
        print("  OK")
    return code


def add_commands(subparsers) -> None:
    """Add ``vtclip data list|check|get`` to the ``vtclip`` command."""
    from .get import add_command as add_get
    p = subparsers.add_parser("data", help="where dataset files go, and what is missing")
    sub = p.add_subparsers(dest="data_command", required=True)
    q = sub.add_parser("list", help="every registered dataset: classes, sizes, where it looks, present or not")
    q.add_argument("--data-root", default=None, help="where datasets live (default $VTCLIP_HOME/data)")
    q.add_argument("--json", action="store_true", help="print only one JSON object (no table)")
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("check", help="what is missing for one dataset, the exact paths, how to get it")
    q.add_argument("name", help="registered dataset name, or an image-folder path")
    q.add_argument("--data-root", default=None, help="where datasets live (default $VTCLIP_HOME/data)")
    q.add_argument("--images", action="store_true", help="also decode every image (slow) and list bad ones")
    q.add_argument("--json", action="store_true", help="print only one JSON object (no table)")
    q.set_defaults(func=cmd_check)
    add_get(sub)
