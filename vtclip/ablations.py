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
    """Rows ``{group, value, variant, datasets: {name: (mean, std, n)}, average}`` for one group.

    Mean and std over seeds per dataset; "average" is the mean over datasets of the seed means (only
    when every dataset has records). Values with no records are left out.
    """
    grids = {(r["backbone"], r["shots"]) for r in records if r.get("variant")}
    if len(grids) > 1:
        raise ValueError(f"an ablation table reads one grid, but the records mix (backbone, shots) "
                         f"{sorted(grids)}: pass the records of one")
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
        complete = len(cells) == len(datasets)
        rows.append({"group": group, "value": value, "variant": name,
                     "datasets": {d: (float(np.mean(v)), float(np.std(v)), len(v)) for d, v in cells.items()},
                     "average": float(np.mean([np.mean(v) for v in cells.values()])) if complete else None})
    return rows


LABELS = {"heads": "heads", "layers": "layers", "spatial": "spatial map", "self_attn": "self-attention among texts",
          "residual": "residual onto the texts"}


def markdown(records, groups=None) -> str:
    """A GitHub-flavoured table: one row per (group, value), mean ± std over seeds per dataset and the
    average over datasets; the default head's rows in bold."""
    rows = [row for g in (groups or GROUPS) for row in table(records, g)]
    if not rows:
        raise ValueError("no ablation records (run `vtclip ablate --out results/pocket-ablations`)")
    datasets = sorted({d for r in rows for d in r["datasets"]})
    lines = ["| ablation | value | " + " | ".join(d.removeprefix("pocket-") for d in datasets) + " | average |",
             "|---|---|" + "---|" * (len(datasets) + 1)]
    for r in rows:
        bold = "**" if r["variant"] == "default" else ""
        cells = [f"{r['datasets'][d][0]:.1f} ± {r['datasets'][d][1]:.1f}" if d in r["datasets"] else "–"
                 for d in datasets]
        avg = f"{bold}{r['average']:.1f}{bold}" if r["average"] is not None else "–"
        lines.append(f"| {LABELS[r['group']]} | {bold}{value_label(r['value'])}{bold} | " + " | ".join(cells)
                     + f" | {avg} |")
    return "\n".join(lines)


def value_label(value) -> str:
    """How a group's value reads in tables and figures: booleans as on/off."""
    return {True: "on", False: "off"}[value] if isinstance(value, bool) else str(value)


def add_commands(sub) -> None:
    from .sweep import add_grid_arguments, run_grid

    p = sub.add_parser("ablate", help="VT-CLIP ablations (heads, layers, spatial, self-attention, residual)")
    p.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    p.add_argument("--shots", type=int, default=16)
    add_grid_arguments(p, "results/pocket-ablations")
    p.set_defaults(func=lambda args: run_grid("ablate", ["vtclip"], args, [args.shots], variants(args.groups)))
