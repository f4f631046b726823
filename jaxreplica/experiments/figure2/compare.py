"""The paper's Figure 2: replica entropies against sample-based estimators.

Two layers of width ``n`` (default 1000), ``x ~ N(0, I_n)``, weights ``sigma W_k`` where
``W_k`` has i.i.d. ``N(0, 1/n)`` entries, drawn once at ``sigma = 1`` (NumPy's legacy
generator seeded with ``weight_seed``: two ``randn(n, n)/sqrt(n)`` matrices, the
reference's demo draw for ``weight_seed = 42``, ``n = 1000``) and scaled by ``sigma``.
Gaussian noise of variance ``noise`` (default ``1e-5``) enters before the measured
layer's activation; the hidden layer is noiseless:

``T_1 = phi(sigma W_1 x + xi_1)``,  ``T_2 = phi(sigma W_2 phi(sigma W_1 x) + xi_2)``.

For every activation (linear, hardtanh, ReLU) and ``sigma`` it computes, per input
unit (``H / n_0``, nats):

* ``replica``: ``H(T_1), H(T_2)`` of the chain with the empirical spectra of
  ``sigma W_k`` (each truncated chain carries the last noise), from
  :func:`jaxreplica.experiments.figure2.replica_curves`, the program ``jaxreplica sweep`` runs;
* ``exact`` (linear only): the log-determinant :func:`jaxreplica.exact.gaussian_chain`;
* ``replica_product`` (linear only): the replica formula for each ``T_l`` written as
  one linear layer, ``T_2 = sigma^2 W_2 W_1 x + xi_2`` with the spectrum of the product.
  It equals ``exact`` (to 1e-10); the two-layer ``replica`` differs from both for
  ``T_2`` by the finite-size error of treating the spectra of ``W_1`` and ``W_2`` as
  free (1e-4 to 7e-4 at width 1000);
* ``exact_rotated`` (linear only, shape ``(rotations, S)``): the exact ``H(T_2)`` of the
  networks ``W_2 O W_1`` for ``rotations`` Haar-random orthogonal ``O``: the same two
  spectra, hence the same two-layer ``replica`` value, and exact entropies that spread
  by 2e-4 to 4e-4 (standard deviation) at width 1000. The drawn pair is one of them,
  which is why no formula in the two spectra can match its ``exact`` value to better
  than that spread (:func:`jaxreplica.experiments.plots.plot_linear_gap` draws it);
* ``knn``: Kozachenko-Leonenko on ``n_samples`` samples of ``T_l``;
* ``pairwise``: the KL pairwise bound (Kolchinsky & Tracey) of a Gaussian mixture
  *fit to the noisy samples* of ``T_l``: centred on them, with the common variance
  ``h^2`` of leave-one-out maximum likelihood (``estimators.fit_mixture_variance``);
* ``pairwise_parametric``: the same bound for the mixture fit to the deterministic
  part ``phi(sigma W ...)`` (variance ``h_0^2`` fitted the same way) with the noise
  variance added, ``h_0^2 + noise``;
* ``pairwise_noise_kernel``: the bound of the mixture centred on the noisy samples
  with variance ``noise`` itself.  With ``n_samples`` far below ``2^n`` every pairwise
  distance dwarfs ``noise`` and this saturates at ``log(n_samples)/n_0 +
  log(2 pi e noise)/2`` whatever ``sigma`` (-4.33 for 1000 samples, width 1000): the
  sample complexity of smoothed estimators, shown for reference;
* ``linear_approx`` (hardtanh): the exact entropies of the linear network with the
  same weights; ``half_linear_approx`` (ReLU): half of them.

Sample estimators give the total differential entropy of the ``n``-dimensional
vector; it is divided by ``n_0 = n``.
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import jaxreplica.estimators as est
from jaxreplica.activations import function
from jaxreplica.chain import SpectralLayer, chain_from_spectra
from jaxreplica.exact import gaussian_chain, gaussian_entropy
from jaxreplica.experiments.figure2.replica import DEFAULT_SIGMAS, draw_weights, replica_curves, spectra
from jaxreplica.priors import Normal
from jaxreplica.solvers import solve

__all__ = ["ACTIVATIONS", "compute_figure2", "exact_linear_rotated", "haar_rotations",
           "linear_gap_summary", "to_json"]

ACTIVATIONS = ("linear", "hardtanh", "relu")


def _replica_product(w1, w2, sigmas, noise):
    """Replica ``H(T_1), H(T_2)`` of the linear network written as one layer per
    ``T_l``: ``T_2 = sigma^2 W_2 W_1 x + xi_2`` with the empirical spectrum of the
    product (``T_1``: of ``sigma W_1``). The two-layer replica formula assumes the two
    spectra free (rotations independent), which a drawn pair at finite width is only
    up to ``O(1/n)``; the one-layer form involves no such assumption, and for Gaussian
    input it is the log-determinant of the drawn network.
    """
    eigs = spectra((w1, w2 @ w1))
    entropy = jax.jit(lambda eig, s2: solve(chain_from_spectra(
        Normal(mean=0.0, var=1.0), [SpectralLayer(eig * s2, 1.0, "linear")], last_noise=noise)).entropy)
    return np.array([[float(entropy(e, s ** (2 * (l + 1)))) for l, e in enumerate(eigs)] for s in sigmas])


def exact_linear_rotated(w1, w2, sigmas, noise, rotations) -> np.ndarray:
    """Exact ``H(T_2)/n`` of the linear networks ``T_2 = sigma^2 W_2 O W_1 x + xi_2``, one
    row per orthogonal ``O`` in ``rotations`` (shape ``(R, n, n)``), one column per sigma.

    ``W_2 O`` has the spectrum of ``W_2``: every such network has the same two spectra,
    hence the same two-layer replica value, while their exact entropies differ. Their
    spread bounds how close *any* formula in the two spectra can come to the exact
    entropy of one drawn pair (``O = I``): the Gaussian entropy of the covariance
    ``sigma^4 P P^T + noise I`` of ``T_2``, with ``P = W_2 O W_1``.
    """
    w1, w2 = jnp.asarray(w1), jnp.asarray(w2)
    n = w1.shape[1]
    s4 = jnp.asarray(sigmas, dtype=w1.dtype) ** 4
    entropies = jax.jit(jax.vmap(lambda gram, c: gaussian_entropy(c * gram + noise * jnp.eye(n)) / n,
                                 in_axes=(None, 0)))

    def one(o):
        product = w2 @ o @ w1
        return entropies(product @ product.T, s4)

    return np.stack([np.asarray(one(o)) for o in rotations])


def haar_rotations(key, n: int, count: int) -> jax.Array:
    """``count`` Haar-distributed ``n x n`` orthogonal matrices (``jax.random.orthogonal``)."""
    return jax.random.orthogonal(key, n, shape=(count,))


def _exact_linear(w1, w2, sigmas, noise):
    rows = []
    for s in sigmas:
        rows.append(np.asarray(gaussian_chain(weights=[s * w1, s * w2], noises=[0.0, noise], prior_var=1.0).entropy))
    return np.stack(rows)


@jax.jit
def _layer_samples(x, w1, w2, sigma, xi1, xi2, kind: int):
    """Noisy samples and deterministic parts of ``T_1`` and ``T_2`` (kind indexes ``ACTIVATIONS``)."""
    phi = lambda z: jax.lax.switch(kind, [function(a) for a in ACTIVATIONS], z)  # noqa: E731
    z1 = sigma * x @ w1.T
    hidden = phi(z1)
    z2 = sigma * hidden @ w2.T
    return (phi(z1 + xi1), phi(z2 + xi2)), (hidden, phi(z2))


def compute_figure2(
    key: jax.Array,
    width: int = 1000,
    sigmas: Sequence[float] = DEFAULT_SIGMAS,
    n_samples: int = 1000,
    noise: float = 1e-5,
    weight_seed: int = 42,
    activations: Sequence[str] = ACTIVATIONS,
    k: int = 3,
    method: str = "vamp",
    progress: bool = True,
    rotations: int = 16,
) -> dict:
    """All the curves of Figure 2 (see the module docstring), per input unit, in nats.

    ``key`` draws the samples and the rotations; ``weight_seed`` the weights (the
    reference's NumPy draw, see :func:`~jaxreplica.experiments.figure2.draw_weights`).

    Returns a dict with ``sigmas`` (shape ``(S,)``), settings, ``seconds`` (wall time of
    each part) and ``curves[activation]``: a dict of arrays of shape ``(S, 2)``
    (columns ``T_1``, ``T_2``) named ``replica``, ``replica_converged``, ``knn``,
    ``pairwise``, ``pairwise_parametric``, ``pairwise_noise_kernel``, the fitted
    mixture variances ``fitted_variance_noisy`` and ``fitted_variance_clean`` and, by
    activation, ``exact``, ``replica_product`` and ``exact_rotated`` (linear; ``rotations = 0``
    leaves the last out), ``linear_approx`` (hardtanh), ``half_linear_approx`` (ReLU).
    """
    for name in activations:
        if name not in ACTIVATIONS:
            raise ValueError(f"activations: unknown activation {name!r} (choose from {list(ACTIVATIONS)})")
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.ndim != 1 or sigmas.size == 0 or not np.all(sigmas > 0):
        raise ValueError(f"sigmas must be a non-empty list of positive numbers; got {sigmas!r}")
    if width < 2:
        raise ValueError(f"width must be at least 2; got {width}")
    if n_samples <= k:
        raise ValueError(f"n_samples must exceed k = {k}; got {n_samples}")
    if not noise > 0:
        raise ValueError(f"noise must be positive; got {noise}")
    if rotations < 0:
        raise ValueError(f"rotations must be a count >= 0; got {rotations}")

    seconds = {"weights_and_spectra": 0.0, "replica": 0.0, "exact": 0.0, "samples": 0.0, "knn": 0.0, "pairwise": 0.0}
    t0 = time.perf_counter()
    w1, w2 = draw_weights(width, weight_seed)
    eig1, eig2 = spectra((w1, w2))
    seconds["weights_and_spectra"] = time.perf_counter() - t0

    key_x, key_1, key_2 = jax.random.split(key, 3)
    key_rot = jax.random.fold_in(key, 1)
    x = jax.random.normal(key_x, (n_samples, width))
    xi1 = jnp.sqrt(noise) * jax.random.normal(key_1, (n_samples, width))
    xi2 = jnp.sqrt(noise) * jax.random.normal(key_2, (n_samples, width))
    w1j, w2j = jnp.asarray(w1), jnp.asarray(w2)

    # The replica curves: the sweep's one compiled program (replica_curves), so that
    # they are the values `jaxreplica sweep` prints for the same settings.
    t = time.perf_counter()
    replicas = replica_curves(list(activations), sigmas, eig1, eig2, noise, method, progress=progress)[0]
    seconds["replica"] = time.perf_counter() - t
    n0 = float(width)
    exact_linear = None
    curves = {}
    bar = tqdm(total=len(activations) * len(sigmas), desc="figure2 samples", disable=not progress)
    for name in activations:
        replica, _, converged = replicas[name]
        curve = {"replica": replica, "replica_converged": converged}
        if exact_linear is None:
            t = time.perf_counter()
            exact_linear = _exact_linear(w1, w2, sigmas, noise)
            seconds["exact"] += time.perf_counter() - t
        if name == "linear":
            curve["exact"] = exact_linear
            t = time.perf_counter()
            curve["replica_product"] = _replica_product(w1, w2, sigmas, noise)
            seconds["replica"] += time.perf_counter() - t
            if rotations:
                t = time.perf_counter()
                curve["exact_rotated"] = exact_linear_rotated(
                    w1, w2, sigmas, noise, haar_rotations(key_rot, width, rotations))
                seconds["exact"] += time.perf_counter() - t
        elif name == "hardtanh":
            curve["linear_approx"] = exact_linear
        elif name == "relu":
            curve["half_linear_approx"] = 0.5 * exact_linear
        shape = (len(sigmas), 2)
        knn, pairwise, parametric, noise_kernel = (np.zeros(shape) for _ in range(4))
        var_noisy, var_clean = np.zeros(shape), np.zeros(shape)
        for i, sigma in enumerate(sigmas):
            bar.set_postfix_str(f"{name}: sigma={sigma:.3g}")
            t = time.perf_counter()
            noisy, clean = _layer_samples(x, w1j, w2j, sigma, xi1, xi2, ACTIVATIONS.index(name))
            jax.block_until_ready(noisy)
            seconds["samples"] += time.perf_counter() - t
            for l in range(2):
                t = time.perf_counter()
                knn[i, l] = float(est.knn_entropy(noisy[l], k=k)) / n0
                seconds["knn"] += time.perf_counter() - t
                t = time.perf_counter()
                var_noisy[i, l] = float(est.fit_mixture_variance(noisy[l]).variance)
                var_clean[i, l] = float(est.fit_mixture_variance(clean[l]).variance)
                pairwise[i, l] = float(est.pairwise_entropy_bound(noisy[l], var_noisy[i, l])) / n0
                parametric[i, l] = float(est.pairwise_entropy_bound(clean[l], var_clean[i, l] + noise)) / n0
                noise_kernel[i, l] = float(est.pairwise_entropy_bound(noisy[l], noise)) / n0
                seconds["pairwise"] += time.perf_counter() - t
            bar.update(1)
        curve.update(knn=knn, pairwise=pairwise, pairwise_parametric=parametric, pairwise_noise_kernel=noise_kernel,
                     fitted_variance_noisy=var_noisy, fitted_variance_clean=var_clean)
        curves[name] = curve
    bar.close()
    seconds["total"] = time.perf_counter() - t0
    return {
        "sigmas": sigmas,
        "width": width,
        "n_samples": n_samples,
        "noise": noise,
        "seed": weight_seed,
        "k": k,
        "method": method,
        "curves": curves,
        "seconds": seconds,
    }


def linear_gap_summary(curve: dict) -> dict:
    """Numbers behind :func:`jaxreplica.experiments.plots.plot_linear_gap` for a linear ``curve``: the largest
    ``|replica - exact|`` per layer, the same for ``replica_product`` and, with
    ``exact_rotated``, the per-sigma standard deviation and range of the rotated exact
    ``H(T_2)`` and how many sigmas have the two-layer replica inside that range."""
    replica, exact = np.asarray(curve["replica"]), np.asarray(curve["exact"])
    out = {
        "replica_gap": np.max(np.abs(replica - exact), axis=0),
        "product_gap": np.max(np.abs(np.asarray(curve["replica_product"]) - exact), axis=0),
    }
    if "exact_rotated" in curve:
        rot = np.asarray(curve["exact_rotated"])
        out["rotated_sd"] = rot.std(axis=0, ddof=1) if len(rot) > 1 else np.zeros(rot.shape[1])
        out["rotated_range"] = rot.max(axis=0) - rot.min(axis=0)
        out["replica_inside"] = int(np.sum((replica[:, 1] >= rot.min(axis=0)) & (replica[:, 1] <= rot.max(axis=0))))
    return out


def to_json(result: dict) -> dict:
    """``result`` with arrays turned into (nested) lists."""

    def convert(v):
        if isinstance(v, dict):
            return {k: convert(u) for k, u in v.items()}
        if isinstance(v, (np.ndarray, jax.Array)):
            return np.asarray(v).tolist()
        if isinstance(v, (np.floating, np.integer, np.bool_)):
            return v.item()
        return v

    return convert(result)
