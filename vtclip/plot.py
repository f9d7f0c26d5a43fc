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
        line, = ax.plot(ks, mean, "o-", color=colour, label=label)     # colour None: the next in the cycle
        ax.fill_between(ks, mean - std, mean + std, color=line.get_color(), alpha=0.15, lw=0)
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
        _overlay(ax, img, maps[c], grid)
        label = classnames[c] + (f"\n{100 * float(scores[c]):.0f}%" if scores is not None else "")
        ax.set_title(label, fontsize=7)
    fig.tight_layout()
    return fig


def _overlay(ax, img: np.ndarray, weights, grid) -> None:
    """Draw ``img`` with ``weights`` (H*W,) over it as a heat map stretched to the image."""
    heat = np.asarray(weights, dtype=float).reshape(grid)                          # (H, W)
    ax.imshow(img)
    ax.imshow(heat, cmap="magma", alpha=0.6, extent=(0, img.shape[1], img.shape[0], 0), interpolation="bilinear")


def ablations(groups: dict, titles: dict | None = None, default: dict | None = None) -> plt.Figure:
    """One panel per ablation group: each dataset's top-1 change against the default head (mean over
    seeds, ± std), and the change of the average over datasets.

    ``groups``: {group: rows of ``vtclip.ablations.table``}; ``default``: {group: default value} (marked by
    a grey band; its row is the zero line).
    """
    from .ablations import value_label

    fig, axes = plt.subplots(1, len(groups), figsize=(2.6 * len(groups), 2.9), squeeze=False)
    for ax, (group, rows) in zip(axes[0], groups.items()):
        x = np.arange(len(rows))
        datasets = sorted({d for r in rows for d in r["datasets"]})
        base = next((r for r in rows if r["value"] == (default or {}).get(group, r["value"])), None)
        if base is None:
            raise ValueError(f"ablation group {group!r} has no row for its default value "
                             f"{(default or {}).get(group)!r} (values: {[r['value'] for r in rows]}): the "
                             "changes are drawn against it; run the default head into the same folder")
        for d in datasets:
            mean = [r["datasets"].get(d, (np.nan,))[0] - base["datasets"][d][0] for r in rows]   # (values,)
            std = [r["datasets"].get(d, (0, 0))[1] for r in rows]
            ax.errorbar(x, mean, yerr=std, marker="o", ms=3, lw=1, capsize=2, label=d.removeprefix("pocket-"))
        ax.plot(x, [np.nan if r["average"] is None else r["average"] - base["average"] for r in rows], "k-s",
                lw=2, ms=4, label="average")
        ax.axhline(0, color="0.5", lw=0.8)
        for i, r in enumerate(rows):
            if default and r["value"] == default.get(group):
                ax.axvspan(i - 0.3, i + 0.3, color="0.9", zorder=0)
        ax.set_xticks(x, [value_label(r["value"]) for r in rows], fontsize=8)
        ax.set_title((titles or {}).get(group, group), fontsize=9)
        ax.grid(alpha=0.3)
    return _panels_done(fig, axes, "top-1 change vs default (points)", bottom=0.08)


def dev_curves(records: Sequence[dict], variants: Sequence[str] | None = None,
               labels: dict | None = None, x: str = "epoch") -> plt.Figure:
    """One panel per dataset: dev-split accuracy after each epoch (mean over seeds, band = min..max)
    for each variant, the train accuracy of the panel's first variant (thin grey) and zero-shot on
    dev (dashed). Epochs on a log axis: the action is in the first few dozen.

    ``records``: ``vtclip.curves`` records; ``variants``: which to draw, in order (default: all).
    ``x="step"`` puts optimiser steps on the axis instead of epochs (an epoch is ceil(training images
    / batch) steps), for comparing runs whose epochs differ in size, e.g. different shots; every
    variant then gets its own thin train curve in its colour.
    """
    if x not in ("epoch", "step"):
        raise ValueError(f"x must be 'epoch' or 'step', got {x!r}")
    by = defaultdict(list)
    for r in records:
        by[r["dataset"], r.get("variant") or "default"].append(r)
    for (d, v), rs in by.items():                   # one line averages seeds, never methods or draw sizes
        kinds = sorted({(r.get("method"), r.get("shots")) for r in rs}, key=str)
        if len(kinds) > 1:
            raise ValueError(f"the {d} records of variant {v!r} come from {kinds} (method, shots): one line "
                             "would average them. Give each its own variant, e.g. "
                             "{**r, 'variant': f\"{r['shots']} shots\"}, or pass them separately.")
    datasets = sorted({d for d, _ in by})
    variants = list(variants or sorted({v for _, v in by}))
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(2.8 * len(datasets), 7.0), 2.9), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        present = [v for v in variants if by.get((d, v))]
        low = 100.0
        for v in present:
            rs = by[d, v]
            dev = np.array([[h["dev_acc"] for h in r["history"]] for r in rs])   # (seeds, epochs)
            per_epoch = 1
            if x == "step":
                per_epoch = -(-rs[0]["n_train"] // rs[0]["config"]["train"]["batch_size"])   # ceil
            xs = np.arange(1, dev.shape[1] + 1) * per_epoch
            line, = ax.plot(xs, dev.mean(0), lw=1.4, label=(labels or {}).get(v, v),
                            color=f"C{variants.index(v)}")
            ax.fill_between(xs, dev.min(0), dev.max(0), color=line.get_color(), alpha=0.15, lw=0)
            low = min(low, dev.mean(0).min())
            if x == "step" or v == present[0]:    # by step: every variant's own; by epoch: the first's, grey
                train = np.array([[h["train_acc"] for h in r["history"]] for r in rs]).mean(0)
                colour, lw, ls = (line.get_color(), 0.7, ":") if x == "step" else ("0.6", 0.8, "-")
                ax.plot(xs, train, color=colour, lw=lw, ls=ls, label=f"train ({(labels or {}).get(v, v)})")
            if v == present[0]:
                zs = np.mean([r["zeroshot"]["dev_acc"] for r in rs])
                ax.axhline(zs, color="k", ls="--", lw=1, label="zero-shot")
                low = min(low, zs)
        ax.set_ylim(max(0, low - 8), 101)
        ax.set_xscale("log")
        ax.set_title(d.removeprefix("pocket-"), fontsize=9)
        ax.set_xlabel(f"{x} (log scale)", fontsize=8)
        ax.grid(alpha=0.3)
    if x == "step":        # a dev and a train line per variant: the legend in rows of two variants
        return _panels_done(fig, axes, "top-1 on the dev split (%)", bottom=0.22, ncol=4)
    return _panels_done(fig, axes, "top-1 on the dev split (%)", bottom=0.1)


def _panels_done(fig, axes, ylabel: str, bottom: float, ncol: int | None = None) -> plt.Figure:
    """A row of panels: y label on the first, the first panel's legend below them all (in one line,
    or in rows of ``ncol``)."""
    axes[0, 0].set_ylabel(ylabel)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=ncol or len(names), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return fig


def explained(image, attention, classnames: Sequence[str], grid, before, after, top: int = 4,
              label: int | None = None, shown: Sequence[int] | None = None) -> plt.Figure:
    """The paper's Figure-1 view of one image: class scores before (zero-shot texts) and after
    (visual-guided texts) adaptation, and where the ``top`` best classes' text queries look.

    ``attention``: (K, H*W), heads averaged; ``before``, ``after``: (K,) probabilities; ``shown``:
    the classes whose maps to draw instead of the ``top`` best.
    """
    img = np.asarray(image)
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    shown = list(np.argsort(-after)[:top]) if shown is None else list(shown)
    n = len(shown)
    fig, axes = plt.subplots(1, 2 + n, figsize=(1.7 * (2.6 + n), 2.2), layout="constrained",
                             gridspec_kw={"width_ratios": [1, 1.6] + [1] * n})
    axes[0].imshow(img)
    axes[0].set_title("image" + (f"\n({classnames[label]})" if label is not None else ""), fontsize=8)
    axes[0].axis("off")
    order = list(np.argsort(-np.maximum(before, after))[:top + 2])[::-1]         # best at the top
    y = np.arange(len(order))
    axes[1].barh(y + 0.2, before[order], height=0.4, color="#7f7f7f", label="zero-shot texts")
    axes[1].barh(y - 0.2, after[order], height=0.4, color="#d62728", label="visual-guided")
    axes[1].set_yticks(y, [classnames[c] for c in order], fontsize=7)
    axes[1].set_xlim(0, 1)
    axes[1].tick_params(axis="x", labelsize=7)
    axes[1].legend(fontsize=6, frameon=False, loc="lower right")
    axes[1].set_title("class probability", fontsize=8)
    for ax, c in zip(axes[2:], shown):
        _overlay(ax, img, attention[c], grid)
        ax.set_title(f"{classnames[c]}\n{100 * before[c]:.0f}% → {100 * after[c]:.0f}%", fontsize=7)
        ax.axis("off")
    return fig
