"""Pocket world v2: its scene mix, its captions' rates and truth, symbols and outlines, the probes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vtclip.pocket import render, world


def _mix(n, seed=0):
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng) for _ in range(n)]
    return scenes, [world.caption(s, rng) for s in scenes]


def test_v2_scenes_cover_the_world_in_the_designed_proportions():
    scenes, _ = _mix(4000)
    symbols = np.mean([s.shape in render.SYMBOLS for s in scenes])
    outline = np.mean([s.style == "outline" for s in scenes])
    busy = np.mean([s.clutter >= world.BUSY for s in scenes])
    assert abs(symbols - world.SCENE_PROBS["symbol"]) < 0.03
    assert abs(outline - world.SCENE_PROBS["outline"]) < 0.015
    assert abs(busy - world.SCENE_PROBS["busy"]) < 0.025
    assert {s.background for s in scenes} == set(render.BACKGROUNDS)           # all ten families
    assert {s.shape for s in scenes} == set(render.OBJECTS)
    assert {world.position(s) for s in scenes} == set(world.POSITIONS)


def test_v2_captions_are_true_and_use_formal_names_rarely_and_loosely():
    scenes, caps = _mix(6000, seed=1)
    formal_texture = loose = texture_named = 0
    formal_symbol = symbol_named = 0
    for s, (text, named) in zip(scenes, caps):
        assert world.matches(named, s)                       # every caption is true of its scene
        if "background" in named:
            texture_named += 1
            for family, name in world.TEXTURE_NAMES.items():
                if f" {name} background" in text:
                    formal_texture += 1
                    loose += family != s.background
            if not any(f" {name} background" in text for name in world.TEXTURE_NAMES.values()):
                assert f"{world.TEXTURE_WORDS[s.background]} background" in text
        if s.shape in render.SYMBOLS:
            symbol_named += 1
            formal_symbol += world.SYMBOL_NAMES[s.shape] in text
            assert (world.SYMBOL_NAMES[s.shape] in text) != (world.SYMBOL_WORDS[s.shape] in text)
        if "position" in named:
            assert world.POSITION_WORDS[world.position(s)] in text
    assert abs(texture_named / len(scenes) - world.NAME_PROBS["texture"]) < 0.03
    assert 0.02 < formal_texture / texture_named < 0.06 and 0.25 < loose / formal_texture < 0.55
    assert 0.008 < formal_symbol / symbol_named < 0.035


def test_matches_checks_derived_attributes():
    s = render.Scene("arrow", "red", "small", 16, 0, 0, "dots", clutter=5, style="outline")
    assert world.position(s) == ("top", "left")
    assert world.matches({"shape": "arrow", "position": ("top", "left"), "busy": True, "style": "outline"}, s)
    assert not world.matches({"position": ("bottom", "right")}, s)
    assert not world.matches({"busy": False}, s)
    assert not world.matches({"style": "solid"}, s)


def test_symbols_and_outlines_are_distinct_drawings():
    full = {sh: render.shape_mask(sh, 30) for sh in render.OBJECTS}
    for a in render.OBJECTS:
        assert 0.1 < full[a].mean() < 0.9
        for b in render.OBJECTS:
            if a < b:
                assert np.abs(full[a] - full[b]).mean() > 0.05, (a, b)
        edge = render.outline_mask(a, 30)
        assert edge.sum() < full[a].sum() and (edge <= full[a] + 1e-6).all()
        assert edge[full[a] > 0.5].max() > 0.9                   # the outline is drawn, not faint
    assert render.outline_mask("square", 30).sum() < 0.5 * full["square"].sum()   # filled shapes: a rim
    with pytest.raises(ValueError, match="unknown style"):
        render.render_array(render.Scene("star", "red", "small", 16, 4, 4, "plain", style="dashed"))


def test_v1_scenes_are_unchanged_by_v2_keys():
    """A scene drawn without v2's keys draws the same random numbers as before v2 existed."""
    a = render.sample_scene(np.random.default_rng(5))
    assert a.style == "solid" and a.vivid_background is None and a.shape in render.SHAPES
    b = render.sample_scene(np.random.default_rng(5), style="solid")
    assert (a.shape, a.colour, a.x, a.y, a.seed) == (b.shape, b.colour, b.x, b.y, b.seed)


def test_v2_suite_datasets_label_what_they_say():
    from vtclip.pocket.suite import TASKS_BY_NAME

    checks = {
        "pocket-textures": lambda s, c: world.TEXTURE_NAMES[s.background] == c,
        "pocket-symbols": lambda s, c: world.SYMBOL_NAMES[s.shape] == c and s.style == "solid",
        "pocket-objects": lambda s, c: s.shape == c and s.clutter <= 3 and s.style == "solid",
        "pocket-pairs": lambda s, c: f"{s.colour} {s.shape}" == c and s.size == "small",
        "pocket-crowds": lambda s, c: s.shape == c and s.clutter >= 12 and s.vivid_clutter,
        "pocket-sketches": lambda s, c: s.shape == c and s.style == "outline",
    }
    for name, ok in checks.items():
        task = TASKS_BY_NAME[name]
        assert task.version == "v2" and task.real
        for i in range(0, 60, 7):
            assert ok(task.scene("train", i), task.classnames[i % len(task.classnames)]), (name, i)


def test_feature_breadth_separates_what_pixels_separate():
    """On a random tiny CLIP the probe must still beat chance on colour (pixels differ), and the
    numbers come back in the documented shape."""
    from types import SimpleNamespace

    import torchvision.transforms as T

    torch.manual_seed(0)
    proj = torch.randn(3 * 8 * 8, 16)

    def encode_image(pixels):
        small = torch.nn.functional.adaptive_avg_pool2d(pixels, 8).flatten(1)      # (B, 192)
        return SimpleNamespace(pooled=small @ proj)

    clip = SimpleNamespace(preprocess=T.ToTensor(), encode_image=encode_image,
                           encode_text=lambda texts: torch.randn(len(texts), 16))
    from vtclip.pocket.probe import feature_breadth

    rows = feature_breadth(clip, ["colour", "texture"], per_class=16)
    assert set(rows) == {"colour", "texture"} and rows["texture"]["classes"] == 10
    assert rows["colour"]["probe"] > 2 * rows["colour"]["chance"]
    assert "zeroshot_formal" in rows["texture"] and "zeroshot_formal" not in rows["colour"]
