"""The 11 protocol datasets on tiny fake folders in their real layouts (8x8 JPEGs, real annotation formats)."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from vtclip.cli import main as vtclip_main
from vtclip.datasets import DATASETS, BadImageError, get_dataset
from vtclip.datasets.base import check_images, drop_bad_images
from vtclip.datasets.classnames import classnames, raw_names
from vtclip.datasets.real import TEMPLATES
from vtclip.datasets.splits import hash_rank, read_split_file, split_per_class, split_trainval
from vtclip.prompts import IMAGENET_ENSEMBLE

REAL = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
        "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg()


def put(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(JPEG)


def lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def class_folders(image_dir, folders, filled, n=5):
    """All class folders (the layout needs them); ``n`` images in the ``filled`` ones."""
    for f in folders:
        (image_dir / f).mkdir(parents=True, exist_ok=True)
    for f in filled:
        for i in range(n):
            put(image_dir / f / f"{f}_{i}.jpg")


def cars_mat(path, names_labels):
    from scipy.io import savemat

    a = np.zeros((1, len(names_labels)), dtype=[("fname", "O"), ("class", "O")])
    for i, (fname, label) in enumerate(names_labels):
        a[0, i] = (fname, np.array([[label]], dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"annotations": a})


def make(name, root):
    """Write a fake ``name`` under the data root ``root``; return {relpath: expected label}."""
    expect = {}
    if name == "imagenet":
        wnids = [f"n{i:08d}" for i in range(1000)]
        for split, n in (("train", 3), ("val", 2)):
            for w in wnids:
                (root / "imagenet/images" / split / w).mkdir(parents=True, exist_ok=True)
            for y in (0, 999):
                for i in range(n):
                    put(root / "imagenet/images" / split / wnids[y] / f"{i}.JPEG")
                    expect[f"{split}/{wnids[y]}/{i}.JPEG"] = y
    elif name in ("caltech101", "dtd", "food101", "eurosat"):
        folder = {"caltech101": "caltech-101/101_ObjectCategories", "dtd": "dtd/images",
                  "food101": "food-101/images", "eurosat": "eurosat/2750"}[name]
        raw = list(raw_names(name))
        filled = [raw[0], raw[-1]]
        extra = ["BACKGROUND_Google", "Faces_easy"] if name == "caltech101" else []
        class_folders(root / folder, raw + extra, filled + extra)
        expect = {f"{f}/{f}_{i}.jpg": raw.index(f) for f in filled for i in range(5)}
    elif name == "oxford_pets":
        for split, n in (("trainval", 5), ("test", 2)):
            rows = []
            for breed, y in (("Abyssinian", 1), ("yorkshire_terrier", 37)):
                for i in range(n):
                    stem = f"{breed}_{split}{i}"
                    put(root / "oxford_pets/images" / f"{stem}.jpg")
                    rows.append(f"{stem} {y} 1 1")
                    expect[f"{stem}.jpg"] = y - 1
            lines(root / "oxford_pets/annotations" / f"{split}.txt", rows)
    elif name == "stanford_cars":
        for folder, mat, n in (("cars_train", "devkit/cars_train_annos.mat", 5),
                               ("cars_test", "cars_test_annos_withlabels.mat", 2)):
            rows = [(f"{y:03d}{i:02d}.jpg", y) for y in (1, 196) for i in range(n)]
            for fname, y in rows:
                put(root / "stanford_cars" / folder / fname)
                expect[f"{folder}/{fname}"] = y - 1
            cars_mat(root / "stanford_cars" / mat, rows)
    elif name == "oxford_flowers":
        from scipy.io import savemat

        labels = [1] * 5 + [102] * 5
        for i, y in enumerate(labels):
            put(root / "oxford_flowers/jpg" / f"image_{i + 1:05d}.jpg")
            expect[f"image_{i + 1:05d}.jpg"] = y - 1
        savemat(str(root / "oxford_flowers/imagelabels.mat"), {"labels": np.array([labels])})
    elif name == "fgvc_aircraft":
        for split in ("train", "val", "test"):
            rows = []
            for j, variant in enumerate(("707-320", "BAE 146-200", "Yak-42")):
                stem = f"{split[:2]}{j:05d}"
                put(root / "fgvc_aircraft/images" / f"{stem}.jpg")
                rows.append(f"{stem} {variant}")
                expect[f"{stem}.jpg"] = raw_names("fgvc_aircraft").index(variant)
            lines(root / "fgvc_aircraft" / f"images_variant_{split}.txt", rows)
    elif name == "sun397":
        for fname, n in (("Training_01.txt", 5), ("Testing_01.txt", 2)):
            rows = []
            for cls in ("a/abbey", "t/theater/indoor_procenium", "y/youth_hostel"):
                for i in range(n):
                    rel = f"{cls}/sun_{fname[:4]}{i}.jpg"
                    put(root / "sun397/SUN397" / rel)
                    rows.append("/" + rel)
                    expect[rel] = raw_names("sun397").index(cls)
            lines(root / "sun397" / fname, rows)
    elif name == "ucf101":
        for fname, n in (("trainlist01.txt", 5), ("testlist01.txt", 2)):
            rows = []
            for action, folder, y in (("ApplyEyeMakeup", "Apply_Eye_Makeup", 1), ("YoYo", "Yo_Yo", 101)):
                for i in range(n):
                    video = f"v_{action}_g{fname[:2]}{i}_c01"
                    put(root / "ucf101/UCF-101-midframes" / folder / f"{video}.jpg")
                    rows.append(f"{action}/{video}.avi {y}" if fname.startswith("train") else f"{action}/{video}.avi")
                    expect[f"{folder}/{video}.jpg"] = y - 1
            lines(root / "ucf101/ucfTrainTestlist" / fname, rows)
    return expect


SOURCES = {"fgvc_aircraft": "official", "caltech101": "generated(seed=1)", "dtd": "generated(seed=1)",
           "food101": "generated(seed=1)", "eurosat": "generated(seed=1)", "oxford_flowers": "generated(seed=1)"}


@pytest.mark.parametrize("name", REAL)
def test_each_dataset_loads_from_its_real_layout(name, tmp_path):
    expect = make(name, tmp_path)
    spec = get_dataset(name)
    seen = {}
    for split in ("train", "val", "test"):
        ds = spec.split(split, tmp_path)
        assert len(ds) > 0, split
        assert ds.split_source == SOURCES.get(name, "official-test+generated(seed=1)")
        assert list(ds.classnames) == list(spec.classnames)
        for path, label in zip(ds.paths, ds.labels):
            assert path not in seen, f"{path} is in two splits"
            seen[path] = int(label)
    assert seen == expect                    # every image once, with the label CoOp gives it
    img, label = spec.split("test", tmp_path)[0]
    assert img.size == (8, 8) and 0 <= label < spec.num_classes


def test_counts_follow_coop_rules(tmp_path):
    make("dtd", tmp_path)       # 5 images per filled class -> round(2.5)=2 / round(1.0)=1 / 2
    sizes = {s: len(get_dataset("dtd").split(s, tmp_path)) for s in ("train", "val", "test")}
    assert sizes == {"train": 4, "val": 2, "test": 4}
    make("oxford_pets", tmp_path)   # 5 trainval per class -> 4 train / 1 val; official test 2
    sizes = {s: len(get_dataset("oxford_pets").split(s, tmp_path)) for s in ("train", "val", "test")}
    assert sizes == {"train": 8, "val": 2, "test": 4}


def test_split_file_wins_over_generated_split(tmp_path):
    make("dtd", tmp_path)
    spec = get_dataset("dtd")
    assert spec.split("train", tmp_path).split_source == "generated(seed=1)"
    split = {"train": [["banded/banded_0.jpg", 0, "banded"], ["zigzagged/zigzagged_4.jpg", 46, "zigzagged"]],
             "val": [["banded/banded_1.jpg", 0, "banded"]], "test": [["zigzagged/zigzagged_0.jpg", 46, "zigzagged"]]}
    (tmp_path / "dtd/split_zhou_DescribableTextures.json").write_text(json.dumps(split))
    train = spec.split("train", tmp_path)
    assert train.split_source == "coop-split-file"
    assert train.paths == ["banded/banded_0.jpg", "zigzagged/zigzagged_4.jpg"]
    assert train.labels.tolist() == [0, 46]
    assert spec.split("test", tmp_path).paths == ["zigzagged/zigzagged_0.jpg"]


def test_split_file_alone_is_enough(tmp_path):
    """With a split file, the annotation files are not needed (pets without annotations/)."""
    put(tmp_path / "oxford_pets/images/Bengal_7.jpg")
    rows = [["Bengal_7.jpg", 5, "bengal"]]
    (tmp_path / "oxford_pets/split_zhou_OxfordPets.json").write_text(
        json.dumps({"train": [], "val": rows, "test": []}))
    ds = get_dataset("oxford_pets").split("val", tmp_path)
    assert ds.paths == ["Bengal_7.jpg"] and ds.labels.tolist() == [5] and ds[0][1] == 5


def test_split_file_of_another_dataset_is_refused(tmp_path):
    path = tmp_path / "s.json"
    rows = [["a.jpg", 0, "zigzagged"], ["b.jpg", 1, "banded"]]
    path.write_text(json.dumps({"train": rows, "val": rows, "test": rows}))
    with pytest.raises(ValueError, match="label 0 is called 'zigzagged' there, which is vtclip's name of label 46"):
        read_split_file(path, classnames("dtd"))
    other = [["a.jpg", 0, "aardvark"], ["b.jpg", 1, "bison"]]          # names dtd does not have at all
    path.write_text(json.dumps({"train": other, "val": other, "test": other}))
    with pytest.raises(ValueError, match="2 of 2 class names differ from this dataset's label order"):
        read_split_file(path, classnames("dtd"))
    path.write_text(json.dumps({"train": rows}))
    with pytest.raises(ValueError, match="not a CoOp split file"):
        read_split_file(path, classnames("dtd"))
    path.write_text(json.dumps({s: [["a.jpg", 47, "x"]] for s in ("train", "val", "test")}))
    with pytest.raises(ValueError, match="outside"):
        read_split_file(path, classnames("dtd"))


def test_two_swapped_labels_are_refused_not_warned(tmp_path):
    names = list(classnames("dtd"))
    rows = [[f"{i}.jpg", i, n] for i, n in enumerate(names)]
    rows[0][2], rows[1][2] = names[1], names[0]            # 2 of 47 differ: under the spelling tolerance
    path = tmp_path / "s.json"
    path.write_text(json.dumps({s: rows for s in ("train", "val", "test")}))
    with pytest.raises(ValueError, match="label 0 is called 'blotchy' there, which is vtclip's name of label 1"):
        read_split_file(path, names)


def test_generated_split_depends_on_names_not_listing_order():
    paths = [f"c{y}/img{i}.jpg" for y in range(3) for i in range(10)]
    labels = [y for y in range(3) for _ in range(10)]
    a = split_per_class(labels, paths)
    perm = np.random.default_rng(0).permutation(len(paths))
    b = split_per_class([labels[i] for i in perm], [paths[i] for i in perm])
    for s in ("train", "val", "test"):
        assert sorted(paths[i] for i in a[s]) == sorted(paths[perm[i]] for i in b[s])
        assert len(a[s]) == {"train": 15, "val": 6, "test": 9}[s]
    assert split_per_class(labels, paths, seed=2)["train"].tolist() != a["train"].tolist()
    train, val = split_trainval(labels, paths, n_val=4)
    assert len(val) == 12 and not set(train) & set(val)
    with pytest.raises(ValueError, match="at least 3"):
        split_per_class([0, 0], ["a", "b"])


def test_generated_splits_are_pinned():
    # Every record on a dataset without an official split file means "tested on this split": a change
    # to the hash or to the per-class cut would reshuffle them all silently, so the values are pinned.
    assert hash_rank(["banded/banded_0002.jpg", "a/abbey/sun_a.jpg"], 1).tolist() == [
        99397809806978156, 10691007651255771108]
    paths = [f"c{y}/img{i}.jpg" for y in range(3) for i in range(10)]
    labels = [y for y in range(3) for _ in range(10)]
    split = split_per_class(labels, paths)
    assert split["val"].tolist() == [3, 5, 17, 19, 21, 27]
    assert split["test"].tolist() == [2, 6, 8, 15, 16, 18, 20, 22, 24]
    assert split_trainval(labels, paths, n_val=4)[1].tolist() == [0, 4, 7, 9, 11, 12, 13, 14, 23, 25, 26, 28]


def test_missing_dataset_error_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        get_dataset("dtd").split("train", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "dtd" / "images") in msg and "dtd-r1.0.1.tar.gz" in msg
    assert "split_zhou_DescribableTextures.json" in msg and "vtclip data check dtd" in msg
    with pytest.raises(FileNotFoundError, match="vtclip_home/data/ucf101/UCF-101-midframes"):
        get_dataset("ucf101").split("test")          # default root: $VTCLIP_HOME/data


def test_missing_annotations_and_partial_imagenet_are_explained(tmp_path):
    (tmp_path / "oxford_pets/images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="annotations/trainval.txt"):
        get_dataset("oxford_pets").split("train", tmp_path)
    for split in ("train", "val"):
        (tmp_path / "imagenet/images" / split / "n01440764").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds 1 class folders"):
        get_dataset("imagenet").split("train", tmp_path)


def test_torchvision_layout_is_accepted(tmp_path):
    make("dtd", tmp_path / "tv")
    (tmp_path / "dtd").mkdir()
    (tmp_path / "tv/dtd").rename(tmp_path / "dtd/dtd")      # torchvision: <root>/dtd/dtd/images
    assert len(get_dataset("dtd").split("test", tmp_path)) == 4


def test_corrupt_jpeg_is_reported_and_skipped_only_on_request(tmp_path):
    make("eurosat", tmp_path)
    rel = "AnnualCrop/AnnualCrop_0.jpg"
    bad = tmp_path / "eurosat/2750" / rel
    bad.write_bytes(b"not a jpeg")
    spec = get_dataset("eurosat")
    split = next(s for s in ("train", "val", "test") if rel in spec.split(s, tmp_path).paths)
    ds = spec.split(split, tmp_path)
    with pytest.raises(BadImageError, match="cannot read image .*AnnualCrop_0.jpg"):
        ds[ds.paths.index(rel)]
    assert check_images(ds) == [str(bad)]
    kept, dropped = drop_bad_images(ds)
    assert dropped == [str(bad)] and len(kept) == len(ds) - 1 and kept.split_source == ds.split_source
    assert rel not in kept.paths and len(kept.labels) == len(kept.paths)
    with pytest.warns(UserWarning, match="left out 1 unreadable"):
        clean = spec.split(split, tmp_path, skip_bad_images=True)
    assert clean.dropped_images == [str(bad)] and len(clean) == len(ds) - 1


def test_classname_lists_have_the_protocol_lengths():
    sizes = {"imagenet": 1000, "caltech101": 100, "oxford_pets": 37, "stanford_cars": 196, "oxford_flowers": 102,
             "food101": 101, "fgvc_aircraft": 100, "sun397": 397, "dtd": 47, "eurosat": 10, "ucf101": 101}
    for name, n in sizes.items():
        names = DATASETS[name].classnames
        assert len(names) == n, name
        assert len(set(names)) == n - 2 * (name == "imagenet"), name   # CLIP's ImageNet names repeat 2
        assert all(t.count("{}") == 1 for t in DATASETS[name].templates)
    assert DATASETS["imagenet"].classnames[:2] == ("tench", "goldfish")
    assert DATASETS["caltech101"].classnames[:4] == ("face", "leopard", "motorbike", "accordion")
    assert DATASETS["stanford_cars"].classnames[0] == "2000 AM General Hummer SUV"
    assert DATASETS["sun397"].classnames[8] == "outdoor apartment building"
    assert DATASETS["eurosat"].classnames[-1] == "Sea or Lake"
    assert DATASETS["ucf101"].classnames[-1] == "Yo Yo"
    assert TEMPLATES["imagenet"] is IMAGENET_ENSEMBLE
    assert DATASETS["oxford_pets"].templates == ("a photo of a {}, a type of pet.",)


def test_cli_data_list_and_check(tmp_path, capsys):
    assert vtclip_main(["data", "list", "--json", "--data-root", str(tmp_path)]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()         # the JSON alone, no table before it
    rows = {r["name"]: r for r in json.loads(line)["datasets"]}
    assert set(REAL) <= set(rows) and rows["dtd"] == {**rows["dtd"], "classes": 47, "present": False,
                                                     "root": str(tmp_path / "dtd")}
    assert vtclip_main(["data", "check", "dtd", "--data-root", str(tmp_path)]) == 1
    assert str(tmp_path / "dtd" / "images") in capsys.readouterr().out
    make("dtd", tmp_path)
    (tmp_path / "dtd/images/banded/banded_3.jpg").write_bytes(b"broken")
    assert vtclip_main(["data", "check", "dtd", "--data-root", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)                   # the JSON alone, no table before it
    assert report["present"] and report["sizes"] == {"train": 4, "val": 2, "test": 4}
    assert vtclip_main(["data", "check", "dtd", "--data-root", str(tmp_path), "--images", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["bad_images"] == [str(tmp_path / "dtd/images/banded/banded_3.jpg")]
    assert vtclip_main(["data", "list", "--json", "--data-root", str(tmp_path)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["datasets"]}
    assert rows["dtd"]["present"] and not rows["eurosat"]["present"]


def test_book_appendix_is_generated_from_the_registry():
    from vtclip.datasets import appendix

    text = appendix.render()
    assert all(f"(`{name}`)" in text for name in REAL)
    assert appendix.OUT.read_text(encoding="utf-8") == text, "run: python -m vtclip.datasets.appendix"


@pytest.mark.parametrize("row,message", [
    ("Abyssinian_99", "IndexError"),                        # a line without its label
    ("Abyssinian_99 40 1 1", r"labels \[39\] outside 0..36"),  # a label Pets does not have
])
def test_damaged_annotations_are_explained_not_a_traceback(tmp_path, row, message):
    make("oxford_pets", tmp_path)
    path = tmp_path / "oxford_pets/annotations/test.txt"
    path.write_text(path.read_text() + row + "\n")
    with pytest.raises(ValueError, match=message) as err:
        get_dataset("oxford_pets").split("test", tmp_path)
    assert "fetch them again" in str(err.value) and str(tmp_path / "oxford_pets") in str(err.value)


def test_the_hint_names_the_users_data_root(tmp_path, capsys):
    root = tmp_path / "my data"
    with pytest.raises(FileNotFoundError) as err:
        get_dataset("dtd").split("train", root)
    assert f"Then: vtclip data check dtd --data-root '{root}'" in str(err.value)      # quoted: it has a space
    assert vtclip_main(["data", "check", "eurosat", "--data-root", str(tmp_path)]) == 1
    assert f"Then: vtclip data check eurosat --data-root {tmp_path}\n" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match=r"Then: vtclip data check dtd  \(data root: --data-root or "):
        get_dataset("dtd").split("train")                                            # no root given: the default


def test_a_partly_present_dataset_says_where_to_get_it(tmp_path, capsys):
    make("dtd", tmp_path)
    for f in ("chequered", "dotted"):                         # two empty class folders of the 47 gone
        (tmp_path / "dtd/images" / f).rmdir()
    with pytest.raises(FileNotFoundError) as err:
        get_dataset("dtd").split("train", tmp_path)
    msg = str(err.value)
    assert "2 class folder(s) missing in" in msg and "chequered, dotted" in msg
    assert "dtd-r1.0.1.tar.gz" in msg and f"vtclip data check dtd --data-root {tmp_path}" in msg
    assert vtclip_main(["data", "check", "dtd", "--data-root", str(tmp_path)]) == 1
    assert "cannot make the split" in (out := capsys.readouterr().out) and "dtd-r1.0.1.tar.gz" in out


def test_a_class_folder_with_too_few_images_is_named_by_its_folder(tmp_path):
    make("dtd", tmp_path)
    (tmp_path / "dtd/images/zigzagged/zigzagged_0.jpg").unlink()
    for i in range(2, 5):
        (tmp_path / "dtd/images/zigzagged" / f"zigzagged_{i}.jpg").unlink()
    with pytest.raises(ValueError, match=r"1 class folder\(s\) in .*dtd/images have fewer than the 3 images .*"
                                         r"zigzagged/ \(1\)"):
        get_dataset("dtd").split("train", tmp_path)
    with pytest.raises(ValueError, match="class 'b' has 1 training image"):
        split_trainval([0, 0, 1], ["x", "y", "z"], names=["a", "b"])
