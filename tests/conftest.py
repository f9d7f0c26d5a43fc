"""Shared fixtures: tiny random CLIPs of each family, built offline in a temp dir."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path):
    """Every test gets its own VTCLIP_HOME: no test reads or writes the user's cache. Set through a
    MonkeyPatch of its own, so a test's ``monkeypatch.undo()`` (which undoes everything its fixture
    did) cannot put the user's cache back in the middle of the test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VTCLIP_HOME", str(tmp_path / "vtclip_home"))
        yield


def tiny_open_clip_model(seed: int = 0):
    """An open_clip CLIP with a ModifiedResNet tower (64 px, 2x2 map), random weights."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CLIP(
        embed_dim=32,
        vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=16),
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    )
    return model.eval()


def tiny_hf_clip_dir(path, seed: int = 0, image_size: int = 32, patch_size: int = 8):
    """Save a tiny transformers CLIP (+ a small CLIP-format tokenizer) to ``path``; return it."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    torch.manual_seed(seed)
    words = ["a", "photo", "of", "the", "cat", "dog", "bird", "red", "blue", "star", "."]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in "abcdefghijklmnopqrstuvwxyz.":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for w in words:
        vocab.setdefault(w + "</w>", len(vocab))
    merges = []
    for w in words:  # merge each word letter by letter into one token
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        while len(parts) > 1:
            merged = parts[0] + parts[1]
            merges.append((parts[0], parts[1]))
            vocab.setdefault(merged, len(vocab))
            parts = [merged] + parts[2:]
    merges = list(dict.fromkeys(merges))
    tok = CLIPTokenizer(vocab=vocab, merges=merges)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size),
        projection_dim=24,
    )
    model = CLIPModel(cfg).eval()
    proc = CLIPImageProcessor(size={"shortest_edge": image_size},
                              crop_size={"height": image_size, "width": image_size})
    model.save_pretrained(path)
    tok.save_pretrained(path)
    proc.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    return tiny_hf_clip_dir(tmp_path_factory.mktemp("tiny_hf_clip"))


@pytest.fixture
def tiny_hf(tiny_hf_dir):
    import vtclip as vt

    return vt.load_clip(str(tiny_hf_dir), device="cpu")


@pytest.fixture
def tiny_rn():
    """A tiny ResNet CLIP wrapped in our open_clip adapter."""
    import open_clip

    from vtclip.backbones import OpenCLIPBackbone

    model = tiny_open_clip_model()
    preprocess = open_clip.image_transform(64, is_train=False)
    return OpenCLIPBackbone(model, preprocess, open_clip.get_tokenizer("RN50", context_length=16), "tiny-RN", "random")  # noqa


def folder_with_a_corrupt_image(root, split: str = "test"):
    """train/ val/ test/ class folders of noisy swatches (each image different), plus one file in
    ``split`` that is not an image. Returns (root, the corrupt file, the number of files in ``split``)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in (("train", 4), ("val", 2), ("test", 5)):
        for cls, rgb in (("cat", (200, 60, 60)), ("dog", (60, 60, 200))):
            folder = root / name / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.array(rgb) + rng.normal(0, 60, size=(16, 16, 3))
                Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"img{i}.png")
    bad = root / split / "dog" / "broken.png"
    bad.write_bytes(b"these bytes are not a PNG file\n" * 4)
    n_files = sum(1 for f in (root / split).rglob("*") if f.is_file())
    return root.resolve(), bad.resolve(), n_files


def fake_hub_download(cache, repo_id: str, folder, commit: str = "a" * 40):
    """Lay ``folder``'s files out in the hub's download cache ``cache`` as ``hf_hub_download`` does
    (``snapshots/<commit>/<file>`` linking to ``blobs/<SHA-256>``, ``refs/main`` naming the commit),
    so that an offline ``from_pretrained(repo_id)`` reads them. Returns the snapshot folder."""
    import hashlib
    from pathlib import Path

    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot.mkdir(parents=True)
    for f in sorted(Path(folder).iterdir()):
        data = f.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / sha).write_bytes(data)
        (snapshot / f.name).symlink_to(Path("..", "..", "blobs", sha))
    (repo / "refs" / "main").write_text(commit)
    return snapshot
