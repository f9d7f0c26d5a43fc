"""Runs: dataset -> few-shot split -> cached features -> method -> result record (JSON).

Taught in: chapter 04 (few-shot training) and chapter 06 (results).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import itertools
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import features, settings
from .backbones import load_clip
from .datasets import few_shot, few_shot_val, get_dataset
from .methods import MethodContext, build_method
from .prompts import text_classifier
from .train import TrainConfig, config_dict, evaluate, fit


@dataclass
class Task:
    """A backbone on a dataset: the frozen model, class texts and the test features."""

    clip: object
    spec: object
    skip_bad_images: bool       # leave unreadable images out (listed in the records) instead of failing
    text: torch.Tensor          # (K, D) zero-shot class texts (prompt ensemble)
    test: features.FeatureSet   # full test split, one view
    data_root: str | None
    split_source: str
    dropped_images: list        # "split:path" of unreadable images left out (skip_bad_images only)

    def context(self, train, val) -> MethodContext:
        """What a method is built from: this task's backbone, class names, prompts and texts, and
        the given train / val features."""
        return MethodContext(self.clip, self.spec.classnames, list(self.spec.templates), self.text,
                             self.clip.logit_scale, train, val, self.spec.name)

    def split(self, name: str):
        """A split of this task's dataset, honouring ``skip_bad_images``."""
        ds = self.spec.split(name, self.data_root, skip_bad_images=self.skip_bad_images)
        for path in getattr(ds, "dropped_images", []):
            if f"{name}:{path}" not in self.dropped_images:
                self.dropped_images.append(f"{name}:{path}")
        return ds


def load_task(backbone, dataset: str, spatial: str = "raw", data_root=None, progress: bool = True,
              skip_bad_images: bool = False, test: bool = True) -> Task:
    """Load a backbone (name or FrozenCLIP) and a dataset; extract (or reuse) test features.

    ``test=False`` leaves the test split alone (``task.test`` is None): for work that must not
    look at it, such as the dev-split curves of ``vtclip.curves``.
    """
    spec = get_dataset(dataset)
    settings.cache_dtype()                   # a bad $VTCLIP_CACHE_DTYPE: refused before the backbone loads
    if data_root is not None and spec.kind != "real":
        warnings.warn(f"--data-root {data_root} is not used: {spec.name} is a {spec.kind} dataset, which "
                      "reads its images from " + ("its own folder" if spec.kind == "folder" else "nowhere (it "
                      "renders them)"), UnusedOptionWarning, stacklevel=2)
    clip = load_clip(backbone, spatial=spatial) if isinstance(backbone, str) else backbone
    task = Task(clip, spec, skip_bad_images, None, None, data_root, "builtin", [])
    split = task.split("test" if test else "train")
    task.split_source = getattr(split, "split_source", "builtin")
    task.text = text_classifier(clip, spec.classnames, spec.templates).to(clip.device)
    if test:
        task.test = features.extract(clip, split, dataset_name=spec.name, split="test", progress=progress)
    return task


def fewshot_features(task: Task, shots: int, seed: int, views: int, progress: bool = True):
    """K-shot train features (``views`` augmented views) and min(K, 4)-shot val features."""
    train = task.split("train")
    idx = few_shot(train.labels, shots, seed, task.spec.num_classes, classnames=task.spec.classnames)
    tr = features.extract(task.clip, train, dataset_name=task.spec.name, split="train", indices=idx,
                          views=views, augment=True, seed=seed, progress=progress)
    val_split = task.split("val")
    vidx = few_shot_val(val_split.labels, shots, seed, task.spec.num_classes)
    va = features.extract(task.clip, val_split, dataset_name=task.spec.name, split="val",
                          indices=vidx, progress=progress)
    return tr, va


def run_method(task: Task, method: str, shots: int, seed: int, cfg: TrainConfig | None = None,
               progress: bool = True, select: dict | None = None,
               **options) -> tuple[dict, torch.nn.Module, list[dict]]:
    """Train ``method`` on K shots (seed) and evaluate on the full test split -> (record, model, history).

    ``select`` ({option: [values]}, default ``methods.VAL_GRIDS[method]`` minus the options given)
    trains one model per combination and keeps the best on the val split (the first on ties); the
    record lists every candidate's val accuracy, and its ``train_seconds`` covers all of them.
    ``progress=False`` turns off every bar: feature extraction's and the trainer's (``cfg.progress``).
    """
    from .methods import VAL_GRIDS

    cfg = (cfg or TrainConfig.paper(task.spec.name, shots, method)).replace(seed=seed)
    if not progress:
        cfg = cfg.replace(progress=False)
    train, val = fewshot_features(task, shots, seed, cfg.views, progress)
    ctx = task.context(train.to(task.clip.device), val.to(task.clip.device))
    grid = {k: list(v) for k, v in (VAL_GRIDS.get(method, {}) if select is None else select).items()
            if k not in options}
    candidates = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    start = time.perf_counter()
    best, scores = None, []
    for candidate in candidates:
        torch.manual_seed(seed)
        model = build_method(method, ctx, **options, **candidate).to(task.clip.device)
        history = fit(model, ctx.train, cfg, val=ctx.val)
        after_fit = getattr(model, "after_fit", None)  # e.g. Tip-Adapter-F re-searches alpha, beta on val
        chosen = after_fit(ctx.val) if after_fit else None
        if len(candidates) > 1:
            scores.append([candidate, round(evaluate(model, ctx.val)["top1"], 2)])
            if best is not None and scores[-1][1] <= best[0]:
                continue
        best = (scores[-1][1] if scores else None, candidate, model, history, chosen)
    _, candidate, model, history, chosen = best
    seconds = time.perf_counter() - start
    top1 = evaluate(model, task.test.to(task.clip.device))["top1"]
    config = {"train": config_dict(cfg), "method": {**options, **candidate}, "spatial": task.clip.spatial_mode,
              "split_source": task.split_source, "val_per_class": min(shots, 4),
              "dropped_images": task.dropped_images}
    if scores:
        config["selected_on_val"] = {"grid": grid, "val_top1": scores, "chosen": candidate}
    searched = getattr(model, "config", {}).get("chosen")
    if searched:                      # e.g. Tip-Adapter's alpha, beta searched on val when it was built
        config["searched_on_val"] = searched
    if chosen:
        config["after_fit"] = chosen
    if cfg.epoch_on_val:
        config["epoch_chosen_on_val"] = next((h["epoch"] for h in history if h.get("kept")), None)
    return make_record(method, task, shots, seed, top1, seconds, config), model, history


def run_zeroshot(backbone, dataset: str, spatial: str = "raw", data_root=None, out=None,
                 progress: bool = True, skip_bad_images: bool = False) -> dict:
    """Zero-shot top-1 on the full test split (prompt ensemble of the dataset's templates)."""
    if out:                                  # before the test split is encoded
        check_out(out)
        check_record_free(out, "zeroshot", getattr(backbone, "name", backbone), dataset, 0, 0)
    task = load_task(backbone, dataset, spatial, data_root, progress, skip_bad_images)
    from .methods import ZeroShot

    top1 = evaluate(ZeroShot(task.text, task.clip.logit_scale), task.test)["top1"]
    record = make_record("zeroshot", task, 0, 0, top1, 0.0, {"templates": list(task.spec.templates),
                                                            "split_source": task.split_source,
                                                            "dropped_images": task.dropped_images})
    if out:
        keep_result(lambda: write_record(record, out), record, Path(out) / record_name(record))
    return record


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores)"


def data_fingerprint(spec) -> str | None:
    """The content digest of an image folder's dataset (``datasets.folder.fingerprint``); None for a
    registered dataset, whose name fixes its classes, prompts and split rules."""
    return spec.extra.get("fingerprint")


def make_record(method: str, task: Task, shots: int, seed: int, top1: float, seconds: float,
                config: dict) -> dict:
    """A result record in the documented shape (see ARCHITECTURE.md, "Few-shot pipeline"), plus
    ``weights``: the backbone's weights tag (for Pocket CLIP ``pocket:<digest of the shipped weights>``),
    so a record says which checkpoint it was measured on, and ``data``: an image folder's content
    digest (``data_fingerprint``), so it says which images."""
    return {"method": method, "backbone": task.clip.name, "weights": task.clip.weights_tag,
            "dataset": task.spec.name, "data": data_fingerprint(task.spec), "shots": shots,
            "seed": seed, "top1": round(top1, 2), "n_test": len(task.test),
            "num_classes": task.spec.num_classes, "train_seconds": round(seconds, 2),
            "device": device_name(task.clip.device),
            "config": {**config, "cache_dtype": str(task.test.spatial.dtype).removeprefix("torch.")},
            "vtclip_version": _version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def method_label(method: str, variant: str | None = None) -> str:
    """``method`` or ``method+variant``: how a variant's runs are named in files and tables."""
    return method + (f"+{variant}" if variant else "")


def record_name(record: dict) -> str:
    """``method[+variant]__backbone__dataset__Kshot__seedS.json`` (a variant is an ablation's name)."""
    backbone = record["backbone"].replace("/", "-")
    method = method_label(record["method"], record.get("variant"))
    return f"{method}__{backbone}__{record['dataset']}__{record['shots']}shot__seed{record['seed']}.json"


def backbone_label(backbone: str) -> str:
    """The ``backbone`` a record of ``load_clip(backbone)`` will carry: a local directory's name, else
    the name itself."""
    path = Path(backbone).expanduser()             # as load_clip reads it: "~/models/x" is x
    return path.name if path.is_dir() else backbone


def dataset_label(dataset: str) -> str:
    """The ``dataset`` a record of a run on ``dataset`` will carry: an image folder's dataset name for
    a folder path, else the name itself (registered datasets are keyed by their name)."""
    from .datasets import get_dataset

    return get_dataset(dataset).name if Path(dataset).expanduser().is_dir() else dataset


def run_record_name(method: str, backbone: str, dataset: str, shots: int, seed: int, variant=None) -> str:
    """The file name of the record this run would write (``backbone``/``dataset`` as given on the CLI)."""
    return record_name({"method": method, "variant": variant, "backbone": backbone_label(backbone),
                        "dataset": dataset_label(dataset), "shots": shots, "seed": seed})


def check_out(out) -> Path:
    """Make ``out`` (a results folder) before any work, or say why it cannot be one."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a folder for the records")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot create that folder ({err.strerror}); give a folder you can "
                         "write to") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out}: no permission to write there; give a folder you can write to")
    check_writable(out, "--out")
    return out


@contextlib.contextmanager
def out_lock(out, flag: str = "--out"):
    """Hold ``out``'s lock (``out/.vtclip.lock``) while a grid works there: two grids on one folder
    would each train every missing run, and one of the two would fail on the other's record."""
    from filelock import FileLock, Timeout

    lock = FileLock(Path(out) / ".vtclip.lock", blocking=False)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(f"{flag} {out} is in use by another vtclip process (it holds {Path(out) / '.vtclip.lock'}); "
                         f"wait for it to finish, or give another {flag}") from None
    try:
        yield
    finally:
        lock.release()


def check_writable(folder, flag: str, name: str | None = None) -> None:
    """Write and remove a small file in ``folder`` before any work, so that a full disk or a read-only
    mount (which permissions do not show, least of all to root) stops the command now, not after it.

    ``name``: a file the command will write there; the probe is then that file's temporary file
    (``temp_name``), so that a name the file system refuses (too long) stops it now too, naming the file.
    """
    probe = temp_name(Path(folder) / name) if name else Path(folder) / f".vtclip-write-test-{os.getpid()}"
    created = False
    try:
        with open(probe, "wb") as f:
            created = True
            f.write(bytes(65536))                # a record's size and then some
            f.flush()
            os.fsync(f.fileno())                 # a full disk may refuse only here
    except OSError as err:
        where = f"{flag}: cannot write {Path(folder) / name}" if name else f"{flag} {folder}: cannot write there"
        todo = ("its file system refuses a name that long: give the backbone or image folder a shorter name"
                if err.errno == errno.ENAMETOOLONG else "give a folder you can write to, with free space")
        raise ValueError(f"{where} ({err.strerror or err}); {todo}") from None
    finally:
        if created:                              # on a read-only mount even unlink() fails (EROFS)
            probe.unlink(missing_ok=True)


def keep_result(write: Callable[[], Path], record: dict, where, in_grid: bool = False) -> Path | None:
    """``write()`` the finished ``record``; if that fails, print it as JSON and say on stderr where it
    could not be written, so that the work is never lost. The path written, or None.

    A command with one result prints it on stdout, as its result. A grid (``in_grid``: sweep, curves,
    demo) prints each record it could not write on stderr, so that its stdout still holds its own
    account alone (the one JSON object under ``--json``)."""
    try:
        return write()
    except OSError as err:
        stream = sys.stderr if in_grid else sys.stdout
        print(json.dumps(record, indent=1), file=stream)
        print(f"vtclip: could not write {where} ({err}); the result is the JSON printed above"
              f"{' on stderr' if in_grid else ''}: save it by hand", file=sys.stderr)
        return None


def check_grid(methods=(), datasets=(), shots=(), seeds=(), backbone=None) -> None:
    """Before any work: the backbone and every method and dataset of a grid are known, and nothing is
    given twice (a seed twice would count one run twice in a mean, or fail after training on its own
    record). An unknown backbone would otherwise fail every run of the grid, one by one."""
    from .backbones import check_backbone
    from .methods import METHODS

    if isinstance(backbone, str):
        check_backbone(backbone)

    for flag, values in (("--methods", methods), ("--datasets", datasets), ("--shots", shots), ("--seeds", seeds)):
        twice = sorted({str(v) for v in values if list(values).count(v) > 1})
        if twice:
            raise ValueError(f"{flag}: {', '.join(twice)} given more than once; give each once")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}. Known methods: {', '.join(METHODS)}")
    for d in datasets:
        get_dataset(d)                       # an unknown name: the list of known ones


def check_record_free(out, method: str, backbone: str, dataset: str, shots: int, seed: int) -> None:
    """Raise before any work if the record this run would write already exists."""
    name = run_record_name(method, backbone, dataset, shots, seed)
    if (Path(out) / name).exists():
        raise FileExistsError(f"{Path(out) / name} already exists (a finished run); not overwriting "
                              "it. Use another --out directory or delete that file.")


def write_new(path: str | Path, text: str, what: str = "",
              advice: str = "Use another --out or move that file away.") -> Path:
    """Write ``text`` as a new file ``path``, atomically: a temporary file, then a hard link, so a crash
    leaves no half-written file and an existing one (``what`` it is, for the message) is never replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        tmp.write_text(text)        # a full disk fails here: the partial file goes in ``finally``
        os.link(tmp, path)          # fails if the file exists: a finished run is never replaced
    except FileExistsError:
        raise FileExistsError(f"{path} already exists{what}; not overwriting it. {advice}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def temp_name(path) -> Path:
    """The temporary file beside ``path`` that it is written to whole before it takes its name."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_record(record: dict, out: str | Path, name: str | None = None) -> Path:
    """Write ``record`` into ``out`` (as ``name``, default ``record_name(record)``) atomically; never
    overwrite an existing record."""
    return write_new(Path(out) / (name or record_name(record)), json.dumps(record, indent=1),
                     " (a finished run)", "Use another --out directory or delete that file.")


def finished_records(out, backbone: str, curves: bool = False) -> list[Path]:
    """The records (``curves=True``: the ``*.curves.json`` records) of ``backbone`` already in ``out``."""
    label = backbone_label(backbone).replace("/", "-")
    found = sorted(Path(out).glob("*__*__*__*shot__seed*.json"))
    return [p for p in found if p.name.split("__")[1] == label and p.name.endswith(".curves.json") == curves]


def summary_row(path) -> str:
    """The row of ``summary.csv`` a record file falls in: its name without the seed."""
    return Path(path).name.rsplit("__seed", 1)[0]


def check_resume(out, backbone: str, recipes: dict, load_clip, curves: bool = False, datasets=()):
    """Before a grid resumes or extends ``out``: every record of ``backbone`` there must come from the
    same weights (``check_same_weights``, whose backbone is returned), those of the grid's image
    folders (``datasets`` as given) from the same images (``check_same_data``), and those in a summary
    row the grid adds to (``recipes``: row -> (TrainConfig, method options, spatial map)), any seed,
    from the same recipe (``check_same_training``)."""
    finished = finished_records(out, backbone, curves)
    check_same_data(finished, datasets)
    in_rows = {p: recipes[summary_row(p)] for p in finished if summary_row(p) in recipes}
    check_same_training({p: r[0] for p, r in in_rows.items()}, options={p: r[1] for p, r in in_rows.items()},
                        spatial={p: r[2] for p, r in in_rows.items()})
    return check_same_weights(finished, load_clip)


def check_same_weights(paths, load_clip):
    """Before resuming a grid: refuse a folder whose finished records were measured on other weights.

    ``paths`` are record files (``finished_records``: every record of the backbone in the folder, not
    only the grid's); only if some exist is ``load_clip()`` called, and the backbone it returns (or
    ``None`` when nothing is finished) is handed back for the runs still to do. A resumed grid skips
    every run whose record exists and adds its new records beside the others, so a folder that
    already holds records of another checkpoint (say, Pocket CLIP before it was re-shipped) would
    end up mixing two models in one table without a word. Each record carries ``weights`` (the
    backbone's ``weights_tag``); records of another tag, or without one (written before records
    carried it), stop the run.
    """
    finished = readable_records(paths)
    if not finished:
        return None
    clip = load_clip()
    foreign = [(p, r.get("weights")) for p, r in finished.items() if r.get("weights") != clip.weights_tag]
    if foreign:
        path, tag = foreign[0]
        what = f"weights {tag!r}" if tag else "no weights tag (written before records carried one)"
        raise ValueError(
            f"{path} (and {len(foreign) - 1} more record(s) there) was measured with {what}, but "
            f"backbone {clip.name!r} now has weights {clip.weights_tag!r}; resuming would mix two "
            "checkpoints in one folder. Use a new --out folder, or move the old records away.")
    return clip


def check_same_data(paths, datasets) -> None:
    """Before resuming a grid: refuse records of its image folders measured on other images.

    A folder's images can change between two runs of a grid (added, removed, re-sorted; class names
    or prompts edited); its split changes with them, so a resumed grid would average runs on two
    splits in one row. Each record carries the folder's content digest (``data``); records of a grid's
    folder with another digest, or none (written before records carried one), stop the run.
    """
    from .datasets import get_dataset

    specs = {s.name: s for s in map(get_dataset, datasets) if data_fingerprint(s)}
    stale = [(p, r) for p, r in readable_records(paths).items()
             if r["dataset"] in specs and r.get("data") != data_fingerprint(specs[r["dataset"]])]
    if stale:
        path, record = stale[0]
        spec = specs[record["dataset"]]
        was = f"content {record['data']!r}" if record.get("data") else "no content digest (an older record)"
        raise ValueError(
            f"{path} (and {len(stale) - 1} more record(s) there) was measured on {spec.extra['path']} with {was} "
            f"and {record.get('n_test', '?')} test images; it now has content {data_fingerprint(spec)!r} and "
            f"{spec.extra['sizes']['test']} test images (images or class names changed); resuming would mix "
            "two splits in one row. Use a new --out folder, or move the old records away.")


class UnusedOptionWarning(UserWarning):
    """An option was given that the run does not use (e.g. ``--data-root`` for a rendered dataset)."""


class BadRecordWarning(UserWarning):
    """A file named like a result record in a results folder cannot be read as one."""


#: Keys every record has, which tables and checks read (``vtclip curves`` records have no ``top1``).
RECORD_KEYS = ("method", "backbone", "dataset", "shots", "seed")


def read_record(path) -> dict:
    """The record in ``path``, or a ``ValueError`` naming the file and what is wrong with it."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable result record ({err})") from None
    need = RECORD_KEYS + (() if path.name.endswith(".curves.json") else ("top1",))
    missing = [k for k in need if k not in record] if isinstance(record, dict) else list(need)
    if missing or not isinstance(record.get("config", {}), dict):
        raise ValueError(f"{path} is not a result record (it lacks {', '.join(missing) or 'a config object'})")
    wrong = _wrong_types(record)
    if wrong:
        raise ValueError(f"{path} is not a result record ({'; '.join(wrong)})")
    other = _named_otherwise(path, record)
    if other:
        raise ValueError(f"{path} holds the record of another run than its name says ({other})")
    return record


def _named_otherwise(path: Path, record: dict) -> str:
    """Where a record file's name and the run its content describes disagree ("" where they agree):
    a copied or hand-edited file would otherwise count as a run it is not, and be averaged as one."""
    suffix = ".curves.json" if path.name.endswith(".curves.json") else ".json"
    want = record_name(record).removesuffix(".json")
    named = path.name.removesuffix(suffix)
    if want == named:
        return ""
    parts, named_parts = want.split("__"), named.split("__")
    if len(parts) != len(named_parts):
        return f"its content is the record of {want}{suffix}"
    return "; ".join(f"its content says {a}, its name {b}" for a, b in zip(parts, named_parts) if a != b)


def _wrong_types(record: dict) -> list[str]:
    """What is wrongly typed in a record's key fields (a summary would fail on it, far from the file)."""
    def whole(v):
        return isinstance(v, int) and not isinstance(v, bool)

    def number(v):
        return (whole(v) or isinstance(v, float)) and v == v           # not NaN
    checks = [(k, lambda v: isinstance(v, str) and v != "", "a name") for k in ("method", "backbone", "dataset")]
    checks += [("shots", lambda v: whole(v) and v >= 0, "a whole number >= 0"), ("seed", whole, "a whole number")]
    if "top1" in record:
        checks.append(("top1", lambda v: number(v) and 0 <= v <= 100, "a percentage"))
    return [f"its {k} is {record[k]!r}, not {what}" for k, ok, what in checks if not ok(record[k])]


def readable_records(paths) -> dict:
    """{path: record} of the record files in ``paths`` that exist; each unreadable one is left out
    with a ``BadRecordWarning`` naming it, so one damaged file does not stop every grid in its folder."""
    out = {}
    for path in map(Path, paths):
        if not path.exists():
            continue
        try:
            out[path] = read_record(path)
        except ValueError as err:
            stat = path.stat()
            seen = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
            if seen not in _REPORTED:             # a grid reads its folder several times: say it once
                _REPORTED.add(seen)
                warnings.warn(f"{err}; left out. Delete it to have that run done again, or move it away.",
                              BadRecordWarning, stacklevel=2)
    return out


#: The unreadable record files already named in a warning (path, size, mtime: a changed file is new).
_REPORTED: set[tuple] = set()


def _option_defaults(method: str | None) -> dict:
    """A method's options at their defaults (an option given at its default is the default recipe)."""
    from .methods import METHODS, method_options

    return method_options(method) if method in METHODS else {}


def check_same_training(expected: dict, options: dict | None = None, spatial: dict | None = None) -> None:
    """Refuse to resume into records trained with another recipe.

    ``expected`` maps record files to the ``TrainConfig`` the grid trains their summary row with:
    the grid's own files and every other record already in a row the grid adds to (other seeds). A
    resumed grid skips every run whose record exists, so a folder holding (say) ``--preset fast``
    records, resumed or extended with ``--preset paper``, would mix two schedules in one row of the
    table. Every finished record's ``config.train`` must equal its expected config, except the seed
    and the progress bar (fields a record does not have, written before they existed, are not compared).
    ``options`` maps record files to the method options the grid gives: the record's ``config.method``
    must hold exactly those, apart from the options its run chose on val (``selected_on_val``); an
    option at its default value counts as not given. A variant named by hand could otherwise hide a
    change, and ``vtclip train --heads 4`` writes a record under the same name as a default run.
    ``spatial`` maps record files to the grid's spatial map, which must be the record's
    ``config.spatial``.
    """
    skip, unset, dtype = ("seed", "progress"), "(default)", settings.cache_dtype()
    records = readable_records(expected)
    for path, cfg in expected.items():
        path = Path(path)
        if path not in records:
            continue
        record = records[path]
        config = record.get("config", {})
        have, want = config.get("train", {}), config_dict(cfg)
        diff = {k: (have[k], want[k]) for k in have if k in want and k not in skip and have[k] != want[k]}
        chosen = set(config.get("selected_on_val", {}).get("grid", {}))
        defaults = _option_defaults(record.get("method"))
        given = {k: v for k, v in (options or {}).get(path, {}).items() if defaults.get(k, unset) != v}
        had = {k: v for k, v in config.get("method", {}).items()
               if k not in chosen and defaults.get(k, unset) != v}
        diff.update({k: (had.get(k, unset), given.get(k, unset)) for k in sorted(set(had) | set(given))
                     if had.get(k, unset) != given.get(k, unset)})
        want_spatial = (spatial or {}).get(path)
        if want_spatial and config.get("spatial", want_spatial) != want_spatial:
            diff["spatial"] = (config["spatial"], want_spatial)
        if config.get("cache_dtype", "float32") != dtype:                      # older records: float32
            diff["cache_dtype"] = (config.get("cache_dtype", "float32"), dtype)
        if diff:
            shown = ", ".join(f"{k}={a!r} (this grid: {b!r})" for k, (a, b) in diff.items())
            raise ValueError(f"{path} was trained with {shown}; resuming would mix two training recipes "
                             "in one folder. Use the same --preset/--train/--option/--spatial/VTCLIP_CACHE_DTYPE "
                             "as that folder's runs, a new --out folder, or move the old records away.")


def dataset_names(names) -> list[str]:
    """Dataset names as given on the command line, ``pocket`` standing for the whole Pocket suite."""
    return [d for name in names for d in (pocket_suite() if name == "pocket" else [name])]


def pocket_suite() -> list[str]:
    """Names of the registered Pocket benchmark datasets."""
    from .datasets import DATASETS

    names = [n for n, s in DATASETS.items() if s.kind == "pocket"]
    if not names:
        raise RuntimeError("no Pocket datasets are registered (vtclip.pocket.suite failed to import?)")
    return names


def run_demo(backbone: str = "pocket", datasets=None, shots: int = 16, seeds=(1, 2, 3),
             cfg: TrainConfig | None = None, out=None, progress: bool = True) -> dict:
    """The offline main job: zero-shot vs VT-CLIP (mean and std over seeds) on the Pocket suite (or
    on ``datasets``)."""
    start = time.perf_counter()
    suite = pocket_suite()
    check_grid(datasets=datasets or (), seeds=seeds)
    clip = load_clip(backbone)
    if out:                                  # before any training: never overwrite, never waste the work
        check_out(out)
        for name in datasets or suite:
            for seed in seeds:
                check_record_free(out, "vtclip", backbone, name, shots, seed)
    rows = {}
    for name in datasets or pocket_suite():
        task = load_task(clip, name, progress=progress)
        zs = run_zeroshot(clip, name, progress=False)["top1"]
        accs = []
        for seed in seeds:
            record, _, _ = run_method(task, "vtclip", shots, seed, cfg, progress=progress)
            accs.append(record["top1"])
            if out:                          # a write that fails prints the record: the run is not lost
                keep_result(lambda: write_record(record, out), record, Path(out) / record_name(record),
                            in_grid=True)
        rows[name] = {"zeroshot": zs, "vtclip": round(float(np.mean(accs)), 2),
                      "vtclip_std": round(float(np.std(accs)), 2), "vtclip_seeds": accs,
                      "chance": round(100 / task.spec.num_classes, 2)}
    return {"backbone": clip.name, "shots": shots, "seeds": list(seeds),
            "seconds": round(time.perf_counter() - start, 1),
            "config": config_dict(cfg or TrainConfig.paper(shots=shots)), "datasets": rows}


def _version() -> str:
    from . import __version__

    return __version__
