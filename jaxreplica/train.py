"""Training with optax, and the replica entropies of the hidden layers tracked live.

:func:`train` runs mini-batch training of a :class:`jaxreplica.nn.Network` on a
:class:`jaxreplica.data.Dataset`: one ``jax.jit``-compiled function per epoch that
shuffles the training set and ``lax.scan``-s the optimizer step over its batches.
The step is a pure function of ``(params, opt_state, frozen, batch)``, with
``params`` the :class:`flax.nnx.Param` leaves of the network (the ``S`` of USV
layers and the ``W`` of dense layers) and ``frozen`` the rest (the ``U``, ``V``
of USV layers). That shape leaves room for

* a differentiable penalty on the parameters inside the same jitted step
  (``penalty(params) -> scalar`` is added to the loss; an information penalty on
  the USV ``S`` through the replica formula is the intended use), and
* sharding the batch over devices (the batch enters the step as an argument;
  nothing in the step depends on its size): ``train(..., devices="all")`` (or
  ``data_parallel=True``) uses :func:`make_data_parallel_step`, see the
  "data parallelism" section below.

Defaults are the original experiments' (``lsd`` example scripts): plain SGD with a
constant learning rate ``0.01``, batch 50 (regression) or 100 (classification),
mean squared error or categorical cross-entropy.

**Information tracking.** Every ``every`` epochs (epoch 0 is the initial network),
for ``l = 1..m`` the chain

    prior -> generative layers of the data model (if any) -> network layers 1..l

(see :mod:`jaxreplica.nn.convert`; network layers ``1..l-1`` get the hidden noise,
default 0, and layer ``l`` the last-layer noise, default ``1e-5``) is solved with the
replica formula, warm-started from the fixed point of the previous tracking step,
and ``H(T_l)/n_0`` and ``I(X; T_l)/n_0`` are recorded (``n_0`` the chain's first
dimension: ``n_X`` for teacher-student, ``n_Y`` with a generative part). This is
the construction of the original code (``lsd``: ``match_mi_layers`` and
``dnner.compute_all`` with ``always_include = len(generative) + 1``, which reports
one value per *network* layer, the generative layers always included).

With noiseless hidden network layers ``T_{l-1}`` is a deterministic function of
the network input ``X``, so ``I(X; T_l) = H(T_l) - H(T_l | T_{l-1}) = I(T_l; T_{l-1})``,
which the replica formula gives as ``phi + talpha_l I_last(0, trho_l)``
(``Solution.last_layer_information``), with or without a (noisy) generative part.
With noisy hidden layers it gives no ``I(X; T_l)`` and NaN is recorded.

For a linear network on Gaussian data (linear generative layers, if any) the exact
values are recorded too (:func:`exact_linear_information`, log-determinants).
The spectra of the tracked layers are kept, so :func:`recompute` can redo the
whole trajectory with other noise levels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .data import Dataset, prior_description, prior_from_description
from .nn.convert import SpectralLayer, chain_from_spectra
from .nn.network import Network

__all__ = [
    "Tracking",
    "History",
    "train",
    "recompute",
    "exact_linear_information",
    "make_epoch",
    "make_step",
    "make_data_parallel_step",
    "loss_function",
]


# --------------------------------------------------------------------------- losses


def loss_function(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Per-sample loss of the network's logits ``z_L`` (shape ``(batch, n_L)``) against targets.

    * ``"mse"``: ``mean_j (z_j - y_j)^2`` (Keras' mean squared error; linear output);
    * ``"cross_entropy"``: ``-sum_j y_j log softmax(z)_j`` (categorical cross-entropy
      of a softmax output, computed from the logits).
    """
    if name == "mse":
        return lambda z, y: jnp.mean(jnp.square(z - y), axis=-1)
    if name == "cross_entropy":
        return lambda z, y: -jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=-1)
    raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {name!r}")


def task_objective(graphdef, loss: str, penalty: Callable[[nnx.State], jax.Array] | None = None):
    """``(params, frozen, x, y) -> mean_i loss(z_L(x_i), y_i) [+ penalty(params)]`` on a batch."""
    per_sample = loss_function(loss)

    def objective(params, frozen, x, y):
        model = nnx.merge(graphdef, params, frozen)
        value = jnp.mean(per_sample(model.logits(x), y))
        if penalty is not None:
            value = value + penalty(params)
        return value

    return objective


def make_step(graphdef, tx: optax.GradientTransformation, loss: str,
              penalty: Callable[[nnx.State], jax.Array] | None = None):
    """One optimizer step ``(params, opt_state, frozen, x, y) -> (params, opt_state, loss)``.

    Objective on a batch: ``L(params) = mean_i loss(z_L(x_i), y_i) + penalty(params)``
    (``penalty`` optional, any differentiable scalar function of the trainable
    parameters). Pure: can be ``jit``-ed, ``scan``-ned, or given sharded batches.
    """
    objective = task_objective(graphdef, loss, penalty)

    def step(params, opt_state, frozen, x, y):
        value, grads = jax.value_and_grad(objective)(params, frozen, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def make_epoch(step, batch_size: int):
    """Jitted epoch ``(params, opt_state, frozen, key, x, y) -> (params, opt_state, mean batch loss)``.

    Shuffles with ``key``, cuts ``floor(n / batch_size)`` batches (a remainder
    smaller than a batch is left out of that epoch) and scans ``step`` over them.
    """

    @jax.jit
    def epoch(params, opt_state, frozen, key, x, y):
        n_batches = x.shape[0] // batch_size
        perm = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size].reshape(n_batches, batch_size)

        def body(carry, idx):
            p, s = carry
            p, s, value = step(p, s, frozen, x[idx], y[idx])
            return (p, s), value

        (params, opt_state), values = jax.lax.scan(body, (params, opt_state), perm)
        return params, opt_state, jnp.mean(values)

    return epoch


def _make_evaluate(graphdef, loss: str, classification: bool, chunk: int = 10000):
    per_sample = loss_function(loss)

    @jax.jit
    def totals(params, frozen, x, y):
        z = nnx.merge(graphdef, params, frozen).logits(x)
        correct = jnp.sum(jnp.argmax(z, -1) == jnp.argmax(y, -1)) if classification else jnp.zeros((), jnp.int32)
        return jnp.sum(per_sample(z, y)), correct

    def evaluate(params, frozen, x, y):
        n = x.shape[0]
        loss_sum, correct = 0.0, 0
        for start in range(0, n, chunk):
            s, c = totals(params, frozen, x[start:start + chunk], y[start:start + chunk])
            loss_sum += float(s)
            correct += int(c)
        return loss_sum / n, (correct / n if classification else math.nan)

    return evaluate


# --------------------------------------------------------------------------- exact values


def _logdet(m: np.ndarray) -> float:
    sign, value = np.linalg.slogdet(m)
    return value if sign > 0 else math.nan


def exact_linear_information(prior_var: float, generative: Sequence[tuple[np.ndarray, float]],
                             weights: Sequence[np.ndarray], *, hidden_noise: float = 0.0,
                             last_noise: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``H(T_l)/n_0`` and ``I(X; T_l)/n_0``, ``l = 1..m``, of a linear chain on Gaussian data.

    First variable ``N(mu, prior_var I_{n_0})``; generative layers ``(W, noise)`` lead
    to the network input ``X`` (covariance ``Sigma_X``, ``Sigma_X = prior_var I`` with
    no generative layer); network layers ``W_1..W_m``, layer ``l`` measured with
    noise ``last_noise`` and the ones before it with ``hidden_noise``::

        Sigma_l = W_l S_{l-1} W_l^T + last_noise I,   S_k = W_k S_{k-1} W_k^T + hidden_noise I,  S_0 = Sigma_X
        N_l     = W_l M_{l-1} W_l^T + last_noise I,   M_k = W_k M_{k-1} W_k^T + hidden_noise I,  M_0 = 0
        H(T_l) = log det(2 pi e Sigma_l) / 2,   H(T_l | X) = log det(2 pi e N_l) / 2,
        I(X; T_l) = H(T_l) - H(T_l | X),

    all divided by ``n_0``. ``N_l`` is the covariance of ``T_l`` given ``X``.
    """
    if not prior_var > 0:
        raise ValueError(f"prior_var must be positive, got {prior_var!r}")
    if not last_noise > 0:
        raise ValueError(f"last_noise must be positive, got {last_noise!r}")
    dims = [w.shape[1] for w, _ in generative] + [w.shape[1] for w in weights]
    if not weights:
        raise ValueError("weights: at least one network layer is needed")
    n0 = dims[0]
    sigma = prior_var * np.eye(n0)
    for w, noise in generative:
        w = np.asarray(w, np.float64)
        sigma = w @ sigma @ w.T + noise * np.eye(w.shape[0])
    m_cov = np.zeros_like(sigma)
    c = math.log(2 * math.pi * math.e)
    entropies, informations = [], []
    for w in weights:
        w = np.asarray(w, np.float64)
        ws, wm = w @ sigma @ w.T, w @ m_cov @ w.T
        eye = np.eye(w.shape[0])
        h = 0.5 * (_logdet(ws + last_noise * eye) + w.shape[0] * c) / n0
        h_cond = 0.5 * (_logdet(wm + last_noise * eye) + w.shape[0] * c) / n0
        entropies.append(h)
        informations.append(h - h_cond)
        sigma, m_cov = ws + hidden_noise * eye, wm + hidden_noise * eye
    return np.asarray(entropies), np.asarray(informations)


# --------------------------------------------------------------------------- tracking


@dataclass
class Tracking:
    """Settings of the information tracking.

    * ``every``: track at epochs ``0, every, 2 every, ...`` (0 switches tracking off);
    * ``layers``: track ``T_1..T_layers`` (default: the leading run of USV layers);
    * ``hidden_noise`` (default 0) and ``last_noise`` (default ``1e-5``): noise
      variances of the layers before the measured one and of the measured one;
    * ``tol``, ``max_iter``, ``method``: passed to ``jaxreplica.solve``;
    * ``exact``: also record exact log-determinant values (default: when the
      network's tracked layers and the data model are linear and the prior Normal).
    """

    every: int = 1
    layers: int | None = None
    hidden_noise: float = 0.0
    last_noise: float = 1e-5
    tol: float = 1e-8
    max_iter: int = 1000
    method: str = "vamp"
    exact: bool | None = None

    def validate(self):
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0:
            raise ValueError(f"every must be a non-negative integer, got {self.every!r}")
        if not self.hidden_noise >= 0:
            raise ValueError(f"hidden_noise must be non-negative, got {self.hidden_noise!r}")
        if not self.last_noise > 0:
            raise ValueError(f"last_noise must be positive, got {self.last_noise!r}")
        if not self.tol > 0:
            raise ValueError(f"tol must be positive, got {self.tol!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if self.method not in ("vamp", "fixed_point"):
            raise ValueError(f"method must be 'vamp' or 'fixed_point', got {self.method!r}")


@functools.lru_cache(maxsize=None)
def _jitted_solve(method: str, max_iter: int):
    """``jax.jit`` of ``jaxreplica.solve`` with the method and iteration cap static, ``tol`` traced.

    Compiled once per chain structure and shapes (every tracking step of a run has the
    same), which makes a warm-started step cost milliseconds instead of seconds.
    """
    import jaxreplica as jr

    return jax.jit(functools.partial(jr.solve, method=method, max_iter=max_iter))


class _Tracker:
    """Solves the per-layer chains from spectra, warm-starting each layer from its last solution.

    Used identically live (:func:`train`) and afterwards (:func:`recompute`), so that
    a recomputation with the same settings reproduces the recorded values.
    """

    def __init__(self, prior, generative: Sequence[SpectralLayer], alphas: Sequence[float],
                 activations: Sequence[str], tracking: Tracking):
        self.prior = prior
        self.generative = list(generative)
        self.alphas = list(alphas)
        self.activations = list(activations)
        self.tracking = tracking
        self.init = [None] * len(alphas)

    def chain(self, spectra: Sequence[np.ndarray], l: int):
        net = [SpectralLayer(np.asarray(spectra[k], np.float64), self.alphas[k], self.activations[k])
               for k in range(l)]
        return chain_from_spectra(self.prior, self.generative + net, hidden_noise=self.tracking.hidden_noise,
                                  last_noise=self.tracking.last_noise)

    def step(self, spectra: Sequence[np.ndarray]):
        """Returns entropy (m,), mutual information (m,), converged (m,), iterations (m,), failures [(l, reason)]."""
        t = self.tracking
        m = len(self.alphas)
        h = np.full(m, np.nan)
        mi = np.full(m, np.nan)
        conv = np.zeros(m, bool)
        iters = np.zeros(m, np.int64)
        failures = []
        for l in range(1, m + 1):
            try:
                chain = self.chain(spectra, l)
                solve = _jitted_solve(t.method, int(t.max_iter))
                sol = solve(chain, tol=t.tol, init=self.init[l - 1])
                conv[l - 1] = bool(np.asarray(sol.converged))
                iters[l - 1] = int(np.asarray(sol.iterations))
                entropy = float(np.asarray(sol.entropy))
                if not conv[l - 1]:
                    failures.append((l, f"not converged after {iters[l - 1]} iterations "
                                        f"(residual {float(np.asarray(sol.residual)):.3g})"))
                    continue
                if not math.isfinite(entropy):
                    failures.append((l, f"non-finite entropy {entropy}"))
                    continue
                info, why = self._information(sol, l)
                h[l - 1] = entropy
                mi[l - 1] = info
                if why:
                    failures.append((l, why))
                self.init[l - 1] = sol.fixed_point
            except Exception as err:  # noqa: BLE001  (a failed step is recorded, training goes on)
                failures.append((l, f"{type(err).__name__}: {err}"))
                traceback.print_exc()
        return h, mi, conv, iters, failures

    def _information(self, sol, l: int) -> tuple[float, str]:
        if self.tracking.hidden_noise > 0 and l > 1:
            return math.nan, "I(X; T_l) is not given by the replica formula with noisy hidden layers"
        value = getattr(sol, "last_layer_information", None)
        if value is None:
            if self.generative:
                return math.nan, "engine gives no last_layer_information"
            value = sol.mutual_information
        value = float(np.asarray(value))
        return value, ("" if math.isfinite(value) else f"non-finite mutual information {value}")


def _default_track_layers(network: Network) -> int:
    m = 0
    for usv, act in zip(network.usv, network.activations):
        if not usv or act == "softmax":
            break
        m += 1
    return m


def _check_track_layers(network: Network, m: int) -> int:
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= network.n_layers:
        raise ValueError(f"layers must be an integer in 1..{network.n_layers}, got {m!r}")
    for l in range(m):
        if network.activations[l] == "softmax":
            raise ValueError(f"layers: layer {l + 1} has a softmax output, which has no replica channel")
        if not network.usv[l]:
            raise ValueError(f"layers: layer {l + 1} is a dense layer; the replica formula needs USV layers "
                             "(orthogonally invariant weights)")
    return m


def _exact_available(data: Dataset, network: Network, m: int) -> bool:
    return (type(data.prior).__name__ == "Normal"
            and all(g.activation == "linear" for g in data.generative)
            and all(a == "linear" for a in network.activations[:m]))


# --------------------------------------------------------------------------- history


_ARRAYS = ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "batch_loss", "epoch_seconds",
           "tracked_epoch", "entropy", "mutual_information", "converged", "iterations", "tracking_seconds",
           "exact_entropy", "exact_mutual_information",
           "penalty", "penalty_information", "penalty_not_converged", "penalty_nonfinite")


@dataclass
class History:
    """Everything recorded during :func:`train`.

    Per epoch ``e = 0..E`` (0: before training): ``epoch``, ``train_loss``,
    ``test_loss``, ``train_accuracy``, ``test_accuracy`` (classification only, else
    ``None``), ``batch_loss`` (mean over the epoch's batches; NaN at 0),
    ``epoch_seconds``. Per tracked epoch (``tracked_epoch``, ``T`` of them) and
    layer (``m``): ``entropy`` and ``mutual_information`` (``(T, m)``, per ``n_0``,
    nats), ``converged``, ``iterations``, ``tracking_seconds`` (``(T,)``),
    ``exact_entropy`` / ``exact_mutual_information`` when available, ``spectra``
    (list over layers of ``(T, n_{l-1})`` eigenvalues of ``W_l^T W_l``),
    ``generative_spectra``; ``failures`` lists ``(epoch, layer, reason)`` of tracking
    entries recorded as NaN; ``config`` is the JSON configuration.

    With an information penalty (``train(..., info_penalty={l: beta})``), per epoch
    ``e = 0..E`` (the network after epoch ``e``): ``penalty`` (``sum_l beta_l I(X; T_l)/n_0``),
    ``penalty_information`` ``(E + 1, n)`` (``I(X; T_l)/n_0`` of the penalised layers,
    ascending), ``penalty_not_converged`` (penalty solves that did not converge in the
    epoch; they contributed no gradient) and ``penalty_nonfinite`` (non-finite
    penalty-gradient entries zeroed); ``batch_loss`` then includes the penalty;
    ``config["training"]["info_penalty"]`` has the settings.
    """

    epoch: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_accuracy: np.ndarray | None = None
    test_accuracy: np.ndarray | None = None
    batch_loss: np.ndarray | None = None
    epoch_seconds: np.ndarray | None = None
    tracked_epoch: np.ndarray | None = None
    entropy: np.ndarray | None = None
    mutual_information: np.ndarray | None = None
    converged: np.ndarray | None = None
    iterations: np.ndarray | None = None
    tracking_seconds: np.ndarray | None = None
    exact_entropy: np.ndarray | None = None
    exact_mutual_information: np.ndarray | None = None
    penalty: np.ndarray | None = None
    penalty_information: np.ndarray | None = None
    penalty_not_converged: np.ndarray | None = None
    penalty_nonfinite: np.ndarray | None = None
    spectra: list[np.ndarray] = field(default_factory=list)
    generative_spectra: list[np.ndarray] = field(default_factory=list)
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @property
    def n_tracked_layers(self) -> int:
        return 0 if self.entropy is None else int(self.entropy.shape[1])

    # ---- saving and loading

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Write ``directory/history.npz`` and ``directory/config.json``; returns the npz path."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS if getattr(self, name) is not None}
        for l, s in enumerate(self.spectra, start=1):
            arrays[f"spectrum_{l}"] = np.asarray(s)
        for k, s in enumerate(self.generative_spectra, start=1):
            arrays[f"generative_spectrum_{k}"] = np.asarray(s)
        arrays["failure_epoch"] = np.asarray([f[0] for f in self.failures], np.int64)
        arrays["failure_layer"] = np.asarray([f[1] for f in self.failures], np.int64)
        arrays["failure_reason"] = np.asarray([f[2] for f in self.failures], dtype=np.str_)
        path = directory / "history.npz"
        np.savez(path, **arrays)
        (directory / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True, default=_json))
        return path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> History:
        """Load from a directory (``history.npz`` + ``config.json``) or from the npz path itself."""
        path = pathlib.Path(path)
        npz = path / "history.npz" if path.is_dir() else path
        cfg_path = npz.parent / "config.json"
        config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        with np.load(npz, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        kwargs = {name: data.get(name) for name in _ARRAYS}
        spectra = []
        while f"spectrum_{len(spectra) + 1}" in data:
            spectra.append(data[f"spectrum_{len(spectra) + 1}"])
        gen = []
        while f"generative_spectrum_{len(gen) + 1}" in data:
            gen.append(data[f"generative_spectrum_{len(gen) + 1}"])
        failures = [(int(e), int(l), str(r)) for e, l, r in
                    zip(data.get("failure_epoch", []), data.get("failure_layer", []), data.get("failure_reason", []))]
        return cls(**kwargs, spectra=spectra, generative_spectra=gen, failures=failures, config=config)

    # ---- plotting

    def plot_learning(self, ax=None):
        """Train/test loss (left axis) and accuracy (right axis, classification) against epochs."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.epoch, self.train_loss, label="train loss")
        ax.plot(self.epoch, self.test_loss, label="test loss")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        handles, labels = ax.get_legend_handles_labels()
        if self.train_accuracy is not None:
            ax2 = ax.twinx()
            ax2.plot(self.epoch, self.train_accuracy, "C2--", label="train accuracy")
            ax2.plot(self.epoch, self.test_accuracy, "C3--", label="test accuracy")
            ax2.set_ylabel("accuracy")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize="small")
        return ax

    def plot_information(self, axes=None, exact: bool = True):
        """``I(X; T_l)`` (replica, and exact when recorded) against epochs, one panel per layer."""
        import matplotlib.pyplot as plt

        m = self.n_tracked_layers
        if m == 0:
            raise ValueError("history: no information was tracked")
        if axes is None:
            _, axes = plt.subplots(1, m, figsize=(3.2 * m, 3), squeeze=False)
            axes = axes[0]
        acts = self.config.get("network", {}).get("activations", [""] * m)
        for l in range(m):
            ax = axes[l]
            ax.plot(self.tracked_epoch, self.mutual_information[:, l], ".-", label="replica")
            if exact and self.exact_mutual_information is not None:
                ax.plot(self.tracked_epoch, self.exact_mutual_information[:, l], "k--", label="exact")
            ax.set_title(f"layer {l + 1} {acts[l]}", fontsize="small")
            ax.set_xlabel("epoch")
            ax.set_ylabel(f"I(X; T{l + 1})")
        axes[0].legend(fontsize="small")
        return axes

    def squared_error(self) -> np.ndarray:
        """``(replica - exact)^2`` of ``I(X; T_l)``, shape ``(T, m)`` (needs exact values)."""
        if self.exact_mutual_information is None:
            raise ValueError("history: no exact values were recorded")
        return (self.mutual_information - self.exact_mutual_information) ** 2


def _json(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


# --------------------------------------------------------------------------- data parallelism
#
# Issue 8. Selected by ``train(..., devices=...)`` / ``data_parallel=True``; with neither,
# nothing below is used and training runs exactly as before on the default device.


def make_data_parallel_step(graphdef, tx: optax.GradientTransformation, loss: str, mesh,
                            penalty: Callable[[nnx.State], jax.Array] | None = None):
    """:func:`make_step` with each batch split over the devices of a 1-D ``mesh``.

    The parameters (and optimizer state) are replicated; each of the ``D`` devices
    computes the mean loss of its ``batch/D`` samples, ``lax.pmean`` averages those
    over the devices inside a ``jax.shard_map``, and the gradient of that mean (the
    mean of the devices' gradients, all-reduced by XLA) updates every replica the
    same way. The objective is the one of :func:`make_step` (the mean over the whole
    batch, plus ``penalty(params)``, computed replicated), so the trajectory equals
    the single-device one up to the order of the floating-point sums. The batch size
    must be a multiple of ``D``.
    """
    from jax.sharding import PartitionSpec as P

    per_sample = loss_function(loss)
    axis = mesh.axis_names[0]

    def shard_loss(params, frozen, x, y):
        model = nnx.merge(graphdef, params, frozen)
        return jax.lax.pmean(jnp.mean(per_sample(model.logits(x), y)), axis)

    data_loss = jax.shard_map(shard_loss, mesh=mesh, in_specs=(P(), P(), P(axis), P(axis)), out_specs=P())

    def objective(params, frozen, x, y):
        value = data_loss(params, frozen, x, y)
        if penalty is not None:
            value = value + penalty(params)
        return value

    def step(params, opt_state, frozen, x, y):
        value, grads = jax.value_and_grad(objective)(params, frozen, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


class _DataParallel:
    """Where a data-parallel run keeps its arrays: replicated on ``mesh`` for the
    epochs, copied to one device for evaluation and tracking (which stay there)."""

    def __init__(self, devices, batch_size: int):
        from jax.sharding import NamedSharding, PartitionSpec

        from .sharding import batch_mesh, describe_mesh

        self.mesh = batch_mesh("all" if devices is None else devices)
        self.n = int(self.mesh.devices.size)
        if batch_size % self.n:
            raise ValueError(f"batch_size {batch_size} must be a multiple of the number of devices ({self.n}) "
                             "for data-parallel training")
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.home = self.mesh.devices.flat[0]
        self.names = describe_mesh(self.mesh)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)

    def local(self, tree):
        return jax.device_put(tree, self.home)


# --------------------------------------------------------------------------- training


def _infer_loss(network: Network, data: Dataset, loss: str | None) -> str:
    if loss is None:
        loss = "cross_entropy" if data.task == "classification" else "mse"
    loss_function(loss)  # validates
    if loss == "cross_entropy" and network.activations[-1] != "softmax":
        raise ValueError("loss: cross_entropy needs a softmax output layer")
    if loss == "mse" and network.activations[-1] == "softmax":
        raise ValueError("loss: mse with a softmax output is not supported; use cross_entropy")
    return loss


def _regularized_epoch(network, data, betas, options, graphdef, optimizer, loss, batch_size, tracking, penalty, dp):
    """The information-penalised epoch (issue 7, :class:`jaxreplica.regularize.RegularizedEpoch`)."""
    from .regularize import InformationPenalty, RegularizedEpoch

    if dp is not None:
        raise ValueError("info_penalty: data-parallel training with an information penalty is not supported yet")
    if not isinstance(betas, dict):
        raise ValueError(f"info_penalty must be a dict {{layer: beta}}, got {betas!r}")
    options = {"tol": 1e-8, "last_noise": tracking.last_noise, **(options or {})}
    info = InformationPenalty.for_network(network, data, betas, **options)
    return RegularizedEpoch(graphdef, optimizer, loss, info, batch_size, extra_penalty=penalty)


def train(network: Network, data: Dataset, *, epochs: int = 100, learning_rate: float = 0.01,
          optimizer: optax.GradientTransformation | None = None, batch_size: int | None = None,
          loss: str | None = None, seed: int = 0, tracking: Tracking | None = None,
          penalty: Callable[[nnx.State], jax.Array] | None = None, progress: bool = True,
          config: dict | None = None, data_parallel: bool = False, devices=None,
          info_penalty: dict[int, float] | None = None,
          info_penalty_options: dict | None = None) -> tuple[Network, History]:
    """Train ``network`` on ``data`` and track ``H(T_l)``, ``I(X; T_l)`` of its first layers.

    ``optimizer`` (any optax transformation) defaults to ``optax.sgd(learning_rate)``;
    ``batch_size`` to 50 (regression) or 100 (classification); ``loss`` to ``"mse"``
    or ``"cross_entropy"`` by task; ``seed`` seeds the shuffling; ``tracking``
    (:class:`Tracking`, default ``Tracking()``; ``Tracking(every=0)`` switches it
    off); ``penalty(params)`` is added to the loss inside the jitted step.
    The network is updated in place and returned with the :class:`History`.

    Data parallelism: ``devices`` (``"all"``, an ``int`` N for the first N, or a list of
    ``jax.Device``) or ``data_parallel=True`` (all devices) splits every batch over
    those devices (:func:`make_data_parallel_step`; ``batch_size`` must be a multiple
    of their number). Evaluation and the tracking solves stay on one device.

    Information penalty (issue 7): ``info_penalty={l: beta_l}`` adds
    ``sum_l beta_l I(X; T_l)/n_0`` (replica formula, gradient through the fixed points)
    to the loss in the same jitted step (:mod:`jaxreplica.regularize`);
    ``info_penalty_options`` are settings of
    :class:`~jaxreplica.regularize.InformationPenalty` (``tol``, default ``1e-8``;
    ``max_iter``; ``method``; ``gradient``; ``last_noise``, default the tracking's).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
    if network.sizes[0] != data.n_input:
        raise ValueError(f"network: input size {network.sizes[0]} does not match the data's {data.n_input}")
    if network.sizes[-1] != data.n_output:
        raise ValueError(f"network: output size {network.sizes[-1]} does not match the data's {data.n_output}")
    loss = _infer_loss(network, data, loss)
    classification = data.task == "classification"
    if batch_size is None:
        batch_size = 100 if classification else 50
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= data.x_train.shape[0]:
        raise ValueError(f"batch_size must be an integer in 1..{data.x_train.shape[0]}, got {batch_size!r}")
    optimizer_name = "sgd" if optimizer is None else "custom"
    if optimizer is None:
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
        optimizer = optax.sgd(learning_rate)
    tracking = Tracking() if tracking is None else tracking
    tracking.validate()

    graphdef, params, frozen = nnx.split(network, nnx.Param, ...)
    opt_state = optimizer.init(params)
    dp = _DataParallel(devices, batch_size) if (data_parallel or devices is not None) else None
    if dp is None:
        epoch_fn = make_epoch(make_step(graphdef, optimizer, loss, penalty), batch_size)
        x_fit, y_fit = data.x_train, data.y_train
    else:
        epoch_fn = make_epoch(make_data_parallel_step(graphdef, optimizer, loss, dp.mesh, penalty), batch_size)
        params, opt_state, frozen_fit = dp.replicate((params, opt_state, frozen))
        x_fit, y_fit = dp.replicate((data.x_train, data.y_train))
    regularized = None
    if info_penalty:
        epoch_fn = regularized = _regularized_epoch(network, data, info_penalty, info_penalty_options, graphdef,
                                                    optimizer, loss, batch_size, tracking, penalty, dp)
    # the parameters as evaluation and tracking see them (on one device)
    current = (lambda: params) if dp is None else (lambda: dp.local(params))
    evaluate = _make_evaluate(graphdef, loss, classification)

    tracker = None
    m = 0
    exact = False
    if tracking.every > 0:
        m = _default_track_layers(network) if tracking.layers is None else tracking.layers
        if m == 0:
            raise ValueError("tracking: the network's first layer is not a USV layer; nothing to track")
        m = _check_track_layers(network, m)
        gen = [SpectralLayer(g.spectrum(), g.alpha, g.activation, g.noise) for g in data.generative]
        tracker = _Tracker(data.prior, gen, network.alphas[:m], network.activations[:m], tracking)
        exact = _exact_available(data, network, m) if tracking.exact is None else bool(tracking.exact)
        if exact and not _exact_available(data, network, m):
            raise ValueError("tracking.exact: exact values need a Normal prior and linear layers")

    rec = {k: [] for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "batch_loss",
                           "epoch_seconds", "tracked_epoch", "entropy", "mutual_information", "converged",
                           "iterations", "tracking_seconds", "exact_entropy", "exact_mutual_information")}
    spectra_rec = [[] for _ in range(m)]
    failures: list[tuple[int, int, str]] = []

    def record_eval(batch_loss, seconds):
        p = current()
        tl, ta = evaluate(p, frozen, data.x_train, data.y_train)
        vl, va = evaluate(p, frozen, data.x_test, data.y_test)
        rec["train_loss"].append(tl)
        rec["test_loss"].append(vl)
        rec["train_accuracy"].append(ta)
        rec["test_accuracy"].append(va)
        rec["batch_loss"].append(batch_loss)
        rec["epoch_seconds"].append(seconds)

    def record_tracking(e):
        nnx.update(network, current())
        t0 = time.perf_counter()
        spectra = [np.asarray(s, np.float64) for s in network.spectra(range(1, m + 1))]
        h, mi, conv, iters, fails = tracker.step(spectra)
        rec["tracking_seconds"].append(time.perf_counter() - t0)
        rec["tracked_epoch"].append(e)
        rec["entropy"].append(h)
        rec["mutual_information"].append(mi)
        rec["converged"].append(conv)
        rec["iterations"].append(iters)
        failures.extend((e, l, why) for l, why in fails)
        for l in range(m):
            spectra_rec[l].append(spectra[l])
        if exact:
            ws = [np.asarray(w, np.float64) for w in network.matrices()[:m]]
            gen = [(np.asarray(g.weight, np.float64), g.noise) for g in data.generative]
            eh, emi = exact_linear_information(float(data.prior.var), gen, ws, hidden_noise=tracking.hidden_noise,
                                               last_noise=tracking.last_noise)
            rec["exact_entropy"].append(eh)
            rec["exact_mutual_information"].append(emi)

    key = jax.random.key(seed)
    record_eval(math.nan, 0.0)
    if regularized is not None:
        regularized.start(params)
    if tracker is not None:
        record_tracking(0)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="training", unit="epoch")
    for e in range(1, epochs + 1):
        key, sub = jax.random.split(key)
        t0 = time.perf_counter()
        params, opt_state, batch_loss = epoch_fn(params, opt_state, frozen if dp is None else frozen_fit, sub,
                                                 x_fit, y_fit)
        batch_loss = float(batch_loss)
        seconds = time.perf_counter() - t0
        record_eval(batch_loss, seconds)
        if tracker is not None and e % tracking.every == 0:
            record_tracking(e)
        if bar is not None:
            post = {"train": f"{rec['train_loss'][-1]:.4g}", "test": f"{rec['test_loss'][-1]:.4g}"}
            if classification:
                post["acc"] = f"{rec['test_accuracy'][-1]:.3f}"
            if tracker is not None and rec["mutual_information"]:
                post["I"] = " ".join(f"{v:.3g}" for v in rec["mutual_information"][-1])
            bar.set_postfix(post)
            bar.update(1)
    if bar is not None:
        bar.close()
    nnx.update(network, current())

    arr = lambda k: np.asarray(rec[k], dtype=np.float64)  # noqa: E731
    hist = History(
        epoch=np.arange(epochs + 1),
        train_loss=arr("train_loss"),
        test_loss=arr("test_loss"),
        train_accuracy=arr("train_accuracy") if classification else None,
        test_accuracy=arr("test_accuracy") if classification else None,
        batch_loss=arr("batch_loss"),
        epoch_seconds=arr("epoch_seconds"),
        failures=failures,
        **(regularized.arrays() if regularized is not None else {}),
    )
    if tracker is not None:
        hist.tracked_epoch = np.asarray(rec["tracked_epoch"], np.int64)
        hist.entropy = np.asarray(rec["entropy"]).reshape(-1, m)
        hist.mutual_information = np.asarray(rec["mutual_information"]).reshape(-1, m)
        hist.converged = np.asarray(rec["converged"], bool).reshape(-1, m)
        hist.iterations = np.asarray(rec["iterations"], np.int64).reshape(-1, m)
        hist.tracking_seconds = arr("tracking_seconds")
        if exact:
            hist.exact_entropy = np.asarray(rec["exact_entropy"]).reshape(-1, m)
            hist.exact_mutual_information = np.asarray(rec["exact_mutual_information"]).reshape(-1, m)
        hist.spectra = [np.stack(s) for s in spectra_rec]
        hist.generative_spectra = [np.asarray(g.spectrum()) for g in data.generative]
    hist.config = {
        "data": data.describe(),
        "network": {"sizes": list(network.sizes), "activations": list(network.activations),
                    "usv": list(network.usv), "scales": list(network.scales)},
        "training": {"epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size, "loss": loss,
                     "seed": seed, "optimizer": optimizer_name,
                     "devices": None if dp is None else dp.names,
                     "penalty": penalty is not None,
                     "info_penalty": regularized.penalty.describe() if regularized is not None else None},
        "tracking": {**dataclasses.asdict(tracking), "layers": m, "exact": exact,
                     "generative": [{"alpha": g.alpha, "activation": g.activation, "noise": g.noise}
                                    for g in data.generative]} if tracker is not None else None,
        **(config or {}),
    }
    return network, hist


def recompute(history: History, *, hidden_noise: float | None = None, last_noise: float | None = None,
              tol: float | None = None, max_iter: int | None = None, method: str | None = None,
              every: int = 1) -> History:
    """Redo the tracked trajectory from the recorded spectra, possibly with other noise levels.

    Settings not given keep their recorded values; with all of them unchanged the
    recorded ``entropy`` and ``mutual_information`` are reproduced (same chains,
    same warm-start sequence). ``every = k`` uses every ``k``-th tracked epoch.
    Exact values need the weight matrices, which are not stored: the returned
    history has none (``exact_*`` is ``None``).
    """
    tr = history.config.get("tracking")
    if not tr or history.entropy is None:
        raise ValueError("history: no information was tracked, nothing to recompute")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    tracking = Tracking(every=tr["every"], layers=tr["layers"],
                        hidden_noise=tr["hidden_noise"] if hidden_noise is None else hidden_noise,
                        last_noise=tr["last_noise"] if last_noise is None else last_noise,
                        tol=tr["tol"] if tol is None else tol,
                        max_iter=tr["max_iter"] if max_iter is None else max_iter,
                        method=tr["method"] if method is None else method, exact=False)
    tracking.validate()
    m = tr["layers"]
    net = history.config["network"]
    sizes = net["sizes"]
    alphas = [sizes[l + 1] / sizes[l] for l in range(m)]
    gen = [SpectralLayer(s, g["alpha"], g["activation"], g["noise"])
           for s, g in zip(history.generative_spectra, tr["generative"])]
    prior = prior_from_description(history.config["data"]["prior"])
    tracker = _Tracker(prior, gen, alphas, net["activations"][:m], tracking)
    rows = np.arange(0, len(history.tracked_epoch), every)
    out = {k: [] for k in ("entropy", "mutual_information", "converged", "iterations", "tracking_seconds")}
    failures = []
    for i in rows:
        t0 = time.perf_counter()
        h, mi, conv, iters, fails = tracker.step([s[i] for s in history.spectra])
        out["tracking_seconds"].append(time.perf_counter() - t0)
        out["entropy"].append(h)
        out["mutual_information"].append(mi)
        out["converged"].append(conv)
        out["iterations"].append(iters)
        failures.extend((int(history.tracked_epoch[i]), l, why) for l, why in fails)
    config = json.loads(json.dumps(history.config, default=_json))
    config["tracking"].update({"hidden_noise": tracking.hidden_noise, "last_noise": tracking.last_noise,
                               "tol": tracking.tol, "max_iter": tracking.max_iter, "method": tracking.method,
                               "exact": False, "recomputed": True})
    return dataclasses.replace(
        history,
        tracked_epoch=history.tracked_epoch[rows],
        entropy=np.asarray(out["entropy"]).reshape(-1, m),
        mutual_information=np.asarray(out["mutual_information"]).reshape(-1, m),
        converged=np.asarray(out["converged"], bool).reshape(-1, m),
        iterations=np.asarray(out["iterations"], np.int64).reshape(-1, m),
        tracking_seconds=np.asarray(out["tracking_seconds"]),
        exact_entropy=None,
        exact_mutual_information=None,
        spectra=[s[rows] for s in history.spectra],
        failures=failures,
        config=config,
    )
