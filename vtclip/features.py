"""Batched extraction of pooled + spatial CLIP features, augmented views, and an on-disk cache.

A cache entry is a folder of ``.npy`` arrays named by the SHA-1 of everything that changes the
features (backbone + weights tag, spatial mode, precision, dataset, split, image identifiers,
transform, views, augmentation seed). Its ``meta.json`` holds that key in full and is checked on
every load, so a stale or foreign entry is never reused; entries are written to a temporary folder
and renamed into place, so an interrupted run leaves no half-written entry.

Faults (issue 22): the free space is checked against the entry's size before its spatial map is
written, and the map's file is allocated on disk before it is memory-mapped, so a full disk is one
``CacheSpaceError`` naming the folder and the size, never a SIGBUS; temporary folders left by a
process that was killed (``.<digest>.tmp-<pid>@<host>``) are removed by the next extraction.
Taught in: chapter 04 (few-shot training).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm

from . import settings
from .backbones.hf import ToRGB
from .datasets.base import BadImageError

#: Bumped when the layout of an entry, or what the same key's features are, changes; an entry of an
#: older format is never reused (the format is part of its key). 1: the first. 2: image files with
#: transparency composited onto white and 16-bit ones scaled to 8 bits (a726403, b8964f8; format-1
#: entries of such images hold the features of other pixels). 3: 32-bit integer (mode I) images scaled
#: from the smallest range that holds them (5571f16; format-2 entries of 8-bit data saved as mode I hold
#: the features of a nearly black image).
CACHE_FORMAT = 3


@dataclass
class FeatureSet:
    """Features of one split: ``V`` views of ``N`` images."""

    pooled: torch.Tensor    # (V, N, D) L2-normalised image embeddings
    spatial: torch.Tensor   # (V, N, HW, C) spatial maps
    labels: torch.Tensor    # (N,) class indices
    grid: tuple[int, int]   # (H, W) of the spatial map

    @property
    def views(self) -> int:
        return self.pooled.shape[0]

    def __len__(self) -> int:
        return self.pooled.shape[1]

    def to(self, device) -> "FeatureSet":
        """These features on ``device``; spatial maps of more than ``DEVICE_SPATIAL_BYTES`` stay where
        they are (host memory, or the memory-mapped cache entry): ``fit`` and ``predict`` move each
        batch to the model's device, so a real dataset's views need not fit in GPU memory."""
        spatial = self.spatial
        if spatial.numel() * spatial.element_size() <= DEVICE_SPATIAL_BYTES:
            spatial = spatial.to(device)
        return FeatureSet(self.pooled.to(device), spatial, self.labels.to(device), self.grid)


#: The largest spatial map (bytes) that ``FeatureSet.to`` moves to a device whole. 16-shot ImageNet
#: with 10 views is 45-90 GiB of maps (ViT-B/16, fp16-fp32): those are read batch by batch instead.
DEVICE_SPATIAL_BYTES = 4 * 2**30


#: Training augmentations a dataset can ask for (``LabeledImages.augment_policy``).
AUGMENT_POLICIES = ("crop-flip", "flip")


def augment_transform(clip, policy: str = "crop-flip") -> T.Compose:
    """Training augmentation, then normalise.

    ``"crop-flip"``: random resized crop (scale 0.5-1) + horizontal flip, for photos. The scale is
    Tip-Adapter's, whose cache is also built from a fixed number of augmented views (its
    ``main.py``). CoOp's protocol, which VT-CLIP, CoOp and CLIP-Adapter train under, crops with
    Dassl's default scale 0.08-1 and draws fresh crops every epoch; CLIP's own preprocessing has
    no random crop (resize + centre crop).
    ``"flip"``: the backbone's own resize and centre crop, then a horizontal flip, for images whose
    content must keep its scale and position (the Pocket world: Pocket CLIP only ever saw objects at
    their rendered scale, centred on its patch lattice, and crops move and rescale them off it). The
    resize is a no-op for Pocket CLIP on Pocket images (both 64 px) and lets a backbone of another
    input size (RN50, ViT-B/16: 224 px) train on them.
    """
    if policy not in AUGMENT_POLICIES:
        raise ValueError(f"unknown augmentation policy {policy!r}; known: {AUGMENT_POLICIES}")
    norm = next(t for t in clip.preprocess.transforms if isinstance(t, T.Normalize))
    if policy == "crop-flip":
        geometry = [T.RandomResizedCrop(clip.image_size, scale=(0.5, 1.0), interpolation=T.InterpolationMode.BICUBIC)]
    else:
        geometry = [T.Resize(clip.image_size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(clip.image_size)]
    return T.Compose([
        ToRGB(),                           # transparency on white, as in the backbone's own preprocessing
        *geometry,
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(norm.mean, norm.std),
    ])


def view_transform(clip, dataset, augment: bool):
    """The transform of a view of ``dataset``: its augmentation policy, or the plain preprocess."""
    if not augment:
        return clip.preprocess
    return augment_transform(clip, getattr(dataset, "augment_policy", "crop-flip"))


class _Views(Dataset):
    """Every view of ``dataset[indices]``, view-major: item ``v * len(indices) + j`` is image
    ``indices[j]`` under view ``v`` (plain preprocess, or a seeded augmentation). One loader
    covers all views, so worker processes start once per extraction, not once per view."""

    def __init__(self, dataset, indices, transform, views: int, seed: int | None):
        self.dataset, self.indices, self.transform = dataset, indices, transform
        self.views, self.seed = views, seed

    def __len__(self) -> int:
        return self.views * len(self.indices)

    def __getitem__(self, j: int) -> torch.Tensor:
        view, k = divmod(j, len(self.indices))
        i = int(self.indices[k])
        img = self.dataset.load_image(i)
        if self.seed is None:
            return self.transform(img)
        # a fixed seed per (seed, view, image): the same crops everywhere. fork_rng restores the
        # caller's random state afterwards, so what runs next (a head's initialisation, say) does not
        # depend on whether the features came from the cache or were just extracted.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + view * 100_003 + i) % 2**63)
            return self.transform(img)


def encode_views(clip, dataset, indices, transform, views: int, seed: int | None, batch_size: int,
                 workers: int, desc: str, progress: bool, store_dtype: str = "float32",
                 spatial_file: Path | None = None):
    """Encode ``views`` views of ``dataset[indices]``: pooled (V, N, D), spatial (V, N, HW, C), grid.

    With ``spatial_file`` the spatial maps are written batch by batch into that ``.npy`` file (memory-
    mapped) instead of being held in memory: a real dataset's maps can be larger than the RAM.
    """
    loader = DataLoader(_Views(dataset, indices, transform, views, seed), batch_size=batch_size,
                        num_workers=workers, pin_memory=clip.device.type == "cuda",
                        generator=torch.Generator().manual_seed(0))   # its base seed: not from the caller's RNG
    try:
        pooled, spatial, grid = _encode_all(clip, loader, desc, progress, (views, len(indices)), store_dtype,
                                            spatial_file)
    except BadImageError as err:
        clean = _worker_error(err, dataset, indices)
        if clean is err:
            raise
        raise clean from None
    return pooled, spatial, grid


def _worker_error(err: BadImageError, dataset, indices) -> BadImageError:
    """The ``BadImageError`` a DataLoader worker raised, as it raised it.

    torch re-raises a worker's exception in the main process as the same type built from one string:
    "Caught BadImageError in DataLoader worker process N. Original Traceback ..." and the whole worker
    traceback, whose last entry is ``vtclip.datasets.base.BadImageError: <the message>``. That message
    (which names the file and what to do) is kept, and ``path`` is found again among the images asked for.
    """
    marker = f"{BadImageError.__module__}.{BadImageError.__qualname__}: "
    text = str(err)
    if err.path or marker not in text:       # raised in this process (no workers): already as raised
        return err
    message = text.rsplit(marker, 1)[1].rstrip()
    root, paths = getattr(dataset, "root", None), getattr(dataset, "paths", None)
    candidates = (str(Path(root) / paths[int(i)]) for i in indices) if root is not None and paths else ()
    path = next((c for c in candidates if message.startswith(f"cannot read image {c}: ")), "")
    return BadImageError(message, path=path)


def cache_key(clip, dataset_name: str, split: str, dataset, indices, views: int,
              augment: bool, seed: int | None, store_dtype: str) -> dict:
    """Everything that changes the features, as a JSON-able dict.

    Images are named by ``dataset.ident`` (a path relative to the dataset's root, or a render seed),
    so the root itself is part of the key: two data roots with the same layout are two datasets. The
    device type is too (a GPU's convolutions do not give a CPU's features bit for bit). An entry
    stores the images' labels next to their features, so the labels are part of the key as well: a
    label corrected in a split file must not come back from the cache as it was. For images stored as
    files, each file's size and modification time are too: an image replaced or edited in place is
    encoded again, not served from the cache as it was.
    """
    idents = hashlib.sha1("\n".join(dataset.ident(int(i)) for i in indices).encode()).hexdigest()
    labels = np.asarray(dataset.labels)[np.asarray(indices, dtype=int)].astype(np.int64)
    transform = view_transform(clip, dataset, augment)
    root = getattr(dataset, "root", None)
    files = None
    if root is not None and hasattr(dataset, "paths"):
        files = hashlib.sha1("\n".join(_file_stamp(Path(root) / dataset.paths[int(i)])
                                       for i in indices).encode()).hexdigest()
    return {"format": CACHE_FORMAT, "backbone": clip.name, "weights": clip.weights_tag,
            "device": clip.device.type, "root": str(Path(root).resolve()) if root is not None else None,
            "spatial": clip.spatial_mode, "precision": str(clip.dtype), "dataset": dataset_name,
            "split": split, "n_images": len(indices), "images_sha1": idents, "files_sha1": files,
            "labels_sha1": hashlib.sha1(labels.tobytes()).hexdigest(),
            "transform": repr(transform), "views": views, "augment": augment,
            "aug_seed": seed if augment else None, "store_dtype": store_dtype}


def _file_stamp(path: Path) -> str:
    """``size:mtime_ns`` of a file (``missing`` if it is not there: reading it will say so)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def key_digest(key: dict) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def entry_dir(key: dict, dataset_name: str, cache_dir: str | Path | None = None) -> Path:
    """The cache folder of ``key``: ``<cache_dir or $VTCLIP_HOME/features>/<dataset>/<digest>``."""
    return Path(cache_dir or settings.home("features")) / dataset_name / key_digest(key)


@torch.no_grad()
def _encode_all(clip, loader, desc: str, progress: bool, lead: tuple[int, int], store_dtype: str = "float32",
                spatial_file: Path | None = None):
    """Every batch of ``loader`` (``lead`` = (V, N): view-major items) encoded into arrays of shape
    (V, N, ...) allocated once (no list of batches to join, which would need the memory twice); the
    spatial one is a memory-mapped ``spatial_file`` if given."""
    # one iterator, made here: tqdm.auto's asyncio wrapper calls iter() on what it is given, which for
    # a DataLoader would start (and abandon) a second set of workers
    batches = iter(loader)
    try:
        encoded = _encode_batches(clip, batches, desc, progress, lead, store_dtype, spatial_file)
    finally:                               # an error: stop the workers now, not when collected
        getattr(batches, "_shutdown_workers", lambda: None)()
    return encoded


def _encode_batches(clip, batches, desc, progress, lead, store_dtype, spatial_file):
    done, pooled, spatial, mapped, grid = 0, None, None, None, None
    for pixels in tqdm(batches, total=len(batches), desc=desc, disable=not progress, leave=False):
        f = clip.encode_image(pixels.to(clip.device, non_blocking=True))
        if pooled is None:                 # the shapes are known from the first batch on
            pooled = torch.empty((*lead, *f.pooled.shape[1:]), dtype=f.pooled.dtype)
            shape = (*lead, *f.spatial.shape[1:])
            if spatial_file is None:
                spatial = torch.empty(shape, dtype=getattr(torch, store_dtype))
            else:
                pooled_bytes = pooled.numel() * pooled.element_size() + lead[1] * 8   # + labels (int64)
                mapped = spatial_memmap(spatial_file, store_dtype, shape, pooled_bytes)
                spatial = torch.from_numpy(mapped)
        b = len(f.pooled)
        pooled.view(-1, *pooled.shape[2:])[done:done + b] = f.pooled.cpu()                  # (b, D)
        spatial.view(-1, *spatial.shape[2:])[done:done + b] = f.spatial.cpu().to(spatial.dtype)   # (b, HW, C)
        done, grid = done + b, f.grid
    if mapped is not None:
        mapped.flush()
    return pooled, spatial, grid


class CacheSpaceError(OSError):
    """The disk under the feature cache has no room for an entry."""


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _gib(n: int) -> str:
    """A byte count for a message: GiB from 1 GiB up, MiB below (0.01 GiB would hide the sizes)."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _no_space(folder: Path, needed: int | None, free: int | None) -> CacheSpaceError:
    """The one message for a full disk under the cache: how much, where, and what to do."""
    size = "" if needed is None else f" ({_gib(needed)} needed, {_gib(free)} free)"
    return CacheSpaceError(f"no room on the disk for a feature cache entry in {folder}{size}; free space "
                           "there, or set VTCLIP_HOME (or cache_dir) to a folder on a disk with room")


def spatial_memmap(path: Path, store_dtype: str, shape: tuple, other_bytes: int = 0) -> np.memmap:
    """A new ``.npy`` file of ``shape`` mapped for writing, its blocks allocated on disk beforehand.

    Written through a map, a sparse file on a full disk kills the process with SIGBUS (no Python
    exception, no message); allocating every block first (``posix_fallocate``) turns that into ENOSPC
    here, before any map exists. ``other_bytes``: what the rest of the entry needs on the same disk.
    """
    nbytes = int(np.prod(shape)) * np.dtype(store_dtype).itemsize
    free = shutil.disk_usage(path.parent).free
    if nbytes + other_bytes > free:
        raise _no_space(path.parent.parent, nbytes + other_bytes, free)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(store_dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    try:
        with open(path, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            _allocate(fh.fileno(), fh.tell() + nbytes)
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise _no_space(path.parent.parent, nbytes + other_bytes, free) from err
        raise
    return np.lib.format.open_memmap(path, mode="r+")


def _allocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes of disk for the file ``fd`` (ENOSPC now rather than SIGBUS later)."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, 0, size)
            return
        except OSError as err:           # a file system without it: a sparse file, as numpy makes
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    os.ftruncate(fd, size)               # (macOS has no posix_fallocate: there a full disk can still SIGBUS)


def extract(clip, dataset, *, dataset_name: str, split: str, indices=None, views: int = 1,
            augment: bool = False, seed: int | None = 0, batch_size: int = 128,
            num_workers: int | None = None, cache: bool = True, cache_dir: str | Path | None = None,
            store_dtype: str | None = None, mmap: bool = True, progress: bool = True) -> FeatureSet:
    """Features of ``dataset[indices]`` (all images by default) under ``views`` views, cached.

    ``augment=False`` gives the backbone's own preprocessing (one view suffices then);
    ``augment=True`` gives ``views`` seeded augmented views per image, under the dataset's
    ``augment_policy`` (random resized crop + flip unless the dataset says otherwise).
    ``store_dtype="float16"`` halves the cache size (default: ``$VTCLIP_CACHE_DTYPE``, else float32;
    the numbers move slightly, so records say which: ``config.cache_dtype``). With the cache on,
    the spatial maps are written into the entry as they are encoded and (``mmap=True``, the
    default) memory-mapped from it, so they need not fit in memory; ``mmap=False`` reads them into
    memory (the same numbers).
    """
    if views < 1:
        raise ValueError(f"views must be >= 1, got {views}")
    store_dtype = settings.cache_dtype(store_dtype)
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    if len(indices) == 0:
        raise ValueError(f"{dataset_name}/{split}: no images to encode (the split, or the draw from it, is "
                         "empty); `vtclip data check NAME` (a registered name or the image folder's path) shows each "
                         "split's counts")
    key = cache_key(clip, dataset_name, split, dataset, indices, views, augment, seed, store_dtype)
    entry = entry_dir(key, dataset_name, cache_dir)
    if cache and entry.is_dir():
        return load_entry(entry, key, mmap=mmap)
    transform = view_transform(clip, dataset, augment)
    workers = num_workers if num_workers is not None else \
        0 if views * len(indices) <= batch_size else default_workers()   # one batch: a worker only adds its start
    if cache:
        warn_outdated(entry.parent)
    tmp = _new_tmp(entry) if cache else None
    try:
        pooled, spatial, grid = encode_views(clip, dataset, indices, transform, views,
                                             seed if augment else None, batch_size, workers,
                                             f"{dataset_name}/{split} ({views} x {len(indices)} images)",
                                             progress, store_dtype, tmp / "spatial.npy" if tmp else None)
        feats = FeatureSet(pooled, spatial, torch.as_tensor(dataset.labels[indices]), grid)
        if not cache:
            return feats
        write_entry(entry, key, feats, tmp)
    except BaseException as err:            # an error or Ctrl-C: no half-written entry stays behind
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in _DISK_FULL:   # pooled.npy, meta.json, ... on a full disk
            raise _no_space(entry.parent, None, None) from err
        raise
    return load_entry(entry, key, mmap=mmap)


def outdated_entries(folder: Path) -> list[Path]:
    """The entries in a dataset's cache folder written in an older ``CACHE_FORMAT`` (never reused)."""
    old = []
    for meta in Path(folder).glob("*/meta.json"):
        try:
            fmt = json.loads(meta.read_text())["key"]["format"]
        except (OSError, ValueError, KeyError, TypeError):   # damaged: load_entry names it when asked for
            continue
        if isinstance(fmt, int) and fmt < CACHE_FORMAT:
            old.append(meta.parent)
    return sorted(old)


def warn_outdated(folder: Path) -> None:
    """Say, once per folder and process, how much space entries of an older format take there: they
    are not deleted (a cache may be shared with an older vtclip), and nothing will read them again.
    A folder is scanned once per process and format: only an older vtclip writes such entries."""
    if (folder, CACHE_FORMAT) in _SCANNED:
        return
    _SCANNED.add((folder, CACHE_FORMAT))
    old = outdated_entries(folder)
    if old:
        size = sum(f.stat().st_size for e in old for f in e.iterdir() if f.is_file())
        warnings.warn(f"Feature cache entries written by an older vtclip (cache format < {CACHE_FORMAT}) are not "
                      f"reused: {len(old)} in {folder}, {_gib(size)}. Their features are computed again; delete "
                      "those folders (their meta.json says \"format\") to free the space.", OldCacheWarning, stacklevel=3)


class OldCacheWarning(UserWarning):
    """Entries of an older ``CACHE_FORMAT`` sit in a cache folder (never reused; not deleted)."""


_SCANNED: set[tuple[Path, int]] = set()


def default_workers() -> int:
    """DataLoader workers: up to 8, leaving one core for the main process."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def _new_tmp(entry: Path) -> Path:
    """An empty temporary folder next to ``entry``, for this process to write the entry into."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:                   # a read-only mount, or VTCLIP_HOME is a file
        raise OSError(err.errno, f"the feature cache cannot be written under {entry.parent.parent} "
                      f"({err.strerror} at {err.filename}): set VTCLIP_HOME (or cache_dir) to a folder "
                      "you can write to") from None
    remove_stale_tmp(entry.parent.parent)
    tmp = entry.with_name(f".{entry.name}.tmp-{os.getpid()}@{socket.gethostname()}")
    shutil.rmtree(tmp, ignore_errors=True)   # our own leftover from this process id only
    tmp.mkdir()
    return tmp


#: ``.<digest>.tmp-<pid>@<host>``; folders of older versions have no ``@<host>``.
_TMP_NAME = re.compile(r"\.[0-9a-f]+\.tmp-(?P<pid>\d+)(?:@(?P<host>.+))?")


def remove_stale_tmp(cache_root: Path) -> list[Path]:
    """Remove the temporary entries under ``cache_root/<dataset>/`` whose writer is gone.

    A process killed while writing (SIGKILL, a crash) leaves its full-size temporary folder behind.
    Only folders of this machine whose process id is no longer alive go: a cache shared over a
    network file system may hold folders of live processes on other machines. Returns what went.
    """
    if os.name != "posix" or not cache_root.is_dir():    # os.kill(pid, 0) tests a pid on POSIX only
        return []
    host, gone = socket.gethostname(), []
    for folder in cache_root.glob("*/.*.tmp-*"):
        m = _TMP_NAME.fullmatch(folder.name)
        if m and m["host"] in (None, host) and not _alive(int(m["pid"])):
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
    return gone


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_entry(entry: Path, key: dict, feats: FeatureSet, tmp: Path | None = None) -> None:
    """Write a cache entry atomically (temporary folder, then rename). ``tmp``: the temporary folder
    the spatial maps were already encoded into (``extract``); otherwise a new one."""
    tmp = tmp or _new_tmp(entry)
    np.save(tmp / "pooled.npy", feats.pooled.numpy())
    if not (tmp / "spatial.npy").exists():
        np.save(tmp / "spatial.npy", feats.spatial.numpy())
    np.save(tmp / "labels.npy", feats.labels.numpy())
    checks = checksums(feats.pooled.numpy(), feats.spatial.numpy())
    (tmp / "meta.json").write_text(json.dumps({"key": key, "grid": list(feats.grid), "checks": checks}, indent=1))
    try:
        os.rename(tmp, entry)
    except OSError:            # another process finished the same entry first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def load_entry(entry: Path, key: dict, mmap: bool = False) -> FeatureSet:
    """Load a cache entry after checking that its stored key is exactly ``key``."""
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        raise RuntimeError(f"feature cache entry {entry} has no meta.json (not written by vtclip, "
                           "or damaged); delete the folder to recompute it")
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"a JSON {type(meta).__name__}, not an object")
    except ValueError as err:                  # cut short, or not JSON (UnicodeDecodeError is one)
        raise RuntimeError(f"feature cache entry {entry} is damaged (meta.json: {err}); delete that folder to "
                           "recompute it") from err
    if meta.get("key") != key:
        raise RuntimeError(f"feature cache entry {entry} was made for different settings "
                           f"(stored {meta.get('key')}, wanted {key}); it is not reused. Delete it "
                           "or pass another cache_dir.")
    mode = "c" if mmap else None   # copy-on-write: the cache file itself is never written
    try:
        spatial = np.load(entry / "spatial.npy", mmap_mode=mode)
        feats = FeatureSet(torch.from_numpy(np.load(entry / "pooled.npy")),
                           torch.from_numpy(np.asarray(spatial) if not mmap else spatial),
                           torch.from_numpy(np.load(entry / "labels.npy")), tuple(meta["grid"]))
        want = (key.get("views"), key.get("n_images"))
        if None not in want and (feats.pooled.shape[:2] != want or feats.spatial.shape[:2] != want
                                 or feats.labels.shape != want[1:]):
            raise ValueError(f"arrays of shapes {tuple(feats.pooled.shape)}, {tuple(feats.spatial.shape)}, "
                             f"{tuple(feats.labels.shape)} for {want[0]} view(s) of {want[1]} images")
        verify_entry(feats, key, meta)
    except (OSError, ValueError, EOFError, KeyError, TypeError) as err:   # a truncated or overwritten file
        # not deleted here: the entry may be another run's, or sit in a cache others share
        raise RuntimeError(f"feature cache entry {entry} is damaged ({type(err).__name__}: {err}); delete that "
                           "folder to recompute it") from err
    return feats


#: Rows (one view of one image each) of the spatial map that an entry's sampled checksum covers: any
#: of them altered is caught, and reading them at every load stays cheap (32 rows of RN50's raw map: 13 MB).
CHECKED_ROWS = 32
#: Spatial maps up to this size are checked whole at every load (a Pocket entry: tens of MB, hashed in
#: tens of ms); larger ones by the sampled rows only (an ImageNet map would be read in full each time).
FULL_CHECK_BYTES = 512 * 2**20


def checksums(pooled: np.ndarray, spatial: np.ndarray, rows: list[int] | None = None, full: bool = True) -> dict:
    """SHA-1 of the whole pooled array, of ``rows`` (default: ``CHECKED_ROWS`` spread evenly) of the
    spatial map (V, N, HW, C) taken as V*N rows, and (``full``) of the whole map, read row by row so a
    memory-mapped map is never copied whole; with ``full=False`` only the sampled rows are touched."""
    flat = spatial.reshape(-1, *spatial.shape[2:])                                      # (V*N, HW, C)
    if rows is None:
        rows = np.unique(np.linspace(0, len(flat) - 1, min(CHECKED_ROWS, len(flat))).round().astype(int)).tolist()
    sample = hashlib.sha1()
    for i in rows:
        sample.update(np.ascontiguousarray(flat[i]).tobytes())
    out = {"pooled_sha1": hashlib.sha1(np.ascontiguousarray(pooled).tobytes()).hexdigest(),
           "spatial_rows": rows, "spatial_sample_sha1": sample.hexdigest()}
    if full:
        whole = hashlib.sha1()
        for row in flat:
            whole.update(np.ascontiguousarray(row).tobytes())
        out["spatial_sha1"] = whole.hexdigest()
    return out


def verify_entry(feats: FeatureSet, key: dict, meta: dict) -> None:
    """Raise ``ValueError`` saying what differs if a loaded entry is not what was written: its labels
    against the key's hash, the map's positions against its grid, its features against the checksums
    that ``write_entry`` stored: the pooled features whole, the spatial map whole up to ``FULL_CHECK_BYTES``
    and by its sampled rows beyond (``vtclip data check``-style full reads of huge maps at every load would
    cost more than the extraction saves)."""
    labels = np.asarray(feats.labels).astype(np.int64)
    if key.get("labels_sha1") and hashlib.sha1(labels.tobytes()).hexdigest() != key["labels_sha1"]:
        raise ValueError("its labels.npy differs from the labels it was written with")
    grid = tuple(meta["grid"])
    if len(grid) != 2 or feats.spatial.shape[2] != grid[0] * grid[1]:
        raise ValueError(f"its spatial map has {feats.spatial.shape[2]} positions, its grid {grid} says otherwise")
    checks = meta.get("checks")
    if checks is not None:
        spatial = feats.spatial.numpy()
        whole = "spatial_sha1" in checks and spatial.nbytes <= FULL_CHECK_BYTES
        now = checksums(feats.pooled.numpy(), spatial, checks["spatial_rows"], full=whole)
        changed = [name for name, k in (("pooled.npy", "pooled_sha1"),
                                        ("spatial.npy", "spatial_sha1" if whole else "spatial_sample_sha1"))
                   if now[k] != checks[k]]
        if changed:
            raise ValueError(f"its {' and '.join(changed)} {'differ' if len(changed) > 1 else 'differs'} from the "
                             "checksums written in its meta.json")


def cache_size_bytes(n_images: int, views: int, hw: int, c: int, d: int, store_dtype: str = "float32") -> int:
    """Disk size of one entry: V x N x (HW x C spatial + D pooled) numbers."""
    itemsize = np.dtype(store_dtype).itemsize
    return views * n_images * (hw * c * itemsize + d * 4)
