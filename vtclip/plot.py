"""Figures. Every function takes data and returns a matplotlib ``Figure``; chapters display it.

Taught in: used throughout the book (chapters 04, 06, 07).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

METHOD_COLOURS = {"zeroshot": "#7f7f7f", "vtclip": "#d62728", "coop": "#1f77b4", "clip-adapter": "#2ca02c",
                  "tip-adapter": "#9467bd", "tip-adapter-f": "#8c564b", "linear-probe": "#e377c2"}
METHOD_LABELS = {"zeroshot": "Zero-shot CLIP", "vtclip": "VT-CLIP", "coop": "CoOp", "clip-adapter": "CLIP-Adapter",
                 "tip-adapter": "Tip-Adapter", "tip-adapter-f": "Tip-Adapter-F", "linear-probe": "Linear probe"}


def training_curves(history: Sequence[dict], title: str = "") -> plt.Figure:
    """Loss and accuracies per epoch from ``train.fit``'s history."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.2))
    ax_loss.plot(epochs, [h["loss"] for h in history], color="k")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="cross-entropy")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], label="train (augmented views)")
    if "val_acc" in history[0]:
        ax_acc.plot(epochs, [h["val_acc"] for h in history], label="few-shot val")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="accuracy")
    ax_acc.legend(frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def accuracy_vs_shots(rows: Sequence[dict], title: str = "", ax=None) -> plt.Figure:
    """Mean top-1 (with a band of +-1 std over seeds) against shots, one line per method.

    ``rows``: dicts with ``method``, ``shots``, ``top1`` (one per run; seeds are averaged here).
    Zero-shot rows (any shots) are drawn as a horizontal line.
    """
    fig = ax.figure if ax is not None else plt.figure(figsize=(4.5, 3.4))
    ax = ax if ax is not None else fig.add_subplot()
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["method"]][r["shots"]].append(r["top1"])
    all_shots = sorted({k for m in by.values() for k in m if k > 0})
    for method, per_shot in by.items():
        colour, label = METHOD_COLOURS.get(method), METHOD_LABELS.get(method, method)
        if method == "zeroshot":
            ax.axhline(np.mean([v for vs in per_shot.values() for v in vs]), color=colour, ls="--", label=label)
            continue
        ks = sorted(per_shot)
        mean = np.array([np.mean(per_shot[k]) for k in ks])
        std = np.array([np.std(per_shot[k]) for k in ks])
        ax.plot(ks, mean, "o-", color=colour, label=label)
        ax.fill_between(ks, mean - std, mean + std, color=colour, alpha=0.15, lw=0)
    ax.set_xscale("log", base=2)
    ax.set_xticks(all_shots, [str(k) for k in all_shots])
    ax.set(xlabel="shots per class", ylabel="top-1 (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def image_grid(images, titles: Sequence[str] = (), cols: int = 8, size: float = 1.3) -> plt.Figure:
    """A grid of PIL images or (H, W, 3) arrays with optional titles."""
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.25)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, list(titles) + [""] * len(images)):
        ax.imshow(img)
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def attention_maps(image, maps, classnames: Sequence[str], grid, scores=None, cols: int = 5) -> plt.Figure:
    """An image and, per class, its attention over the spatial grid (upsampled onto the image).

    ``maps``: (K, H*W) attention weights (heads averaged); ``scores``: optional (K,) probabilities.
    """
    img = np.asarray(image)
    k = len(classnames)
    fig, axes = plt.subplots(1 + (k - 1) // cols + 1, cols, figsize=(cols * 1.8, (2 + (k - 1) // cols) * 1.9),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(img)
    axes[0, 0].set_title("image", fontsize=8)
    for c in range(k):
        ax = axes.flat[cols + c]
        heat = np.asarray(maps[c], dtype=float).reshape(grid)
        ax.imshow(img)
        ax.imshow(heat, cmap="magma", alpha=0.6, extent=(0, img.shape[1], img.shape[0], 0),
                  interpolation="bilinear")
        label = classnames[c] + (f"\n{100 * float(scores[c]):.0f}%" if scores is not None else "")
        ax.set_title(label, fontsize=7)
    fig.tight_layout()
    return fig
