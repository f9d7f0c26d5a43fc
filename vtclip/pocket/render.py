"""The Pocket world's renderer: seeded scenes of one coloured shape on a textured background.

A ``Scene`` names everything a caption or a class label can talk about (shape, colour, size,
position, background family, clutter); ``render(scene)`` draws it deterministically (numpy + PIL,
64 px by default, thousands of images per second on one core). Shape and clutter masks are drawn
once at 4x resolution by PIL and cached, so a render is a handful of array operations.
Taught in: chapter 0 (the Pocket world).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

IMAGE_SIZE = 64
SHAPES = ("circle", "square", "triangle", "star", "cross", "heart", "diamond", "ring")
#: World v2's second set of objects ("symbols"): drawn like shapes, named in v2's captions mostly
#: by everyday words and only rarely by the names the ``pocket-symbols`` dataset uses.
SYMBOLS = ("arrow", "crescent", "hourglass", "chevron", "pentagon", "bolt", "tee", "dome")
OBJECTS = SHAPES + SYMBOLS
#: How an object is drawn: filled ("solid", every v1 scene) or as its outline only (world v2).
STYLES = ("solid", "outline")
#: Saturated object colours (RGB); backgrounds use muted colours so the object's colour is unambiguous.
COLOURS = {
    "red": (215, 35, 35), "orange": (245, 135, 20), "yellow": (240, 215, 35), "green": (40, 170, 55),
    "blue": (35, 75, 225), "purple": (135, 45, 195), "pink": (245, 125, 190), "white": (245, 245, 245),
}
#: Object diameter range in pixels per size word (a patch of Pocket CLIP is 8 px).
SIZES = {"small": (14, 20), "large": (26, 38)}
#: Texture families seen in pretraining captions; ``HELD_OUT_BACKGROUNDS`` never appear there.
PRETRAIN_BACKGROUNDS = ("plain", "stripes", "dots", "checker", "noise", "gradient")
HELD_OUT_BACKGROUNDS = ("waves", "grid", "bricks", "plaid")
BACKGROUNDS = PRETRAIN_BACKGROUNDS + HELD_OUT_BACKGROUNDS
#: Object centres sit on the centres of the 8-px patch cells: a ViT from scratch learns shape from
#: few samples only when sub-patch alignment varies little (an unaligned world trained 3x slower).
LATTICE = 8
_SS = 4                                                     # supersampling factor of cached masks
_X = np.arange(IMAGE_SIZE, dtype=np.float32)[None, :]      # (1, S) pixel column coordinates
_Y = _X.T                                                    # (S, 1) pixel row coordinates


@dataclass(frozen=True)
class Scene:
    """One image's content; ``render`` turns it into pixels, ``captions`` into words."""

    shape: str              # one of SHAPES
    colour: str             # one of COLOURS
    size: str               # "small" or "large" (the word); ``diameter`` is the pixel size
    diameter: int           # object bounding-box side in pixels
    x: int                  # left edge of the object's box (pixels); centre on the LATTICE
    y: int                  # top edge of the object's box (pixels); centre on the LATTICE
    background: str         # texture family, one of BACKGROUNDS
    clutter: int = 0        # number of distractor blobs/strokes drawn under the object
    vivid_clutter: bool = False   # distractors in saturated object colours (harder) vs muted ones
    seed: int = 0           # drives texture parameters, colour jitter and clutter layout
    style: str = "solid"    # one of STYLES: filled, or outline only (world v2)
    vivid_background: bool | None = None   # background colours; None: v1's rule (held-out families vivid)


def sample_scene(rng: np.random.Generator, **constraints) -> Scene:
    """A random scene; each constraint is a fixed value or a sequence of allowed values.

    Keys: shape, colour, size, background (values or sequences), clutter (int or sequence of ints),
    diameter ((lo, hi) pixel range, inclusive), vivid_clutter (bool); world v2 adds style (value or
    sequence) and vivid_background (bool). A key left out draws no random number for it, so v1's
    scenes are the same draws as before v2 existed.
    """
    allowed = {"shape", "colour", "size", "background", "clutter", "diameter", "vivid_clutter",
               "style", "vivid_background"}
    unknown = set(constraints) - allowed
    if unknown:
        raise ValueError(f"unknown scene constraint(s) {sorted(unknown)}; allowed: {sorted(allowed)}")

    def pick(key, options, valid):
        value = constraints.get(key, options)
        values = [value] if isinstance(value, (str, int, np.integer)) else list(value)
        bad = [v for v in values if v not in valid]
        if bad or not values:
            raise ValueError(f"{key} must be chosen from {list(valid)}, got {value!r}")
        return values[int(rng.integers(len(values)))]

    shape = pick("shape", SHAPES, OBJECTS)
    colour = pick("colour", tuple(COLOURS), COLOURS)
    size = pick("size", tuple(SIZES), SIZES)
    background = pick("background", PRETRAIN_BACKGROUNDS, BACKGROUNDS)
    clutter = pick("clutter", (0, 0, 1, 2, 3), range(0, 64))
    lo, hi = constraints.get("diameter", SIZES[size])
    if not 6 <= lo <= hi <= IMAGE_SIZE - LATTICE:
        raise ValueError(f"diameter range must satisfy 6 <= lo <= hi <= {IMAGE_SIZE - LATTICE}, got {(lo, hi)}")
    d = int(rng.integers(lo, hi + 1))
    lefts = [c - d // 2 for c in range(LATTICE // 2, IMAGE_SIZE, LATTICE)
             if 0 <= c - d // 2 <= IMAGE_SIZE - d]                 # boxes fully inside the image
    x, y = (int(v) for v in rng.choice(lefts, size=2))
    seed = int(rng.integers(2**31))
    style = pick("style", STYLES, STYLES) if "style" in constraints else "solid"
    vivid_bg = constraints.get("vivid_background")
    return Scene(shape, colour, size, d, x, y, background, clutter,
                 bool(constraints.get("vivid_clutter", False)), seed, style,
                 None if vivid_bg is None else bool(vivid_bg))


# ---- masks (cached) ----------------------------------------------------------------------------
def _polygon(shape: str, n: int) -> list[tuple[float, float]] | None:
    """Vertices of ``shape`` in an n x n box (None for shapes drawn another way)."""
    c, r = n / 2, n / 2 - 0.5
    if shape == "square":
        s = 0.86 * r
        return [(c - s, c - s), (c + s, c - s), (c + s, c + s), (c - s, c + s)]
    if shape == "diamond":
        return [(c, c - r), (c + r, c), (c, c + r), (c - r, c)]
    if shape == "triangle":
        return [(c, c - r), (c + r, c + 0.8 * r), (c - r, c + 0.8 * r)]
    if shape == "star":
        ang = -np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.42 * r)
        return list(zip(c + rad * np.cos(ang), c + 1.08 * rad * np.sin(ang) + 0.08 * r))
    if shape == "cross":
        w, s = 0.34 * r, r
        return [(c - w, c - s), (c + w, c - s), (c + w, c - w), (c + s, c - w), (c + s, c + w),
                (c + w, c + w), (c + w, c + s), (c - w, c + s), (c - w, c + w), (c - s, c + w),
                (c - s, c - w), (c - w, c - w)]
    if shape == "arrow":                                    # pointing right: shaft + head
        return [(c - r, c - 0.28 * r), (c + 0.1 * r, c - 0.28 * r), (c + 0.1 * r, c - 0.8 * r), (c + r, c),
                (c + 0.1 * r, c + 0.8 * r), (c + 0.1 * r, c + 0.28 * r), (c - r, c + 0.28 * r)]
    if shape == "hourglass":                                # two triangles meeting at the centre
        return [(c - 0.85 * r, c - r), (c + 0.85 * r, c - r), (c + 0.12 * r, c), (c + 0.85 * r, c + r),
                (c - 0.85 * r, c + r), (c - 0.12 * r, c)]
    if shape == "chevron":                                  # a thick V pointing down
        return [(c - r, c - 0.9 * r), (c, c + 0.05 * r), (c + r, c - 0.9 * r), (c + r, c - 0.05 * r),
                (c, c + 0.9 * r), (c - r, c - 0.05 * r)]
    if shape == "pentagon":
        ang = -np.pi / 2 + np.arange(5) * 2 * np.pi / 5
        return list(zip(c + r * np.cos(ang), c + 0.1 * r + r * np.sin(ang)))
    if shape == "bolt":                                     # a lightning zig-zag
        return [(c + 0.3 * r, c - r), (c - 0.65 * r, c + 0.15 * r), (c - 0.05 * r, c + 0.15 * r),
                (c - 0.35 * r, c + r), (c + 0.65 * r, c - 0.2 * r), (c + 0.05 * r, c - 0.2 * r)]
    if shape == "tee":
        return [(c - r, c - r), (c + r, c - r), (c + r, c - 0.4 * r), (c + 0.3 * r, c - 0.4 * r),
                (c + 0.3 * r, c + r), (c - 0.3 * r, c + r), (c - 0.3 * r, c - 0.4 * r), (c - r, c - 0.4 * r)]
    if shape == "dome":                                     # a half disc, flat side down
        t = np.linspace(np.pi, 2 * np.pi, 40)
        return list(zip(c + r * np.cos(t), c + 0.45 * r + 1.3 * r * np.sin(t)))
    if shape == "heart":
        t = np.linspace(0, 2 * np.pi, 80)
        hx, hy = 16 * np.sin(t) ** 3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        return list(zip(c + r * hx / 16.5, c - r * (hy + 2.5) / 15.5))
    return None


@lru_cache(maxsize=None)
def shape_mask(shape: str, diameter: int) -> np.ndarray:
    """Anti-aliased coverage of ``shape`` in a diameter x diameter box: (d, d) float32 in [0, 1]."""
    if shape not in OBJECTS:
        raise ValueError(f"unknown shape {shape!r}; known: {OBJECTS}")
    n = diameter * _SS
    im = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(im)
    poly = _polygon(shape, n)
    if poly is not None:
        draw.polygon(poly, fill=255)
    else:
        draw.ellipse([0, 0, n - 1, n - 1], fill=255)
        if shape == "ring":
            k = int(round(0.3 * n))
            draw.ellipse([k, k, n - 1 - k, n - 1 - k], fill=0)
        if shape == "crescent":                             # a disc less a disc shifted right
            k = int(round(0.35 * n))
            draw.ellipse([k, -n // 10, n - 1 + k, n - 1 - n // 10], fill=0)
    small = im.resize((diameter, diameter), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


@lru_cache(maxsize=None)
def outline_mask(shape: str, diameter: int) -> np.ndarray:
    """The outline of ``shape``: its coverage less the coverage eroded by ~2 px; (d, d) in [0, 1]."""
    full = shape_mask(shape, diameter)
    padded = np.pad((full * 255).astype(np.uint8), 3)       # the filter must see the box's outside as empty
    n = padded.shape[0] * _SS
    im = Image.fromarray(padded, "L").resize((n, n), Image.NEAREST)
    inner = np.asarray(im.filter(ImageFilter.MinFilter(4 * _SS + 1)).resize(padded.shape, Image.BOX),
                       dtype=np.float32)[3:-3, 3:-3] / 255.0
    return np.clip(full - inner, 0, 1)


@lru_cache(maxsize=None)
def clutter_mask(kind: int) -> np.ndarray:
    """One of 48 distractor masks: irregular blobs (kind < 16) and strokes (kind >= 16)."""
    rng = np.random.default_rng(1000 + kind)
    n = int(rng.integers(8, 17)) * _SS
    im = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(im)
    if kind < 16:                                           # a blob: three overlapping ellipses
        for _ in range(3):
            w, h = rng.uniform(0.3, 0.6, size=2) * n
            cx, cy = rng.uniform(w / 2, n - w / 2), rng.uniform(h / 2, n - h / 2)
            draw.ellipse([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=255)
    else:                                                   # a stroke: a bent two-segment line
        pts = [tuple(rng.uniform(0, n, size=2)) for _ in range(3)]
        draw.line(pts, fill=255, width=int(rng.integers(2, 4)) * _SS, joint="curve")
    return np.asarray(im.resize((n // _SS, n // _SS), Image.BOX), dtype=np.float32) / 255.0


# ---- backgrounds -------------------------------------------------------------------------------
def _muted_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two low-saturation colours of one hue with a visible brightness gap: (3,), (3,)."""
    h, s, v = rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.72)
    dv = rng.uniform(0.12, 0.28) * (1 if v < 0.5 else -1)
    c0 = np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255
    c1 = np.array(colorsys.hsv_to_rgb((h + rng.uniform(-0.08, 0.08)) % 1, s, v + dv), dtype=np.float32) * 255
    return c0, c1


def _vivid_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two moderately saturated colours of contrasting hues (held-out families only): (3,), (3,)."""
    h, s, v = rng.random(), rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.75)
    c0 = np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255
    c1 = np.array(colorsys.hsv_to_rgb((h + rng.uniform(0.3, 0.7)) % 1, s, v), dtype=np.float32) * 255
    return c0, c1


def _pattern(family: str, rng: np.random.Generator) -> np.ndarray | float:
    """Mixing weight between the two background colours: (S, S) in [0, 1], or a scalar.

    ``X`` is a row (1, S) and ``Y`` a column (S, 1) of pixel coordinates: what depends on one of
    them is computed once per row or column and broadcast to (S, S) only where the two meet
    (the same arithmetic per pixel as on full grids, in a fraction of the time).
    """
    X, Y = _X, _Y
    if family == "plain":
        return 0.0
    if family == "stripes":
        theta, period = rng.uniform(0, np.pi), rng.uniform(6, 14)
        u = X * np.cos(theta) + Y * np.sin(theta)
        return ((u / period + rng.random()) % 1.0 < 0.5).astype(np.float32)
    if family == "dots":
        p, r = rng.uniform(7, 12), rng.uniform(1.5, 2.8)
        ox, oy = rng.uniform(0, p, size=2)
        dx, dy = (X + ox) % p - p / 2, (Y + oy) % p - p / 2
        return (dx * dx + dy * dy < r * r).astype(np.float32)
    if family == "checker":
        p = rng.uniform(6, 13)
        return ((np.floor(X / p) + np.floor(Y / p)) % 2).astype(np.float32)
    if family == "noise":
        cells = int(rng.integers(8, 17))
        low = rng.random((cells, cells), dtype=np.float32)
        idx = (np.arange(IMAGE_SIZE) * cells) // IMAGE_SIZE
        return low[idx][:, idx]
    if family == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        u = (X - 31.5) * np.cos(theta) + (Y - 31.5) * np.sin(theta)
        return np.clip(u / 45 + 0.5, 0, 1)
    if family == "waves":
        period, amp, wl = rng.uniform(7, 12), rng.uniform(2, 5), rng.uniform(10, 20)
        return ((Y + amp * np.sin(2 * np.pi * X / wl)) / period % 1.0 < 0.5).astype(np.float32)
    if family == "grid":
        p, w = rng.uniform(7, 12), rng.uniform(1.0, 2.0)
        return (((X + rng.uniform(0, p)) % p < w) | ((Y + rng.uniform(0, p)) % p < w)).astype(np.float32)
    if family == "bricks":
        h = rng.uniform(6, 10)
        row = np.floor(Y / h)
        shift = (row % 2) * h
        return (((Y % h) < 1.5) | (((X + shift) % (2 * h)) < 1.5)).astype(np.float32)
    if family == "plaid":
        p1, p2 = rng.uniform(8, 14, size=2)
        a = ((X / p1 + rng.random()) % 1.0 < 0.4).astype(np.float32)
        b = ((Y / p2 + rng.random()) % 1.0 < 0.4).astype(np.float32)
        return 0.5 * (a + b)
    raise ValueError(f"unknown background {family!r}; known: {BACKGROUNDS}")


def background(family: str, rng: np.random.Generator, vivid: bool | None = None) -> np.ndarray:
    """A textured background: (S, S, 3) in [0, 255]; vivid colours if ``vivid`` (None: the
    held-out families, v1's rule).

    float32, except gradients (float64, as their weights are): the pixels every Pocket record was
    measured on, which ``tests/test_pocket_render.py`` pins.
    """
    vivid = family in HELD_OUT_BACKGROUNDS if vivid is None else vivid
    c0, c1 = _vivid_pair(rng) if vivid else _muted_pair(rng)
    w = _pattern(family, rng)
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.result_type(w, c0))
    for k in range(3):      # channel by channel: numpy is slow on a last axis of length 3
        img[..., k] = c0[k] + w * (c1[k] - c0[k])
    return img


# ---- compositing -------------------------------------------------------------------------------
def _paste(img: np.ndarray, mask: np.ndarray, x: int, y: int, rgb: np.ndarray) -> None:
    """Alpha-blend a solid colour through ``mask`` (h, w) at (x, y) into img (S, S, 3), in place."""
    h, w = mask.shape
    region = img[y:y + h, x:x + w]                          # (h, w, 3) view
    region += mask[..., None] * (rgb - region)


def render_array(scene: Scene) -> np.ndarray:
    """Draw ``scene``: (S, S, 3) uint8."""
    if scene.colour not in COLOURS:
        raise ValueError(f"unknown colour {scene.colour!r}; known: {tuple(COLOURS)}")
    rng = np.random.default_rng(scene.seed)
    if scene.style not in STYLES:
        raise ValueError(f"unknown style {scene.style!r}; known: {STYLES}")
    img = background(scene.background, rng, scene.vivid_background)
    for _ in range(scene.clutter):
        m = clutter_mask(int(rng.integers(48)))
        cx, cy = (int(v) for v in rng.integers(0, IMAGE_SIZE - m.shape[0] + 1, size=2))
        if scene.vivid_clutter:
            rgb = np.array(list(COLOURS.values())[int(rng.integers(len(COLOURS)))], np.float32)
        else:
            rgb = _muted_pair(rng)[int(rng.integers(2))] * rng.uniform(0.6, 1.3)
        _paste(img, m, cx, cy, np.clip(rgb, 0, 255))
    rgb = np.array(COLOURS[scene.colour], np.float32) + rng.uniform(-18, 18, size=3).astype(np.float32)
    mask = (outline_mask if scene.style == "outline" else shape_mask)(scene.shape, scene.diameter)
    _paste(img, mask, scene.x, scene.y, np.clip(rgb, 0, 255))
    return img.astype(np.uint8)


def render(scene: Scene) -> Image.Image:
    """Draw ``scene`` as a 64 x 64 RGB PIL image."""
    return Image.fromarray(render_array(scene), "RGB")


def render_batch(scenes: Sequence[Scene]) -> np.ndarray:
    """Draw many scenes: (N, S, S, 3) uint8."""
    return np.stack([render_array(s) for s in scenes])


# ---- captions ----------------------------------------------------------------------------------
#: The word a caption uses for each pretraining texture family ("on a striped background").
BACKGROUND_WORDS = {"plain": "plain", "stripes": "striped", "dots": "spotted", "checker": "checked",
                    "noise": "fuzzy", "gradient": "shaded"}
SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
PREFIXES = ("{}", "a photo of {}", "a picture of {}", "a drawing of {}", "an image of {}", "there is {}")
#: How often a caption names each optional attribute (the shape is always named).
NAME_PROBS = {"colour": 0.6, "size": 0.4, "background": 0.3}


def article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption(scene: Scene, rng: np.random.Generator) -> tuple[str, dict]:
    """A caption naming the shape and a random subset of colour, size and background.

    Returns (text, named) where ``named`` maps each attribute the text states to its value, so
    ``matches(named, other_scene)`` says whether the caption is also true of another scene.
    """
    named = {"shape": scene.shape}
    words = [scene.shape]
    if rng.random() < NAME_PROBS["colour"]:
        named["colour"] = scene.colour
        words.insert(0, scene.colour)
    if rng.random() < NAME_PROBS["size"]:
        named["size"] = scene.size
        words.insert(0, SIZE_WORDS[scene.size][int(rng.random() < 0.3)])
    phrase = article(" ".join(words))
    if scene.background in BACKGROUND_WORDS and rng.random() < NAME_PROBS["background"]:
        named["background"] = scene.background
        phrase += f" on {article(BACKGROUND_WORDS[scene.background])} background"
    text = PREFIXES[int(rng.integers(len(PREFIXES)))].format(phrase)
    return text + ("." if rng.random() < 0.5 else ""), named


def matches(named: dict, scene: Scene) -> bool:
    """Whether a caption that states ``named`` attributes is true of ``scene``."""
    return all(getattr(scene, k) == v for k, v in named.items())
