"""Learning curves on a *dev* split: how a method's accuracy moves during training, without the test set.

The few-shot protocol trains on K images per class and scores the last epoch on the test split; it
never shows *when* a method gets better or worse. A dataset's train split has more images than the
K drawn, though, and those are labelled images no run trains on: the **dev split** (here, every
train image outside the seed's K-shot draw, one un-augmented view). ``vtclip curves`` trains a
method as ``vtclip train`` does (same features, preset, builder and trainer; one model with the
options given, so no option is chosen on val from ``methods.VAL_GRIDS``, and a method's
``after_fit`` step, such as Tip-Adapter-F's re-search, is not run) and scores it after every epoch
on the K-shot draw itself,
on the protocol's small val draw (min(K, 4) per class) and on the dev split -- and never loads the
test split. That makes it a tool for diagnosing a method (does it overfit? would a setting help?)
that cannot leak test accuracy into the decision.

Records are ``method[+variant]__backbone__dataset__Kshot__seedS.curves.json`` (never overwritten;
``vtclip sweep``'s summaries ignore them).
Taught in: chapter 07 (ablations and attention).
"""
from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from . import features
from .backbones import load_clip
from .experiments import (Task, backbone_label, check_grid, check_out, check_resume, data_fingerprint, dataset_label,
                          dataset_names, device_name, fewshot_features, keep_result, load_task, method_label, out_lock,
                          readable_records, record_name, summary_row, write_record, _version)
from .methods import ZeroShot, build_method, check_options
from .train import TrainConfig, check_trains, config_dict, evaluate, fit


def dev_indices(labels, shots: int, seed: int, num_classes: int | None = None) -> np.ndarray:
    """Sorted train-split indices outside the ``shots``-shot draw of ``seed`` (``datasets.few_shot``)."""
    from .datasets import few_shot

    drawn = few_shot(labels, shots, seed, num_classes)
    rest = np.setdiff1d(np.arange(len(labels)), drawn)
    if rest.size == 0:
        raise ValueError(f"a {shots}-shot draw uses every train image; no dev images are left "
                         "(use fewer shots)")
    return rest


def dev_features(task: Task, shots: int, seed: int, progress: bool = True) -> features.FeatureSet:
    """Features (one view, the backbone's own preprocessing) of the dev split of ``task``."""
    train = task.split("train")
    idx = dev_indices(train.labels, shots, seed, task.spec.num_classes)
    return features.extract(task.clip, train, dataset_name=task.spec.name, split="train", indices=idx,
                            progress=progress)


def curves_name(method: str, backbone: str, dataset: str, shots: int, seed: int, variant=None) -> str:
    """``method[+variant]__backbone__dataset__Kshot__seedS.curves.json``."""
    name = record_name({"method": method, "variant": variant, "backbone": backbone_label(backbone),
                        "dataset": dataset_label(dataset), "shots": shots, "seed": seed})
    return name.removesuffix(".json") + ".curves.json"


def run_curves(task: Task, method: str, shots: int, seed: int, cfg: TrainConfig | None = None,
               variant: str | None = None, progress: bool = True, **options) -> dict:
    """Train ``method`` as ``run_method`` does and record per-epoch train / val / dev accuracy.

    Returns a record with the zero-shot accuracy on val and dev for reference and ``history``
    (one row per epoch: ``loss``, ``train_acc``, ``val_acc``, ``dev_acc``). No test accuracy.
    """
    import datetime as dt

    cfg = (cfg or TrainConfig.paper(task.spec.name, shots, method)).replace(seed=seed)
    train, val = fewshot_features(task, shots, seed, cfg.views, progress)
    device = task.clip.device
    train, val = train.to(device), val.to(device)
    ctx = task.context(train, val)
    zeroshot = ZeroShot(task.text, task.clip.logit_scale)
    torch.manual_seed(seed)
    model = build_method(method, ctx, **options).to(device)
    check_trains(model, method, "curves follow a training run epoch by epoch")   # before the dev split
    dev = dev_features(task, shots, seed, progress).to(device)
    start = time.perf_counter()
    history = fit(model, train, cfg, val=val, monitor={"dev": dev})
    seconds = time.perf_counter() - start
    return {"kind": "curves", "method": method, "variant": variant, "backbone": task.clip.name,
            "weights": task.clip.weights_tag,
            "dataset": task.spec.name, "data": data_fingerprint(task.spec), "shots": shots, "seed": seed,
            "n_train": len(train),
            "n_val": len(val), "n_dev": len(dev), "num_classes": task.spec.num_classes,
            "zeroshot": {"val_acc": round(evaluate(zeroshot, val)["top1"], 4),
                         "dev_acc": round(evaluate(zeroshot, dev)["top1"], 4)},
            "history": [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                        for row in history],
            "train_seconds": round(seconds, 2), "device": device_name(device),
            "config": {"train": config_dict(cfg), "method": options, "spatial": task.clip.spatial_mode,
                       "dropped_images": task.dropped_images,
                       "cache_dtype": str(train.spatial.dtype).removeprefix("torch.")},
            "vtclip_version": _version(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def run_curves_grid(method: str, backbone: str, datasets, shots: int, seeds, out, preset: str = "paper",
                    variant: str | None = None, data_root=None, progress: bool = True,
                    skip_bad_images: bool = False, **options) -> dict:
    """``run_curves`` for every (dataset, seed) whose record is not in ``out`` yet; returns counts.

    ``skip_bad_images`` leaves unreadable train / val images out (listed in each record's
    ``config.dropped_images``) instead of stopping."""
    check_grid(methods=[method], datasets=datasets, seeds=seeds, backbone=backbone)
    check_options(method, options)              # before any work, as every other grid
    out = check_out(out)
    with out_lock(out):                         # one process per folder: never a run trained twice
        return _run_curves_grid(method, backbone, datasets, shots, seeds, out, preset, variant, data_root,
                                progress, skip_bad_images, options)


def _run_curves_grid(method, backbone, datasets, shots, seeds, out: Path, preset, variant, data_root, progress,
                     skip_bad_images, options) -> dict:
    """``run_curves_grid`` once its input is checked and ``out`` is locked."""
    done, skipped, unreadable = 0, 0, 0
    # resuming or extending: every curves record of this backbone there must come from the same weights,
    # and those in a row this grid adds to (any seed) from the same schedule and method options
    recipes = {summary_row(curves_name(method, backbone, d, shots, 1, variant)):
               (TrainConfig.preset(preset, dataset_label(d), shots, method=method), options, "raw")
               for d in datasets}
    clip = check_resume(out, backbone, recipes, lambda: load_clip(backbone), curves=True, datasets=datasets)
    for dataset in datasets:
        task = None
        for seed in seeds:
            name = curves_name(method, backbone, dataset, shots, seed, variant)
            if (out / name).exists():        # done; or named in a warning, left as it is, not counted as done
                if out / name in readable_records([out / name]):
                    skipped += 1
                else:
                    unreadable += 1
                continue
            if task is None:
                clip = clip or load_clip(backbone)
                task = load_task(clip, dataset, data_root=data_root, progress=progress, test=False,
                                 skip_bad_images=skip_bad_images)
            cfg = TrainConfig.preset(preset, task.spec.name, shots, method=method, progress=progress)
            record = run_curves(task, method, shots, seed, cfg, variant, progress=progress, **options)
            if keep_result(lambda: write_record(record, out, name), record, out / name, in_grid=True) is None:
                raise OSError(f"could not write {out / name}; its record is printed on stderr")   # not lost
            done += 1
    return {"out": str(out), "ran": done, "already_there": skipped, "unreadable": unreadable}


def load_curves(folder) -> list[dict]:
    """Every ``*.curves.json`` record directly in ``folder``."""
    from .experiments import readable_records

    paths = sorted(Path(folder).glob("*.curves.json"))
    if not paths:
        raise FileNotFoundError(f"no *.curves.json records in {folder} (write them with `vtclip curves "
                                f"--out {folder}`)")
    return list(readable_records(paths).values())     # an unreadable file: named in a warning, left out


def summary(records) -> list[dict]:
    """Per (method, backbone, variant, dataset, shots): zero-shot dev, dev at the last epoch, the best
    epoch of the mean dev curve, and dev at the epoch the val draw would pick (first best val
    accuracy), each a mean over seeds (std over seeds for the last epoch).

    "Best epoch" looks at dev accuracy, so it is an oracle -- an upper bound on what any stopping
    rule could reach, not something a run can use.
    """
    groups = defaultdict(list)
    for r in records:
        groups[r.get("method", ""), r.get("backbone", ""), r.get("variant") or "default", r["dataset"],
               r.get("shots") or 0].append(r)
    rows = []
    for (method, backbone, variant, dataset, shots), rs in sorted(groups.items()):
        dev = np.array([[h["dev_acc"] for h in r["history"]] for r in rs])          # (seeds, epochs)
        val = np.array([[h["val_acc"] for h in r["history"]] for r in rs])
        train = np.array([[h["train_acc"] for h in r["history"]] for r in rs])
        picked = [dev[i, int(np.argmax(val[i]))] for i in range(len(rs))]            # first best val
        mean = dev.mean(0)
        rows.append({"method": method, "backbone": backbone, "variant": variant, "dataset": dataset,
                     "shots": shots, "seeds": len(rs), "epochs": dev.shape[1],
                     "zeroshot_dev": float(np.mean([r["zeroshot"]["dev_acc"] for r in rs])),
                     "last_dev": float(mean[-1]), "last_dev_std": float(dev[:, -1].std()),
                     "best_dev": float(mean.max()), "best_epoch": int(mean.argmax()) + 1,
                     "val_picked_dev": float(np.mean(picked)), "last_train": float(train[:, -1].mean())})
    return rows


def add_commands(sub) -> None:
    p = sub.add_parser("curves", help="per-epoch accuracy on a dev split (train images outside the "
                                      "K-shot draw); never touches the test split")
    from .sweep import add_grid_arguments

    p.add_argument("--method", default="vtclip")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a method option, repeatable (e.g. dropout=0.5, layers=4)")
    p.add_argument("--variant", default=None,
                   help="name the records carry (default: 'default' with no options, else from the options; "
                        "'-PRESET' appended for a preset other than paper)")
    add_grid_arguments(p, "results/pocket-curves")
    p.set_defaults(func=cmd_curves)


def cmd_curves(args) -> int:
    from .options import parse_options, print_json
    from .sweep import variant_label

    options = parse_options(args.option)
    variant = args.variant or (variant_label(options) + ("" if args.preset == "paper" else f"-{args.preset}"))
    result = run_curves_grid(args.method, args.backbone, dataset_names(args.datasets), args.shots, args.seeds, args.out,
                             args.preset, variant, args.data_root, progress=not args.json,
                             skip_bad_images=args.skip_bad_images, **options)
    if args.json:
        print_json({**result, "variant": variant})
    else:
        bad = result["unreadable"]
        print(f"curves: {result['ran']} run(s) done, {result['already_there']} already there"
              + (f", {bad} left out as unreadable (named above: delete them to have those runs done again)"
                 if bad else "") + f", in {args.out}")
        print(curves_table(args.out, args.method, args.backbone, dataset_names(args.datasets), args.shots, variant))
    return 0


def curves_table(out, method: str, backbone: str, datasets, shots: int, variant=None) -> str:
    """The ``summary`` of the grid's rows in ``out`` (every seed recorded there) as a text table."""
    rows = {summary_row(curves_name(method, backbone, d, shots, 0, variant)) for d in datasets}
    records = [r for p, r in readable_records(sorted(Path(out).glob("*.curves.json"))).items()
               if summary_row(p.name.removesuffix(".curves.json")) in rows]
    lines = summary(records)
    w = max(len(r["dataset"]) for r in lines + [{"dataset": "dataset"}])
    table = [f"Dev-split top-1 (%) of {method_label(method, variant)} at {shots} shots, mean over the seeds "
             "recorded (the test split is never read):",
             f"{'dataset':<{w}}  {'seeds':>5}  {'zero-shot':>9}  {'last epoch':>12}  {'best epoch (oracle)':>19}  "
             f"{'picked on val':>13}  {'train, last':>11}"]
    for r in lines:
        last, best = f"{r['last_dev']:.1f} ± {r['last_dev_std']:.1f}", f"{r['best_dev']:.1f} (epoch {r['best_epoch']})"
        table.append(f"{r['dataset']:<{w}}  {r['seeds']:>5}  {r['zeroshot_dev']:>9.1f}  {last:>12}  {best:>19}  "
                     f"{r['val_picked_dev']:>13.1f}  {r['last_train']:>11.1f}")
    return "\n".join(table)
