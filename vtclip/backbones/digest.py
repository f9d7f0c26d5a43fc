"""Content digests of weights files and folders: what a backbone's ``weights_tag`` is made of.

The tag is part of every feature-cache key and every result record, so it must change whenever the
weights do (issue 22: a replaced ``RN50.pt`` was tagged "openai" before and after, and its old features
came back from the cache). A file is hashed whole (SHA-256) once; the digest is remembered in
``$VTCLIP_HOME/digests.json`` under the file's path, size, times and inode, any of which a copy, an
edit or a replacement changes.
Taught in: chapter 02 (spatial features).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import settings

#: The files of a checkpoint folder that change what the model computes: weights (whole or sharded,
#: with their index), config, tokenizer and preprocessor. READMEs and other notes do not count.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".json", ".txt", ".model")


def file_sha256(path: Path) -> str:
    """SHA-256 of ``path``'s bytes (hex), from the digest cache when the file is unchanged."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = f"{path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
    known = _read_cache()
    if stamp not in known:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 24), b""):
                h.update(block)
        known = {k: v for k, v in _read_cache().items() if not k.startswith(f"{path}|")}   # older stamps
        known[stamp] = h.hexdigest()
        _write_cache(known)
    return known[stamp]


def folder_digest(folder: Path) -> str:
    """A 12-hex digest of the contents of a checkpoint folder's files (``WEIGHT_SUFFIXES``) and names."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES):
        h.update(f"{f.name}:{file_sha256(f)}\n".encode())
    return h.hexdigest()[:12]


def _cache_path() -> Path:
    return settings.home("digests.json")


def _read_cache() -> dict:
    try:
        known = json.loads(_cache_path().read_text())
    except FileNotFoundError:
        return {}
    except ValueError:            # cut short or overwritten: digests are only a shortcut, recompute them
        return {}
    return known if isinstance(known, dict) else {}


def _write_cache(known: dict) -> None:
    """Write the digest cache whole (temporary file, then rename): two processes never mix their writes."""
    path = _cache_path()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(known, indent=0))
        os.replace(tmp, path)
    except OSError:               # a read-only or full VTCLIP_HOME: the digest is right, only not remembered
        tmp.unlink(missing_ok=True)
