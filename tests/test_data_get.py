"""`vtclip data get`: torchvision's download functions replaced by fakes that write small archives.

Only the network is faked (``torchvision.datasets.utils.download_url`` and
``download_file_from_google_drive``); torchvision's DTD class, its archive extraction and vtclip's
code run as they are, and ``vtclip data check`` must accept the result.
"""
from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import utils as tv_utils

from vtclip.cli import main as vtclip_main
from vtclip.datasets.classnames import classnames, raw_names

DTD = raw_names("dtd")        # the 47 class folders of DTD's archive


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _dtd_members() -> dict[str, bytes]:
    """A tiny dtd-r1.0.1.tar.gz: dtd/images/<class>/*.jpg (4 per class) and dtd/labels/*.txt."""
    files = {f"dtd/images/{c}/{c}_{i:04d}.jpg": _jpeg() for c in DTD for i in range(4)}
    listing = "\n".join(p.split("images/", 1)[1] for p in files) + "\n"
    for split in ("train", "val", "test"):
        files[f"dtd/labels/{split}1.txt"] = listing.encode()
    return files


def _write_tgz(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _split_file() -> dict:
    """A CoOp-style split of the fake images: 2 train, 1 val, 1 test per class."""
    names = classnames("dtd")
    rows = {s: [] for s in ("train", "val", "test")}
    for y, c in enumerate(DTD):
        for i, s in enumerate(("train", "train", "val", "test")):
            rows[s].append([f"{c}/{c}_{i:04d}.jpg", y, names[y]])
    return rows


@pytest.fixture
def downloads(monkeypatch):
    """Replace torchvision's two download functions; record what they were asked for."""
    calls = []

    def download_url(url, root, filename=None, md5=None, max_redirect_hops=3):
        calls.append(url)
        os.makedirs(root, exist_ok=True)
        _write_tgz(os.path.join(root, filename or os.path.basename(url)), _dtd_members())

    def from_drive(file_id, root, filename=None, md5=None):
        calls.append(f"drive:{file_id}")
        with open(os.path.join(root, filename), "w") as f:
            json.dump(_split_file(), f)

    monkeypatch.setattr(tv_utils, "download_url", download_url)
    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", from_drive)
    return calls


def _check(root, capsys) -> dict:
    capsys.readouterr()
    code = vtclip_main(["data", "check", "dtd", "--data-root", str(root), "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0, report
    return report


def test_get_dtd_then_check_accepts_it(tmp_path, downloads, capsys):
    assert vtclip_main(["data", "get", "dtd", "--data-root", str(tmp_path)]) == 0
    assert downloads[0].endswith("dtd-r1.0.1.tar.gz")
    assert downloads[1] == "drive:1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"   # CoOp's DTD split file
    assert (tmp_path / "dtd/dtd/images/banded/banded_0000.jpg").is_file()      # torchvision's layout
    assert (tmp_path / "dtd/dtd/split_zhou_DescribableTextures.json").is_file()
    report = _check(tmp_path, capsys)
    assert report["split_source"] == "coop-split-file"
    assert report["sizes"] == {"train": 2 * 47, "val": 47, "test": 47}


def test_get_twice_downloads_once(tmp_path, downloads, capsys):
    assert vtclip_main(["data", "get", "dtd", "--data-root", str(tmp_path)]) == 0
    n = len(downloads)
    assert vtclip_main(["data", "get", "dtd", "--data-root", str(tmp_path)]) == 0
    assert len(downloads) == n
    assert "already in" in capsys.readouterr().out


def test_split_file_failure_is_said_plainly(tmp_path, downloads, monkeypatch, capsys):
    def no_gdown(file_id, root, filename=None, md5=None):
        raise RuntimeError("To download files from GDrive, 'gdown' is required.")

    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", no_gdown)
    assert vtclip_main(["data", "get", "dtd", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    target = tmp_path / "dtd/dtd/split_zhou_DescribableTextures.json"
    assert "NOT fetched (To download files from GDrive, 'gdown' is required.)" in out
    assert f"put it at {target}" in out and "drive.google.com/file/d/1u3_QfB467" in out
    assert not target.exists()
    assert _check(tmp_path, capsys)["split_source"] == "generated(seed=1)"   # CoOp's rule instead


def test_a_bad_split_file_is_not_kept(tmp_path, downloads, monkeypatch, capsys):
    def error_page(file_id, root, filename=None, md5=None):
        with open(os.path.join(root, filename), "w") as f:
            f.write("<html>Google Drive - Quota exceeded</html>")

    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", error_page)
    assert vtclip_main(["data", "get", "dtd", "--data-root", str(tmp_path)]) == 0
    assert "NOT fetched" in capsys.readouterr().out
    assert not (tmp_path / "dtd/dtd/split_zhou_DescribableTextures.json").exists()


@pytest.mark.parametrize("name, where", [("imagenet", "imagenet"), ("stanford_cars", "stanford_cars"),
                                         ("ucf101", "ucf101")])
def test_by_hand_datasets_say_where(name, where, tmp_path, downloads, capsys):
    assert vtclip_main(["data", "get", name, "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"cannot fetch {name}" in err and "Put " in err and str(tmp_path / where) in err
    assert downloads == []


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch, capsys):
    def offline(url, root, filename=None, md5=None, max_redirect_hops=3):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    assert vtclip_main(["data", "get", "dtd", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "downloading Describable Textures (DTD) failed" in err and "Download: https://" in err


def test_not_a_real_dataset(capsys):
    assert vtclip_main(["data", "get", "toy-colours"]) == 2
    assert "not a downloadable dataset" in capsys.readouterr().err
