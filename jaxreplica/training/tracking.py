"""Information tracking: the replica ``H(T_l)`` and ``I(X; T_l)`` of a network's first layers.

At each tracked epoch, for ``l = 1..m`` the chain

    prior -> generative layers of the data model (if any) -> network layers 1..l

(:func:`jaxreplica.chain.chain_from_spectra`; network layers ``1..l-1`` get the hidden
noise, default 0, and layer ``l`` the last-layer noise, default ``1e-5``) is solved with
the replica formula, warm-started from the fixed point of the previous tracking step,
and ``H(T_l)/n_0`` and ``I(X; T_l)/n_0`` are recorded (``n_0`` the chain's first
dimension: ``n_X`` for teacher-student, ``n_Y`` with a generative part). This is the
construction of the original experiment code, which reports one value per *network*
layer, the generative layers always included.

With noiseless hidden network layers ``T_{l-1}`` is a deterministic function of the
network input ``X``, so ``I(X; T_l) = I(T_l; T_{l-1})``, which the replica formula gives
as ``Solution.last_layer_information``, with or without a (noisy) generative part.
With noisy hidden layers it gives no ``I(X; T_l)`` and NaN is recorded.

For a linear network on Gaussian data (linear generative layers, if any) the exact
values are recorded too (:func:`exact_linear_information`, log-determinants).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxreplica._struct import pytree
from jaxreplica.activations import check_position
from jaxreplica.chain import SpectralLayer, chain_from_spectra
from jaxreplica.exact import gaussian_entropy
from jaxreplica.quadrature import DEFAULT, QuadratureConfig
from jaxreplica.schemes import for_training
from jaxreplica.solvers import check_method, solve

__all__ = ["Tracking", "Tracker", "exact_linear_information", "default_track_layers", "check_track_layers",
           "exact_available"]


def exact_linear_information(prior_var: float, generative: Sequence[tuple[np.ndarray, float]],
                             weights: Sequence[np.ndarray], *, hidden_noise: float = 0.0,
                             last_noise: float = 1e-5, noise_position: str = "before") -> tuple[np.ndarray, np.ndarray]:
    """Exact ``H(T_l)/n_0`` and ``I(X; T_l)/n_0``, ``l = 1..m``, of a linear chain on Gaussian data.

    First variable ``N(mu, prior_var I_{n_0})``; generative layers ``(W, noise)`` lead
    to the network input ``X`` (covariance ``Sigma_X``, ``Sigma_X = prior_var I`` with
    no generative layer); network layers ``W_1..W_m``, layer ``l`` measured with
    noise ``last_noise`` and the ones before it with ``hidden_noise``::

        Sigma_l = W_l S_{l-1} W_l^T + last_noise I,   S_k = W_k S_{k-1} W_k^T + hidden_noise I,  S_0 = Sigma_X
        N_l     = W_l M_{l-1} W_l^T + last_noise I,   M_k = W_k M_{k-1} W_k^T + hidden_noise I,  M_0 = 0
        H(T_l) = log det(2 pi e Sigma_l) / 2,   H(T_l | X) = log det(2 pi e N_l) / 2,
        I(X; T_l) = H(T_l) - H(T_l | X),

    all divided by ``n_0``. ``N_l`` is the covariance of ``T_l`` given ``X``. For a
    linear layer noise before and after the activation add up: ``noise_position="both"``
    doubles both variances.
    """
    if not prior_var > 0:
        raise ValueError(f"prior_var must be positive, got {prior_var!r}")
    if not last_noise > 0:
        raise ValueError(f"last_noise must be positive, got {last_noise!r}")
    factor = 2.0 if check_position(noise_position) == "both" else 1.0
    hidden_noise, last_noise = factor * hidden_noise, factor * last_noise
    dims = [w.shape[1] for w, _ in generative] + [w.shape[1] for w in weights]
    if not weights:
        raise ValueError("weights: at least one network layer is needed")
    n0 = dims[0]
    sigma = prior_var * jnp.eye(n0)
    for w, noise in generative:
        w = jnp.asarray(w, jnp.float64)
        sigma = w @ sigma @ w.T + noise * jnp.eye(w.shape[0])
    m_cov = jnp.zeros_like(sigma)
    entropies, informations = [], []
    for w in weights:
        w = jnp.asarray(w, jnp.float64)
        ws, wm = w @ sigma @ w.T, w @ m_cov @ w.T
        eye = jnp.eye(w.shape[0])
        h = float(gaussian_entropy(ws + last_noise * eye)) / n0
        h_cond = float(gaussian_entropy(wm + last_noise * eye)) / n0
        entropies.append(h)
        informations.append(h - h_cond)
        sigma, m_cov = ws + hidden_noise * eye, wm + hidden_noise * eye
    return np.asarray(entropies), np.asarray(informations)


@pytree
class Tracking:
    """Settings of the information tracking.

    * ``every``: track at epochs ``0, every, 2 every, ...`` (0 switches tracking off);
    * ``layers``: track ``T_1..T_layers`` (default: the leading run of USV layers);
    * ``hidden_noise`` (default 0) and ``last_noise`` (default ``1e-5``): noise
      variances of the layers before the measured one and of the measured one;
    * ``noise_position``: where that noise enters, ``"before"`` the activation
      (default), ``"after"`` it or ``"both"`` (see :func:`jaxreplica.activations.channel`);
    * ``tol``, ``max_iter``, ``method``, ``quadrature``: passed to ``jaxreplica.solve``
      (a named method without the coarse survey: :func:`jaxreplica.schemes.for_training`);
    * ``exact``: also record exact log-determinant values (default: when the
      network's tracked layers and the data model are linear and the prior Normal).
    """

    every: int = 1
    layers: int | None = None
    hidden_noise: float = 0.0
    last_noise: float = 1e-5
    noise_position: str = "before"
    tol: float = 1e-8
    max_iter: int = 1000
    method: str = "vamp"
    exact: bool | None = None
    quadrature: QuadratureConfig = DEFAULT

    _static = ("quadrature", "every", "layers", "hidden_noise", "last_noise", "noise_position", "tol", "max_iter",
               "method", "exact")

    def __post_init__(self):
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
        check_method(self.method)
        check_position(self.noise_position)


def _layer_solve(method: str, max_iter: int, quadrature: QuadratureConfig = DEFAULT):
    """``jaxreplica.solve`` with the training scheme, the iteration cap and the rules set.

    Called with concrete spectra, ``solve`` finds its compiled program by a key taken
    before tracing, kept on disk across processes: one program per chain structure and
    shapes (every tracking step of a run has the same), cold and warm-started, ``tol``
    traced.
    """
    return functools.partial(solve, method=for_training(method), max_iter=max_iter, quadrature=quadrature)


class Tracker:
    """Solves the per-layer chains from spectra, warm-starting each layer from its last solution.

    Used identically live (``train``) and afterwards (``recompute``), so that
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
        self.conditional_init = [None] * len(alphas)

    def chain(self, spectra: Sequence[np.ndarray], l: int):
        net = [SpectralLayer(np.asarray(spectra[k], np.float64), self.alphas[k], self.activations[k])
               for k in range(l)]
        return chain_from_spectra(self.prior, self.generative + net, hidden_noise=self.tracking.hidden_noise,
                                  last_noise=self.tracking.last_noise, noise_position=self.tracking.noise_position)

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
                solve = _layer_solve(t.method, int(t.max_iter), t.quadrature)
                sol = solve(chain, tol=t.tol, init=self.init[l - 1], conditional=self._reads_conditional(l),
                            conditional_init=self.conditional_init[l - 1])
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
                self.conditional_init[l - 1] = sol.conditional_fixed_point
            except Exception as err:  # noqa: BLE001  (a failed step is recorded in the history, training goes on)
                failures.append((l, f"{type(err).__name__}: {err}"))
        return h, mi, conv, iters, failures

    def _noisy_before(self, l: int) -> bool:
        return self.tracking.hidden_noise > 0 and l > 1

    def _reads_conditional(self, l: int) -> bool:
        """Whether layer ``l``'s value is the solution's ``I(X; T_l)`` through the
        conditional chain (noisy network layers before ``T_l``, no generative layers); the
        other solves skip that second multi-start (a generative layer's noise makes
        ``jaxreplica.solve`` run it, cold, at every step)."""
        return self._noisy_before(l) and not self.generative

    def _information(self, sol, l: int) -> tuple[float, str]:
        if self._reads_conditional(l):
            value = sol.mutual_information  # I(X; T_l) through the conditional chain
        elif self._noisy_before(l):
            # The solution's I would be about the data model's first variable.
            return math.nan, "I(X; T_l) with noisy hidden layers behind a generative data model is not computed"
        else:
            # Noiseless layers before T_l: I(X; T_l) = I(T_l; T_{l-1}), also behind generative layers.
            value = sol.last_layer_information
        value = float(np.asarray(value))
        return value, ("" if math.isfinite(value) else f"non-finite mutual information {value}")


def default_track_layers(network) -> int:
    m = 0
    for usv, act in zip(network.usv, network.activations):
        if not usv or act == "softmax":
            break
        m += 1
    return m


def check_track_layers(network, m: int) -> int:
    if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= network.n_layers:
        raise ValueError(f"layers must be an integer in 1..{network.n_layers}, got {m!r}")
    for l in range(m):
        if network.activations[l] == "softmax":
            raise ValueError(f"layers: layer {l + 1} has a softmax output, which has no replica channel")
        if not network.usv[l]:
            raise ValueError(f"layers: layer {l + 1} is a dense layer; the replica formula needs USV layers "
                             "(orthogonally invariant weights)")
    return m


def exact_available(data, network, m: int) -> bool:
    return (type(data.prior).__name__ == "Normal"
            and all(g.activation == "linear" for g in data.generative)
            and all(a == "linear" for a in network.activations[:m]))


