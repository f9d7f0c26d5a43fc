"""What a Pocket CLIP's image features carry, and how much of it its text side can name.

Two measurements made before any few-shot method is run on a world (chapter 0):

* ``feature_breadth``: per scene attribute (shape, symbol, colour, size, texture, position, style), a
  linear probe on frozen pooled features (64 rendered scenes per class, C chosen on 16 more, scored on
  32 others), beside zero-shot accuracy with the captions' everyday words (and, for textures and
  symbols, with the rare formal names the suite uses).
* ``headroom``: per suite dataset, zero-shot and a linear probe on its *val* split (the probe fits
  48 train images per class, picks C on the other 16): the room a few-shot method has. The test
  split is never read here.
Taught in: chapter 0 (the Pocket world).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import render, world

#: attribute -> (class values, the words prompts use for them, prompt template)
ATTRIBUTES = {
    "shape": (render.SHAPES, render.SHAPES, "a {}."),
    "symbol": (render.SYMBOLS, tuple(world.SYMBOL_WORDS.values()), "a {}."),
    "colour": (tuple(render.COLOURS), tuple(render.COLOURS), "a {} shape."),
    "size": (tuple(render.SIZES), tuple(render.SIZES), "a {} shape."),
    "texture": (render.BACKGROUNDS, tuple(world.TEXTURE_WORDS.values()), "a shape on a {} background."),
    "position": (world.POSITIONS, tuple(world.POSITION_WORDS.values()), "a shape {}."),
    "style": (render.STYLES, ("solid", "outline"), "a {} shape."),
}
#: The rare names the suite's datasets use, for the attributes that have them.
FORMAL = {"symbol": tuple(world.SYMBOL_NAMES.values()), "texture": tuple(world.TEXTURE_NAMES.values())}


def _scenes(attribute: str, per_class: int, seed: int) -> tuple[list, np.ndarray]:
    """``per_class`` v2 pretraining-mix scenes of each value of ``attribute``, label-major."""
    values = ATTRIBUTES[attribute][0]
    rng = np.random.default_rng([seed, 0xB4EAD7])
    key = {"symbol": "shape", "texture": "background"}.get(attribute, attribute)
    scenes, labels = [], []
    for k, v in enumerate(values):
        got = 0
        while got < per_class:
            if attribute == "position":               # not a sampling constraint: keep what lands there
                s = world.sample_scene(rng)
                if world.position(s) != v:
                    continue
            else:
                s = world.sample_scene(rng, **{key: v})
            scenes.append(s)
            labels.append(k)
            got += 1
    return scenes, np.array(labels)


@torch.no_grad()
def encode_scenes(clip, scenes, batch_size: int = 250, draw=render.render) -> torch.Tensor:
    """Pooled, L2-normalised image features of scenes drawn by ``draw``: (N, D) on the CPU."""
    out = []
    for i in range(0, len(scenes), batch_size):
        pixels = torch.stack([clip.preprocess(draw(s)) for s in scenes[i:i + batch_size]])
        out.append(clip.encode_image(pixels).pooled.float().cpu())
    return F.normalize(torch.cat(out), dim=-1)


def _probe(x, y, xv, yv, xt, yt, k: int) -> float:
    from ..baselines.linear_probe import accuracy, search_c

    _, (w, b), _ = search_c(x, y, xv, yv, k)
    return 100 * accuracy(w, b, xt, yt)


@torch.no_grad()
def _zeroshot(clip, x: torch.Tensor, y: torch.Tensor, words, template: str) -> float:
    text = clip.encode_text([template.format(w) for w in words]).float().cpu()   # (K, D)
    return 100 * ((x @ text.T).argmax(1) == y).float().mean().item()


def feature_breadth(clip, attributes=None, per_class: int = 64, seed: int = 0) -> dict:
    """Per attribute: linear-probe and zero-shot top-1 (%) on rendered v2 scenes, and chance.

    Returns ``{attribute: {"probe": %, "zeroshot": %, "zeroshot_formal": % (symbol, texture),
    "chance": %, "classes": K}}``; the probe trains on ``per_class`` scenes per class, picks C on
    ``per_class // 4`` and is scored, like zero-shot, on ``per_class // 2`` further scenes.
    """
    rows = {}
    for attr in attributes or ATTRIBUTES:
        values, words, template = ATTRIBUTES[attr]
        k, sizes = len(values), (per_class, per_class // 4, per_class // 2)
        parts = []
        for i, n in enumerate(sizes):
            scenes, labels = _scenes(attr, n, seed * 3 + i)
            parts += [encode_scenes(clip, scenes), torch.from_numpy(labels)]
        x, y, xv, yv, xt, yt = parts
        rows[attr] = {"probe": round(_probe(x, y, xv, yv, xt, yt, k), 1),
                      "zeroshot": round(_zeroshot(clip, xt, yt, words, template), 1),
                      "chance": round(100 / k, 1), "classes": k}
        if attr in FORMAL:
            rows[attr]["zeroshot_formal"] = round(_zeroshot(clip, xt, yt, FORMAL[attr], template), 1)
    return rows


def headroom(clip, names=None) -> dict:
    """Per suite dataset: zero-shot and linear-probe top-1 (%) on the **val** split.

    The probe fits the first 48 train images of each class and picks C on the other 16 (train
    labels cycle through the classes, so a prefix is class-balanced). Returns
    ``{name: {"zeroshot": %, "probe": %, "headroom": probe - zeroshot, "n_val": n}}``.
    """
    from ..prompts import text_classifier
    from .suite import TASKS_BY_NAME

    rows = {}
    for name in names or list(TASKS_BY_NAME):
        task = TASKS_BY_NAME[name]
        k = len(task.classnames)
        splits = {}
        for split in ("train", "val"):
            scenes = [task.scene(split, i) for i in range(task.size(split))]
            splits[split] = (encode_scenes(clip, scenes, draw=task.image),
                             torch.arange(len(scenes)) % k)          # label of image i is i mod K
        (xtr, ytr), (xv, yv) = splits["train"], splits["val"]
        cut = 48 * k
        probe = _probe(xtr[:cut], ytr[:cut], xtr[cut:], ytr[cut:], xv, yv, k)
        text = text_classifier(clip, task.classnames, task.templates).float().cpu()   # (K, D)
        zs = 100 * ((xv @ text.T).argmax(1) == yv).float().mean().item()
        rows[name] = {"zeroshot": round(zs, 1), "probe": round(probe, 1),
                      "headroom": round(probe - zs, 1), "n_val": len(yv)}
    return rows
