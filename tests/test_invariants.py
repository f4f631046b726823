"""Invariants of information on chains whose every layer is noisy (slow: each chain
compiles its own programs).

A wrong branch or a solver that stops short gives a plausible number; these checks hold
whatever the chain, so they catch it without a reference value:

* ``I(X; T_l)`` is non-negative, at most ``H(X)`` for a discrete input, and does not grow
  along the chain (data processing: ``X -> T_1 -> T_2`` is a Markov chain);
* ``I`` is continuous in the weight scale (the replica potential is continuous across
  a phase transition, only its derivative jumps): a relative change of ``1e-4`` in
  every layer's scale moves ``I`` by ``O(1e-4)``, never by a jump between branches;
* ``I`` does not grow when the last layer's noise grows.

Beside chosen chains, seeded random ones drawn at the edges of the legitimate range
(tiny and large noises, rank-deficient spectra, large weight scales, biases, sparse and
binary inputs) must converge to finite values within those bounds.
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxreplica as jr

pytestmark = pytest.mark.slow

# (name, prior, [(alpha, scale, channel), ...]): every layer with noise of its own.
CHAINS = [
    ("relu-hardtanh", jr.Normal(), [(1.5, 1.3, jr.ReLU(noise=0.01, noise_after=0.02)),
                                    (0.8, 2.0, jr.HardTanh(noise=1e-3, bias=0.3))]),
    ("binary-sign-hardtanh", jr.Bimodal(prob=0.36), [(1.14, 0.47, jr.Probit(noise=0.05, noise_after=0.01)),
                                                     (1.53, 0.89, jr.HardTanh(noise=0.02, noise_after=3e-3, bias=0.38))]),
    ("sparse-leaky-sign", jr.SpikeSlab(prob=0.3), [(1.2, 1.5, jr.LeakyReLU(noise=0.02)),
                                                   (1.4, 1.0, jr.Probit(noise=1e-3))]),
    ("tanh-sigmoid", jr.Normal(), [(1.0, 2.0, jr.Tanh(noise_after=0.01)),
                                   (0.7, 1.5, jr.Sigmoid(noise=0.02, noise_after=0.01))]),
    ("binary-erf-elu", jr.Bimodal(prob=0.5), [(1.3, 0.8, jr.Erf(noise=0.05)),
                                              (1.1, 1.2, jr.ELU(noise_after=0.01))]),
    ("relu-relu-relu", jr.Normal(), [(1.2, 1.4, jr.ReLU(noise=0.01)), (0.9, 1.1, jr.ReLU(noise=0.01)),
                                     (1.5, 0.7, jr.ReLU(noise_after=0.02))]),
]


def _chain(prior, layers, scale=1.0, last_noise=1.0) -> jr.Chain:
    built = [(jr.Gaussian(alpha=a, scale=s * scale), ch) for a, s, ch in layers]
    ens, last = built[-1]
    noisier = {k: getattr(last, k) * last_noise for k in ("noise", "noise_after") if getattr(last, k)}
    built[-1] = (ens, last.replace(**noisier))
    return jr.Chain(prior=prior, layers=built)


@pytest.mark.parametrize("prior, layers", [c[1:] for c in CHAINS], ids=[c[0] for c in CHAINS])
def test_information_invariants(prior, layers):
    chain = _chain(prior, layers)
    lay = jr.solve_layers(chain)
    assert np.all(np.asarray(lay.converged)), lay.status
    info = np.asarray(lay.mutual_information)
    assert np.all(np.isfinite(info)) and np.all(info >= 0.0), info
    assert np.all(np.diff(info) <= 1e-9), info  # data processing
    entropy_x = float(prior.entropy())
    if np.isfinite(entropy_x):
        assert info[0] <= entropy_x + 1e-9, (info, entropy_x)
    # continuous in the weight scale
    nearby = jr.solve(_chain(prior, layers, scale=1.0 + 1e-4))
    assert bool(nearby.converged), nearby.status
    assert abs(float(nearby.mutual_information) - info[-1]) < 1e-3 * max(1.0, info[-1]), (nearby.mutual_information, info)
    # more noise at the end, no more information
    noisier = jr.solve(_chain(prior, layers, last_noise=1.3))
    assert bool(noisier.converged), noisier.status
    assert float(noisier.mutual_information) <= info[-1] + 1e-10, (noisier.mutual_information, info)


# every activation that has a channel, in the table's order
ACTIVATIONS = tuple(row.channel for row in jr.activations.ACTIVATIONS.values() if row.channel is not None)


def _random_chain(seed: int):
    """A chain drawn at the edges of the legitimate range: one to three layers, ``alpha``
    from 1/4 to 4, weight scales from 0.1 to 20 (half of the layers with the spectrum of a
    drawn, possibly rank-deficient matrix), noises from ``1e-8`` to ``0.1`` before, after
    or both, biases up to 2, sparse and binary inputs. With an even seed every layer is
    noisy (so that data processing applies to ``solve_layers``)."""
    r = np.random.default_rng(seed)
    prior = [jr.Normal(), jr.Bimodal(prob=float(r.uniform(0.2, 0.8))),
             jr.SpikeSlab(prob=float(r.choice([0.05, 0.3, 0.9])))][int(r.integers(0, 3))]
    depth, width, layers = int(r.integers(1, 4)), 300, []
    for k in range(depth):
        alpha, scale = float(r.choice([0.25, 0.5, 1.0, 2.0, 4.0])), float(10 ** r.uniform(-1.0, 1.3))
        rows = max(2, int(round(alpha * width)))
        if r.random() < 0.5:
            ensemble = jr.Empirical.from_matrix(r.normal(size=(rows, width)) * scale / np.sqrt(width))
        else:
            ensemble = jr.Gaussian(alpha=alpha, scale=scale)
        width = rows
        cls = ACTIVATIONS[int(r.integers(0, len(ACTIVATIONS)))]
        bias = {"bias": float(r.uniform(-2.0, 2.0))} if cls is not jr.Linear and r.random() < 0.3 else {}
        noisy = seed % 2 == 0 or k == depth - 1
        where = str(r.choice(["before", "after", "both"])) if noisy else "none"
        before, after = (float(10 ** r.uniform(-8.0, -1.0)) for _ in range(2))
        noises = {"none": dict(noise=0.0), "before": dict(noise=before), "after": dict(noise=0.0, noise_after=after),
                  "both": dict(noise=before, noise_after=after)}[where]
        layers.append((ensemble, cls(**noises, **bias)))
    return jr.Chain(prior=prior, layers=layers)


@pytest.mark.parametrize("seed", range(10))
def test_random_chains_at_the_edges_of_the_range(seed):
    """Every drawn chain converges to finite values with ``0 <= I(X; T_L) <= H(X)``; where
    every layer is noisy, ``I(X; T_l)`` does not grow along the chain and its last value
    is the one ``solve`` gives."""
    chain = _random_chain(seed)
    sol = jr.solve(chain)
    assert bool(sol.converged), (chain, sol.status)
    info, entropy = float(sol.mutual_information), float(sol.entropy)
    assert np.isfinite(info) and np.isfinite(entropy), (chain, info, entropy)
    assert info >= -1e-12, (chain, info)
    assert info <= float(chain.prior.entropy()) + 1e-9, (chain, info)
    if seed % 2 == 0 and chain.depth > 1:
        lay = jr.solve_layers(chain)
        assert np.all(np.asarray(lay.converged)), (chain, lay.status)
        per_layer = np.asarray(lay.mutual_information)
        assert np.all(np.diff(per_layer) <= 1e-9 * (1.0 + np.abs(per_layer[:-1]))), (chain, per_layer)
        assert abs(per_layer[-1] - info) <= 1e-9 * (1.0 + abs(info)), (chain, per_layer, info)
