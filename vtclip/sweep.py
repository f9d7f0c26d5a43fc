"""Sweeps: methods x datasets x shots x seeds -> one record per run + ``summary.csv``.

Resumable: a run whose record exists is skipped (never redone, never overwritten), provided every
record of the backbone there was measured on the same weights (``experiments.check_same_weights``),
those of its image folders on the same images (``experiments.check_same_data``), and those in the
summary rows the sweep adds to were trained with the same recipe (``experiments.check_same_training``).
One sweep per results folder at a time (``experiments.out_lock``). A run that fails
writes ``failed/<record name>`` with the error and the sweep goes on, except when the backbone's
weights are missing (``WeightsUnavailableError``): no run could succeed, so the sweep stops at once.
Taught in: chapter 06 (results).
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import sys
import traceback
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import settings
from .datasets.base import check_draw
from .experiments import (check_grid, check_out, check_resume, dataset_label, dataset_names, keep_result, load_task,
                          method_label, out_lock, readable_records, record_name, run_method, run_record_name,
                          summary_row, temp_name, write_record)
from .options import add_skip_bad_images, parse_options, print_json, table_unless_json
from .train import TrainConfig



def run_sweep(methods, backbone: str, datasets, shots, seeds, out, preset: str = "paper",
              data_root=None, progress: bool = True, variants: dict | None = None,
              skip_bad_images: bool = False) -> dict:
    """Run every missing (method, dataset, shots, seed[, variant]) and rewrite ``summary.csv``.

    ``skip_bad_images`` leaves unreadable images out (each record lists them in
    ``config.dropped_images``); without it a run that meets one fails and is recorded in ``failed/``.

    ``variants`` (ablations, see ``vtclip.ablations``) maps a name to ``{"options": {...}, "spatial":
    "raw"|"projected", "select": {option: [values]}, "train": {TrainConfig field: value}}`` (all
    optional): each method then runs once per variant with those method options, that spatial map,
    those options chosen on val (``run_method(select=...)``) and the preset changed by ``train``, and
    its records carry ``"variant": name`` (also in the file name, ``method+name__...``).
    """
    settings.cache_dtype()                             # a bad $VTCLIP_CACHE_DTYPE: refused before any work
    check_grid(methods, datasets, shots, seeds, backbone)   # before any model loads: names, duplicates,
    for k, seed in itertools.product(shots, seeds):   # and draws, which would fail every run
        check_draw(k, seed)
    check_variants(methods, variants)
    out = check_out(out)
    with out_lock(out):                                # one process per folder: never a run trained twice
        return _run_sweep(methods, backbone, datasets, shots, seeds, out, preset, data_root, progress,
                          variants or {None: {}}, skip_bad_images)


def _run_sweep(methods, backbone, datasets, shots, seeds, out: Path, preset, data_root, progress, variants,
               skip_bad_images) -> dict:
    """``run_sweep`` once its input is checked and ``out`` is locked."""
    from .backbones import WeightsUnavailableError, load_clip

    check_summary_is_ours(out / "summary.csv")
    grid = list(itertools.product(datasets, shots, seeds, methods, variants))
    clips, tasks, done, failed, errors, unreadable = {}, {}, 0, 0, [], 0
    # resuming or extending: the records already there must come from the same weights, and those in
    # a summary row this grid adds to (any seed) from the same training recipe and method options
    recipe = {summary_row(run_record_name(m, backbone, d, k, s, v)):
              (TrainConfig.preset(preset, dataset_label(d), k, method=m).replace(**variants[v].get("train", {})),
               variants[v].get("options", {}), variants[v].get("spatial", "raw"))
              for d, k, s, m, v in grid}
    spatial = variants[next(iter(variants))].get("spatial", "raw")
    clip = check_resume(out, backbone, recipe, lambda: load_clip(backbone, spatial=spatial), datasets=datasets)
    if clip is not None:
        clips[spatial] = clip
    bar = tqdm(grid, desc="sweep", disable=not progress)
    for dataset, k, seed, method, variant in bar:
        spatial = variants[variant].get("spatial", "raw")
        options = variants[variant].get("options", {})
        label = method_label(method, variant)
        bar.set_postfix_str(f"{label} {dataset} {k}-shot seed {seed}")
        name = run_record_name(method, backbone, dataset, k, seed, variant)
        if (out / name).exists():            # done, here or by an earlier sweep: a failure of it is stale
            if out / name in readable_records([out / name]):
                _clear_failure(out, name)
            else:                            # named in a warning; left as it is, and not counted as done
                unreadable += 1
            continue
        try:
            if spatial not in clips:
                clips[spatial] = load_clip(backbone, spatial=spatial)
            if (dataset, spatial) not in tasks:   # the grid is dataset-major: the datasets before are done,
                task, tasks = None, {t: v for t, v in tasks.items() if t[0] == dataset}   # let their test go
                tasks[dataset, spatial] = load_task(clips[spatial], dataset, data_root=data_root,
                                                    progress=progress, skip_bad_images=skip_bad_images)
            task = tasks[dataset, spatial]
            cfg = TrainConfig.preset(preset, task.spec.name, k, method=method, progress=False)
            cfg = cfg.replace(**variants[variant].get("train", {}))
            record, _, _ = run_method(task, method, k, seed, cfg, progress=progress,   # extraction bars
                                      select=variants[variant].get("select"), **options)
            if variant:
                record = {**record, "variant": variant}
            if keep_result(lambda: write_record(record, out), record, out / name, in_grid=True) is None:
                raise OSError(f"could not write {out / name}; its record is printed on stderr")   # not lost
            _clear_failure(out, name)                            # an earlier failure of this run, now done
            done += 1
        except WeightsUnavailableError:     # the backbone itself: every other run would fail the same way
            raise
        except Exception as err:  # recorded with its traceback; the sweep goes on
            failed += 1
            errors.append(f"{label} {dataset} {k}-shot seed {seed}: {type(err).__name__}: {err}")
            _write_failure(out, name, {
                "method": method, "variant": variant, "backbone": backbone, "dataset": dataset,
                "shots": k, "seed": seed, "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()})
    rows = summarize(out)
    return {"out": str(out), "runs": len(grid), "ran": done, "failed": failed, "summary_rows": len(rows),
            "errors": errors, "unreadable": unreadable}


def _write_failure(out: Path, name: str, failure: dict) -> None:
    """Write ``failed/<name>`` whole or not at all (replacing only this run's earlier failure); on a
    full or read-only disk, say so on stderr and go on: the sweep's account still lists the error."""
    tmp = temp_name(out / "failed" / name)
    try:
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(failure, indent=1))
        os.replace(tmp, out / "failed" / name)
    except OSError as err:
        print(f"vtclip: could not write {out / 'failed' / name} ({err}); the failure was: {failure['error']}",
              file=sys.stderr)
    finally:
        with contextlib.suppress(OSError):       # gone (replaced), or its folder cannot be reached
            tmp.unlink()


def _clear_failure(out: Path, name: str) -> None:
    """Remove ``failed/<name>`` (the run is done), and ``failed/`` once it is empty."""
    (out / "failed" / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):       # not empty, or not there: it stays as it is
        (out / "failed").rmdir()


def check_variants(methods, variants: dict | None) -> None:
    """Before any work: every variant's options, and each value it chooses among on val, are allowed
    for every method of the grid (``--option C=-5`` would otherwise train every run to chance)."""
    from .methods import check_options

    for method, spec in itertools.product(methods, (variants or {None: {}}).values()):
        check_options(method, spec.get("options", {}))
        for key, values in (spec.get("select") or {}).items():
            for value in values:
                check_options(method, {key: value})


def load_records(folder) -> list[dict]:
    """Every result record directly in ``folder``: the files named ``method__backbone__dataset__Kshot__seedS.json``
    (``experiments.record_name``); other JSON files there (e.g. ``vtclip pocket eval`` output, or the
    ``*.curves.json`` of ``vtclip curves``, which have no test accuracy) are not records."""
    paths = [p for p in sorted(Path(folder).glob("*__*__*__*shot__seed*.json")) if not p.name.endswith(".curves.json")]
    return list(readable_records(paths).values())     # an unreadable file: named in a warning, left out


def summarize(folder) -> list[dict]:
    """Mean and std over seeds per (method, backbone, dataset, shots) -> ``summary.csv``.

    Records of ablation variants get a ``variant`` column (grouped by it too).
    """
    groups = defaultdict(list)
    records = load_records(folder)
    with_variants = any(r.get("variant") for r in records)
    for r in records:
        groups[(r["method"], r.get("variant") or "", r["backbone"], r["dataset"], r["shots"])].append(r["top1"])
    rows = [{"method": m, **({"variant": var} if with_variants else {}), "backbone": b, "dataset": d,
             "shots": k, "top1_mean": round(float(np.mean(v)), 2), "top1_std": round(float(np.std(v)), 2),
             "n_seeds": len(v)}
            for (m, var, b, d, k), v in sorted(groups.items())]
    path = Path(folder) / "summary.csv"
    if rows or path.exists():          # no records left (all left out): a summary of them would be stale
        check_summary_is_ours(path)
        tmp = temp_name(path)          # atomic: two sweeps may share a folder
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else
                                    [c for c in SUMMARY_COLUMNS if c != "variant"])
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
    return rows


#: The columns of a ``summary.csv`` that ``summarize`` writes (``variant`` only with ablation variants).
SUMMARY_COLUMNS = ["method", "variant", "backbone", "dataset", "shots", "top1_mean", "top1_std", "n_seeds"]


def check_summary_is_ours(path: Path) -> None:
    """Refuse to replace a ``summary.csv`` that ``summarize`` did not write (it has other columns)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    if header not in (SUMMARY_COLUMNS, [c for c in SUMMARY_COLUMNS if c != "variant"]):
        raise ValueError(f"{path} is not a summary this sweep writes (columns {header}); not replacing it. "
                         "Move it away or use another --out folder.")


def run_grid(command: str, methods, args, shots, variants=None) -> int:
    """Run a sweep from parsed CLI ``args`` and print its one-line account (``vtclip sweep|ablate``)."""
    select = parse_options(getattr(args, "select", None), "--select")
    options = parse_options(getattr(args, "option", None))
    train = parse_options(getattr(args, "train", None), "--train")
    for key, values in select.items():
        given = next(p for p in args.select if p.split("=", 1)[0].replace("-", "_") == key)
        if values == []:
            raise ValueError(f"--select {given} lists no values: give the values to choose from on val, "
                             f"e.g. --select {key}=[0.1,1,10]")
        if not isinstance(values, list):
            raise ValueError(f"--select {given}: the values must be a JSON list, e.g. --select {key}=[0.1,1,10] "
                             "(strings in double quotes: 'key=[\"a\",\"b\"]')")
    fields = set(TrainConfig.__dataclass_fields__)
    owned = [k for k in train if k in ("seed", "progress")]
    if owned:
        raise ValueError(f"--train {owned[0]}: set by the grid itself (--seeds, --json), not per variant")
    unknown = [k for k in train if k not in fields]
    if unknown:
        raise ValueError(f"--train: unknown TrainConfig field(s) {unknown}; known: {', '.join(sorted(fields))}")
    both = sorted(set(select) & set(options))
    if both:
        raise ValueError(f"{both[0]} is given by --option and chosen by --select; give it one way")
    if getattr(args, "variant", None) and not (select or options or train):
        raise ValueError("--variant names what --option/--select/--train change, and none is given")
    if select or options or train:   # one variant, named after what it changes (or --variant)
        name = getattr(args, "variant", None) or variant_label(options, select, train)
        variants = {name: {"options": options, "select": select or None, "train": train}}

    datasets = dataset_names(args.datasets)
    result = run_sweep(methods, args.backbone, datasets, shots, args.seeds, args.out, args.preset,
                       args.data_root, progress=not args.json, variants=variants,
                       skip_bad_images=args.skip_bad_images)
    bad = result.get("unreadable", 0)
    with table_unless_json(args.json):
        print(f"{command}: {result['ran']} run(s) done, {result['failed']} failed, "
              f"{result['runs'] - result['ran'] - result['failed'] - bad} already there"
              + (f", {bad} left out as unreadable (named above: delete them to have those runs done again)"
                 if bad else "") + "; "
              + (f"summary in {args.out}/summary.csv" if result["summary_rows"] else f"no records in {args.out} yet"))
    if result["failed"]:
        print(f"{command}: why they failed, with tracebacks: {args.out}/failed/; the first: {result['errors'][0]}",
              file=sys.stderr)
    if args.json:
        print_json(result)
    elif result["summary_rows"]:
        print(grid_table(args.out, args.backbone, methods, variants or {None: {}}, datasets, shots, args.seeds))
    return 1 if result["failed"] else 0


def grid_table(out, backbone: str, methods, variants, datasets, shots, seeds) -> str:
    """The grid's cells of ``out/summary.csv`` as a text table: a line per dataset and method (variant),
    a column per shot count, each cell the mean ± std of top-1 over the seeds recorded in ``out``
    (their number in brackets where it is not ``len(seeds)``); "-" for a cell with no record yet."""
    with open(Path(out) / "summary.csv", newline="") as f:
        rows = {summary_row(record_name({**r, "seed": 0})): r for r in csv.DictReader(f)}
    lines = [(dataset_label(d), method_label(m, v),
              [rows.get(summary_row(run_record_name(m, backbone, d, k, 0, v))) for k in shots])
             for d in datasets for m in methods for v in variants]

    def cell(r) -> str:
        if r is None:
            return "-"
        n = "" if int(r["n_seeds"]) == len(seeds) else f" ({r['n_seeds']})"
        std = f" ± {float(r['top1_std']):.1f}" if int(r["n_seeds"]) > 1 else ""
        return f"{float(r['top1_mean']):.1f}{std}{n}"

    wd, wm = (max(len(x[i]) for x in lines + [("dataset", "method")]) for i in (0, 1))
    other = any(r is not None and int(r["n_seeds"]) != len(seeds) for *_, cells in lines for r in cells)
    table = ["Top-1 (%) on the test split, " + (f"mean ± std over seeds {' '.join(map(str, seeds))}"
                                                if len(seeds) > 1 else f"seed {seeds[0]}")
             + (f" (in brackets: a cell's number of seeds in {out} where it is not {len(seeds)})" if other else "")
             + ":",
             f"{'dataset':<{wd}}  {'method':<{wm}}"]
    texts = [[cell(r) for r in cells] for *_, cells in lines]
    wc = 2 + max(len(t) for row in texts + [["16 shots"]] for t in row)
    table[-1] += "".join(f"{f'{k} shot' + 's' * (k > 1):>{wc}}" for k in shots)
    table += [f"{d:<{wd}}  {m:<{wm}}" + "".join(f"{t:>{wc}}" for t in row) for (d, m, _), row in zip(lines, texts)]
    return "\n".join(table)


def variant_label(options=None, select=None, train=None) -> str:
    """A variant's name from what it changes: ``dropout0.5``, ``val-layers``, ``epoch_on_val``
    (a true switch by its name), joined by ``-``; ``default`` when nothing changes."""
    parts = ([f"{k}{v}" for k, v in (options or {}).items()] + ["val-" + k for k in select or {}]
             + [k if v is True else f"{k}{v}" for k, v in (train or {}).items()])
    return "-".join(parts) or "default"


def add_grid_arguments(p, out_example: str) -> None:
    """The arguments ``vtclip sweep``, ``ablate`` and ``curves`` share."""
    p.add_argument("--backbone", default="pocket")
    p.add_argument("--datasets", nargs="+", default=["pocket"], help="names; 'pocket' = the Pocket suite")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--preset", default="paper", choices=["paper", "fast", "smoke"])
    p.add_argument("--data-root", default=None)
    add_skip_bad_images(p)
    p.add_argument("--out", required=True, help=f"results folder (e.g. {out_example})")
    p.add_argument("--json", action="store_true")


def add_commands(sub) -> None:
    p = sub.add_parser("sweep", help="methods x datasets x shots x seeds, resumable, with summary.csv")
    p.add_argument("--methods", nargs="+", default=["zeroshot", "vtclip"])
    p.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    p.add_argument("--select", action="append", metavar="KEY=[V1,V2,...]",
                   help="choose this option on the val split from these values (one run per value); "
                        "records get the variant 'val-KEY'")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a method option for every run (e.g. dropout=0.5); records get a variant name")
    p.add_argument("--train", action="append", metavar="FIELD=VALUE",
                   help="change a TrainConfig field of the preset (e.g. epoch_on_val=true); records get "
                        "a variant name")
    p.add_argument("--variant", default=None, help="name for the variant --option/--select/--train make")
    add_grid_arguments(p, "results/pocket")
    p.set_defaults(func=lambda args: run_grid("sweep", args.methods, args, args.shots))
