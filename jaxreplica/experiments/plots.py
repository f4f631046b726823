"""Every figure of the package, drawn with matplotlib (imported when a figure is drawn).

Functions that take ``path`` save there and close the figure; with ``path=None`` they
return it (for a notebook). The backend is left to the caller: the command line
chooses a non-interactive one, a notebook keeps its own.
"""

from __future__ import annotations

import pathlib

import numpy as np

from jaxreplica.experiments.figure2.compare import linear_gap_summary

__all__ = ["plot_figure2", "plot_figure5", "plot_information", "plot_learning", "plot_linear_gap", "plot_sweep",
           "save_training_plots", "sigma_axis"]


# --------------------------------------------------------------------------- Figure 2

_STYLES = {
    "replica": dict(ls="-", marker="", lw=2.0, label="replica"),
    "exact": dict(ls="--", marker="", lw=1.5, label="exact"),
    "replica_product": dict(ls=":", marker="", lw=2.0, label="replica, one layer (spectrum of the product)"),
    "linear_approx": dict(ls="--", marker="", lw=1.2, label="linear approx"),
    "half_linear_approx": dict(ls="--", marker="", lw=1.2, label="1/2 linear approx"),
    "knn": dict(ls="", marker="o", ms=4, label="k-NN (Kraskov)"),
    "pairwise": dict(ls="", marker="s", ms=4, mfc="none", label="pairwise KL (Kolchinsky), fit to noisy"),
    "pairwise_parametric": dict(ls="", marker="^", ms=4, mfc="none", label="pairwise KL, parametric"),
}


def sigma_axis(ax, sigmas) -> None:
    """A logarithmic weight-scale axis whose tick labels stay readable on any range.

    Over less than about a decade and a half (where a log axis would label only minor
    ticks, and crowd them), the ticks sit on up to six of the sigmas themselves, evenly
    spread in ``log sigma``; over a wider range on powers of ten (at most eight
    labels). Labels are plain numbers (``0.5``, ``2``, ``1000``), minor ticks unlabelled.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    s = np.unique(np.asarray(sigmas, np.float64))
    ax.set_xscale("log")
    if s.size and s[-1] / s[0] < 30:
        logs = np.log10(s)
        gap = max((logs[-1] - logs[0]) / 5, 1e-12)
        ticks = [s[0]]
        for v, lv in zip(s[1:], logs[1:]):
            if lv - np.log10(ticks[-1]) >= gap * 0.999:
                ticks.append(v)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10.0, numticks=8))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _finish(fig, path):
    """Save ``fig`` to ``path`` and close it, or return it when ``path`` is None."""
    if path is None:
        return fig
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return None


def plot_figure2(result: dict, path=None):
    """Draw the curves of :func:`~jaxreplica.experiments.figure2.compute_figure2` (one column per activation) to ``path``
    (``None``: return the figure, for a notebook).

    ``pairwise_noise_kernel`` is left out (a flat line at ``H(Z) + log n``, far below
    the others; it is in the JSON output).
    """
    import matplotlib.pyplot as plt

    names = list(result["curves"])
    sigmas = np.asarray(result["sigmas"])
    fig, axes = plt.subplots(2, len(names), figsize=(4.4 * len(names), 6.4), squeeze=False, sharex=True)
    for col, name in enumerate(names):
        curve = result["curves"][name]
        for row in range(2):
            ax = axes[row][col]
            for key, style in _STYLES.items():
                if key in curve:
                    ax.plot(sigmas, np.asarray(curve[key])[:, row], color=f"C{list(_STYLES).index(key)}", **style)
            sigma_axis(ax, sigmas)
            ax.set_title(f"{name}: $H(T_{row + 1})/n_0$")
            ax.grid(alpha=0.3)
            if row == 1:
                ax.set_xlabel(r"weight scale $\sigma$")
        axes[0][col].legend(fontsize=7)
    axes[0][0].set_ylabel("nats per input unit")
    axes[1][0].set_ylabel("nats per input unit")
    fig.suptitle(
        f"Figure 2: width {result['width']}, {result['n_samples']} samples, noise {result['noise']:g} before the last activation"
    )
    fig.tight_layout()
    return _finish(fig, path)


def plot_linear_gap(result: dict, path=None):
    """The linear network's ``H(T_2)`` against the drawn pair's exact value (zero line):
    the two-layer replica (free spectra), the one-layer form with the product's spectrum,
    and the exact values of the rotated pairs ``W_2 O W_1`` (same spectra), with their
    mean and one standard deviation. ``path=None`` returns the figure."""
    import matplotlib.pyplot as plt

    curve = result["curves"]["linear"]
    sigmas = np.asarray(result["sigmas"])
    exact = np.asarray(curve["exact"])[:, 1]
    summary = linear_gap_summary(curve)
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    ax.axhline(0.0, color="C1", ls="--", lw=1.5, label="exact, drawn pair $W_2 W_1$")
    if "exact_rotated" in curve:
        rot = np.asarray(curve["exact_rotated"]) - exact
        for r in rot:
            ax.semilogx(sigmas, r, ls="", marker=".", ms=3, color="0.6")
        mean, sd = rot.mean(axis=0), summary["rotated_sd"]
        ax.fill_between(sigmas, mean - sd, mean + sd, color="0.85", zorder=0,
                        label=f"exact, $W_2 O W_1$ for {len(rot)} random rotations $O$ (mean $\\pm$ sd; dots)")
        ax.semilogx(sigmas, mean, color="0.4", lw=1.0)
    ax.semilogx(sigmas, np.asarray(curve["replica"])[:, 1] - exact, color="C0", lw=2.0, marker="o", ms=4,
                label="replica, two layers (spectra of $W_1$, $W_2$)")
    ax.semilogx(sigmas, np.asarray(curve["replica_product"])[:, 1] - exact, color="C2", ls=":", lw=2.0,
                label="replica, one layer (spectrum of $W_2 W_1$)")
    text = (f"max |replica - exact|: {summary['replica_gap'][1]:.1e} (two layers), "
            f"{summary['product_gap'][1]:.1e} (one layer)")
    if "rotated_sd" in summary:
        text += f"\nsd of exact over rotations: {summary['rotated_sd'].min():.1e} to {summary['rotated_sd'].max():.1e}"
    ax.text(0.02, 0.03, text, transform=ax.transAxes, fontsize=8, va="bottom")
    sigma_axis(ax, sigmas)
    ax.set_xlabel(r"weight scale $\sigma$")
    ax.set_ylabel(r"$H(T_2)/n_0$ minus exact (nats)")
    ax.set_title(f"linear network, width {result['width']}: $H(T_2)$ depends on more than the two spectra")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _finish(fig, path)


def plot_sweep(result, path=None):
    """``H(T_1)``, ``H(T_2)`` of :func:`~jaxreplica.experiments.figure2.run_sweep`, one panel per activation
    (``path=None``: return the figure)."""
    import matplotlib.pyplot as plt

    names = list(result["curves"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        c = result["curves"][name]
        ax.plot(result["sigmas"], c["H1"], "o-", label=r"$H(T_1)/n_0$")
        ax.plot(result["sigmas"], c["H2"], "s-", label=r"$H(T_2)/n_0$")
        sigma_axis(ax, result["sigmas"])
        ax.set_title(name)
        ax.set_xlabel(r"weight scale $\sigma$")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("entropy per input unit (nats)")
    axes[0][0].legend()
    fig.suptitle(f"replica entropies, width {result['width']}, noise {result['noise']:g}")
    fig.tight_layout()
    return _finish(fig, path)


# --------------------------------------------------------------------------- training


def plot_learning(history, ax=None):
    """Train/test loss (left axis) and accuracy (right axis, classification) against epochs."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history.epoch, history.train_loss, label="train loss")
    ax.plot(history.epoch, history.test_loss, label="test loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    if history.train_accuracy is not None:
        ax2 = ax.twinx()
        ax2.plot(history.epoch, history.train_accuracy, "C2--", label="train accuracy")
        ax2.plot(history.epoch, history.test_accuracy, "C3--", label="test accuracy")
        ax2.set_ylabel("accuracy")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize="small")
    return ax

def plot_information(history, axes=None, exact: bool = True):
    """``I(X; T_l)`` (replica, and exact when recorded) against epochs, one panel per layer."""
    import matplotlib.pyplot as plt

    m = history.n_tracked_layers
    if m == 0:
        raise ValueError("history: no information was tracked")
    if axes is None:
        _, axes = plt.subplots(1, m, figsize=(3.2 * m, 3), squeeze=False)
        axes = axes[0]
    acts = history.config.get("network", {}).get("activations", [""] * m)
    for l in range(m):
        ax = axes[l]
        ax.plot(history.tracked_epoch, history.mutual_information[:, l], ".-", label="replica")
        if exact and history.exact_mutual_information is not None:
            ax.plot(history.tracked_epoch, history.exact_mutual_information[:, l], "k--", label="exact")
        ax.set_title(f"layer {l + 1} {acts[l]}", fontsize="small")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"I(X; T{l + 1})")
    axes[0].legend(fontsize="small")
    return axes


def save_training_plots(history, out: pathlib.Path) -> list[pathlib.Path]:
    """``learning.png``, ``information.png`` and, with exact values, ``replica_vs_exact.png``."""
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    plot_learning(history, ax)
    fig.tight_layout()
    paths.append(out / "learning.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if history.n_tracked_layers:
        axes = plot_information(history)
        fig = axes[0].figure
        fig.tight_layout()
        paths.append(out / "information.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    if history.exact_mutual_information is not None:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        err = history.squared_error()
        for l in range(err.shape[1]):
            ax.semilogy(history.tracked_epoch, err[:, l] + 1e-300, ".-", label=f"layer {l + 1}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("(replica - exact)$^2$ of I(X; T)")
        ax.legend(fontsize="small")
        fig.tight_layout()
        paths.append(out / "replica_vs_exact.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def plot_figure5(hists, scales, path=None):
    """One row per initialisation scale: learning curves and ``I(X; T_l)`` per layer
    (``path=None``: return the figure)."""
    import matplotlib.pyplot as plt

    m = max(h.n_tracked_layers for h in hists)
    fig, axes = plt.subplots(len(hists), m + 1, figsize=(3 * (m + 1), 2.6 * len(hists)), squeeze=False)
    for row, (s, h) in enumerate(zip(scales, hists)):
        plot_learning(h, axes[row, 0])
        axes[row, 0].set_title(f"init scale {s:g}", fontsize="small")
        if h.n_tracked_layers:
            plot_information(h, axes[row, 1:], exact=False)
    fig.tight_layout()
    return _finish(fig, path)
