"""Write the book's appendix "Getting the datasets" from the dataset registry.

``python -m vtclip.datasets.appendix`` rewrites ``book/appendix_datasets.md``; ``--check`` only
reports whether the committed page is up to date (exit code 1 when it is not).

Taught in: the appendix "Getting the datasets" (this module writes it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import settings
from .base import DATASETS
from .get import BY_HAND, TORCHVISION
from .real import LAYOUTS, Layout
from .real_readers import IMAGENET_VAL_PER_CLASS

OUT = settings.REPO_ROOT / "book" / "appendix_datasets.md"

#: What the image folder holds, for the layout trees.
CONTENTS = {
    "imagenet": ["train/<wnid>/*.JPEG   (1000 folders, e.g. n01440764)",
                 "val/<wnid>/*.JPEG     (ILSVRC-2012 val sorted into the same 1000 folders)"],
    "caltech101": ["<class>/*.jpg   (102 folders; BACKGROUND_Google and Faces_easy are left out)"],
    "oxford_pets": ["<Breed>_<n>.jpg"],
    "stanford_cars": ["cars_train/*.jpg", "cars_test/*.jpg"],
    "oxford_flowers": ["image_00001.jpg ... image_08189.jpg"],
    "food101": ["<class>/*.jpg   (101 folders)"],
    "fgvc_aircraft": ["<id>.jpg"],
    "sun397": ["<letter>/<class>[/<sub>]/*.jpg   (e.g. a/abbey/, a/apartment_building/outdoor/)"],
    "dtd": ["<class>/*.jpg   (47 folders)"],
    "eurosat": ["<class>/*.jpg   (10 folders, e.g. AnnualCrop/)"],
    "ucf101": ["<Action_Name>/<video>.jpg   (one middle frame per video, e.g. Apply_Eye_Makeup/)"],
}

#: What `vtclip data get` leaves to the reader, where torchvision's download is not the whole dataset.
FETCH_NOTE = {
    "sun397": "torchvision fetches the images only; without CoOp's split file, Partitions.zip is needed too",
}

INTRO = """# Getting the datasets

*Where the 11 datasets of CoOp's few-shot protocol go, where to get them, and how vtclip splits them.*

% Generated from the dataset registry by `python -m vtclip.datasets.appendix`: edit the registry
% (vtclip/datasets/real.py) or the prose (vtclip/datasets/appendix.py), not this page.

The book's chapters run on the built-in Pocket datasets and need none of this; the real datasets are
for runs with pretrained CLIP on a GPU.

## Where the files go

Every dataset lives in its own folder under the **data root**: `$VTCLIP_HOME/data` (by default
`~/.cache/vtclip/data`), or the folder given by `--data-root DIR` on the command line, or
`root=` in Python (`vt.datasets.get_dataset("dtd").split("train", root="/data")`). Inside, the
layout is that of CoOp's `DATASETS.md`; where torchvision's download layout differs, vtclip
reads that one too (below, `$DATA` stands for the data root). Four commands fetch the files and
tell you where things stand:

```bash
vtclip data get dtd            # download with torchvision, fetch CoOp's split file, then check
vtclip data list               # every dataset: classes, sizes, where it looks, present or not
vtclip data check dtd          # what is missing for one dataset, the exact paths, how to get it
vtclip data check dtd --images # also decode every image and list the unreadable ones
```

`vtclip data get NAME` fetches the datasets that torchvision can download:
GETLIST.
It uses torchvision's own downloader, into a layout vtclip reads, then fetches CoOp's split file
from Google Drive into the dataset's folder; when Google Drive refuses, it says so, names the file
and where it goes, and vtclip makes the split by CoOp's rule until it is there. It ends with the
report of `vtclip data check`.
For HANDLIST it says where to get the files and where to put them.

`vtclip data check` exits with a non-zero code while something is missing. Loading a dataset that
is not there raises a `FileNotFoundError` with the same paths and instructions.

## Splits

- **CoOp's split file.** When `split_zhou_<Name>.json` sits in the dataset's folder (or in its
  image folder), vtclip uses it exactly: `{"train"|"val"|"test": [[relative path, label, class name], ...]}`,
  paths relative to the image folder. This reproduces the splits of CoOp, CoCoOp, Tip-Adapter and
  VT-CLIP image for image. The files are linked from CoOp's `DATASETS.md` (Google Drive).
- **Without it**, vtclip applies CoOp's rule to the dataset's own annotations: official splits
  where CoOp keeps them (FGVC-Aircraft), the official test set plus an 80/20 per-class split of the
  official training set (Pets, Cars, SUN397, UCF101), or a per-class 50/20/30 split (Caltech101,
  DTD, EuroSAT, Food-101, Flowers102). The per-class counts are CoOp's (`round(n * 0.5)`,
  `round(n * 0.2)`); which images go where is decided by a seeded hash of each file's relative path
  (BLAKE2b of `"1:<path>"`, seed 1), so the split is the same on every machine. It is *not*
  CoOp's own random draw: use the split files to compare numbers with published ones.
- **ImageNet** has no split file in CoOp: train = the training set, test = the ILSVRC-2012
  validation set. CoOp also uses that test set as val; vtclip instead holds out
  VALPER training images per class as val, so the test set stays unseen during training.

Every loaded split carries `split_source` (`"coop-split-file"`, `"official"`,
`"generated(seed=1)"` or `"official-test+generated(seed=1)"`), which result records keep.

## Few-shot sampling

`vt.datasets.few_shot(labels, k, seed)` keeps `k` training images per class; the protocol uses
seeds 1, 2 and 3. The generator is SplitMix64: image `i` gets the key
`SplitMix64(i + SplitMix64(seed))` and each class keeps its `k` smallest keys. This is pure 64-bit
integer arithmetic, so a seed gives the same images on every machine and NumPy version, and 16
shots always contain the 8 of the same seed. The val set is sub-sampled to `min(k, 4)` images per
class (`few_shot_val`), as in CoOp. Asking for more shots than a class has raises an error that
lists the classes and their counts.

The split files above are the published ones; the few-shot draws are not. CoOp draws its shots
with Python's `random` seeded per run, so its 16 images of a class for seed 1 are not ours: the
protocol (how many, how many seeds, which split they come from) is the same, the particular images
differ, and so can the numbers by a seed's spread.
"""

OUTRO = """## Your own images

Any folder of images sorted into one sub-folder per class is a dataset: pass its path wherever a
dataset name goes (`vtclip train --dataset path/to/folder ...`, `get_dataset("path/to/folder")`).

```text
my_images/
├── <class>/*.jpg        one folder per class (or train/<class>/ and test/<class>/, optional val/<class>/)
├── classnames.txt       optional: one class name per line, in sorted folder order
├── templates.txt        optional: one prompt template per line, each with one {}
└── split.json           optional: a split in CoOp's format (paths relative to my_images/)
```

A `split.json` is checked before use: labels are JSON integers in the sorted order of the class
folders, an image inside a class folder carries that folder's label, and no image is listed twice
or in two splits (a test image that was also trained on would make test accuracy a training score).

Without `split.json` the split is generated: per class 50/20/30 for class folders; for
`train/` + `test/` folders, 20% of each class's training images become val unless `val/` exists.
The split uses the same seeded path hash as above, so it is deterministic. Every class needs
training images (two when val is taken from them) and, where `val/` exists, val images: a class
without them stops loading with its folder's name. Files the layout does not read (directly in
`my_images/`, in a sub-folder of a class folder, or with another extension) are never used;
`vtclip data check my_images` lists them, and loading the folder names them in one warning.

## Unreadable images

A corrupt or unreadable file raises `BadImageError`, which names the file. Nothing is skipped
silently: `vtclip data check NAME --images` lists every unreadable image. `vtclip train`,
`zeroshot`, `sweep`, `ablate` and `curves` with `--skip-bad-images` leave them out with a warning
and list them in each record's `config.dropped_images` (without the flag, a sweep records the run
that meets one under `failed/` and goes on). In Python, `spec.split(split, root,
skip_bad_images=True)` does the same (the returned dataset's `dropped_images`), and
`check_images(dataset)` / `drop_bad_images(dataset)` do it by hand, so the dropped paths can be
recorded with the results.
"""


def _table() -> list[str]:
    rows = ["| name | dataset | classes | train | val | test | split without a split file |",
            "|---|---|---:|---:|---:|---:|---|"]
    for lay in LAYOUTS:
        n = DATASETS[lay.name].num_classes
        tr, va, te = (f"{x:,}" for x in lay.sizes)
        rows.append(f"| `{lay.name}` | {lay.title} | {n} | {tr} | {va} | {te} | {lay.rule} |")     # folders: each dataset's tree below
    return ["## The datasets", "", "Sizes are those of CoOp's split files (ImageNet: vtclip's split).", "",
            *rows, ""]


def _tree(lay: Layout) -> list[str]:
    """The expected folder layout as a text tree."""
    image_dir = f"{lay.image_dirs[0]}/" if lay.image_dirs[0] else ""
    entries = [f"{image_dir}{item}" for item in CONTENTS[lay.name]]
    entries += [f"{a}   (only without a split file)" for a in lay.annotations]
    if lay.split_url:
        entries.append(f"{lay.split_file}   (CoOp's split; recommended)")
    return [f"$DATA/{lay.folders[0]}/"] + [("└── " if i == len(entries) - 1 else "├── ") + e
                                           for i, e in enumerate(entries)]


def _shared_names(classnames) -> list[str]:
    """A line on class names that two labels share (CLIP's ImageNet list has two such pairs)."""
    labels = {}
    for i, name in enumerate(classnames):
        labels.setdefault(name, []).append(i)
    shared = [f"`{n}` (labels {', '.join(map(str, ls))})" for n, ls in labels.items() if len(ls) > 1]
    if not shared:
        return []
    return [f"- Shared names: {', '.join(shared)}. Such labels get the same prompts, so zero-shot CLIP "
            "and VT-CLIP (its head has no per-class weights) give them the same logit on every image, "
            "and the lower label is the prediction. Methods with per-class weights (the linear probe, "
            "Tip-Adapter's cache) can tell them apart. The names are kept as published, so that "
            "zero-shot numbers stay comparable."]


def _section(lay: Layout) -> list[str]:
    spec = DATASETS[lay.name]
    out = [f"### {lay.title} (`{lay.name}`)", "",
           f"- Paper: {lay.paper}. Terms: {lay.terms}.",
           f"- Classes: {spec.num_classes}, from {spec.extra['classnames_source']}.",
           *_shared_names(spec.classnames),
           "- Prompt templates: " + ", ".join(f"`{t}`" for t in spec.templates) + ".",
           "- Download: " + "; ".join(f"<{u}>" if " " not in u else u for u in lay.urls) + "."]
    if lay.split_url:
        out.append(f"- CoOp's split file `{lay.split_file}`: <{lay.split_url}>.")
    alt = [f"`$DATA/{f}/` instead of `{lay.folders[0]}/`" for f in lay.folders[1:]]
    alt += [f"`{d}/` instead of `{lay.image_dirs[0]}/`" if d else f"the image folders directly in "
            f"`{lay.folders[0]}/` (no `{lay.image_dirs[0]}/`)" for d in lay.image_dirs[1:]]
    if alt:
        out.append("- Also read: " + "; ".join(alt) + ".")
    out += _fetch(lay)
    return out + ["", "```text", *_tree(lay), "```", ""]


def _fetch(lay: Layout) -> list[str]:
    """How to fetch it: `vtclip data get NAME`, or why not and what torchvision can do instead."""
    if lay.name in TORCHVISION:
        note = f" ({FETCH_NOTE[lay.name]})" if lay.name in FETCH_NOTE else ""
        return [f"- Fetch: `vtclip data get {lay.name}`{note}."]
    out = [f"- Fetch by hand: `vtclip data get` cannot ({BY_HAND[lay.name]})."]
    if lay.name == "imagenet":
        out.append(f"- With torchvision: `python -c \"import torchvision; torchvision.datasets.{lay.torchvision}"
                   "('$DATA/imagenet')\"` (unpacks ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and "
                   "ILSVRC2012_devkit_t12.tar.gz placed there; run it with `split='val'` too).")
    return out


def _names(names: list[str]) -> str:
    """'a, b and c'."""
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def render() -> str:
    """The whole appendix as MyST markdown."""
    names = [lay.name for lay in LAYOUTS]
    intro = (INTRO.replace("VALPER", str(IMAGENET_VAL_PER_CLASS))
             .replace("GETLIST", _names([f"`{n}`" for n in names if n in TORCHVISION]))
             .replace("HANDLIST", _names([f"`{n}`" for n in names if n in BY_HAND])))
    parts = [intro, *_table(), "## Dataset by dataset", ""]
    for lay in LAYOUTS:
        parts += _section(lay)
    return "\n".join(parts) + "\n" + OUTRO


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    p.add_argument("--check", action="store_true", help="only check that --out is up to date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'out of date; run python -m vtclip.datasets.appendix'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
