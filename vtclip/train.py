"""One trainer for every trainable method, its presets, evaluation and checkpoints.

A method is an ``nn.Module`` with ``forward(pooled (B, D), spatial (B, HW, C)) -> logits (B, K)``
whose trainable parameters are its own (the backbone is frozen and not part of it).
Taught in: chapter 04 (few-shot training).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .features import FeatureSet

#: CoOp's epochs by number of shots (RN50 schedule that the VT-CLIP paper cites); ImageNet: 50.
#: Other shot counts take the schedule of the largest listed count below them (3 shots: 100, 64: 200).
PAPER_EPOCHS = {1: 50, 2: 100, 4: 100, 8: 200, 16: 200}
#: Datasets whose paper schedule is shorter than PAPER_EPOCHS says.
PAPER_EPOCHS_OVERRIDE = {"imagenet": 50}
#: Methods whose own paper trains differently from CoOp's schedule: the "paper" preset follows it.
#: Tip-Adapter-F (Zhang et al., ECCV 2022; official code gaopengcuhk/Tip-Adapter, main.py and
#: configs/*.yaml): AdamW lr 1e-3, eps 1e-4, torch's default weight decay 0.01, cosine over all steps
#: with no warm-up, batch 256, 20 epochs for every shot count (100 on EuroSAT, configs/eurosat.yaml).
METHOD_SCHEDULES = {
    "tip-adapter-f": dict(epochs=20, batch_size=256, optimizer="adamw", lr=1e-3, adam_eps=1e-4,
                          weight_decay=0.01, warmup_epochs=0),
}
#: (method, dataset) -> epochs, where a method's own schedule differs by dataset.
METHOD_EPOCHS_OVERRIDE = {("tip-adapter-f", "eurosat"): 100}


def _whole(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class TrainConfig:
    """How a method is trained on cached few-shot features."""

    epochs: int = 200             # passes over the few-shot training set
    batch_size: int = 32          # images per step
    optimizer: str = "sgd"        # "sgd" (momentum 0.9) or "adamw"
    lr: float = 2e-3              # peak learning rate
    weight_decay: float = 5e-4    # L2 (SGD) or decoupled (AdamW) weight decay
    adam_eps: float = 1e-8        # AdamW's epsilon (torch's default; Tip-Adapter-F uses 1e-4)
    warmup_epochs: int = 1        # epochs at warmup_lr before the schedule starts
    warmup_lr: float = 1e-5       # constant learning rate during warm-up (CoOp)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    views: int = 10               # augmented views per training image (cached features)
    epoch_on_val: bool = False    # keep the epoch with the best val accuracy (first on ties), not the last
    seed: int = 1                 # seeds view sampling, batch order, init and dropout
    amp: bool = True              # bf16 autocast on CUDA (ignored on CPU)
    progress: bool = True         # show a progress bar over epochs

    @classmethod
    def paper(cls, dataset: str = "", shots: int = 16, method: str | None = None, **kw) -> "TrainConfig":
        """CoOp's schedule as cited by VT-CLIP: SGD lr 2e-3, batch 32, cosine, 1 warm-up epoch;
        or, for a method in ``METHOD_SCHEDULES``, that method's own paper's schedule."""
        if method in METHOD_SCHEDULES:
            epochs = METHOD_EPOCHS_OVERRIDE.get((method, dataset), METHOD_SCHEDULES[method]["epochs"])
            return cls(**{**METHOD_SCHEDULES[method], "epochs": epochs, **kw})
        if not _whole(shots) or shots < 1:
            raise ValueError(f"TrainConfig.paper: shots must be a whole number >= 1, got {shots!r}")
        below = max(k for k in PAPER_EPOCHS if k <= shots)
        return cls(epochs=PAPER_EPOCHS_OVERRIDE.get(dataset, PAPER_EPOCHS[below]), **kw)

    @classmethod
    def fast(cls, **kw) -> "TrainConfig":
        """AdamW, 20 epochs: minutes instead of the paper's hours (gap measured in chapter 04)."""
        return cls(**{**dict(epochs=20, optimizer="adamw", lr=1e-3, weight_decay=1e-4,
                             warmup_epochs=0), **kw})

    @classmethod
    def smoke(cls, **kw) -> "TrainConfig":
        """Seconds: for CI and for checking that a pipeline runs."""
        return cls(**{**dict(epochs=3, optimizer="adamw", lr=1e-3, warmup_epochs=0, views=2,
                             batch_size=16, progress=False), **kw})

    @classmethod
    def preset(cls, name: str, dataset: str = "", shots: int = 16, method: str | None = None,
               **kw) -> "TrainConfig":
        """A preset by name: "paper" (depends on dataset, shots and method), "fast" or "smoke"."""
        if name == "paper":
            return cls.paper(dataset, shots, method, **kw)
        if name in ("fast", "smoke"):
            return getattr(cls, name)(**kw)
        raise ValueError(f"unknown preset {name!r}; known presets: paper, fast, smoke")

    def __post_init__(self):
        """Refuse values no run can mean (a negative epoch count, a zero batch, ...), naming the field."""
        flag = "true or false (on the command line: {}=true or {}=false)".format
        bad = {name: why for name, ok, why in [
            ("epochs", _whole(self.epochs) and self.epochs >= 0, "a whole number >= 0 (0: no training)"),
            ("batch_size", _whole(self.batch_size) and self.batch_size >= 1, "a whole number >= 1"),
            ("optimizer", self.optimizer in ("sgd", "adamw"), "'sgd' or 'adamw'"),
            ("lr", _number(self.lr) and self.lr > 0, "a number > 0"),
            ("weight_decay", _number(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
            ("adam_eps", _number(self.adam_eps) and self.adam_eps > 0, "a number > 0"),
            ("warmup_epochs", _whole(self.warmup_epochs) and self.warmup_epochs >= 0, "a whole number >= 0"),
            ("warmup_lr", _number(self.warmup_lr) and self.warmup_lr >= 0, "a number >= 0"),
            ("label_smoothing", _number(self.label_smoothing) and 0 <= self.label_smoothing < 1, "a number in [0, 1)"),
            ("views", _whole(self.views) and self.views >= 1, "a whole number >= 1"),
            ("epoch_on_val", isinstance(self.epoch_on_val, bool), flag("epoch_on_val", "epoch_on_val")),
            ("seed", _whole(self.seed) and self.seed >= 0, "a whole number >= 0"),
            ("amp", isinstance(self.amp, bool), flag("amp", "amp")),
            ("progress", isinstance(self.progress, bool), flag("progress", "progress")),
        ] if not ok}
        if bad:
            raise ValueError("TrainConfig: " + "; ".join(f"{name} must be {why}, got {getattr(self, name)!r}"
                                                          for name, why in bad.items()))
        if 0 < self.epochs <= self.warmup_epochs:
            raise ValueError(f"TrainConfig: warmup_epochs={self.warmup_epochs} leaves no epoch of the schedule "
                             f"when epochs={self.epochs} (the whole run would train at warmup_lr); train more "
                             "epochs than warm-up epochs, or set warmup_epochs=0")
        if self.epoch_on_val and self.epochs == 0:
            raise ValueError("TrainConfig: epoch_on_val=True chooses among epochs, but epochs=0")

    def replace(self, **kw) -> "TrainConfig":
        return replace(self, **kw)


def check_trains(model: torch.nn.Module, method: str, why: str) -> None:
    """Refuse a method with nothing to train where only training makes sense (``why`` says where)."""
    if not trainable(model):
        raise ValueError(f"{method} has no parameters to train, and {why}: use a trained method "
                         "(vtclip, coop, clip-adapter, tip-adapter-f)")


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(params, cfg: TrainConfig, steps_per_epoch: int):
    """Optimizer and a per-step LR schedule: constant warm-up, then cosine to zero.

    CoOp's trainer (Dassl) steps its cosine once per epoch, so there the rate is constant within an
    epoch and the last epoch does not reach zero; ``fit`` also keeps an epoch's last partial batch,
    which Dassl's train loader drops. The two rate curves differ by at most one epoch's change of
    the cosine, and an epoch by at most one batch.
    """
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:                             # "adamw": TrainConfig refuses any other optimizer
        opt = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    warm = cfg.warmup_epochs * steps_per_epoch
    total = max(1, cfg.epochs * steps_per_epoch - warm)

    def factor(step: int) -> float:
        if step < warm:
            return cfg.warmup_lr / cfg.lr
        return 0.5 * (1 + math.cos(math.pi * min(step - warm, total) / total))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _autocast(device: torch.device, cfg: TrainConfig):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")


def fit(model: torch.nn.Module, train: FeatureSet, cfg: TrainConfig,
        val: FeatureSet | None = None, monitor: dict[str, FeatureSet] | None = None) -> list[dict]:
    """Train ``model`` with cross-entropy on ``train``; returns one dict per epoch (loss, accuracies).

    Each epoch every image contributes one randomly chosen cached view. ``val`` (if given) is
    evaluated after each epoch for the curves (``val_acc``), and so is every set of ``monitor``
    (``{name}_acc``, e.g. ``dev_acc``). Nothing is selected on them unless ``cfg.epoch_on_val``:
    then the model ends with the weights of the epoch with the best val accuracy (the first on
    ties), and that epoch's row has ``"kept": True``. The protocol's default is the last epoch.
    A row's ``"lr"`` is the learning rate of the epoch's last step.
    """
    params = trainable(model)
    if not params:
        return []
    if cfg.epoch_on_val and val is None:
        raise ValueError("epoch_on_val=True chooses the epoch on the val split, but no val set was given")
    best = (-1.0, None, None)                        # (val accuracy, epoch index, weights)
    watched = {**({"val": val} if val is not None else {}), **(monitor or {})}   # scored every epoch
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)                      # dropout
    n = len(train)
    steps = math.ceil(n / cfg.batch_size)
    opt, sched = make_optimizer(params, cfg, steps)
    history = []
    for epoch in tqdm(range(cfg.epochs), desc=f"train {getattr(model, 'name', '')}",
                      disable=not cfg.progress, leave=False):
        model.train()
        start, total_loss, correct = time.perf_counter(), 0.0, 0
        views = torch.randint(train.views, (n,), generator=gen)       # (N,) a view per image
        order = torch.randperm(n, generator=gen)
        for b in range(steps):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            pooled = train.pooled[views[idx], idx].to(device).float()      # (b, D)
            spatial = train.spatial[views[idx], idx].to(device).float()    # (b, HW, C)
            labels = train.labels[idx].to(device)
            with _autocast(device, cfg):
                logits = model(pooled, spatial)                               # (b, K)
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr_used = opt.param_groups[0]["lr"]                  # this step's rate, before the schedule moves
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(-1) == labels).sum().item()
        row = {"epoch": epoch + 1, "loss": total_loss / n, "train_acc": 100 * correct / n,
               "lr": lr_used, "seconds": time.perf_counter() - start}
        for name, feats in watched.items():
            row[f"{name}_acc"] = evaluate(model, feats)["top1"]
        if cfg.epoch_on_val and row["val_acc"] > best[0]:
            best = (row["val_acc"], epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        history.append(row)
    if cfg.epoch_on_val:
        model.load_state_dict(best[2])
        history[best[1]]["kept"] = True
    model.eval()
    return history


@torch.no_grad()
def predict(model: torch.nn.Module, feats: FeatureSet, batch_size: int = 256, view: int = 0) -> torch.Tensor:
    """Logits of every image of ``feats`` (one view): (N, K) on the CPU."""
    model.eval()
    device = next(iter(model.buffers()), next(model.parameters(), None)).device
    out = []
    for s in range(0, len(feats), batch_size):
        pooled = feats.pooled[view, s:s + batch_size].to(device).float()
        spatial = feats.spatial[view, s:s + batch_size].to(device).float()
        out.append(model(pooled, spatial).float().cpu())
    return torch.cat(out)


def evaluate(model: torch.nn.Module, feats: FeatureSet, batch_size: int = 256) -> dict:
    """Top-1 accuracy (%) on every image of ``feats``."""
    logits = predict(model, feats, batch_size)                       # on the CPU, wherever feats are
    top1 = (logits.argmax(-1) == feats.labels.cpu()).float().mean().item() * 100
    return {"top1": top1, "n": len(feats)}


def save_checkpoint(model: torch.nn.Module, path: str | Path, extra: dict | None = None) -> Path:
    """Save a method's tensors (safetensors) and what rebuilds it (method, config, logit scale).

    Written whole or not at all (a temporary file, then renamed; removed if the write fails). A write
    that fails (a full disk) raises ``OSError``, as Python's own writes do, not safetensors' error.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from .experiments import temp_name

    meta = {"method": model.name, "config": model.config, "logit_scale": model.logit_scale,
            "extra": extra or {}}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        try:
            save_file(state, str(tmp), metadata={"vtclip": json.dumps(meta)})
        except SafetensorError as err:       # e.g. "IoError(Os { code: 28, kind: StorageFull, ... })"
            raise OSError(f"safetensors: {err}") from None
        mask = os.umask(0)                   # safetensors creates the file 0600; give it a record's mode
        os.umask(mask)
        tmp.chmod(0o666 & ~mask)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)          # a part written before the disk filled; gone once renamed
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", clip=None) -> torch.nn.Module:
    """Rebuild a method saved by ``save_checkpoint``.

    Methods that run the frozen text tower at every step (CoOp) need the same ``clip`` back.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    from .methods import METHOD_CLASSES

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["vtclip"])
    state = load_file(str(path))
    cls = METHOD_CLASSES[meta["method"]]
    model = cls.from_state(state, meta["logit_scale"], meta["config"])
    model.load_state_dict(state)
    if hasattr(model, "attach_clip"):
        if clip is None:
            raise ValueError(f"a {meta['method']} checkpoint needs its backbone: "
                             "load_checkpoint(path, clip=vt.load_clip(...))")
        model.attach_clip(clip)
    return model.to(device).eval()


def config_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)
