"""Feature extraction and its cache: hits, misses, invalidation, foreign entries, atomicity."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from vtclip import features
from vtclip.datasets import get_dataset


@pytest.fixture
def toy_test():
    return get_dataset("toy-colours").split("test")


def _extract(clip, ds, tmp_path, **kw):
    return features.extract(clip, ds, dataset_name="toy-colours", split="test", cache_dir=tmp_path,
                            num_workers=0, progress=False, **kw)


def test_features_match_direct_encoding(tiny_hf, toy_test, tmp_path):
    f = _extract(tiny_hf, toy_test, tmp_path, indices=[0, 5, 9])
    pixels = torch.stack([toy_test.with_transform(tiny_hf.preprocess)[i][0] for i in (0, 5, 9)])
    ref = tiny_hf.encode_image(pixels)
    torch.testing.assert_close(f.pooled[0], ref.pooled)
    torch.testing.assert_close(f.spatial[0], ref.spatial)
    assert f.labels.tolist() == [int(toy_test.labels[i]) for i in (0, 5, 9)] and f.grid == (4, 4)


def test_cache_hit_miss_and_invalidation(tiny_hf, toy_test, tmp_path):
    a = _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])
    entries = list((tmp_path / "toy-colours").iterdir())
    assert len(entries) == 1
    # a hit: the stored arrays come back (poison them, checksums included, to prove they are read, not
    # recomputed)
    spatial_file, meta_file = entries[0] / "spatial.npy", entries[0] / "meta.json"
    np.save(spatial_file, np.zeros_like(np.load(spatial_file)))
    meta = json.loads(meta_file.read_text())
    meta["checks"] = features.checksums(np.load(entries[0] / "pooled.npy"), np.load(spatial_file))
    meta_file.write_text(json.dumps(meta))
    assert torch.count_nonzero(_extract(tiny_hf, toy_test, tmp_path, indices=[1, 2]).spatial) == 0
    # misses: other images, other spatial mode, other views -> new entries
    _extract(tiny_hf, toy_test, tmp_path, indices=[1, 3])
    tiny_hf.spatial_mode = "projected"
    b = _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])
    assert b.spatial.shape[-1] == tiny_hf.embed_dim != a.spatial.shape[-1]
    tiny_hf.spatial_mode = "raw"
    _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2], views=2, augment=True, seed=3)
    assert len(list((tmp_path / "toy-colours").iterdir())) == 4


def test_foreign_entry_is_never_reused(tiny_hf, toy_test, tmp_path):
    _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])
    entry = next((tmp_path / "toy-colours").iterdir())
    meta = json.loads((entry / "meta.json").read_text())
    meta["key"]["weights"] = "someone-else"
    (entry / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RuntimeError, match="different settings"):
        _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])


def test_interrupted_write_leaves_no_entry(tiny_hf, toy_test, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(features.os, "rename", boom)
    with pytest.raises(KeyboardInterrupt):
        _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])
    monkeypatch.undo()
    assert list((tmp_path / "toy-colours").iterdir()) == []   # no entry, and no temporary folder either
    f = _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])   # and a rerun completes
    assert f.pooled.shape == (1, 2, tiny_hf.embed_dim)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_a_miss_streams_the_maps_into_the_entry_and_maps_them(tiny_hf, toy_test, tmp_path, monkeypatch):
    """The spatial maps go into the entry batch by batch and come back memory-mapped (a real dataset's
    can be larger than the RAM); an extraction stopped half-way leaves nothing behind."""
    real, calls = tiny_hf.encode_image, []

    def stopped_at_the_second_batch(pixels):
        calls.append(len(pixels))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(pixels)

    monkeypatch.setattr(tiny_hf, "encode_image", stopped_at_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        _extract(tiny_hf, toy_test, tmp_path, indices=range(10), views=2, augment=True, batch_size=4)
    assert list((tmp_path / "toy-colours").iterdir()) == []           # the partial maps are gone
    monkeypatch.undo()
    f = _extract(tiny_hf, toy_test, tmp_path, indices=range(10), views=2, augment=True, batch_size=4)
    assert _mapped_from(f.spatial, _entry_of(tmp_path, "float32") / "spatial.npy")      # a miss, mapped
    again = _extract(tiny_hf, toy_test, tmp_path, indices=range(10), views=2, augment=True, mmap=False)
    assert not _mapped_from(again.spatial, _entry_of(tmp_path, "float32") / "spatial.npy")
    for a, b in ((f.pooled, again.pooled), (f.spatial, again.spatial)):    # same numbers either way
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    uncached = features.extract(tiny_hf, toy_test, dataset_name="toy-colours", split="test", indices=range(10),
                                views=2, augment=True, cache=False, num_workers=0, progress=False,
                                batch_size=4)   # in memory, not cached: the same arrays
    torch.testing.assert_close(uncached.spatial, f.spatial, atol=0, rtol=0)
    torch.testing.assert_close(uncached.pooled, f.pooled, atol=0, rtol=0)


def test_large_spatial_maps_stay_on_the_host_when_features_move_to_a_device(monkeypatch):
    feats = features.FeatureSet(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5, 6), torch.zeros(3, dtype=torch.long),
                                (5, 1))
    assert feats.to("meta").spatial.device.type == "meta"             # small: moved whole
    monkeypatch.setattr(features, "DEVICE_SPATIAL_BYTES", 2 * 3 * 5 * 6 * 4 - 1)
    moved = feats.to("meta")                                          # larger than the limit: read per batch
    assert moved.spatial.device.type == "cpu" and moved.spatial is feats.spatial
    assert moved.pooled.device.type == "meta" and moved.labels.device.type == "meta"


def test_augmented_views_are_seeded_and_differ(tiny_hf, toy_test, tmp_path):
    a = _extract(tiny_hf, toy_test, tmp_path, indices=[0, 1], views=3, augment=True, seed=1)
    b = features.extract(tiny_hf, toy_test, dataset_name="toy-colours", split="test", indices=[0, 1],
                         views=3, augment=True, seed=1, cache=False, num_workers=0, progress=False)
    torch.testing.assert_close(a.spatial, b.spatial)            # same seed -> same crops
    assert not torch.allclose(a.spatial[0], a.spatial[1])       # views differ
    # another seed: other crops, in an entry of its own (a draw that takes every image, as at 64
    # shots in the Pocket suite, differs between seeds only through this seed)
    c = _extract(tiny_hf, toy_test, tmp_path, indices=[0, 1], views=3, augment=True, seed=2)
    assert not torch.allclose(a.spatial, c.spatial)
    assert len(list((tmp_path / "toy-colours").iterdir())) == 2


def _entry_of(tmp_path, store_dtype):
    """The one cache entry of ``tmp_path`` stored as ``store_dtype``."""
    (entry,) = [e for e in (tmp_path / "toy-colours").iterdir()
                if json.loads((e / "meta.json").read_text())["key"]["store_dtype"] == store_dtype]
    return entry


def _array_bytes(npy):
    """Bytes of the array data in an .npy file: its size on disk less its header."""
    with open(npy, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        fmt = np.lib.format
        (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(fh)
        return npy.stat().st_size - fh.tell()


def _mapped_from(tensor, path) -> bool:
    """Whether ``tensor``'s data lies in a memory mapping of the file ``path`` (/proc/self/maps)."""
    ptr, target = tensor.data_ptr(), str(path.resolve())
    for line in open("/proc/self/maps"):
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].strip() == target:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            if lo <= ptr < hi:
                return True
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_fp16_store_and_mmap(tiny_hf, toy_test, tmp_path):
    full = _extract(tiny_hf, toy_test, tmp_path, indices=[0, 1, 2])
    _extract(tiny_hf, toy_test, tmp_path, indices=[0, 1, 2], store_dtype="float16")
    half = _extract(tiny_hf, toy_test, tmp_path, indices=[0, 1, 2], store_dtype="float16", mmap=True)
    assert half.spatial.dtype == torch.float16
    torch.testing.assert_close(half.spatial.float(), full.spatial, atol=2e-2, rtol=1e-2)
    # mmap=True: the spatial tensor's memory is a mapping of the entry's spatial.npy, not a copy
    assert _mapped_from(half.spatial, _entry_of(tmp_path, "float16") / "spatial.npy")
    loaded = _extract(tiny_hf, toy_test, tmp_path, indices=[0, 1, 2], store_dtype="float16", mmap=False)
    assert not _mapped_from(loaded.spatial, _entry_of(tmp_path, "float16") / "spatial.npy")
    torch.testing.assert_close(loaded.spatial, half.spatial, atol=0, rtol=0)
    # cache_size_bytes: the bytes of the pooled + spatial arrays an entry really holds on disk
    v, n, hw, c = full.spatial.shape
    d = full.pooled.shape[-1]
    assert (v, n, hw, c, d) == (1, 3, 16, 32, tiny_hf.embed_dim)
    for store_dtype in ("float16", "float32"):
        entry = _entry_of(tmp_path, store_dtype)
        on_disk = sum(_array_bytes(entry / f) for f in ("pooled.npy", "spatial.npy"))
        assert on_disk == sum(np.load(entry / f).nbytes for f in ("pooled.npy", "spatial.npy"))
        assert features.cache_size_bytes(n, v, hw, c, d, store_dtype) == on_disk, store_dtype


def test_key_names_the_data_root_and_the_device(tiny_hf):
    from vtclip.datasets.base import ImageFiles

    a, b = (ImageFiles(f"/data/{r}", ["cat/1.jpg"], [0], ["cat"]) for r in ("root-a", "root-b"))
    def key(ds):
        return features.cache_key(tiny_hf, "mine", "test", ds, [0], 1, False, None, "float32")

    digest = lambda ds: features.key_digest(key(ds))                       # noqa: E731
    assert digest(a) != digest(b) and digest(a) == digest(ImageFiles("/data/root-a", ["cat/1.jpg"], [0], ["cat"]))
    assert key(a)["device"] == "cpu"


def test_augmented_extraction_leaves_the_callers_random_state_alone(tiny_hf, toy_test, tmp_path):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2], views=2, augment=True, seed=3, cache=False)
    assert torch.equal(torch.get_rng_state(), state)      # a cache miss consumes nothing a hit would not


def test_a_label_corrected_in_the_split_file_is_not_served_stale_from_the_cache(tiny_hf, tmp_path):
    from PIL import Image

    from vtclip.datasets.folder import folder_dataset

    root = tmp_path / "pets"           # train/<class>/ names the classes; the split file lists images in pool/
    (root / "pool").mkdir(parents=True)
    rows = []
    for label, cls in enumerate(("cat", "dog")):
        for split in ("train", "test"):
            (root / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / split / cls / "0.png")
        for i in range(3):
            Image.fromarray(np.full((8, 8, 3), 40 * i + 100 * label, np.uint8)).save(root / "pool" / f"{cls}{i}.png")
            rows.append([f"pool/{cls}{i}.png", label, cls])
    fit = [["train/cat/0.png", 0, "cat"], ["train/dog/0.png", 1, "dog"]]

    def test_labels():
        (root / "split.json").write_text(json.dumps({"train": fit, "val": [["test/cat/0.png", 0, "cat"]], "test": rows}))
        ds = folder_dataset(root).split("test")
        return ds, features.extract(tiny_hf, ds, dataset_name="pets", split="test", cache_dir=tmp_path / "cache",
                                    num_workers=0, progress=False)

    ds, before = test_labels()
    assert before.labels.tolist() == [0, 0, 0, 1, 1, 1] == list(ds.labels)
    rows[2] = ["pool/cat2.png", 1, "dog"]          # the same images, one of them relabelled
    ds, after = test_labels()
    assert list(ds.labels) == [0, 0, 1, 1, 1, 1] and after.labels.tolist() == list(ds.labels)
    torch.testing.assert_close(after.pooled, before.pooled)      # the images did not change, their features neither
    entries = sorted((tmp_path / "cache" / "pets").iterdir())
    assert len(entries) == 2                                      # a new entry; the old one is left as it was
    assert sorted(np.load(e / "labels.npy").tolist() for e in entries) == [[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]]


def test_pocket_views_are_resized_for_a_backbone_of_another_input_size(tiny_hf, tmp_path):
    from PIL import Image

    ds = get_dataset("pocket-objects").split("train")                # 64 px images, "flip" policy
    assert ds.augment_policy == "flip" and ds.load_image(0).size == (64, 64) and tiny_hf.image_size == 32
    f = features.extract(tiny_hf, ds, dataset_name="pocket-objects", split="train", indices=[0, 1], views=4,
                         augment=True, seed=1, cache_dir=tmp_path, num_workers=0, progress=False)
    assert f.pooled.shape[:2] == (4, 2) and f.grid == (4, 4)
    # each view is the backbone's own preprocessing of the image, mirrored or not: nothing else changes
    for j in (0, 1):
        img = ds.load_image(j)
        plain, mirrored = (tiny_hf.encode_image(tiny_hf.preprocess(im)[None]).pooled[0]
                           for im in (img, img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
        for view in f.pooled[:, j]:
            assert min((view - plain).abs().max(), (view - mirrored).abs().max()) < 1e-3
        assert not all(torch.allclose(v, f.pooled[0, j]) for v in f.pooled[1:, j])   # both kinds occur


def _digest(clip, ds, **change):
    args = dict(dataset_name="toy-colours", split="train", dataset=ds, indices=[0, 1, 2], views=2,
                augment=True, seed=1, store_dtype="float32")
    return features.key_digest(features.cache_key(clip, **{**args, **change}))


# every input that changes the stored features, changed alone; the data root, the device and the
# labels have tests of their own above
@pytest.mark.parametrize("field,value", [
    ("name", "another-backbone"), ("weights_tag", "other-weights"), ("spatial_mode", "projected"),
    ("dtype", torch.float16), ("dataset_name", "toy-colours-2"), ("split", "val"), ("indices", [0, 1, 3]),
    ("augment_policy", "flip"), ("views", 3), ("augment", False), ("seed", 2), ("store_dtype", "float16"),
])
def test_every_input_of_the_features_changes_the_cache_key(tiny_hf, field, value):
    ds = get_dataset("toy-colours").split("train")
    before = _digest(tiny_hf, ds)
    if hasattr(tiny_hf, field):                 # a property of the backbone
        setattr(tiny_hf, field, value)
        after = _digest(tiny_hf, ds)
    elif field == "augment_policy":             # the dataset's augmentation: another transform
        ds.augment_policy = value
        after = _digest(tiny_hf, ds)
    else:
        after = _digest(tiny_hf, ds, **{field: value})
    assert after != before


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_image_gives_its_own_message_with_or_without_workers(tiny_hf, tmp_path, workers):
    from conftest import folder_with_a_corrupt_image

    from vtclip.datasets import BadImageError

    root, bad, _ = folder_with_a_corrupt_image(tmp_path / "pets")
    png = (root / "test" / "dog" / "img0.png").read_bytes()
    bad.write_bytes(png[:len(png) // 2])                                # a truncated PNG
    spec = get_dataset(str(root))
    with pytest.raises(BadImageError) as err:
        features.extract(tiny_hf, spec.split("test"), dataset_name=spec.name, split="test", batch_size=2,
                         num_workers=workers, cache=False, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"cannot read image {bad}: image file is truncated. Remove or replace the file")
    assert "Traceback" not in msg and "worker" not in msg and msg.count(str(bad)) == 1
    assert err.value.path == str(bad)


def test_a_damaged_cache_entry_is_named_and_left_in_place(tiny_hf, toy_test, tmp_path):
    _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])
    (entry,) = (tmp_path / "toy-colours").iterdir()
    spatial = entry / "spatial.npy"
    whole = spatial.read_bytes()
    spatial.write_bytes(whole[:len(whole) // 2])                       # a copy cut short
    for mmap in (False, True):
        with pytest.raises(RuntimeError, match=rf"feature cache entry {entry} is damaged \(ValueError: .*\); "
                                               "delete that folder to recompute it"):
            _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2], mmap=mmap)
    assert spatial.read_bytes() == whole[:len(whole) // 2]            # not deleted: it may be shared
    spatial.write_bytes(whole)
    np.save(entry / "labels.npy", np.zeros(3, np.int64))               # whole files, but not this entry's
    with pytest.raises(RuntimeError, match=r"is damaged \(ValueError: .*for 1 view\(s\) of 2 images\)"):
        _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])
    (entry / "meta.json").write_text('{"key": ')
    with pytest.raises(RuntimeError, match=r"is damaged \(meta.json: .*\); delete that folder"):
        _extract(tiny_hf, toy_test, tmp_path, indices=[1, 2])


def test_an_image_replaced_in_place_is_encoded_again(tiny_hf, tmp_path):
    from PIL import Image

    from vtclip.datasets.base import ImageFiles

    root = tmp_path / "imgs"
    root.mkdir()
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (32, 32), colour).save(root / name)
    ds = ImageFiles(root, ["a.png", "b.png"], [0, 1], ["red", "blue"])
    kw = dict(dataset_name="mine", split="test", cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    before = features.extract(tiny_hf, ds, **kw)
    Image.new("RGB", (40, 40), "green").save(root / "a.png")             # same name, other image
    after = features.extract(tiny_hf, ds, **kw)
    assert len(list((tmp_path / "cache" / "mine").iterdir())) == 2         # a miss, not the old entry
    assert not torch.allclose(before.pooled[0, 0], after.pooled[0, 0])
    torch.testing.assert_close(before.pooled[0, 1], after.pooled[0, 1])


def test_an_extraction_starts_its_workers_once_and_none_for_one_batch(tiny_hf, toy_test, tmp_path, monkeypatch):
    from torch.utils.data import DataLoader

    started, real = [], DataLoader._get_iterator

    def counting(self):                       # every iterator a DataLoader makes (each starts its workers)
        started.append(self.num_workers)
        return real(self)

    monkeypatch.setattr(DataLoader, "_get_iterator", counting)
    kw = dict(dataset_name="toy-colours", split="test", cache_dir=tmp_path, progress=True)
    features.extract(tiny_hf, toy_test, indices=range(10), num_workers=1, batch_size=4, **kw)
    assert started == [1]                     # one set of workers, with the progress bar on
    features.extract(tiny_hf, toy_test, indices=range(3), **kw)
    assert started == [1, 0]                  # one batch: encoded in this process


@pytest.mark.parametrize("alter", ["labels", "pooled", "spatial", "grid"])
def test_an_entry_altered_after_it_was_written_is_refused_naming_its_folder(tiny_hf, toy_test, tmp_path, alter):
    """Whole files of the right shapes, but not what was written: caught when the entry is read."""
    _extract(tiny_hf, toy_test, tmp_path, indices=range(6), views=2, augment=True)
    (entry,) = (tmp_path / "toy-colours").iterdir()
    if alter == "labels":                                   # a label changed: same shape, same dtype
        labels = np.load(entry / "labels.npy")
        np.save(entry / "labels.npy", (labels + 1) % 3)
    elif alter == "grid":                                   # meta.json's grid no longer fits the map
        meta = json.loads((entry / "meta.json").read_text())
        (entry / "meta.json").write_text(json.dumps({**meta, "grid": [2, 2]}))
    else:                                                   # one number of one view of one image
        arr = np.load(entry / f"{alter}.npy")
        arr[1, 5].flat[3] += 0.25
        np.save(entry / f"{alter}.npy", arr)
    for mmap in (True, False):
        with pytest.raises(RuntimeError, match=rf"feature cache entry {entry} is damaged \(ValueError: its "
                                               r".*\); delete that folder to recompute it") as err:
            _extract(tiny_hf, toy_test, tmp_path, indices=range(6), views=2, augment=True, mmap=mmap)
        assert {"labels": "labels.npy differs", "pooled": "pooled.npy differ", "spatial": "spatial.npy differ",
                "grid": "grid (2, 2)"}[alter] in str(err.value)


def test_a_spatial_row_outside_the_sampled_ones_is_caught_too(tiny_hf, toy_test, tmp_path):
    """The sampled checksum covers CHECKED_ROWS rows; a map this small is checked whole, so a change
    in any other row is refused as well (it used to be served)."""
    n = features.CHECKED_ROWS + 8
    assert len(toy_test) >= n
    _extract(tiny_hf, toy_test, tmp_path, indices=range(n))
    (entry,) = (tmp_path / "toy-colours").iterdir()
    rows = json.loads((entry / "meta.json").read_text())["checks"]["spatial_rows"]
    row = next(i for i in range(n) if i not in rows)
    arr = np.load(entry / "spatial.npy")
    arr[0, row].flat[7] += 0.25
    np.save(entry / "spatial.npy", arr)
    with pytest.raises(RuntimeError, match=r"is damaged \(ValueError: its spatial.npy differ"):
        _extract(tiny_hf, toy_test, tmp_path, indices=range(n), mmap=True)


def test_an_entry_from_before_transparency_was_composited_on_white_is_not_reused(tiny_hf, tmp_path, monkeypatch):
    """Entries written before b8964f8 hold the features of transparent pixels as they were stored (here
    black); the format bump keeps them from being served, and the next extraction says they are there."""
    from PIL import Image

    from vtclip.datasets import base
    from vtclip.datasets.base import ImageFiles

    root = tmp_path / "imgs"
    root.mkdir()
    pixels = np.zeros((32, 32, 4), np.uint8)
    pixels[8:24, 8:24] = (200, 30, 30, 255)                              # a red square on transparent black
    Image.fromarray(pixels, "RGBA").save(root / "a.png")
    Image.new("RGB", (32, 32), "blue").save(root / "b.png")
    ds = ImageFiles(root, ["a.png", "b.png"], [0, 1], ["red", "blue"])
    kw = dict(dataset_name="mine", split="test", cache_dir=tmp_path / "cache", num_workers=0, progress=False)
    with monkeypatch.context() as old:                                  # the code before b8964f8, format 1
        old.setattr(base, "to_rgb", lambda im: im.convert("RGB"))
        old.setattr(features, "CACHE_FORMAT", 1)
        stale = features.extract(tiny_hf, ds, **kw)
    old_entries = rf"written by an older vtclip \(cache format < {features.CACHE_FORMAT}\) are not reused: 1 in .*mine"
    with pytest.warns(UserWarning, match=old_entries):
        now = features.extract(tiny_hf, ds, **kw)
    right = features.extract(tiny_hf, ds, **{**kw, "cache": False})
    torch.testing.assert_close(now.pooled, right.pooled)                # computed again, not the old entry
    assert not torch.allclose(stale.pooled[0, 0], now.pooled[0, 0])
    assert len(list((tmp_path / "cache" / "mine").iterdir())) == 2       # the old entry is left in place
