"""The Pocket benchmark suite: few-shot classification datasets with a gap to pretraining.

Pocket CLIP was pretrained on one coloured shape (8 shapes x 8 colours x 2 sizes) on one of six
texture families (plain, stripes, dots, checker, noise, gradient) with at most three muted
distractors, described by captions that name the shape and a random subset of colour, size and
background. Each dataset below asks a question that world answers only partly, so a few-shot
method has something to learn that zero-shot prompting does not give:

* ``pocket-shapes`` (control) -- the shape of the object, scenes drawn exactly as in pretraining.
  Zero-shot should be strong; few-shot methods should at least not hurt.
* ``pocket-backgrounds`` -- the same shapes on four texture families pretraining never showed
  (waves, grid, bricks, plaid), drawn in moderately saturated contrasting colours where
  pretraining backgrounds were muted. The object is unchanged but the global image statistics
  shift; a method that adapts the class texts to the image can learn to look past the textures.
* ``pocket-clutter`` -- a small object (12-16 px, about two patches) among 12-20 distractor blobs
  and strokes in the *same saturated colours* objects use. The answer sits in a few local patches
  of the 8 x 8 map while the pooled embedding is dominated by clutter: the case VT-CLIP's spatial
  cross-attention (texts attending to patch features) is built for.
* ``pocket-compositions`` -- 16 colour x shape classes over neighbouring hues (red, orange, pink,
  purple) and look-alike shapes (circle / ring, square / diamond), drawn small (10-16 px) among
  3-8 muted distractors: fine-grained, and a class is right only if both attributes are, which
  pretraining captions (naming colour 60% of the time) tie together only loosely.

World v2 (``TASKS_V2``, checkpoint ``pocket-v2``; the book moves to it in issue 20): six datasets, each
reproducing one real dataset's failure mode, on Pocket CLIP v2 (``vtclip.pocket.world``):

=====================  =================================  ========================================
dataset                what it asks                       real dataset(s) whose failure mode it is
=====================  =================================  ========================================
``pocket-objects``     the object's shape, scenes as in   ImageNet, Caltech101 (control: zero-shot
                       pretraining (8 classes)            is strong, adaptation should not hurt)
``pocket-textures``    texture images (a tiny object at   DTD (texture terms rare in web captions)
                       most), by formal names (10)
``pocket-symbols``     symbols by names no caption uses   FGVCAircraft, EuroSAT (class names the
                       (8 classes)                        text tower barely knows)
``pocket-pairs``       colour x shape pairs over close    StanfordCars, Flowers102, OxfordPets
                       hues and look-alike shapes (16)    (fine-grained)
``pocket-crowds``      a small shape among many vivid     SUN397, UCF101 (the label is a small
                       distractors (8 classes)            part of a busy scene)
``pocket-sketches``    shapes drawn as outlines, a style  EuroSAT (an imaging domain rare in
                       rare in pretraining (8 classes)    pretraining)
=====================  =================================  ========================================

The design looked only at zero-shot accuracy and at a linear probe on the val splits
(``vtclip.pocket.probe.headroom``), never at a trained method's test accuracy.

Every image is rendered on the fly from a per-index seed, so splits need no files, are identical
on every machine and disjoint by construction (each split has its own seed stream). Labels cycle
through the classes (image i has class i mod K), so every prefix of a split is class-balanced.
Taught in: chapter 0 (the Pocket world) and chapter 06 (results).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..datasets.base import DatasetSpec, LabeledImages, register
from . import render, world

#: Bump when rendering or sampling changes, so feature caches keyed on ``ident`` are invalidated.
SUITE_VERSION = "v1"
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
PER_CLASS = {"train": 64, "val": 16}     # images per class; test sizes are set per dataset


@dataclass(frozen=True)
class PocketTask:
    """One Pocket dataset: its classes and how to draw a scene of class ``label``."""

    name: str                                   # registry key
    classnames: tuple[str, ...]                 # class names in label order
    templates: tuple[str, ...]                  # prompt ensemble, one "{}" each
    per_class: tuple[dict, ...]                 # sample_scene constraints that make each class
    test_size: int                              # test images (a multiple of the class count)
    description: str                            # one line for listings
    fixed: dict = field(default_factory=dict)   # sample_scene constraints shared by all classes
    version: str = "v1"                         # world: "v1" (render.sample_scene) or "v2" (world's mix)
    real: str = ""                              # the real dataset(s) whose failure mode it reproduces

    @property
    def sampler(self) -> Callable[..., render.Scene]:
        return world.sample_scene if self.version == "v2" else render.sample_scene

    def scene(self, split: str, i: int) -> render.Scene:
        """The scene of image ``i`` of ``split`` (label ``i % K``), from its own seed."""
        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {tuple(SPLIT_CODES)}, got {split!r}")
        rng = np.random.default_rng([zlib.crc32(self.name.encode()), SPLIT_CODES[split], i])
        return self.sampler(rng, **{**self.fixed, **self.per_class[i % len(self.classnames)]})

    def size(self, split: str) -> int:
        return self.test_size if split == "test" else PER_CLASS[split] * len(self.classnames)


class PocketImages(LabeledImages):
    """A split of a Pocket dataset; ``load_image(i)`` renders scene ``i``.

    Training views are flipped, never cropped: Pocket CLIP saw objects only at their rendered
    scale with centres on its 8-px patch lattice, and random resized crops move and rescale them
    off it, so that many cropped views no longer show their class.
    """

    augment_policy = "flip"

    def __init__(self, task: PocketTask, split: str, transform=None):
        n = task.size(split)
        super().__init__(np.arange(n) % len(task.classnames), task.classnames, transform)
        self.task, self.split = task, split

    def scene(self, i: int) -> render.Scene:
        return self.task.scene(self.split, int(i))

    def ident(self, i: int) -> str:
        return f"{self.task.name}/{self.task.version}/{self.split}/{int(i)}"

    def load_image(self, i: int) -> Image.Image:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.task.name} {self.split} has {len(self)} images, asked for {i}")
        return render.render(self.scene(i))


SHAPE_TEMPLATES = ("a photo of a {}.", "a {}.", "a drawing of a {}.", "a picture of a {}.",
                   "an image of a {}.")
_COMP_COLOURS, _COMP_SHAPES = ("red", "orange", "pink", "purple"), ("circle", "ring", "square", "diamond")
_COMPOSITIONS = tuple(f"{c} {s}" for c in _COMP_COLOURS for s in _COMP_SHAPES)

_BY_SHAPE = tuple({"shape": s} for s in render.SHAPES)
TASKS = (
    PocketTask("pocket-shapes", render.SHAPES, SHAPE_TEMPLATES, _BY_SHAPE, 1000,
               "control: the object's shape, scenes as in pretraining (8 classes)"),
    PocketTask("pocket-backgrounds", render.SHAPES, SHAPE_TEMPLATES, _BY_SHAPE, 1000,
               "shape on texture families unseen in pretraining (8 classes)",
               {"background": render.HELD_OUT_BACKGROUNDS}),
    PocketTask("pocket-clutter", render.SHAPES, SHAPE_TEMPLATES, _BY_SHAPE, 1000,
               "a small shape among vivid distractors (8 classes)",
               {"size": "small", "diameter": (12, 16), "clutter": tuple(range(12, 21)),
                "vivid_clutter": True}),
    PocketTask("pocket-compositions", _COMPOSITIONS, SHAPE_TEMPLATES,
               tuple({"colour": c, "shape": s} for c in _COMP_COLOURS for s in _COMP_SHAPES), 1024,
               "fine-grained colour x shape pairs, small objects (16 classes)",
               {"size": "small", "diameter": (10, 16), "clutter": tuple(range(3, 9))}),
)

# ---- world v2 (``world``): each dataset reproduces one real dataset's failure mode ---------------
#: ``pocket-symbols``' class names, in ``render.SYMBOLS`` order: words no pretraining caption contains.
#: The symbols' formal names (``world.SYMBOL_NAMES``), in 0.2% of their captions, were learned
#: anyway (zero-shot 98.4 % with them), so the dataset names the symbols as a real benchmark names
#: aircraft by model codes its text tower has hardly seen.
SYMBOL_CODES = ("ogham", "vexil", "sigil", "glyph", "runic", "totem", "emblem", "crest")
_SKETCH_TEMPLATES = ("a sketch of a {}.", "an outline of a {}.", "a line drawing of a {}.", "a {}.",
                     "a drawing of a {}.")
_TEXTURE_TEMPLATES = ("a {} pattern.", "a {} texture.", "a shape on a {} background.",
                      "a photo of a {} surface.", "something {}.")
_V2_COMMON = {"style": "solid", "clutter": (0, 0, 1, 2, 3), "vivid_clutter": False}
TASKS_V2 = (
    PocketTask("pocket-objects", render.SHAPES, SHAPE_TEMPLATES, _BY_SHAPE, 1000,
               "control: the object's shape, scenes as in pretraining (8 classes)",
               {"shape": render.SHAPES, **_V2_COMMON}, "v2", "ImageNet, Caltech101"),
    PocketTask("pocket-textures", tuple(world.TEXTURE_NAMES.values()), _TEXTURE_TEMPLATES,
               tuple({"background": b} for b in world.TEXTURE_NAMES), 1000,
               "texture images (a tiny object at most), named by rare formal words (10 classes)",
               {"shape": render.SHAPES, **_V2_COMMON, "size": "small", "diameter": (6, 8), "clutter": 0},
               "v2", "DTD"),
    PocketTask("pocket-symbols", SYMBOL_CODES, SHAPE_TEMPLATES,
               tuple({"shape": s} for s in render.SYMBOLS), 1000,
               "symbols named by words no caption uses (8 classes)",
               _V2_COMMON, "v2", "FGVCAircraft, EuroSAT"),
    PocketTask("pocket-pairs", _COMPOSITIONS, SHAPE_TEMPLATES,
               tuple({"colour": c, "shape": s} for c in _COMP_COLOURS for s in _COMP_SHAPES), 1024,
               "fine-grained colour x shape pairs, small objects (16 classes)",
               {**_V2_COMMON, "size": "small", "diameter": (10, 16), "clutter": tuple(range(3, 9))},
               "v2", "StanfordCars, Flowers102, OxfordPets"),
    PocketTask("pocket-crowds", render.SHAPES, SHAPE_TEMPLATES, _BY_SHAPE, 1000,
               "a small shape among many vivid distractors (8 classes)",
               {"style": "solid", "size": "small", "diameter": (12, 16), "clutter": tuple(range(12, 21)),
                "vivid_clutter": True}, "v2", "SUN397, UCF101 (the label is a small part of a busy scene)"),
    PocketTask("pocket-sketches", render.SHAPES, _SKETCH_TEMPLATES, _BY_SHAPE, 1000,
               "shapes drawn as outlines, a style rare in pretraining (8 classes)",
               {"shape": render.SHAPES, "style": "outline", "clutter": (0, 1, 2)},
               "v2", "EuroSAT (an imaging domain rare in pretraining)"),
)
TASKS_BY_NAME = {t.name: t for t in TASKS + TASKS_V2}


def _spec(task: PocketTask) -> DatasetSpec:
    return DatasetSpec(
        name=task.name, classnames=task.classnames, templates=task.templates,
        build=lambda split, root=None: PocketImages(task, split),
        kind="pocket" if task.version == "v1" else "pocket-v2",   # "pocket": the suite `pocket` names
        description=task.description, source="rendered by vtclip.pocket (no files)",
        extra={"sizes": {s: task.size(s) for s in SPLIT_CODES}, "version": task.version, "real": task.real})


for _task in TASKS + TASKS_V2:   # v2's kind is "pocket-v2" until the book moves to it (issue 20)
    register(_spec(_task))


@torch.no_grad()
def zeroshot_suite(clip, names=None, limit: int | None = None, batch_size: int = 250) -> dict:
    """Zero-shot top-1 of ``clip`` on each Pocket dataset's test split (its prompt ensemble).

    ``limit`` evaluates only the first ``limit`` test images (class-balanced prefixes). Returns
    ``{name: {"top1": %, "chance": %, "n_test": n}}``.
    """
    from ..prompts import text_classifier

    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be a positive number of test images, got {limit}")
    names = list(names or (t.name for t in TASKS))
    unknown = [n for n in names if n not in TASKS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown Pocket dataset(s) {unknown}; known: {list(TASKS_BY_NAME)}")
    rows = {}
    for name in names:
        task = TASKS_BY_NAME[name]
        test = PocketImages(task, "test", clip.preprocess)
        n = min(len(test), limit) if limit else len(test)
        text = text_classifier(clip, task.classnames, task.templates).to(clip.device)   # (K, D)
        correct = 0
        for start in range(0, n, batch_size):
            idx = range(start, min(n, start + batch_size))
            pixels = torch.stack([test[i][0] for i in idx])                           # (B, 3, S, S)
            pred = (clip.encode_image(pixels).pooled @ text.T).argmax(1).cpu()         # (B,)
            correct += int((pred.numpy() == test.labels[idx.start:idx.stop]).sum())
        rows[name] = {"top1": round(100 * correct / n, 2),
                      "chance": round(100 / len(task.classnames), 2), "n_test": n}
    return rows
