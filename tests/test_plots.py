"""Figures: tick labels of the weight-scale axis stay readable on any range of sigmas."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxreplica.experiments.plots import plot_sweep  # noqa: E402

RANGES = [np.logspace(-1, 1, 9), np.linspace(1.5, 3.0, 9), np.linspace(0.95, 1.05, 7), np.logspace(-3, 3, 13),
          np.array([0.1, 0.101, 0.102, 5.0]), np.array([2.0]), np.geomspace(2.0, 40.0, 30)]


def _labels(ax, fig):
    renderer = fig.canvas.get_renderer()
    out = []
    for tick in ax.xaxis.get_major_ticks() + ax.xaxis.get_minor_ticks():
        label = tick.label1
        lo, hi = ax.get_xlim()
        if label.get_visible() and label.get_text() and min(lo, hi) <= tick.get_loc() <= max(lo, hi):
            out.append(label.get_window_extent(renderer))
    return out


@pytest.mark.parametrize("sigmas", RANGES, ids=lambda s: f"{s.min():g}-{s.max():g}")
def test_sigma_tick_labels_do_not_overlap(sigmas):
    curve = {"H1": list(np.log(sigmas)), "H2": list(2 * np.log(sigmas))}
    result = {"sigmas": list(sigmas), "width": 10, "noise": 1e-5, "curves": {"linear": curve, "relu": curve}}
    fig = plot_sweep(result)
    fig.canvas.draw()
    for ax in fig.axes:
        boxes = sorted(_labels(ax, fig), key=lambda b: b.x0)
        assert len(boxes) >= 1, "the sigma axis has no tick label"
        for a, b in zip(boxes, boxes[1:]):
            assert a.x1 <= b.x0, f"overlapping tick labels for sigmas {sigmas.min():g}..{sigmas.max():g}"
    plt.close(fig)
