"""Bring-your-own image folders: layouts, class names, templates, deterministic seeded splits."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vtclip.datasets import get_dataset
from vtclip.datasets.folder import folder_dataset


def write_images(folder, n):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((8, 8, 3), 10 * i, np.uint8)).save(folder / f"img{i:02d}.png")


def splits(spec):
    return {s: spec.split(s) for s in ("train", "val", "test")}


def test_class_folders_get_a_deterministic_50_20_30_split(tmp_path):
    for cls, n in (("cat", 10), ("dog_breed", 5)):
        write_images(tmp_path / "pets" / cls, n)
    spec = get_dataset(str(tmp_path / "pets"))
    assert spec.kind == "folder" and spec.classnames == ("cat", "dog breed") and "/" not in spec.name
    assert spec.templates == ("a photo of a {}.",)
    parts = splits(spec)
    assert {s: len(d) for s, d in parts.items()} == {"train": 7, "val": 3, "test": 5}
    assert parts["train"].split_source == "generated(seed=1)"
    every = [p for d in parts.values() for p in d.paths]
    assert len(every) == len(set(every)) == 15
    again = splits(folder_dataset(tmp_path / "pets"))
    assert all(again[s].paths == parts[s].paths for s in parts)
    img, label = parts["test"][0]
    assert img.size == (8, 8) and label in (0, 1)


def test_classnames_and_templates_files(tmp_path):
    for cls in ("a", "b"):
        write_images(tmp_path / cls, 3)
    (tmp_path / "classnames.txt").write_text("apple\nbanana\n")
    (tmp_path / "templates.txt").write_text("a photo of a {}.\na drawing of a {}.\n")
    spec = folder_dataset(tmp_path)
    assert spec.classnames == ("apple", "banana")
    assert spec.templates == ("a photo of a {}.", "a drawing of a {}.")
    (tmp_path / "classnames.txt").write_text("apple\n")
    with pytest.raises(ValueError, match="1 class names but .* 2 class folders"):
        folder_dataset(tmp_path)
    (tmp_path / "classnames.txt").unlink()
    (tmp_path / "templates.txt").write_text("no placeholder\n")
    with pytest.raises(ValueError, match="exactly one"):
        folder_dataset(tmp_path)


def test_train_test_folders_and_split_json(tmp_path):
    for split, n in (("train", 5), ("test", 2)):
        for cls in ("x", "y"):
            write_images(tmp_path / split / cls, n)
    parts = splits(folder_dataset(tmp_path))
    assert {s: len(d) for s, d in parts.items()} == {"train": 8, "val": 2, "test": 4}
    assert parts["test"].split_source == "official-test+generated(seed=1)"
    assert all(p.startswith("test/") for p in parts["test"].paths)
    for cls in ("x", "y"):
        write_images(tmp_path / "val" / cls, 1)
    assert splits(folder_dataset(tmp_path))["val"].split_source == "official"
    rows = {"train": [["train/x/img00.png", 0, "x"]], "val": [["val/y/img00.png", 1, "y"]],
            "test": [["test/x/img00.png", 0, "x"]]}
    (tmp_path / "split.json").write_text(json.dumps(rows))
    ds = folder_dataset(tmp_path).split("train")
    assert ds.split_source == "coop-split-file" and ds.paths == ["train/x/img00.png"]


@pytest.mark.parametrize("case, rows, error", [
    ("a label in another class's folder",
     {"train": [["x/img00.png", 0, "x"], ["y/img00.png", 0, "x"]], "val": [["x/img01.png", 0, "x"]],
      "test": [["y/img01.png", 1, "y"]]},
     r"1 entr\(y/ies\) give a label other than their class folder's: y/img00.png has label 0 \(x\) but is in "
     r"y/ \(label 1\)\. Labels follow the sorted class folders \(0 x, 1 y\)"),
    ("an image twice in one split",
     {"train": [["x/img00.png", 0, "x"], ["x/img00.png", 0, "x"]], "val": [["x/img01.png", 0, "x"]],
      "test": [["y/img01.png", 1, "y"]]},
     r"1 image\(s\) listed more than once in 'train' \(x/img00.png\)"),
    ("a training image that is also a test image",
     {"train": [["x/img00.png", 0, "x"], ["y/img00.png", 1, "y"]], "val": [["x/img01.png", 0, "x"]],
      "test": [["y/img01.png", 1, "y"], ["x/img00.png", 0, "x"]]},
     r"1 image\(s\) are in both 'train' and 'test' \(x/img00.png\); the splits must not share images"),
    ("a label written as a string",
     {"train": [["x/img00.png", "0", "x"]], "val": [["x/img01.png", 0, "x"]], "test": [["y/img01.png", 1, "y"]]},
     r"1 entr\(y/ies\) are not \[relative path, whole-number label, class name\], e\.g\. "
     r'\["x/img00.png", "0", "x"\] in \'train\''),
    ("a fractional label",
     {"train": [["x/img00.png", 0.7, "x"]], "val": [["x/img01.png", 0, "x"]], "test": [["y/img01.png", 1, "y"]]},
     r"write each label as a JSON integer"),
])
def test_split_json_that_would_mislead_is_refused(tmp_path, case, rows, error):
    """Each of these split files loaded before, giving wrong labels, a double count or a leaked test image."""
    for cls in ("x", "y"):
        write_images(tmp_path / cls, 2)
    (tmp_path / "split.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match=error):
        folder_dataset(tmp_path)


def test_bad_folders_are_explained(tmp_path):
    with pytest.raises(ValueError, match="no class folders"):
        folder_dataset(tmp_path)
    write_images(tmp_path / "full", 4)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="without images .*empty"):
        folder_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="image folder .*nope does not exist"):
        folder_dataset(tmp_path / "nope")


def test_a_one_class_folder_is_refused(tmp_path):
    write_images(tmp_path / "one" / "cat", 6)                   # accepted before: "chance 100 %"
    with pytest.raises(ValueError, match=r"one has one class folder \(cat/\); .*at least 2 classes"):
        folder_dataset(tmp_path / "one")
    for split in ("train", "test"):
        write_images(tmp_path / "two" / split / "cat", 3)
    with pytest.raises(ValueError, match=r"two/train has one class folder \(cat/\)"):
        folder_dataset(tmp_path / "two")


def test_classes_outside_train_and_stray_split_folders_are_refused(tmp_path):
    for split, cls in (("train", "x"), ("test", "x"), ("test", "fox")):
        write_images(tmp_path / "a" / split / cls, 2)
    with pytest.raises(ValueError, match=r"test has class folder\(s\) \['fox'\] that .*train lacks"):
        folder_dataset(tmp_path / "a")
    for cls in ("x", "y", "val"):
        write_images(tmp_path / "b" / cls, 4)
    with pytest.raises(ValueError, match="has val/ beside class folders but not both train/ and test/"):
        folder_dataset(tmp_path / "b")


def test_data_check_finds_files_a_split_json_lists_but_the_folder_lacks(tmp_path, capsys):
    from vtclip.cli import main

    for cls in ("x", "y"):
        write_images(tmp_path / cls, 2)
    rows = {"train": [["x/img00.png", 0, "x"], ["y/img09.png", 1, "y"]],     # y/img09.png does not exist
            "val": [["x/img01.png", 0, "x"]], "test": [["y/img00.png", 1, "y"]]}
    (tmp_path / "split.json").write_text(json.dumps(rows))
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "listed image(s) missing" in capsys.readouterr().out
    (tmp_path / "y" / "img09.png").write_bytes((tmp_path / "y" / "img00.png").read_bytes())
    assert main(["data", "check", str(tmp_path)]) == 0


def test_class_folders_of_other_files_are_named_as_such(tmp_path):
    """Class folders holding only non-image files: the message says what is there and which files count."""
    for split in ("train", "test"):
        for cls in ("x", "y"):
            (tmp_path / split / cls).mkdir(parents=True)
            (tmp_path / split / cls / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"the train split of .* has no images \(its class folders hold 2 other "
                                         r"file\(s\), e.g. train/x/notes.txt; images are files ending in .*\.png"):
        folder_dataset(tmp_path)


def test_an_empty_split_folder_is_named_before_any_work(tmp_path, tiny_hf):
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("x", "y"):
            write_images(tmp_path / split / cls, n)
    (tmp_path / "val" / "x").mkdir(parents=True)                  # a val/ folder without images
    with pytest.raises(ValueError, match=r"the val split of .* has no images.*remove the empty val/ folder"):
        folder_dataset(tmp_path)
    # any empty request to the feature extractor says what is empty, not a torch error
    from vtclip import features

    spec = get_dataset("toy-colours")
    with pytest.raises(ValueError, match="toy-colours/val: no images to encode"):
        features.extract(tiny_hf, spec.split("val"), dataset_name="toy-colours", split="val", indices=[],
                         cache=False, progress=False)


def test_a_class_without_training_or_val_images_is_named_by_check_and_load(tmp_path, capsys):
    from vtclip.cli import main

    for split, n in (("train", 3), ("test", 2)):            # blue has test images only
        for cls in ("red", "green", "blue"):
            write_images(tmp_path / split / cls, n if (split, cls) != ("train", "blue") else 0)
    with pytest.raises(ValueError, match=r"1 class\(es\) have fewer than 2 train images: blue/ \(0\) in .*train; "
                                         r"put images in those folders.*without a val/ folder"):
        folder_dataset(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 2
    assert "blue/ (0)" in capsys.readouterr().err
    write_images(tmp_path / "train" / "blue", 1)            # one image: none left for val
    with pytest.raises(ValueError, match=r"fewer than 2 train images: blue/ \(1\)"):
        folder_dataset(tmp_path)
    for cls in ("red", "green"):                             # a val/ folder, blue has no val images
        write_images(tmp_path / "val" / cls, 1)
    with pytest.raises(ValueError, match=r"1 class\(es\) have no val images: blue/ \(0\) in .*val; .*or remove val/"):
        folder_dataset(tmp_path)
    write_images(tmp_path / "val" / "blue", 1)
    assert {s: len(d) for s, d in splits(folder_dataset(tmp_path)).items()} == {"train": 7, "val": 3, "test": 6}


def test_a_class_folder_with_too_few_images_is_named(tmp_path):
    for cls, n in (("cat", 5), ("dog", 2)):
        write_images(tmp_path / cls, n)
    with pytest.raises(ValueError, match=r"1 class folder\(s\) in .* have fewer than the 3 images .*: dog/ \(2\)"):
        folder_dataset(tmp_path)


def test_files_the_layout_does_not_read_are_reported_not_dropped_silently(tmp_path, capsys):
    from vtclip.cli import main
    from vtclip.datasets.folder import UnusedFilesWarning

    for cls in ("cat", "dog"):
        write_images(tmp_path / cls, 4)
    (tmp_path / "classnames.txt").write_text("cat\ndog\n")           # settings files are not images
    write_images(tmp_path / ".hidden", 2)                             # hidden folders are skipped
    plain = {s: d.paths for s, d in splits(folder_dataset(tmp_path)).items()}   # no warning: nothing unused
    (tmp_path / "loose.png").write_bytes((tmp_path / "cat" / "img00.png").read_bytes())
    write_images(tmp_path / "cat" / "more", 3)
    (tmp_path / "dog" / "photo.jfif").write_bytes(b"jpeg bytes")
    unused = {"loose.png": "not in a class folder", "cat/more/img00.png": "in a sub-folder of a class folder",
              "cat/more/img01.png": "in a sub-folder of a class folder",
              "cat/more/img02.png": "in a sub-folder of a class folder",
              "dog/photo.jfif": "an extension that is not read"}
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 file(s) not used (only images directly in a class folder" in out and "OK" in out
    assert "loose.png  (not in a class folder)" in out and "dog/photo.jfif  (an extension that is not read)" in out
    assert main(["data", "check", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out                                    # --json prints the JSON and nothing else
    assert {u["path"]: u["why"] for u in json.loads(out)["unused"]} == unused
    # loading warns once per folder and uses the same images as before
    with pytest.warns(UnusedFilesWarning, match=r"5 file\(s\) in .* not used: .*3 in a sub-folder of a class folder "
                                                r"\(cat/more/img00.png, .*\); 1 an extension that is not read"):
        spec = folder_dataset(tmp_path)
    assert {s: d.paths for s, d in splits(spec).items()} == plain and dict(spec.extra["unused"]) == unused


def test_files_outside_train_val_test_are_reported(tmp_path):
    from vtclip.datasets.folder import unused_files

    for split in ("train", "test"):
        for cls in ("x", "y"):
            write_images(tmp_path / split / cls, 2)
    write_images(tmp_path / "extra_class", 1)
    (tmp_path / "train" / "notes.png").write_bytes(b"")
    assert unused_files(tmp_path, ["x", "y"]) == [("extra_class/img00.png", "in a folder that is neither train/, "
                                                   "val/ nor test/"), ("train/notes.png", "not in a class folder")]


def test_get_dataset_needs_a_name_or_a_path():
    with pytest.raises(TypeError, match="get_dataset needs a dataset name .*toy-colours.* or the path of an image "
                                        "folder, got None"):
        get_dataset(None)


def test_a_dataset_path_that_is_not_a_folder_says_so(tmp_path):
    import pytest

    from vtclip.datasets import get_dataset

    with pytest.raises(ValueError, match=r"dataset folder '.*nope' does not exist: give an image folder"):
        get_dataset(str(tmp_path / "nope"))
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match=r"dataset folder '.*a\.txt' is a file, not a folder"):
        get_dataset(str(tmp_path / "a.txt"))
    with pytest.raises(ValueError, match=r"Unknown dataset 'nope'\. Known datasets:"):
        get_dataset("nope")                             # a bare name: the registry's list


def test_the_fingerprint_follows_content_not_only_names_and_sizes(tmp_path):
    """Two images of one size swapping content left the digest as it was: records of both versions
    would have been averaged as one row."""
    for cls in ("x", "y"):
        write_images(tmp_path / cls, 4)
    before = folder_dataset(tmp_path).extra["fingerprint"]
    assert folder_dataset(tmp_path).extra["fingerprint"] == before               # nothing changed
    a, b = tmp_path / "x" / "img01.png", tmp_path / "y" / "img02.png"
    bytes_a, bytes_b = a.read_bytes(), b.read_bytes()
    assert len(bytes_a) == len(bytes_b) and bytes_a != bytes_b
    a.write_bytes(bytes_b), b.write_bytes(bytes_a)
    assert folder_dataset(tmp_path).extra["fingerprint"] != before
    a.write_bytes(bytes_a), b.write_bytes(bytes_b)
    assert folder_dataset(tmp_path).extra["fingerprint"] == before                # back: the same digest
