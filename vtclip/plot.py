"""Figures. Every function takes data and returns a matplotlib ``Figure``; chapters display it.

Figures are drawn for the book's text column: at a 1280 px window sphinx-book-theme gives a cell's
output 688 CSS px (7.2 in at 96 px/in), so figures are at most ``COLUMN`` = 6.6 in wide, with text
of at least 9 pt, shown inline and saved as 150-dpi PNGs: a 6.6 in figure is about 1020 px with
the inline margin, shrunk at most 1.5x to the column. (Not SVG: strict nbval compares an SVG
output as text, and its ids and date change from run to run.) Importing this module applies
:func:`book_style`; grids of many panels are laid out in rows of at most three, each a third of
the column.

Taught in: used throughout the book (chapters 04, 06, 07).
"""
from __future__ import annotations

import textwrap
from collections import defaultdict
from typing import Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

COLUMN = 6.6          # inches: the widest figure the book's column shows without shrinking it > 1.5x
DPI = 150             # dots per inch of saved and inline PNGs
FONT = 9              # points: the smallest text on a figure
PER_ROW = 3           # panels per row in a grid (each COLUMN / 3 wide)
TILE = 1.3            # inches: the smallest image tile of a grid

#: matplotlib settings of every figure in the book. Not set here: layout engines (set per figure: a
#: chapter's own ``fig.tight_layout()`` on a constrained figure would warn on stderr) and figure.dpi
#: (it is in each figure's text output, "<Figure size 660x300 ...>", which nbval compares).
BOOK_RC = {
    "figure.figsize": (COLUMN, 3.0), "savefig.dpi": DPI,
    "figure.facecolor": "white", "savefig.facecolor": "white",
    "font.size": FONT + 0.5, "axes.titlesize": FONT + 1, "axes.labelsize": FONT + 0.5,
    "xtick.labelsize": FONT, "ytick.labelsize": FONT, "legend.fontsize": FONT,
    "figure.titlesize": FONT + 2, "legend.title_fontsize": FONT,
}

METHOD_COLOURS = {"zeroshot": "#7f7f7f", "vtclip": "#d62728", "coop": "#1f77b4", "clip-adapter": "#2ca02c",
                  "tip-adapter": "#9467bd", "tip-adapter-f": "#8c564b", "linear-probe": "#e377c2"}
METHOD_LABELS = {"zeroshot": "Zero-shot CLIP", "vtclip": "VT-CLIP", "coop": "CoOp", "clip-adapter": "CLIP-Adapter",
                 "tip-adapter": "Tip-Adapter", "tip-adapter-f": "Tip-Adapter-F", "linear-probe": "Linear probe"}


def book_style() -> None:
    """Apply ``BOOK_RC``; in a Jupyter kernel also draw inline figures at ``DPI``. Applied when this
    module is imported; call it again after changing rcParams."""
    mpl.rcParams.update(BOOK_RC)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is not None and "inline" in mpl.get_backend():
        from matplotlib_inline.backend_inline import InlineBackend

        cfg = InlineBackend.instance()           # kept if %matplotlib inline runs again
        cfg.print_figure_kwargs = {**cfg.print_figure_kwargs, "dpi": DPI}


def _wrap(title: str, width_in: float) -> str:
    """``title`` wrapped to lines that fit a panel ``width_in`` inches wide at ``FONT`` pt."""
    chars = max(8, int(width_in * 72 / (0.7 * FONT)))         # ~0.6 em a character, and a margin
    return "\n".join(textwrap.fill(line, chars) for line in str(title).split("\n"))


def _grid(n: int, cols: int = PER_ROW, height: float = 2.3, width: float = COLUMN, **kw):
    """A constrained figure of ``n`` panels in rows of ``cols``, ``width`` wide; unused panels off."""
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False,
                             layout="constrained", **kw)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes


def _xlabel_below(axes, n: int, label: str) -> None:
    """``label`` under the lowest used panel of each column of a ``_grid`` of ``n`` panels."""
    cols = axes.shape[1]
    for c in range(min(cols, n)):
        axes.flat[max(i for i in range(n) if i % cols == c)].set_xlabel(label)


def training_curves(history: Sequence[dict], title: str = "") -> plt.Figure:
    """Loss and accuracies per epoch from ``train.fit``'s history."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(COLUMN, 2.8), layout="constrained")
    ax_loss.plot(epochs, [h["loss"] for h in history], color="k")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="cross-entropy")
    ax_acc.plot(epochs, [h["train_acc"] for h in history], label="train (augmented views)")
    if "val_acc" in history[0]:
        ax_acc.plot(epochs, [h["val_acc"] for h in history], label="few-shot val")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="accuracy")
    ax_acc.legend(frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def accuracy_vs_shots(rows: Sequence[dict], title: str = "", ax=None) -> plt.Figure:
    """Mean top-1 (with a band of +-1 std over seeds) against shots, one line per method.

    ``rows``: dicts with ``method``, ``shots``, ``top1`` (one per run; seeds are averaged here).
    Zero-shot rows (any shots) are drawn as a horizontal line.
    """
    fig = ax.figure if ax is not None else plt.figure(figsize=(0.65 * COLUMN, 3.2),
                                                      layout="constrained")
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
    ax.legend(frameon=False)
    if fig.get_layout_engine() is None:   # a caller's plain figure: laid out as before
        fig.tight_layout()
    return fig


def shots_panels(panels: Sequence[tuple[str, Sequence[dict]]], title: str = "",
                 order: Sequence[str] | None = None, cols: int = PER_ROW) -> plt.Figure:
    """Accuracy against shots for several datasets: one small panel per ``(title, rows)`` in rows of
    ``cols`` across the column, one legend for all of them below (methods in ``order``)."""
    fig, axes = _grid(len(panels), cols, height=2.1)
    handles = {}
    for ax, (name, rows) in zip(axes.flat, panels):
        accuracy_vs_shots(rows, name, ax=ax)
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))   # label -> handle, all panels
        ax.get_legend().remove()
        ax.set(xlabel="", ylabel="")
    _xlabel_below(axes, len(panels), "shots per class")
    fig.supylabel("top-1 (%)", fontsize=FONT + 0.5)
    names = [METHOD_LABELS.get(m, m) for m in order or METHOD_LABELS]
    labels = [n for n in names if n in handles] + [n for n in handles if n not in names]
    fig.legend([handles[n] for n in labels], labels, loc="outside lower center", frameon=False,
               ncol=min(4, len(labels)))
    if title:
        fig.suptitle(title)
    return fig


def _tiles(cols: int, size: float) -> tuple[int, float]:
    """(columns, tile inches) of an image grid that fits the column: ``cols`` tiles of ``size``
    inches, made smaller (not below ``TILE``) and then fewer when the column is narrower."""
    cols = max(1, min(cols, int(COLUMN // TILE)))
    return cols, min(size, COLUMN / cols)


def image_grid(images, titles: Sequence[str] = (), cols: int = 8, size: float = 1.3) -> plt.Figure:
    """A grid of PIL images or (H, W, 3) arrays with optional titles, at most ``cols`` a row (fewer
    when ``cols`` tiles of ``TILE`` inches do not fit the column; titles wrap to their tile)."""
    cols, size = _tiles(min(cols, len(images)), size)
    titles = [_wrap(t, size) for t in titles]
    lines = max([t.count("\n") + 1 for t in titles] or [0])
    fig, axes = _grid(len(images), cols, height=size + 0.2 * lines, width=cols * size)
    for ax, img, title in zip(axes.flat, images, titles + [""] * len(images)):
        ax.imshow(img)
        ax.set_title(title, fontsize=FONT)
        ax.axis("off")
    return fig


def attention_maps(image, maps, classnames: Sequence[str], grid, scores=None, cols: int = 5) -> plt.Figure:
    """An image and, per class, its attention over the spatial grid (upsampled onto the image).

    ``maps``: (K, H*W) attention weights (heads averaged); ``scores``: optional (K,) probabilities.
    """
    img = np.asarray(image)
    k = len(classnames)
    cols, size = _tiles(cols, COLUMN / cols)
    pct = [f"\n{100 * float(p):.0f}%" for p in scores] if scores is not None else [""] * k
    titles = [_wrap(classnames[c], size) + pct[c] for c in range(k)]
    lines = max(t.count("\n") + 1 for t in titles)
    fig, axes = _grid(cols + k, cols, height=size + 0.2 * lines, width=cols * size)
    for ax in axes.flat:
        ax.axis("off")
    axes[0, 0].imshow(img)
    axes[0, 0].set_title("image", fontsize=FONT)
    for c in range(k):
        ax = axes.flat[cols + c]
        _overlay(ax, img, maps[c], grid)
        ax.set_title(titles[c], fontsize=FONT)
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

    fig, axes = _grid(len(groups), height=2.2)
    for ax, (group, rows) in zip(axes.flat, groups.items()):
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
        ax.set_xticks(x, [value_label(r["value"]) for r in rows])
        ax.set_title((titles or {}).get(group, group))
        ax.grid(alpha=0.3)
    return _panels_done(fig, axes, "top-1 change vs default (points)")


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
    fig, axes = _grid(len(datasets), height=2.3)
    for ax, d in zip(axes.flat, datasets):
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
        ax.set_title(d.removeprefix("pocket-"))
        ax.grid(alpha=0.3)
    _xlabel_below(axes, len(datasets), f"{x} (log scale)")
    return _panels_done(fig, axes, "top-1 on the dev split (%)", ncol=2 if x == "step" else None)


def _panels_done(fig, axes, ylabel: str, ncol: int | None = None) -> plt.Figure:
    """Rows of panels: one y label for all, the first panel's legend below them all (in rows of
    ``ncol`` entries, by default as many as fit the column)."""
    fig.supylabel(ylabel, fontsize=FONT + 0.5)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", frameon=False,
               ncol=ncol or min(len(names), 4))
    return fig


def architecture() -> plt.Figure:
    """VT-CLIP at a glance: frozen CLIP towers (grey), the trained head (red), what flows between.

    The class texts are the queries; the image's spatial map (before pooling) gives keys and values;
    the head's update is added back onto the texts (the residual), and the logits are the cosine of
    the pooled image feature with each visual-guided text, times CLIP's ``logit_scale``.
    """
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plt.subplots(figsize=(COLUMN, 3.1), layout="constrained")
    ax.set(xlim=(0, 13.2), ylim=(-0.6, 6.2))
    ax.axis("off")
    frozen, trained = dict(fc="#e8e8e8", ec="#7f7f7f"), dict(fc="#fbe3e3", ec=METHOD_COLOURS["vtclip"])

    def box(x, y, w, h, text, style=None, bold=False):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.15",
                                    lw=1.2, **(style or dict(fc="white", ec="0.3"))))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=FONT,
                weight="bold" if bold else "normal")

    def arrow(a, b, text="", offset=(0, 0.1), color="0.25"):
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", lw=1.1, color=color))
        if text:
            ax.text((a[0] + b[0]) / 2 + offset[0], (a[1] + b[1]) / 2 + offset[1], text,
                    ha="center", va="bottom", fontsize=FONT, color="0.2")

    box(0.1, 4.6, 1.5, 1.0, "image")
    box(2.3, 4.6, 2.2, 1.0, "image encoder\n(frozen)", frozen)
    arrow((1.6, 5.1), (2.3, 5.1))
    box(0.1, 0.5, 1.5, 1.0, "K class\nprompts")
    box(2.3, 0.5, 2.2, 1.0, "text encoder\n(frozen)", frozen)
    arrow((1.6, 1.0), (2.3, 1.0))
    # the head: self-attention among the texts, cross-attention to the map, feed-forward
    ax.add_patch(FancyBboxPatch((5.4, 0.25), 3.9, 3.6, boxstyle="round,pad=0.02,rounding_size=0.2",
                                lw=1.4, ls="--", fc="none", ec=METHOD_COLOURS["vtclip"]))
    ax.text(7.35, 3.55, "VT-CLIP head (trained)", ha="center", fontsize=FONT,
            color=METHOD_COLOURS["vtclip"], weight="bold")
    box(5.7, 0.5, 1.6, 0.8, "self-attn\n(texts)", trained)
    box(5.7, 1.9, 3.3, 1.0, "cross-attention\n(texts look at the map)", trained)
    box(7.6, 0.5, 1.4, 0.8, "FFN", trained)
    arrow((4.5, 1.0), (5.7, 0.9))
    ax.text(5.1, 1.15, "$T$ (K×D)", ha="center", va="bottom", fontsize=FONT, color="0.2")
    arrow((6.5, 1.3), (6.5, 1.9))
    arrow((8.3, 1.9), (8.3, 1.3))
    arrow((4.5, 5.1), (10.2, 5.1), "pooled $v$ (D)")
    arrow((3.4, 4.6), (6.9, 2.9))
    ax.text(3.3, 3.3, "spatial map\n$V_s$ (HW×C)", ha="center", va="center", fontsize=FONT,
            color="0.2")
    # residual and the classifier
    box(9.7, 0.5, 0.7, 0.8, "+")
    arrow((9.0, 0.9), (9.7, 0.9))
    ax.plot([5.0, 5.0, 10.05], [1.0, 0.0, 0.0], color="0.45", lw=1.0, ls=":")
    arrow((10.05, 0.0), (10.05, 0.5), color="0.45")
    ax.text(7.35, -0.1, "residual: $T$ + update", ha="center", va="top", fontsize=FONT,
            color="0.35")
    box(10.2, 4.6, 2.9, 1.0, "cosine × logit scale\n→ K logits")
    arrow((10.05, 1.3), (11.0, 4.6))
    ax.text(10.8, 2.7, "visual-guided\ntexts", ha="left", va="center", fontsize=FONT, color="0.2")
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
    cols = max(n, 3)                     # top row: the image and the scores; below: one map per class
    size = COLUMN / cols
    fig = plt.figure(figsize=(COLUMN, 2 * size + 0.9), layout="constrained")
    upper, lower = fig.subfigures(2, 1, height_ratios=[size + 0.3, size + 0.6])   # own layouts
    axes = list(upper.subplots(1, 2, width_ratios=[1, cols - 1])) + list(lower.subplots(1, cols))[:n]
    for ax in lower.axes[n:]:
        ax.axis("off")
    axes[0].imshow(img)
    axes[0].set_title("image" + (f"\n({classnames[label]})" if label is not None else ""),
                      fontsize=FONT)
    axes[0].axis("off")
    order = list(np.argsort(-np.maximum(before, after))[:top + 2])[::-1]         # best at the top
    y = np.arange(len(order))
    axes[1].barh(y + 0.2, before[order], height=0.4, color="#7f7f7f", label="zero-shot texts")
    axes[1].barh(y - 0.2, after[order], height=0.4, color="#d62728", label="visual-guided")
    axes[1].set_yticks(y, [classnames[c] for c in order], fontsize=FONT)
    axes[1].set_xlim(0, 1)
    axes[1].legend(frameon=False, loc="lower right")
    axes[1].set_title("class probability", fontsize=FONT)
    for ax, c in zip(axes[2:], shown):
        _overlay(ax, img, attention[c], grid)
        title = f"{_wrap(classnames[c], size)}\n{100 * before[c]:.0f}% → {100 * after[c]:.0f}%"
        ax.set_title(title, fontsize=FONT)
        ax.axis("off")
    return fig


book_style()
