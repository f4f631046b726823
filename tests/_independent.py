"""Values computed without any jaxreplica code (SciPy only), to test the engine against."""

from __future__ import annotations

import numpy as np
from scipy import integrate


def spikeslab_linear_replica(rho, alpha, delta, E0, iterations=8):
    """``H(T)/n`` and the mmse of ``T = W x + noise``, ``x`` spike-and-slab, ``W`` i.i.d.
    Gaussian, from the replica-symmetric formula for random linear estimation,
    ``I/n = min_E (alpha/2)[log(1 + E/delta) - E/(E + delta)] + I(X; sqrt(gamma) X + Z)``
    with ``gamma = alpha/(delta + E)``; the scalar mutual information by SciPy quadrature
    in the channel output ``B``, the minimiser ``E = mmse(gamma(E))`` by iteration with
    ``mmse = 2 dI/dgamma`` (I-MMSE) from a central difference, started at ``E0``.

    Where several minimisers exist (the uninformed and the informed branch of sparse
    compressed sensing), ``E0`` picks the branch and the returned entropy is the
    formula's value there: comparing branches gives the global minimum.

    Returns ``(entropy, E)``."""
    def normal_pdf(t):
        return np.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi)

    def average(h, sd, kinks):
        # E h(B), B ~ N(0, sd^2), on [-38, 38] sd, refined geometrically around the kinks.
        edges = set(np.linspace(-38.0, 38.0, 77))
        for k in kinks:
            for j in range(31):
                for sign in (-1.0, 1.0):
                    x = k + sign * 1e-3 * abs(k) * 2.0**j
                    if -38.0 < x < 38.0:
                        edges.add(x)
        edges = sorted(edges)
        return sum(integrate.quad(lambda t: h(t * sd) * normal_pdf(t), a, b, epsabs=1e-17, epsrel=1e-13,
                                  limit=200)[0] for a, b in zip(edges[:-1], edges[1:]))

    def scalar_information(gamma):
        # I(X; sqrt(gamma) X + Z) = gamma rho/2 - E log Z, in B = gamma x + sqrt(gamma) z.
        def log_z(b):
            return np.logaddexp(np.log(1.0 - rho), np.log(rho) - 0.5 * np.log1p(gamma) + b * b / (2.0 * (1.0 + gamma)))
        switch = np.sqrt(2.0 * (1.0 + gamma) * (np.log((1.0 - rho) / rho) + 0.5 * np.log1p(gamma)))
        spike = average(log_z, np.sqrt(gamma), [switch / np.sqrt(gamma), -switch / np.sqrt(gamma)])
        sd = np.sqrt(gamma * gamma + gamma)
        # slab: E log Z = E[log Z - B^2/(2(1+gamma))] + gamma/2
        slab = average(lambda b: log_z(b) - b * b / (2.0 * (1.0 + gamma)), sd, [switch / sd, -switch / sd])
        return -((1.0 - rho) * spike + rho * slab)

    E = E0
    for _ in range(iterations):
        gamma = alpha / (delta + E)
        h = 1e-4
        E = 2.0 * (scalar_information(gamma * (1 + h)) - scalar_information(gamma * (1 - h))) / (2 * h * gamma)
    gamma = alpha / (delta + E)
    information = 0.5 * alpha * (np.log1p(E / delta) - E / (E + delta)) + scalar_information(gamma)
    return information + 0.5 * alpha * np.log(2.0 * np.pi * np.e * delta), E


def marchenko_pastur_log_mean(alpha, scale, gamma):
    """``E log(1 + gamma lambda)`` over the spectrum of ``W^T W`` for i.i.d. entries of
    variance ``scale^2/n_in`` and ``alpha = n_out/n_in`` (the Marchenko-Pastur law, with
    its atom ``1 - alpha`` at zero when ``alpha < 1``), by SciPy quadrature of the density
    ``sqrt((b - l)(l - a))/(2 pi scale^2 l)`` on ``[a, b] = scale^2 (1 -+ sqrt(alpha))^2``."""
    s2 = scale * scale
    lo, hi = s2 * (1.0 - np.sqrt(alpha)) ** 2, s2 * (1.0 + np.sqrt(alpha)) ** 2
    # The weight (l - a)^(1/2) (b - l)^(1/2) is handled exactly by QUADPACK's 'alg' rule
    # (for alpha = 1, a = 0 and the density's 1/l turns it into l^(-1/2) (b - l)^(1/2)).
    f = lambda lam: np.log1p(gamma * lam) / (2.0 * np.pi * s2)
    if alpha == 1.0:
        return integrate.quad(f, 0.0, hi, weight="alg", wvar=(-0.5, 0.5), epsabs=1e-15, epsrel=1e-13, limit=200)[0]
    return integrate.quad(lambda lam: f(lam) / lam, lo, hi, weight="alg", wvar=(0.5, 0.5), epsabs=1e-15,
                          epsrel=1e-13, limit=200)[0]


def gaussian_linear_entropy(alpha, scale, noise, prior_var=1.0):
    """``H(T)/n_in`` of ``T = W x + xi``, ``x ~ N(0, prior_var I)``, ``xi ~ N(0, noise I)``,
    ``W`` i.i.d. Gaussian (the wide limit):
    ``(alpha/2) log(2 pi e) + E log(prior_var lambda + noise)/2 + ((alpha - 1)/2) log(noise)``
    (the sum over the ``n_out`` eigenvalues of ``W W^T`` written over those of ``W^T W``)."""
    return (0.5 * alpha * np.log(2.0 * np.pi * np.e) + 0.5 * alpha * np.log(noise)
            + 0.5 * marchenko_pastur_log_mean(alpha, scale, prior_var / noise))


def _window(lo, hi, mean, var):
    """``P(lo < y < hi)`` for ``y ~ N(mean, var)``."""
    from scipy.stats import norm

    sd = np.sqrt(var)
    return norm.cdf((hi - mean) / sd) - norm.cdf((lo - mean) / sd)


# Piecewise-affine activations as (lo, hi, slope, offset); slope 0 is an atom at offset.
PIECES = {
    "linear": [(-np.inf, np.inf, 1.0, 0.0)],
    "relu": [(-np.inf, 0.0, 0.0, 0.0), (0.0, np.inf, 1.0, 0.0)],
    "leaky_relu": [(-np.inf, 0.0, 0.1, 0.0), (0.0, np.inf, 1.0, 0.0)],
    "hardtanh": [(-np.inf, -1.0, 0.0, -1.0), (-1.0, 1.0, 1.0, 0.0), (1.0, np.inf, 0.0, 1.0)],
    "probit": [(-np.inf, 0.0, 0.0, -1.0), (0.0, np.inf, 0.0, 1.0)],
}


def noisy_output_density(kind, t, z, noise, noise_after):
    """``p(t | z)`` for ``t = phi(z + xi) + eta``, ``xi ~ N(0, noise)``,
    ``eta ~ N(0, noise_after)``, ``phi`` piecewise affine: per piece, an atom's mass
    times ``N(t; c, noise_after)``, or ``N(t; g z + c, g^2 noise + noise_after)`` times the
    posterior probability that ``y`` lies in the piece."""
    from scipy.stats import norm

    total = 0.0
    for lo, hi, g, c in PIECES[kind]:
        if g == 0.0:
            total += _window(lo, hi, z, noise) * norm.pdf(t, c, np.sqrt(noise_after))
        else:
            var = g * g * noise + noise_after
            gain = g * noise / var  # posterior of y given t: mean z + gain (t - g z - c)
            mean = z + gain * (t - g * z - c)
            post = noise * noise_after / var
            total += norm.pdf(t, g * z + c, np.sqrt(var)) * _window(lo, hi, mean, post)
    return total


def conditional_output_entropy(kind, noise, noise_after, rho):
    """``E_z H(phi(z + xi) + eta | z)``, ``z ~ N(0, rho)``: adaptive quadrature in ``t``
    for each ``z``, then in ``z`` (both split at the activation's kinks)."""
    from scipy.stats import norm

    kinks = sorted({b for lo, hi, _, _ in PIECES[kind] for b in (lo, hi) if np.isfinite(b)})
    width = 12.0 * np.sqrt(noise + noise_after) + 3.0

    def entropy_given(z):
        f = lambda t: (lambda p: -p * np.log(p) if p > 0 else 0.0)(noisy_output_density(kind, t, z, noise, noise_after))
        centre = [c for lo, hi, g, c in PIECES[kind]] + [z]
        return integrate.quad(f, min(centre) - width, max(centre) + width, points=sorted(set(centre + kinks)),
                              limit=500, epsabs=1e-13, epsrel=1e-12)[0]

    sd = np.sqrt(rho)
    return integrate.quad(lambda z: entropy_given(z) * norm.pdf(z, 0.0, sd), -9 * sd, 9 * sd,
                          points=kinks or None, limit=200, epsabs=1e-12, epsrel=1e-11)[0]
