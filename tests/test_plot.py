"""Every ``vtclip.plot`` figure fits the book's column: width, text size, dpi, titles that do not collide."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vtclip import plot  # noqa: E402

RNG = np.random.default_rng(0)
IMG = RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8)
NAMES = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "a long class name"]


def _rows(methods=("zeroshot", "vtclip", "coop")):
    return [{"method": m, "shots": k, "top1": 50.0 + k + s} for m in methods for k in (1, 2, 4, 8, 16)
            for s in range(3)]


def _curve(variant, dataset):
    return {"variant": variant, "dataset": dataset, "zeroshot": {"dev_acc": 50.0},
            "history": [{"dev_acc": 50.0 + e, "train_acc": 60.0} for e in range(5)]}


def _ablation_rows(values):
    return [{"value": v, "datasets": {"d": (50.0 + i, 1.0)}, "average": 50.0 + i} for i, v in enumerate(values)]


FIGURES = {
    "training_curves": lambda: plot.training_curves(
        [{"epoch": e, "loss": 1 / (e + 1), "train_acc": 50 + e, "val_acc": 40 + e} for e in range(5)], "t"),
    "accuracy_vs_shots": lambda: plot.accuracy_vs_shots(_rows(), "dtd"),
    "shots_panels": lambda: plot.shots_panels([(f"set {i}", _rows()) for i in range(7)], "a title"),
    "image_grid": lambda: plot.image_grid([IMG] * 8, [f"{n} → bumpy" for n in NAMES], cols=8, size=1.4),
    "attention_maps": lambda: plot.attention_maps(IMG, RNG.random((8, 49)), NAMES, (7, 7),
                                                  scores=RNG.dirichlet(np.ones(8)), cols=5),
    "explained": lambda: plot.explained(IMG, RNG.random((8, 49)), NAMES, (7, 7), RNG.dirichlet(np.ones(8)),
                                        RNG.dirichlet(np.ones(8)), label=1),
    "ablations": lambda: plot.ablations({g: _ablation_rows([1, 2, 8]) for g in "abcde"},
                                        default={g: 8 for g in "abcde"}),
    "dev_curves": lambda: plot.dev_curves([_curve(v, d) for v in ("a", "b") for d in "wxyz"]),
    "architecture": plot.architecture,
}


def _texts(fig):
    fig.canvas.draw()
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("name", FIGURES)
def test_figure_fits_the_column(name):
    fig = FIGURES[name]()
    try:
        width, _ = fig.get_size_inches()
        assert width <= plot.COLUMN + 1e-6, f"{name}: {width:.1f} in wide, the column is {plot.COLUMN} in"
        assert matplotlib.rcParams["savefig.dpi"] >= 150
        small = sorted({(t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < plot.FONT})
        assert not small, f"{name}: text under {plot.FONT} pt: {small[:5]}"
        boxes = [ax.get_window_extent() for ax in fig.axes if ax.has_data() and ax.axison]   # plots
        per_row = max([sum(abs(b.y0 - a.y0) < 5 for b in boxes) for a in boxes] or [0])
        assert per_row <= 4, f"{name}: {per_row} plot panels side by side"
        tiles = [ax.get_window_extent().width / fig.dpi for ax in fig.axes if ax.images and not ax.axison]
        assert min(tiles, default=plot.TILE) >= plot.TILE - 0.1, f"{name}: image tiles {min(tiles):.2f} in"
    finally:
        plt.close(fig)


@pytest.mark.parametrize("name", FIGURES)
def test_titles_do_not_collide(name):
    fig = FIGURES[name]()
    try:
        renderer = fig.canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer))
                 for t in _texts(fig) if t in [ax.title for ax in fig.axes] or t is getattr(fig, "_suptitle", None)]
        clashes = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
        assert not clashes, f"{name}: titles overlap: {clashes[:3]}"
        fig_box = fig.bbox
        outside = [t for t, b in boxes if b.x0 < fig_box.x0 - 1 or b.x1 > fig_box.x1 + 1]
        assert not outside, f"{name}: titles cut off at the figure's edge: {outside}"
    finally:
        plt.close(fig)


def test_a_chapters_own_figure_gets_the_book_defaults():
    fig, ax = plt.subplots()
    try:
        assert tuple(fig.get_size_inches()) == (plot.COLUMN, 3.0)
        assert ax.title.get_fontsize() >= plot.FONT and ax.xaxis.label.get_fontsize() >= plot.FONT
    finally:
        plt.close(fig)


def test_accuracy_vs_shots_into_a_callers_axes_keeps_its_layout():
    fig, axes = plt.subplots(1, 2, layout="constrained")
    with_warnings = []
    try:
        import warnings

        with warnings.catch_warnings(record=True) as with_warnings:
            warnings.simplefilter("always")
            plot.accuracy_vs_shots(_rows(), "a", ax=axes[0])
        assert fig.get_layout_engine().__class__.__name__ == "ConstrainedLayoutEngine"
        assert not with_warnings, [str(w.message) for w in with_warnings]   # no stderr in a notebook
    finally:
        plt.close(fig)


def test_the_architecture_diagrams_labels_do_not_overlap():
    fig = plot.architecture()
    try:
        renderer = fig.canvas.get_renderer()
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(fig)]
        clashes = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
        assert not clashes, f"labels overlap: {clashes[:3]}"
        inside = fig.bbox
        outside = [t for t, b in boxes if b.x0 < inside.x0 or b.x1 > inside.x1 or b.y0 < inside.y0]
        assert not outside, f"labels cut off at the figure's edge: {outside}"
    finally:
        plt.close(fig)
