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
    texture_named = 0
    for s, (text, named) in zip(scenes, caps):
        assert world.matches(named, s)                       # every caption is true of its scene
        if "background" in named:
            texture_named += 1
            if not any(f" {name} background" in text for name in world.TEXTURE_NAMES.values()):
                assert f"{world.TEXTURE_WORDS[s.background]} background" in text
        if s.shape in render.SYMBOLS:
            assert (world.SYMBOL_NAMES[s.shape] in text) != (world.SYMBOL_WORDS[s.shape] in text)
        if "position" in named:
            assert world.POSITION_WORDS[world.position(s)] in text
    assert abs(texture_named / len(scenes) - world.NAME_PROBS["texture"]) < 0.03
    # the rare rates, on many captions of one scene each (within 4 standard deviations)
    rng = np.random.default_rng(2)
    stripes = world.sample_scene(rng, background="stripes")
    caps = [world.caption(stripes, rng)[0] for _ in range(40000)]
    named = [c for c in caps if "background" in c]
    formal = [c for c in named if any(f" {n} background" in c for n in world.TEXTURE_NAMES.values())]
    loose = [c for c in formal if f" {world.TEXTURE_NAMES['waves']} background" in c]
    _near(len(formal), len(named), world.FORMAL_RATE["texture"])
    _near(len(loose), len(formal), world.LOOSE_RATE)
    assert len(loose) + sum(f" {world.TEXTURE_NAMES['stripes']} background" in c for c in formal) == len(formal)
    arrow = world.sample_scene(rng, shape="arrow")
    hits = sum(world.SYMBOL_NAMES["arrow"] in world.caption(arrow, rng)[0] for _ in range(40000))
    _near(hits, 40000, world.FORMAL_RATE["symbol"])


def _near(hits, n, p):
    assert abs(hits - n * p) <= 4 * (n * p * (1 - p)) ** 0.5 + 1, (hits, n, p)


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
    from vtclip.pocket.suite import SYMBOL_CODES, TASKS_BY_NAME

    codes = dict(zip(render.SYMBOLS, SYMBOL_CODES, strict=True))
    checks = {
        "pocket-textures": lambda s, c: world.TEXTURE_NAMES[s.background] == c and s.diameter <= 8 and not s.clutter,
        "pocket-symbols": lambda s, c: codes[s.shape] == c and s.style == "solid",
        "pocket-objects": lambda s, c: s.shape == c and s.clutter <= 3 and s.style == "solid",
        "pocket-pairs": lambda s, c: f"{s.colour} {s.shape}" == c and s.size == "small",
        "pocket-crowds": lambda s, c: s.shape == c and 6 <= s.clutter <= 12 and s.vivid_clutter
                                      and 10 <= s.diameter <= 13,
        "pocket-blurred": lambda s, c: s.shape == c and s.style == "solid" and s.clutter <= 2,
    }
    scenes, caps = _mix(3000, seed=4)                       # the symbols' codes: no caption uses them
    assert not any(code in text for code in SYMBOL_CODES for text, _ in caps)
    for name, ok in checks.items():
        task = TASKS_BY_NAME[name]
        assert task.real
        for i in range(0, 60, 7):
            assert ok(task.scene("train", i), task.classnames[i % len(task.classnames)]), (name, i)


def test_blurred_images_are_the_scene_blurred_and_other_tasks_are_not():
    """``pocket-blurred`` shows its scene through the blur (same mean colour, less detail);
    the other tasks show the rendered pixels unchanged; an unknown domain is refused."""
    from vtclip.pocket.suite import BLUR_RADIUS, PocketImages, PocketTask, TASKS_BY_NAME

    task = TASKS_BY_NAME["pocket-blurred"]
    scene = task.scene("test", 3)
    sharp = np.asarray(render.render(scene), np.float32)
    seen = np.asarray(PocketImages(task, "test").load_image(3), np.float32)
    assert BLUR_RADIUS > 1 and seen.shape == sharp.shape
    assert abs(seen.mean() - sharp.mean()) < 2                        # a blur keeps the mean
    detail = lambda a: np.abs(np.diff(a, axis=0)).mean()              # noqa: E731
    assert detail(seen) < 0.6 * detail(sharp)
    crowds = TASKS_BY_NAME["pocket-crowds"]
    plain = np.asarray(PocketImages(crowds, "test").load_image(3))
    assert (plain == np.asarray(render.render(crowds.scene("test", 3)))).all()
    assert PocketImages(task, "test").ident(3) == "pocket-blurred/v2.1/test/3"
    with pytest.raises(ValueError, match="unknown domain 'fog'.*known"):
        PocketTask("x", ("a",), ("{}",), ({},), 1, "", domain="fog")


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


def test_v2_batches_come_in_groups_of_one_object_on_different_backgrounds():
    from vtclip.pocket.pretrain import PocketConfig, v2_scenes

    cfg = PocketConfig.shipped()
    scenes = v2_scenes(cfg, np.random.default_rng(0))
    assert len(scenes) == cfg.batch_size and cfg.group_size == 4
    groups = [scenes[i:i + 4] for i in range(0, len(scenes), 4)]
    for g in groups:
        assert len({(s.shape, s.colour, s.size, s.style) for s in g}) == 1
    assert np.mean([len({s.background for s in g}) > 1 for g in groups]) > 0.9
    assert len({(g[0].shape, g[0].colour) for g in groups}) > 20          # groups are of many objects
