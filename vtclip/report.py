"""Tables of committed result records, for the README and the results chapter.

The README's results section is generated, never typed: ``python -m vtclip.report`` rewrites the
block between ``<!-- results:start -->`` and ``<!-- results:end -->`` from ``results/pocket/``
(``--check``: only says whether it is up to date, exit 1 if not), and ``tests/test_report.py``
fails when the README and the records disagree.
Taught in: chapter 04 (few-shot training) and chapter 06 (results).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import settings
from .experiments import method_label, temp_name
from .sweep import load_records

START, END = "<!-- results:start -->", "<!-- results:end -->"
POCKET_RESULTS = settings.REPO_ROOT / "results" / "pocket"
README = settings.REPO_ROOT / "README.md"
METHOD_ORDER = ("zeroshot", "linear-probe", "clip-adapter", "coop", "tip-adapter", "tip-adapter-f", "vtclip")
METHOD_NAMES = {"zeroshot": "zero-shot CLIP", "linear-probe": "linear probe", "clip-adapter": "CLIP-Adapter",
                "coop": "CoOp", "tip-adapter": "Tip-Adapter", "tip-adapter-f": "Tip-Adapter-F",
                "vtclip": "**VT-CLIP**"}


def cells(records) -> dict:
    """{(method, dataset, shots): [top1 per seed]} (zero-shot under shots 0).

    A record of a variant (``vtclip sweep --option ...``, ablations) counts under
    ``method+variant``, as in its file name, never under the plain method: a folder holding both
    does not blend them."""
    out = defaultdict(list)
    seen = set()
    for r in records:
        shots = 0 if r["method"] == "zeroshot" else r["shots"]
        key = (method_label(r["method"], r.get("variant")), r["dataset"], shots)
        if r["method"] == "zeroshot":          # one zero-shot number per dataset, however often recorded
            if (key, r["top1"]) in seen:
                continue
            seen.add((key, r["top1"]))
        out[key].append(r["top1"])
    return dict(out)


def _fmt(values) -> str:
    return f"{np.mean(values):.1f}" if len(values) == 1 else f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def pocket_tables(folder: str | Path = POCKET_RESULTS, shots: int = 16) -> str:
    """Markdown: all methods at ``shots`` shots, and VT-CLIP against shots, on the Pocket suite."""
    records = [r for r in load_records(folder) if r["backbone"] == "pocket"]
    if not records:
        raise FileNotFoundError(f"no result records in {folder}; run `vtclip sweep --out {folder}` first")
    c = cells(records)
    datasets = sorted({d for _, d, _ in c}, key=lambda d: (d != "pocket-objects", d))
    methods = [m for m in METHOD_ORDER if any(k[0] == m for k in c)]
    seeds = sorted({r["seed"] for r in records if r["method"] != "zeroshot"})
    head = "| method | " + " | ".join(d.removeprefix("pocket-") for d in datasets) + " | mean |"
    lines = [f"Top-1 (%) on the Pocket suite at {shots} shots, mean ± std over seeds "
             f"{', '.join(map(str, seeds))} (Pocket world: Pocket CLIP on rendered data, **not** the real "
             "benchmarks).", "", head, "|---" * (len(datasets) + 2) + "|"]
    for m in methods:
        k = 0 if m == "zeroshot" else shots
        row = [c.get((m, d, k)) for d in datasets]
        if not all(row):
            continue
        lines.append(f"| {METHOD_NAMES.get(m, m)} | " + " | ".join(_fmt(v) for v in row)
                     + f" | {np.mean([np.mean(v) for v in row]):.1f} |")
    all_shots = sorted({k for m, _, k in c if m == "vtclip"})
    if all_shots:
        lines += ["", "VT-CLIP against the number of shots (same records):", "",
                  "| dataset | zero-shot | " + " | ".join(f"{k} shot{'s' * (k > 1)}" for k in all_shots) + " |",
                  "|---" * (len(all_shots) + 2) + "|"]
        for d in datasets:
            lines.append(f"| {d} | {_fmt(c.get(('zeroshot', d, 0), [float('nan')]))} | "
                         + " | ".join(_fmt(c[("vtclip", d, k)]) if ("vtclip", d, k) in c else "–"
                                      for k in all_shots) + " |")
    return "\n".join(lines) + "\n"


def readme_block(folder: str | Path = POCKET_RESULTS) -> str:
    """The generated README block, markers included."""
    return f"{START}\n{pocket_tables(folder)}{END}"


def updated_readme(readme: str | Path = README, folder: str | Path = POCKET_RESULTS) -> tuple[str, str]:
    """The README's text now and with its results block regenerated from the records: (old, new)."""
    path = Path(readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{path} has no {START} ... {END} block to fill")
    return text, text[:text.index(START)] + readme_block(folder) + text[text.index(END) + len(END):]


def update_readme(readme: str | Path = README, folder: str | Path = POCKET_RESULTS) -> bool:
    """Rewrite the README's results block from the records; returns whether it changed."""
    text, new = updated_readme(readme, folder)
    if new != text:                  # a temporary file, then a rename: never a half-written README
        tmp = temp_name(readme)
        tmp.write_text(new)
        os.replace(tmp, readme)
    return new != text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vtclip.report",
                                description="Regenerate the README's results block (between "
                                            f"{START} and {END}) from the committed result records.")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the README's block differs from the records")
    p.add_argument("--readme", default=str(README), help="the README to fill (default: the repository's)")
    p.add_argument("--records", default=str(POCKET_RESULTS), help="folder of result records (default: %(default)s)")
    args = p.parse_args(argv)
    try:
        if args.check:
            text, new = updated_readme(args.readme, args.records)
            if new != text:
                print(f"python -m vtclip.report: {args.readme}'s results block is out of date with "
                      f"{args.records}: run python -m vtclip.report to regenerate it", file=sys.stderr)
                return 1
            print(f"README results block up to date with {args.records}", file=sys.stderr)
            return 0
        changed = update_readme(args.readme, args.records)
    except (ValueError, OSError) as err:           # as `vtclip`'s own commands: the message, exit 2
        print(f"python -m vtclip.report: error: {err}", file=sys.stderr)
        return 2
    print(f"README results block {'updated' if changed else 'already up to date'} from {args.records}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
