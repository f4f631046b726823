"""Synthetic data sets whose information content the replica formula knows.

Two data models, both from the paper (section 3.2-3.3) and its experiment code
(``lsd``), every random draw from an explicit JAX PRNG key:

* **teacher-student** (:func:`teacher_student`): ``X ~ P_0`` i.i.d. of dimension
  ``n_X``, a linear teacher ``W ~ N(0, 1/n_X)^{n_Y x n_X}`` and
  ``Y = W X + sqrt(noise) xi``. With ``fraction_relevant = f < 1`` only the first
  ``floor(f n_X)`` inputs enter (the other columns of ``W`` are zero). The
  replica chain of a student starts at ``X``: prior ``P_0``, no generative layer.
* **generative-recognition** (:func:`generative_recognition`): a code
  ``Y ~ P_0`` of dimension ``n_Y`` goes through a generative network,
  ``t_k = phi_k(W_k t_{k-1} + sqrt(noise_k) xi_k)`` with ``W_k ~ N(0, 1/n_{k-1})``,
  and ``X`` is its output (one linear layer: ``X = W_gen Y + noise``). Targets:
  ``sign(Y_1)`` (one-hot, two classes) for classification, or the first
  ``floor(f n_Y)`` code units for regression. The replica chain of a recognition
  network starts at ``Y``: prior ``P_0``, then the generative layers.

Training and test sets have the same size, ``samples_per_dim * n_X`` each (the
original code: 100 times the input dimension).

Priors are the engine's objects (``jaxreplica.Normal(mean, var)``,
``Bimodal(prob)`` on ``{+1, -1}`` with ``P(+1) = prob``, ``SpikeSlab(prob, mean, var)``:
0 with probability ``1 - prob``, else ``N(mean, var)``); :func:`sample_prior` reads
their fields.

Note: the original Keras code added the data-model noise with Keras'
``GaussianNoise``, which is inactive in ``predict``, so its data were in fact
noiseless while its replica chain assumed the noise; here the noise is really
drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from jaxreplica.activations import function, has_channel
from jaxreplica.priors import Bimodal, Normal, SpikeSlab

__all__ = [
    "Dataset",
    "GenerativeLayer",
    "sample_prior",
    "prior_description",
    "prior_from_description",
    "teacher_student",
    "generative_recognition",
]

_PRIORS = {"Normal": Normal, "Bimodal": Bimodal, "SpikeSlab": SpikeSlab}


def _prior_kind(prior) -> str:
    kind = type(prior).__name__
    if kind not in ("Normal", "Bimodal", "SpikeSlab"):
        raise ValueError(f"prior must be a Normal, Bimodal or SpikeSlab prior, got {prior!r}")
    return kind


def prior_description(prior) -> dict:
    """JSON-able ``{"kind": ..., parameters...}`` of a prior (for saved configurations)."""
    kind = _prior_kind(prior)
    if kind == "Normal":
        return {"kind": kind, "mean": float(prior.mean), "var": float(prior.var)}
    if kind == "Bimodal":
        return {"kind": kind, "prob": float(prior.prob)}
    return {"kind": kind, "prob": float(prior.prob), "mean": float(prior.mean), "var": float(prior.var)}


def prior_from_description(desc: dict):
    """Inverse of :func:`prior_description` (builds the engine's prior object)."""
    desc = dict(desc)
    kind = desc.pop("kind")
    if kind not in _PRIORS:
        raise ValueError(f"desc: unknown prior kind {kind!r}")
    return _PRIORS[kind](**desc)


def default_prior():
    """``Normal(mean=0, var=1)``, the data models' default."""
    return Normal(mean=0.0, var=1.0)


def sample_prior(key: jax.Array, prior, shape: Sequence[int], dtype=jnp.float64) -> jax.Array:
    """i.i.d. samples of ``prior``:

    * ``Normal(mean, var)``: ``mean + sqrt(var) z``;
    * ``Bimodal(prob)``: ``+1`` with probability ``prob``, ``-1`` otherwise;
    * ``SpikeSlab(prob, mean, var)``: ``b (mean + sqrt(var) z)`` with ``b ~ Bernoulli(prob)``.
    """
    kind = _prior_kind(prior)
    shape = tuple(shape)
    if kind == "Normal":
        var = float(prior.var)
        if not var >= 0:
            raise ValueError(f"prior.var must be non-negative, got {var!r}")
        return float(prior.mean) + jnp.sqrt(var) * jax.random.normal(key, shape, dtype)
    if kind == "Bimodal":
        prob = float(prior.prob)
        if not 0 <= prob <= 1:
            raise ValueError(f"prior.prob must be in [0, 1], got {prob!r}")
        return jnp.where(jax.random.uniform(key, shape, dtype) < prob, 1.0, -1.0).astype(dtype)
    prob, mean, var = float(prior.prob), float(prior.mean), float(prior.var)
    if not 0 <= prob <= 1:
        raise ValueError(f"prior.prob must be in [0, 1], got {prob!r}")
    if not var >= 0:
        raise ValueError(f"prior.var must be non-negative, got {var!r}")
    k_b, k_z = jax.random.split(key)
    slab = mean + jnp.sqrt(var) * jax.random.normal(k_z, shape, dtype)
    return jnp.where(jax.random.uniform(k_b, shape, dtype) < prob, slab, 0.0).astype(dtype)


@dataclass(frozen=True)
class GenerativeLayer:
    """One layer ``t = phi(W t_prev + sqrt(noise) xi)`` of a generative data model (``W``: ``n_out x n_in``)."""

    weight: np.ndarray
    activation: str
    noise: float

    @property
    def alpha(self) -> float:
        return self.weight.shape[0] / self.weight.shape[1]

    def spectrum(self) -> np.ndarray:
        """Eigenvalues of ``W^T W`` (ascending, zeros included)."""
        w = np.asarray(self.weight, dtype=np.float64)
        return np.linalg.eigvalsh(w.T @ w)


@dataclass
class Dataset:
    """Train and test sets plus what the replica chain needs to know about the data model.

    ``prior`` is the distribution of the chain's first variable (``X`` for a
    teacher-student task, the code ``Y`` for a recognition task); ``generative``
    lists the layers from that variable to the network's input (empty for
    teacher-student). ``task`` is ``"regression"`` (targets real vectors) or
    ``"classification"`` (one-hot targets).
    """

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    task: str
    prior: object
    generative: tuple[GenerativeLayer, ...] = ()
    teacher: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_input(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_output(self) -> int:
        return int(self.y_train.shape[1])

    def describe(self) -> dict:
        """JSON-able description (without the arrays)."""
        return {
            "task": self.task,
            "prior": prior_description(self.prior),
            "n_input": self.n_input,
            "n_output": self.n_output,
            "n_train": int(self.x_train.shape[0]),
            "n_test": int(self.x_test.shape[0]),
            "generative": [
                {"shape": list(g.weight.shape), "activation": g.activation, "noise": float(g.noise)}
                for g in self.generative
            ],
            **self.info,
        }


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_noise(name, value):
    value = float(value)
    if not value >= 0:
        raise ValueError(f"{name} must be a non-negative variance, got {value!r}")
    return value


def _check_fraction(value):
    value = float(value)
    if not 0 < value <= 1:
        raise ValueError(f"fraction_relevant must be in (0, 1], got {value!r}")
    return value


def _check_task(task):
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    return task


def _one_hot_sign(y1: jax.Array) -> jax.Array:
    """Two-class one-hot of ``sign(y1)``: class 1 when ``y1 > 0``, class 0 otherwise."""
    return jax.nn.one_hot((y1 > 0).astype(jnp.int32), 2, dtype=y1.dtype)


def teacher_student(key: jax.Array, n_input: int, n_output: int = 4, *, noise: float = 0.01, prior=None,
                    fraction_relevant: float = 1.0, samples_per_dim: int = 100, task: str = "regression",
                    dtype=jnp.float64) -> Dataset:
    """Linear teacher ``Y = W X + sqrt(noise) xi``, ``X ~ prior``, ``W_ij ~ N(0, 1/n_input)``.

    Only the first ``floor(fraction_relevant * n_input)`` inputs are used (the other
    columns of ``W`` are 0). ``task="classification"`` needs ``n_output = 1`` and
    gives the one-hot of ``sign(Y)``. Train and test sets: ``samples_per_dim *
    n_input`` samples each. The paper's Figure 3: ``n_output = 4``, ``noise = 0.01``,
    ``X ~ N(0, 1)``.
    """
    n_input = _check_positive_int("n_input", n_input)
    n_output = _check_positive_int("n_output", n_output)
    samples_per_dim = _check_positive_int("samples_per_dim", samples_per_dim)
    noise = _check_noise("noise", noise)
    fraction_relevant = _check_fraction(fraction_relevant)
    task = _check_task(task)
    if task == "classification" and n_output != 1:
        raise ValueError(f"n_output must be 1 for classification (label sign(Y)), got {n_output}")
    prior = default_prior() if prior is None else prior
    n = samples_per_dim * n_input
    k_w, k_x, k_n = jax.random.split(key, 3)
    w = jax.random.normal(k_w, (n_output, n_input), dtype) / jnp.sqrt(n_input)
    n_rel = int(fraction_relevant * n_input)
    w = w.at[:, n_rel:].set(0.0)
    x = sample_prior(k_x, prior, (2 * n, n_input), dtype)
    y = x @ w.T + jnp.sqrt(noise) * jax.random.normal(k_n, (2 * n, n_output), dtype)
    if task == "classification":
        y = _one_hot_sign(y[:, 0])
    info = {"model": "teacher-student", "noise": noise, "fraction_relevant": fraction_relevant,
            "samples_per_dim": samples_per_dim}
    return Dataset(x[:n], y[:n], x[n:], y[n:], task, prior, (), np.asarray(w), info)


def _generative_activation(name) -> bool:
    try:
        return has_channel(name)
    except ValueError:
        return False


def generative_recognition(key: jax.Array, n_code: int = 100, n_input: int = 500, *, noise: float = 0.01,
                           prior=None, hidden_sizes: Sequence[int] = (), activations: Sequence[str] | None = None,
                           noises: Sequence[float] | None = None, task: str = "classification",
                           fraction_relevant: float | None = None, samples_per_dim: int = 100,
                           dtype=jnp.float64) -> Dataset:
    """Code ``Y ~ prior`` (dim ``n_code``) mapped to ``X`` (dim ``n_input``) by a generative net.

    Generative sizes ``[n_code, *hidden_sizes, n_input]``; layer ``k`` computes
    ``t_k = phi_k(W_k t_{k-1} + sqrt(noise_k) xi)``, ``W_k ~ N(0, 1/n_{k-1})``. By
    default one linear layer with noise variance ``noise``: ``X = W_gen Y + noise``
    (the paper's Figure 4: ``n_code = 100``, ``n_input = 500``, ``noise = 0.01``).
    ``activations`` / ``noises`` (one per generative layer) override the defaults
    (linear; ``noise`` on every layer).

    Targets: ``task="classification"``: one-hot of ``sign(Y_1)``;
    ``task="regression"``: ``Y[:, :floor(fraction_relevant * n_code)]`` (default the
    whole code).
    """
    n_code = _check_positive_int("n_code", n_code)
    n_input = _check_positive_int("n_input", n_input)
    samples_per_dim = _check_positive_int("samples_per_dim", samples_per_dim)
    task = _check_task(task)
    sizes = [n_code, *[_check_positive_int("hidden_sizes", h) for h in hidden_sizes], n_input]
    n_gen = len(sizes) - 1
    activations = ("linear",) * n_gen if activations is None else tuple(activations)
    if len(activations) != n_gen:
        raise ValueError(f"activations must have {n_gen} entries (one per generative layer), got {len(activations)}")
    for a in activations:
        if not _generative_activation(a):
            raise ValueError(f"activations: unknown generative activation {a!r}; choose one with a replica "
                             "channel (jaxreplica.activations)")
    noises = (_check_noise("noise", noise),) * n_gen if noises is None else tuple(
        _check_noise("noises", v) for v in noises)
    if len(noises) != n_gen:
        raise ValueError(f"noises must have {n_gen} entries (one per generative layer), got {len(noises)}")
    if fraction_relevant is None:
        fraction_relevant = 1.0
    fraction_relevant = _check_fraction(fraction_relevant)
    prior = default_prior() if prior is None else prior
    n = samples_per_dim * n_input
    keys = jax.random.split(key, 2 * n_gen + 1)
    y = sample_prior(keys[0], prior, (2 * n, n_code), dtype)
    t = y
    layers = []
    for k in range(n_gen):
        w = jax.random.normal(keys[1 + 2 * k], (sizes[k + 1], sizes[k]), dtype) / jnp.sqrt(sizes[k])
        z = t @ w.T + jnp.sqrt(noises[k]) * jax.random.normal(keys[2 + 2 * k], (2 * n, sizes[k + 1]), dtype)
        t = function(activations[k])(z)
        layers.append(GenerativeLayer(np.asarray(w), activations[k], noises[k]))
    x = t
    if task == "classification":
        target = _one_hot_sign(y[:, 0])
    else:
        target = y[:, : max(1, int(fraction_relevant * n_code))]
    info = {"model": "generative-recognition", "n_code": n_code, "gen_sizes": sizes, "noise": noises[-1],
            "fraction_relevant": fraction_relevant, "samples_per_dim": samples_per_dim}
    return Dataset(x[:n], target[:n], x[n:], target[n:], task, prior, tuple(layers), None, info)
