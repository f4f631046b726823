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
