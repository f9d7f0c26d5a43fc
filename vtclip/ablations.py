"""Ablations of VT-CLIP's design: heads, layers, which spatial map, text self-attention, residual.

Every ablation changes one thing of the default head (8 heads, 1 layer, raw spatial map, self-attention
among the class texts, residual onto the texts) and is run as a sweep *variant*: same splits, seeds,
preset and records as ``vtclip sweep`` (resumable, never overwriting), each record tagged with
``"variant"``. ``vtclip ablate --out results/pocket-ablations`` runs the whole grid.
Taught in: chapter 07 (ablations and attention).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

#: the default head's settings; a variant is the default with one of them changed
DEFAULT = {"heads": 8, "layers": 1, "spatial": "raw", "self_attn": True, "residual": True}

#: group -> the values it tries (the default's value included)
GROUPS = {
    "heads": [1, 2, 4, 8, 16, 32],
    "layers": [1, 2, 3, 4],
    "spatial": ["raw", "projected"],
    "self_attn": [True, False],
    "residual": [True, False],
}


def variant_name(group: str, value) -> str:
    """``default`` for the default's own value, else e.g. ``heads1``, ``layers3``, ``projected``,
    ``no-self_attn``, ``no-residual``."""
    if value == DEFAULT[group]:
        return "default"
    if isinstance(value, bool):
        return f"{'' if value else 'no-'}{group}"
    return str(value) if group == "spatial" else f"{group}{value}"


def variants(groups=None) -> dict[str, dict]:
    """Sweep variants (name -> method options + spatial map) covering ``groups`` (default: all)."""
    groups = list(GROUPS) if groups is None else list(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown ablation group(s) {unknown}; known: {', '.join(GROUPS)}")
    out = {}
    for group in groups:
        for value in GROUPS[group]:
            setting = {**DEFAULT, group: value}
            out[variant_name(group, value)] = {
                "options": {k: v for k, v in setting.items() if k != "spatial"},
                "spatial": setting["spatial"]}
    return out


def table(records, group: str) -> list[dict]:
    """Rows ``{group, value, variant, <dataset>: (mean, std, n), "average": mean}`` for one group.

    Mean and std over seeds per dataset; "average" is the mean over datasets of the seed means (only
    when every dataset has records). Values with no records are left out.
    """
    by = defaultdict(list)
    for r in records:
        if r.get("variant"):
            by[r["variant"], r["dataset"]].append(r["top1"])
    datasets = sorted({d for _, d in by})
    rows = []
    for value in GROUPS[group]:
        name = variant_name(group, value)
        cells = {d: by[name, d] for d in datasets if by.get((name, d))}
        if not cells:
            continue
        row = {"group": group, "value": value, "variant": name}
        row.update({d: (float(np.mean(v)), float(np.std(v)), len(v)) for d, v in cells.items()})
        if len(cells) == len(datasets):
            row["average"] = float(np.mean([np.mean(v) for v in cells.values()]))
        rows.append(row)
    return rows


def cmd_ablate(args) -> int:
    from .cli import _print_json
    from .experiments import pocket_suite
    from .sweep import run_sweep

    datasets = pocket_suite() if args.datasets == ["pocket"] else args.datasets
    result = run_sweep(["vtclip"], args.backbone, datasets, [args.shots], args.seeds, args.out,
                       args.preset, args.data_root, progress=not args.json,
                       variants=variants(args.groups))
    print(f"ablate: {result['ran']} run(s) done, {result['failed']} failed, "
          f"{result['runs'] - result['ran'] - result['failed']} already there; summary in {args.out}/summary.csv")
    if args.json:
        _print_json(result)
    return 1 if result["failed"] else 0


def add_commands(sub) -> None:
    p = sub.add_parser("ablate", help="VT-CLIP ablations (heads, layers, spatial, self-attention, residual)")
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    p.add_argument("--backbone", default="pocket")
    p.add_argument("--datasets", nargs="+", default=["pocket"], help="names; 'pocket' = the Pocket suite")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--preset", default="paper", choices=["paper", "fast", "smoke"])
    p.add_argument("--data-root", default=None)
    p.add_argument("--out", required=True, help="results folder (e.g. results/pocket-ablations)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ablate)
