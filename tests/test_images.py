"""Image files as users have them: high bit depths, palettes, CMYK, bombs, broken links."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from vtclip.cli import main
from vtclip.datasets.base import BadImageError, to_rgb
from vtclip.datasets.folder import folder_dataset


def write_folder(root, n=4):
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 30 * i, np.uint8)).save(root / cls / f"img{i}.png")


def pixel(ds, path):
    return np.asarray(ds.load_image(ds.paths.index(path)))[0, 0].tolist()


def test_high_bit_depth_and_odd_modes_load_as_their_content(tmp_path):
    write_folder(tmp_path)
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(tmp_path / "a" / "x16.png")     # I;16, 128 in 8 bits
    Image.fromarray(np.full((8, 8), 32896, ">u2")).save(tmp_path / "a" / "x16b.tif")        # I;16B
    Image.fromarray(np.full((8, 8), 32896, np.int32)).save(tmp_path / "a" / "x32.tif")      # I
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp_path / "a" / "xf.tif")       # F in 0..1
    Image.fromarray(np.full((8, 8, 2), [128, 255], np.uint8), "LA").save(tmp_path / "a" / "xla.png")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8), "RGBA").save(tmp_path / "a" / "xclear.png")  # transparent black
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.save(tmp_path / "a" / "xp.png", transparency=0)
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "a" / "xcmyk.jpg")
    modes = {p: Image.open(tmp_path / "a" / p).mode for p in ("x16.png", "x16b.tif", "x32.tif", "xf.tif")}
    assert modes == {"x16.png": "I;16", "x16b.tif": "I;16B", "x32.tif": "I", "xf.tif": "F"}
    ds = folder_dataset(tmp_path).split("train")
    every = ds.paths + folder_dataset(tmp_path).split("val").paths + folder_dataset(tmp_path).split("test").paths
    ds.paths, ds.labels = every, np.zeros(len(every), np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # PIL's palette-transparency warning is a failure too
        got = {p: pixel(ds, "a/" + p) for p in ("x16.png", "x16b.tif", "x32.tif", "xf.tif", "xla.png", "xp.png",
                                                "xclear.png")}
    assert got == {"x16.png": [128] * 3, "x16b.tif": [128] * 3, "x32.tif": [128] * 3, "xf.tif": [128] * 3,
                   "xla.png": [128] * 3, "xp.png": [200, 100, 50], "xclear.png": [255] * 3}   # clear: white
    assert min(pixel(ds, "a/xcmyk.jpg")) > 240              # CMYK (0, 0, 0, 0) is white


def test_float_images_are_scaled_from_the_smallest_range_that_holds_them():
    for value, want in ((0.25, 64), (100.0, 100), (1000.0, 4)):
        im = to_rgb(Image.fromarray(np.full((2, 2), value, np.float32)))
        assert im.mode == "RGB" and np.asarray(im)[0, 0, 0] == want


@pytest.mark.parametrize("mode, values, error", [
    ("F", (0.0, 1.5), r"float \(mode F\) pixels range from 0 to 1.5: above 0..1, yet under 1 % of 0..255"),
    ("F", (-0.8, 0.9), r"range from -0.8 to 0.9: negative intensities .* fit no image range"),
    ("F", (0.0, np.nan), r"include NaN or infinite values"),
    ("I", (-5, 200), r"integer \(mode I\) pixels range from -5 to 200: negative intensities"),
])
def test_pixels_no_range_explains_are_refused_with_the_file(tmp_path, mode, values, error):
    """These loaded before as a guess: 0..1.5 nearly black, negatives and NaN as black."""
    write_folder(tmp_path)
    dtype = np.float32 if mode == "F" else np.int32
    Image.fromarray(np.array([[values[0], values[1]]] * 2, dtype)).save(tmp_path / "a" / "odd.tif")
    assert Image.open(tmp_path / "a" / "odd.tif").mode == mode
    ds = folder_dataset(tmp_path).split("train")
    ds.paths, ds.labels = ["a/odd.tif"], np.zeros(1, np.int64)
    with pytest.raises(BadImageError, match=r"cannot read image .*odd.tif: .*" + error + r".*--skip-bad-images"):
        ds.load_image(0)


def test_32_bit_integer_images_are_scaled_from_the_smallest_range_that_holds_them(tmp_path):
    """Mode ``I`` says nothing of its range: 8-bit data saved as 32-bit integers (a TIFF of 0..255)
    must not load nearly black, and 16-bit data in it still scales from 0..65535."""
    ramp = np.arange(256, dtype=np.int32).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "eight.tif")
    im = Image.open(tmp_path / "eight.tif")
    assert im.mode == "I"
    assert (np.asarray(to_rgb(im))[..., 0] == ramp).all()             # as 8-bit data: unchanged
    for value, want in ((32896, 128), (65535, 255), (2**31 - 1, 255)):
        assert np.asarray(to_rgb(Image.fromarray(np.full((2, 2), value, np.int32))))[0, 0, 0] == want


def test_broken_links_are_named_by_data_check_and_left_out_on_request(tmp_path, capsys):
    write_folder(tmp_path)
    os.symlink("loop.png", tmp_path / "a" / "loop.png")
    os.symlink("nowhere.png", tmp_path / "b" / "dangling.png")
    spec = folder_dataset(tmp_path)                  # listing the folder used to stop with ELOOP
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'a' / 'loop.png'} (a symbolic link loop)" in out
    assert f"{tmp_path / 'b' / 'dangling.png'} (a link to nowhere.png, which does not exist)" in out
    assert main(["data", "check", str(tmp_path), "--images"]) == 1   # does not decode: says so
    assert "images not decoded (--images): put the missing files listed above in place" in capsys.readouterr().out
    every = [p for s in ("train", "val", "test") for p in spec.split(s).paths]
    assert {"a/loop.png", "b/dangling.png"} <= set(every)     # listed, not silently ignored
    with pytest.warns(UserWarning, match="unreadable"):
        kept = [spec.split(s, skip_bad_images=True) for s in ("train", "val", "test")]
    dropped = [p for ds in kept for p in ds.dropped_images]
    assert sorted(dropped) == [str(tmp_path / "a" / "loop.png"), str(tmp_path / "b" / "dangling.png")]


def test_decompression_bombs_are_named_and_left_out_on_request(tmp_path, capsys, monkeypatch):
    write_folder(tmp_path)
    Image.new("RGB", (20, 20)).save(tmp_path / "a" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)        # 400 pixels > 2 x 100: PIL refuses it
    assert main(["data", "check", str(tmp_path), "--images", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["bad_images"] == [str(tmp_path / "a" / "bomb.png")]
    assert "exceeds limit" in report["bad_image_reasons"][str(tmp_path / "a" / "bomb.png")]
    (tmp_path / "b" / "cut.png").write_bytes((tmp_path / "b" / "img0.png").read_bytes()[:40])
    assert main(["data", "check", str(tmp_path), "--images"]) == 1
    out = capsys.readouterr().out             # each file with why it failed, then what to do
    assert f"{tmp_path / 'a' / 'bomb.png'}: Image size (400 pixels) exceeds limit" in out
    assert f"{tmp_path / 'b' / 'cut.png'}: " in out and "2 unreadable image(s)" in out
    assert "remove or replace them, or leave them out of a run with --skip-bad-images" in out
    spec = folder_dataset(tmp_path)
    split = next(s for s in ("train", "val", "test") if "a/bomb.png" in spec.split(s).paths)
    with pytest.raises(OSError, match="bomb.png.*--skip-bad-images"):
        spec.split(split).load_image(spec.split(split).paths.index("a/bomb.png"))
    with pytest.warns(UserWarning, match="unreadable"):
        assert spec.split(split, skip_bad_images=True).dropped_images == [str(tmp_path / "a" / "bomb.png")]
