"""Training time per epoch of the trainable methods, side by side, in one process on one machine.

``python -m vtclip.timing [--dataset pocket-pairs] [--shots 16] [--seed 1] [--out FILE]``

Each method is built as a sweep builds it (same cached few-shot features, same defaults, on the
backbone's device) and trained by the shared trainer (``train.fit``) with its own paper preset's
optimiser and batch size (CoOp's schedule, or Tip-Adapter-F's own), for a few epochs only: the
cost of an epoch does not depend on how many epochs follow it. An epoch's time
is ``fit``'s history ``"seconds"`` (the training steps, no evaluation). We report the median over
the timed epochs (each run's first epoch, which pays one-time costs, is left out) and each
method's ratio to VT-CLIP. Methods are timed in ``rounds`` alternating orders so that a slow spell
on a shared machine does not land on one method only.
Unlike ``vtclip bench`` (real-size architectures, random weights), this times the Pocket problem the
committed results were trained on. Taught in: chapter 05 (baselines).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from .datasets.base import check_draw, get_dataset
from .experiments import fewshot_features, load_task, write_new
from .methods import METHODS as REGISTRY
from .methods import build_method
from .train import TrainConfig, check_trains, fit, trainable

METHODS = ("coop", "vtclip", "clip-adapter", "tip-adapter-f")
REFERENCE = "vtclip"


def build(task, method: str, cfg: TrainConfig, shots: int, seed: int):
    """``method`` built as a sweep builds it, on the backbone's device -> (model, its train features).

    Refuses a method with nothing to train (``train.check_trains``)."""
    device = task.clip.device
    train, val = fewshot_features(task, shots, seed, cfg.views, progress=False)
    train, val = train.to(device), val.to(device)
    torch.manual_seed(seed)
    model = build_method(method, task.context(train, val)).to(device)
    check_trains(model, method, "timing measures training epochs")
    return model, train


def time_epochs(task, method: str, cfg: TrainConfig, shots: int, seed: int) -> dict:
    """Build ``method`` as a sweep does and train it for ``cfg.epochs``; per-epoch seconds and sizes."""
    model, train = build(task, method, cfg, shots, seed)
    history = fit(model, train, cfg.replace(seed=seed, progress=False))    # no val: steps only
    return {"seconds": [h["seconds"] for h in history], "images": len(train),
            "steps_per_epoch": -(-len(train) // cfg.batch_size),
            "trainable_params": sum(p.numel() for p in trainable(model))}


def check_request(dataset: str, methods, shots: int, seed: int) -> None:
    """Refuse an unknown dataset or method, a method named twice or an impossible draw (no work done)."""
    if isinstance(methods, str):
        raise ValueError(f"methods must be a list of names, e.g. [{methods!r}], not the string {methods!r}")
    methods = list(methods)
    if not methods:
        raise ValueError(f"no methods to time: name at least one of {', '.join(METHODS)}")
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(map(repr, unknown))}. Known methods: "
                         f"{', '.join(REGISTRY)}; timing needs trained ones, e.g. {', '.join(METHODS)}")
    twice = sorted({m for m in methods if methods.count(m) > 1})
    if twice:
        raise ValueError(f"method(s) {', '.join(twice)} named more than once; name each method once "
                         "(--rounds sets how often each is timed)")
    get_dataset(dataset)                                  # unknown names list the known ones
    check_draw(shots, seed)


def epoch_times(backbone: str = "pocket", dataset: str = "pocket-pairs", shots: int = 16,
                seed: int = 1, methods=METHODS, epochs: int = 10, rounds: int = 2) -> dict:
    """Median seconds per training epoch of each method and its ratio to VT-CLIP (one process)."""
    if epochs < 1 or rounds < 1:
        raise ValueError(f"epochs and rounds must be at least 1, got epochs={epochs}, rounds={rounds}")
    check_request(dataset, methods, shots, seed)
    task = load_task(backbone, dataset, progress=False, test=False)       # timing never scores
    cfgs = {m: TrainConfig.preset("paper", task.spec.name, shots, method=m).replace(epochs=epochs + 1)
            for m in methods}                                   # each method's own schedule; +1: warm-up
    for m in methods:             # a method with nothing to train stops the run before any timing
        build(task, m, cfgs[m], shots, seed)
    runs = {m: {"seconds": []} for m in methods}
    for r in range(rounds):
        for m in (methods if r % 2 == 0 else methods[::-1]):       # alternate the order per round
            out = time_epochs(task, m, cfgs[m], shots, seed)
            # a run's first epoch pays one-time costs (allocator, lazy init): not an epoch's cost
            runs[m] = {**out, "seconds": runs[m]["seconds"] + out["seconds"][1:]}
    rows = {}
    for m, run in runs.items():
        median = statistics.median(run["seconds"])
        rows[m] = {"seconds_per_epoch": round(median, 4),
                   "ms_per_step": round(1000 * median / run["steps_per_epoch"], 2),
                   "steps_per_epoch": run["steps_per_epoch"], "images_per_epoch": run["images"],
                   "optimizer": cfgs[m].optimizer, "batch_size": cfgs[m].batch_size,
                   "trainable_params": run["trainable_params"],
                   "epoch_seconds": [round(s, 4) for s in run["seconds"]]}
    if REFERENCE in rows:
        ref = rows[REFERENCE]["seconds_per_epoch"]
        for row in rows.values():
            row[f"ratio_to_{REFERENCE}"] = round(row["seconds_per_epoch"] / ref, 2)
    return {"what": "training time per epoch: median of train.fit's history 'seconds' over the timed epochs "
                    "(each run's first epoch left out)",
            "backbone": backbone, "weights": task.clip.weights_tag, "dataset": task.spec.name,
            "shots": shots, "seed": seed,
            "num_classes": task.spec.num_classes, "preset": "paper (each method's own)",
            "epochs_per_round": epochs, "rounds": rounds,
            "reference": REFERENCE, "methods": rows, "device": str(task.clip.device),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version()}


def main(argv=None) -> int:
    from .options import USER_ERRORS

    p = argparse.ArgumentParser(prog="python -m vtclip.timing", description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="pocket")
    p.add_argument("--dataset", default="pocket-pairs")
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--methods", nargs="+", default=list(METHODS),
                   help=f"trained methods to time (default: {' '.join(METHODS)})")
    p.add_argument("--epochs", type=int, default=10, help="timed epochs per method and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds over the methods, in alternating order")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own); 1 is steadier on a shared CPU")
    p.add_argument("--machine", default="", help="how to name this machine in the record, e.g. '2-core CPU'")
    p.add_argument("--note", default="", help="anything a reader should know (e.g. a shared CPU)")
    p.add_argument("--out", default=None, help="write the JSON here, a new file (else print it)")
    args = p.parse_args(argv)
    if args.out and Path(args.out).exists():
        p.error(f"{args.out} already exists; this command never overwrites a record: move it away or "
                "choose another --out")
    if args.out and Path(args.out).parent.exists() and not Path(args.out).parent.is_dir():
        p.error(f"--out {args.out}: {Path(args.out).parent} is a file, not a folder; choose another --out")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads} (leave it out for torch's default)")
    try:
        if args.threads:
            torch.set_num_threads(args.threads)
        start = time.perf_counter()
        result = epoch_times(args.backbone, args.dataset, args.shots, args.seed, tuple(args.methods),
                             args.epochs, args.rounds)
        result.update(machine=args.machine, note=args.note,
                      wall_seconds=round(time.perf_counter() - start, 1),
                      command=shlex.join(["python", "-m", "vtclip.timing",
                                          *(sys.argv[1:] if argv is None else argv)]),
                      created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        for m, row in result["methods"].items():
            ratio = row.get(f"ratio_to_{REFERENCE}", float("nan"))
            print(f"{m:<15}{row['seconds_per_epoch']:>9.3f} s/epoch  x{ratio:.2f}", file=sys.stderr)
        text = json.dumps(result, indent=1)
        if args.out:
            try:
                write_new(args.out, text + "\n")
            except OSError as err:             # e.g. made meanwhile by another run: keep the measurement
                print(text)
                raise OSError(f"{err} (--out). The result is printed on stdout instead: save it "
                              "under another name") from None
        else:
            print(text)
    except USER_ERRORS as err:                     # as `vtclip`'s own commands: the message, exit 2
        print(f"python -m vtclip.timing: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
