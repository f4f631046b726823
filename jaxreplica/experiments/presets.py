"""The paper's training experiments as presets: a network, its data and its tracking settings.

* ``figure3``: teacher-student regression (the paper's Figure 3): ``X ~ N(0, I_n)``,
  ``n = width`` (default 100), a linear teacher with 4 outputs and noise 0.01, a
  linear student ``n-n-n-n-4`` of three USV layers and a dense output layer; MSE,
  batch 50; ``I(X; T_l)`` of layers 1-3 every epoch, replica and exact.
* ``recognition-relu`` / ``recognition-hardtanh`` (Figure 4): a code ``Y`` of 100
  units, a linear generative layer to ``X`` of 500 units (noise 0.01), labels
  ``sign(Y_1)``; a recognition network 500-1000-500-250-100-2 with
  linear-act-linear-act-softmax, four USV layers and a dense softmax layer;
  cross-entropy, batch 100; ``I(X; T_l)`` of layers 1-4 every 2 epochs.
  ``scale="small"`` divides every width by 5 (20, 100, 100-200-100-50-20-2) and the
  data with it, for a CPU.
* ``figure5``: the recognition task with four hardtanh USV layers, trained from
  several initialisation scales (weight std ``scale / sqrt(n_in)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import jaxreplica.data as jd
from jaxreplica.nn import build_network

__all__ = ["PRESETS", "DEFAULT_EPOCHS", "PAPER_EPOCHS", "FIGURE5_SCALES", "build", "epochs_for",
           "tracked_layers"]

PRESETS = ("figure3", "recognition-relu", "recognition-hardtanh", "figure5")
FIGURE5_SCALES = (2.0, 1.0, 0.25)
DEFAULT_EPOCHS = {"figure3": 100, "recognition-relu": 300, "recognition-hardtanh": 300, "figure5": 300}
PAPER_EPOCHS = {"recognition-relu": 1000, "recognition-hardtanh": 2000, "figure5": 1000}


def tracked_layers(preset: str) -> int:
    """How many (USV) layers a preset tracks, and may penalise."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    return 3 if preset == "figure3" else 4


def epochs_for(preset: str, scale: str = "small") -> int:
    """The preset's default number of epochs (the paper's with ``scale="paper"``)."""
    if scale == "paper" and preset in PAPER_EPOCHS:
        return PAPER_EPOCHS[preset]
    return DEFAULT_EPOCHS[preset]


def build(preset: str, key: jax.Array, *, width: int = 100, scale: str = "small", init_scale: float = 1.0,
          dtype: str = "float64"):
    """``(network, dataset, defaults)`` of a preset; ``defaults`` holds its tracking settings
    (``every``, ``layers``, ``tol``). ``key`` (a ``jax.random`` key) draws the data and
    the initial weights."""
    dt = jnp.float64 if dtype == "float64" else jnp.float32
    k_data, k_net = jax.random.split(key)
    # The network's key is an integer drawn from k_net, as runs made so far drew it.
    net_key = jax.random.key(int(jax.random.randint(k_net, (), 0, 2**31 - 1)))
    if preset == "figure3":
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        data = jd.teacher_student(k_data, width, 4, noise=0.01, dtype=dt)
        net = build_network([width] * 4 + [4], ["linear"] * 4, [True, True, True, False], key=net_key, dtype=dt)
        return net, data, {"every": 1, "layers": tracked_layers(preset), "tol": 1e-10}
    if preset in ("recognition-relu", "recognition-hardtanh", "figure5"):
        f = 5 if scale == "small" else 1
        n_code, n_x = 100 // f, 500 // f
        sizes = [n_x, 1000 // f, 500 // f, 250 // f, 100 // f, 2]
        if preset == "figure5":
            acts = ["hardtanh"] * 4 + ["softmax"]
        else:
            act = preset.split("-")[1]
            acts = ["linear", act, "linear", act, "softmax"]
        data = jd.generative_recognition(k_data, n_code, n_x, noise=0.01, task="classification", dtype=dt)
        net = build_network(sizes, acts, [True] * 4 + [False], key=net_key, scale=init_scale, dtype=dt)
        return net, data, {"every": 2, "layers": tracked_layers(preset), "tol": 1e-6}
    raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
