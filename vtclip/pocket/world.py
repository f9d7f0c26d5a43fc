"""Pocket world v2: what pretraining scenes show and what their captions say about them.

v1's captions named the shape always and colour, size and background sometimes, in one word each,
so Pocket CLIP v1 learned shape and colour and little else. Real CLIP is broad on the image side
and narrow on the text side: its images carry much more than the words a zero-shot prompt uses
have been tied to. v2 builds that anatomy on purpose:

* **Scenes show more**: 16 objects (the 8 v1 shapes and 8 *symbols*), all 10 texture families in
  muted or vivid colours, busy scenes with up to 12 distractors, and a few objects drawn as
  outlines ("sketches").
* **Captions describe more, in everyday words**: texture (half the captions), position (a quarter),
  clutter and drawing style, besides shape, colour and size. These frequent words are what train
  the image tower to tell textures, symbols, positions and styles apart.
* **The suite's class names are words the captions use rarely or loosely**, as web captions use
  DTD's texture terms or FGVCAircraft's model names: each texture's formal name (``TEXTURE_NAMES``,
  DTD-like adjectives) is used in 1% of the captions that name a texture, and 40% of those uses
  name the neighbouring family of its pair (``TEXTURE_PAIRS``); a symbol's formal name
  (``SYMBOL_NAMES``) in 0.2% of the captions of that symbol, its everyday word otherwise (at 2%, a
  first v2 run learned them all: zero-shot 99.6 % with the formal names).

Every rate is a named constant below, fixed before any few-shot method was run on the world.
Taught in: chapter 0 (the Pocket world).
"""
from __future__ import annotations

import numpy as np

from . import render

#: Everyday words for each texture family: what most captions that name a texture say.
TEXTURE_WORDS = {"plain": "plain", "stripes": "striped", "dots": "spotted", "checker": "checked",
                 "noise": "fuzzy", "gradient": "shaded", "waves": "wavy", "grid": "gridded",
                 "bricks": "brick", "plaid": "tartan"}
#: Formal names (DTD-like adjectives): ``pocket-textures``' class names, rare in captions.
TEXTURE_NAMES = {"plain": "matted", "stripes": "banded", "dots": "polka-dotted", "checker": "chequered",
                 "noise": "blotchy", "gradient": "faded", "waves": "zigzagged", "grid": "meshed",
                 "bricks": "stratified", "plaid": "woven"}
#: Families whose formal names captions mix up ("loosely"): each maps to its partner.
TEXTURE_PAIRS = {a: b for x, y in (("stripes", "waves"), ("dots", "noise"), ("checker", "plaid"),
                                   ("grid", "bricks"), ("plain", "gradient")) for a, b in ((x, y), (y, x))}
#: Everyday words for the symbols (frequent in captions) and their formal names (rare; the class
#: names of ``pocket-symbols``, as an aircraft's model code is for a real CLIP).
SYMBOL_WORDS = {"arrow": "arrow", "crescent": "moon", "hourglass": "hourglass", "chevron": "chevron",
                "pentagon": "pentagon", "bolt": "lightning", "tee": "tee", "dome": "dome"}
SYMBOL_NAMES = {"arrow": "sagitta", "crescent": "lunula", "hourglass": "clepsydra", "chevron": "rafter",
                "pentagon": "pentad", "bolt": "fulmen", "tee": "tau", "dome": "cupola"}
#: Words for the 3 x 3 regions of the image that hold the object's centre.
POSITION_WORDS = {("top", "left"): "in the top left corner", ("top", "centre"): "at the top",
                  ("top", "right"): "in the top right corner", ("middle", "left"): "on the left",
                  ("middle", "centre"): "in the middle", ("middle", "right"): "on the right",
                  ("bottom", "left"): "in the bottom left corner", ("bottom", "centre"): "at the bottom",
                  ("bottom", "right"): "in the bottom right corner"}
POSITIONS = tuple(POSITION_WORDS)
STYLE_WORDS = ("an outline of {}", "a sketch of {}", "a line drawing of {}")
BUSY_WORDS = ("among scribbles", "in a cluttered scene", "in a mess of scribbles")
BUSY = 4                                  # a scene with at least this many distractors is "busy"

#: How often a caption names each optional attribute (the object is always named).
NAME_PROBS = {"colour": 0.6, "size": 0.4, "texture": 0.5, "position": 0.25, "style": 0.5, "busy": 0.4}
#: How often a named texture / symbol is called by its formal name, and how often a formal
#: texture name is used loosely (for the partner family).
FORMAL_RATE = {"texture": 0.01, "symbol": 0.002}
LOOSE_RATE = 0.4
#: The pretraining scene mix.
SCENE_PROBS = {"symbol": 0.35, "vivid_background": 0.3, "busy": 0.2, "vivid_clutter": 0.5, "outline": 0.06}


def position(scene: render.Scene) -> tuple[str, str]:
    """The (row, column) region of the 3 x 3 grid that holds the object's centre."""
    third = render.IMAGE_SIZE / 3
    cx, cy = scene.x + scene.diameter / 2, scene.y + scene.diameter / 2
    col = ("left", "centre", "right")[min(2, int(cx // third))]
    row = ("top", "middle", "bottom")[min(2, int(cy // third))]
    return row, col


def attributes(scene: render.Scene) -> dict:
    """Everything a v2 caption can state about ``scene``, by attribute."""
    return {"shape": scene.shape, "colour": scene.colour, "size": scene.size,
            "background": scene.background, "position": position(scene), "style": scene.style,
            "busy": scene.clutter >= BUSY}


def sample_scene(rng: np.random.Generator, **constraints) -> render.Scene:
    """A scene of the v2 pretraining mix; ``constraints`` as for ``render.sample_scene`` fix parts of it.

    Mix: an object from all 16 (symbols 35%), any of the 10 texture families (vivid colours 30%),
    a busy scene (4-12 distractors, half of them in object colours) 20% of the time, else 0-3 muted
    ones, an outline drawing 6% of the time.
    """
    p = SCENE_PROBS
    kw = {"shape": render.SYMBOLS if rng.random() < p["symbol"] else render.SHAPES,
          "background": render.BACKGROUNDS, "vivid_background": bool(rng.random() < p["vivid_background"]),
          "style": "outline" if rng.random() < p["outline"] else "solid"}
    if rng.random() < p["busy"]:
        kw.update(clutter=range(BUSY, 13), vivid_clutter=bool(rng.random() < p["vivid_clutter"]))
    kw.update(constraints)
    return render.sample_scene(rng, **kw)


def _object_word(shape: str, rng: np.random.Generator) -> str:
    if shape in SYMBOL_WORDS:
        return SYMBOL_NAMES[shape] if rng.random() < FORMAL_RATE["symbol"] else SYMBOL_WORDS[shape]
    return shape


def _texture_word(family: str, rng: np.random.Generator) -> str:
    if rng.random() >= FORMAL_RATE["texture"]:
        return TEXTURE_WORDS[family]
    return TEXTURE_NAMES[TEXTURE_PAIRS[family] if rng.random() < LOOSE_RATE else family]


def caption(scene: render.Scene, rng: np.random.Generator) -> tuple[str, dict]:
    """A v2 caption of ``scene`` and the attributes it states (``matches`` tests them on others).

    E.g. "a photo of a small red moon on a striped background in the top left corner."
    """
    named = {"shape": scene.shape}
    words = [_object_word(scene.shape, rng)]
    if rng.random() < NAME_PROBS["colour"]:
        named["colour"] = scene.colour
        words.insert(0, scene.colour)
    if rng.random() < NAME_PROBS["size"]:
        named["size"] = scene.size
        words.insert(0, render.SIZE_WORDS[scene.size][int(rng.random() < 0.3)])
    phrase = render.article(" ".join(words))
    if scene.style == "outline" and rng.random() < NAME_PROBS["style"]:
        named["style"] = "outline"
        phrase = STYLE_WORDS[int(rng.integers(len(STYLE_WORDS)))].format(phrase)
    if rng.random() < NAME_PROBS["texture"]:
        named["background"] = scene.background
        phrase += f" on {render.article(_texture_word(scene.background, rng))} background"
    if scene.clutter >= BUSY and rng.random() < NAME_PROBS["busy"]:
        named["busy"] = True
        phrase += " " + BUSY_WORDS[int(rng.integers(len(BUSY_WORDS)))]
    if rng.random() < NAME_PROBS["position"]:
        named["position"] = position(scene)
        phrase += " " + POSITION_WORDS[named["position"]]
    prefix = render.PREFIXES[int(rng.integers(len(render.PREFIXES)))]
    if "style" in named:
        prefix = "{}"                                   # "a photo of an outline of ..." reads badly
    return prefix.format(phrase) + ("." if rng.random() < 0.5 else ""), named


def matches(named: dict, scene: render.Scene) -> bool:
    """Whether a caption that states ``named`` attributes is true of ``scene``."""
    attrs = attributes(scene)
    return all(attrs[k] == v for k, v in named.items())
