"""Values computed without any jaxreplica code (SciPy only), to test the engine against."""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize
from scipy import special as _special


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

    if var == 0:  # a point mass at the mean
        return float(lo < mean < hi)
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


# Strictly increasing smooth activations: (phi, phi') as scalar functions (math module).
def _elu(x):
    return x if x > 0 else math.expm1(x)


SMOOTH = {
    "tanh": (math.tanh, lambda x: 1.0 / math.cosh(x) ** 2),
    "sigmoid": (lambda x: 0.5 * (1.0 + math.tanh(0.5 * x)), lambda x: 0.25 / math.cosh(0.5 * x) ** 2),
    "softplus": (lambda x: max(x, 0.0) + math.log1p(math.exp(-abs(x))), lambda x: 0.5 * (1.0 + math.tanh(0.5 * x))),
    "elu": (_elu, lambda x: 1.0 if x > 0 else math.exp(x)),
    "erf": (math.erf, lambda x: 2.0 / math.sqrt(math.pi) * math.exp(-x * x)),
    "arctan": (math.atan, lambda x: 1.0 / (1.0 + x * x)),
}

# log phi', written so that it does not underflow in the tails.
LOG_SLOPE = {
    "tanh": lambda x: math.log(4.0) - 2.0 * abs(x) - 2.0 * math.log1p(math.exp(-2.0 * abs(x))),
    "sigmoid": lambda x: -abs(x) - 2.0 * math.log1p(math.exp(-abs(x))),
    "softplus": lambda x: -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x)),
    "elu": lambda x: 0.0 if x > 0 else x,
    "erf": lambda x: math.log(2.0 / math.sqrt(math.pi)) - x * x,
    "arctan": lambda x: -math.log1p(x * x),
}

_TOL = dict(epsabs=1e-12, epsrel=1e-11, limit=400)

# The same activations as NumPy functions of an array (the innermost integral's).
SMOOTH_ARRAY = {
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "erf": _special.erf,
    "arctan": np.arctan,
}


def _gauss(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def smooth_moments(kind, noise, rho, bias=0.0):
    """``(E phi(y + bias)^2, E log phi'(y + bias))``, ``y ~ N(0, rho + noise)``."""
    phi, log_slope = SMOOTH[kind][0], LOG_SLOPE[kind]
    sd = math.sqrt(rho + noise)
    kink = [-bias / sd] if kind == "elu" else []
    m2 = integrate.quad(lambda u: phi(sd * u + bias) ** 2 * _gauss(u), -40, 40, points=[0.0] + kink, **_TOL)[0]
    mean_log_slope = integrate.quad(lambda u: log_slope(sd * u + bias) * _gauss(u), -40, 40,
                                    points=[0.0] + kink, **_TOL)[0]
    return m2, mean_log_slope


def adaptive_legendre(f, edges, epsabs, epsrel, order=15, rounds=60):
    """``int f`` over ``[edges[0], edges[-1]]`` (``f`` maps an array of points to an array
    ``(m, *shape)`` of ``m`` integrands) by adaptive bisection: every interval is split in
    two until the ``order``-point Gauss-Legendre values of its halves agree with the value
    of the whole within its share (by length) of ``max(epsabs, epsrel |integral|)``
    (maximum over the ``m`` integrands). Vectorised over all open intervals at once."""
    x, wx = np.polynomial.legendre.leggauss(order)

    def rule(a, b):
        half = 0.5 * (b - a)
        return np.sum(f(0.5 * (a + b)[:, None] + half[:, None] * x) * wx, axis=-1) * half

    a, b = np.asarray(edges[:-1], dtype=float), np.asarray(edges[1:], dtype=float)
    length = b[-1] - a[0]
    whole = rule(a, b)
    done = np.zeros(whole.shape[0])
    for _ in range(rounds):
        mid = 0.5 * (a + b)
        left, right = rule(a, mid), rule(mid, b)
        err = np.max(np.abs(left + right - whole), axis=0)
        scale = np.max(np.abs(done + np.sum(left + right, axis=-1)))
        ok = err <= max(epsabs, epsrel * scale) * (b - a) / length
        done = done + np.sum((left + right)[:, ok], axis=-1)
        keep = ~ok
        if not keep.any():
            return done
        a, b = np.concatenate([a[keep], mid[keep]]), np.concatenate([mid[keep], b[keep]])
        whole = np.concatenate([left[:, keep], right[:, keep]], axis=-1)
    raise RuntimeError("adaptive_legendre: no convergence")


def smooth_hidden(kind, A, V, noise, rho, bias=0.0, count=3, w_nodes=None, tol=1e-10):
    """Hidden layer ``t = phi(z + xi + bias)`` at ``(A, V, rho)``:
    ``(I_hidden - A E t^2/2, Ahat, Vhat)``.

    With the observation ``b = sqrt(A) t + xi'`` (``xi' ~ N(0, 1)``; the field ``B`` is
    ``sqrt(A) b``), ``Z = p(b | w)/N(b; 0, 1)``, so the reduced free entropy is
    ``(1 + log 2 pi)/2 - E_w h(b | w)``; ``Ahat = E (d/dw log p(b | w))^2`` and
    ``Vhat = E Var(t | b, w)``. For each ``w ~ N(0, rho - V)`` (adaptive, or ``w_nodes``
    Gauss-Hermite nodes) an adaptive SciPy integral over ``b``, and inside ``p(b | w)``
    an adaptive integral (:func:`adaptive_legendre`) over the prior variable ``u`` of
    ``y = w + sqrt(s) u`` (``s = V + noise``), split where ``sqrt(A) phi(y) = b``.
    ``tol``: the outer integrals' absolute and relative tolerance (the inner one's is
    ten times smaller). ``count=1`` computes the free entropy only."""
    base, base_array = SMOOTH[kind][0], SMOOTH_ARRAY[kind]
    phi = lambda x: base(x + bias)  # noqa: E731
    s = V + noise
    sqs, sqa = math.sqrt(s), math.sqrt(A)
    spread = math.sqrt(rho - V)
    outer = dict(epsabs=tol, epsrel=tol, norm="max", limit=400)

    def kink(w):  # ELU's curvature jumps where y + bias = 0
        u = -(w + bias) / sqs
        return [u] if kind == "elu" and -9 < u < 9 else []

    def inner(w, b):
        # log p(b | w), Var(t | b, w) and d/dw log p(b | w) = E[u | b, w]/sqrt(s)
        lo, hi = sqa * phi(w - 9 * sqs), sqa * phi(w + 9 * sqs)
        pts = [0.0] + kink(w)
        if lo < b < hi:
            pts.append(optimize.brentq(lambda u: sqa * phi(w + sqs * u) - b, -9, 9, xtol=1e-14))
        top = max(-0.5 * (b - sqa * phi(w + sqs * u)) ** 2 - 0.5 * u * u for u in pts + [-9.0, 9.0])

        def f(u):
            t = base_array(w + sqs * u + bias)
            e = np.exp(-0.5 * (b - sqa * t) ** 2 - 0.5 * u * u - top)
            return np.stack([e, e * t, e * t * t, e * u])

        edges = [-9.0] + sorted({p for p in pts if -9.0 < p < 9.0}) + [9.0]
        m = adaptive_legendre(f, edges, 0.01 * tol, 0.1 * tol)
        log_p = math.log(m[0]) + top - math.log(2.0 * math.pi)
        mean_t = m[1] / m[0]
        return log_p, max(m[2] / m[0] - mean_t * mean_t, 0.0), (m[3] / m[0]) / sqs

    def given_w(w):
        lo, hi = sqa * phi(w - 9 * sqs) - 10.0, sqa * phi(w + 9 * sqs) + 10.0

        def g(b):
            log_p, var, dw = inner(w, b)
            return math.exp(log_p) * np.array([-log_p, dw * dw, var][:count])

        pts = sorted({min(max(c, lo), hi) for c in (sqa * phi(w), lo + 10, hi - 10)})
        return integrate.quad_vec(g, lo, hi, points=pts, **outer)[0]

    if spread == 0.0:
        out = given_w(0.0)
    elif w_nodes is None:  # adaptive in w as well
        pts = sorted({0.0} | ({-bias / spread} if kind == "elu" and abs(bias / spread) < 9 else set()))
        out = integrate.quad_vec(lambda x: given_w(spread * x) * _gauss(x), -9, 9, points=pts, **outer)[0]
    else:
        x, wx = np.polynomial.hermite_e.hermegauss(w_nodes)
        out = sum(wi * given_w(spread * xi) for xi, wi in zip(x, wx)) / math.sqrt(2.0 * math.pi)
    return (0.5 * (1.0 + math.log(2.0 * math.pi)) - out[0], *out[1:])


def smooth_conditional_entropy(kind, noise, noise_after, rho, tol=1e-10):
    """``E_z H(phi(z + xi) + eta | z)``, ``z ~ N(0, rho)``, ``xi ~ N(0, noise)``,
    ``eta ~ N(0, noise_after)``: with ``b = (phi + eta)/sqrt(noise_after)`` it is
    ``h(b | z) + log(noise_after)/2``, the hidden layer's ``h(b | w)`` at
    ``A = 1/noise_after``, ``V = 0``."""
    free = smooth_hidden(kind, 1.0 / noise_after, 0.0, noise, rho, count=1, tol=tol)[0]
    return 0.5 * (1.0 + math.log(2.0 * math.pi)) - free + 0.5 * math.log(noise_after)


def _log_window(a, b):
    """``log(Phi(b) - Phi(a))`` for arrays ``a < b`` (either may be infinite), without
    cancellation in either tail."""
    ndtr, log_ndtr = _special.ndtr, _special.log_ndtr
    with np.errstate(divide="ignore", invalid="ignore"):
        upper = log_ndtr(-a) + np.log1p(-np.exp(log_ndtr(-b) - log_ndtr(-a)))  # a > 0: both in the upper tail
        lower = log_ndtr(b) + np.log1p(-np.exp(log_ndtr(a) - log_ndtr(b)))  # b < 0
        middle = np.log1p(-ndtr(a) - ndtr(-b))
    return np.where(a > 0, upper, np.where(b < 0, lower, middle))


def _truncated_moments(a, b, log_mass):
    """``E u`` and ``Var u`` of a standard normal ``u`` restricted to ``(a, b)``."""
    def weighted(x):  # (pdf(x), x pdf(x)) / mass, zero at infinite x
        finite = np.isfinite(x)
        xf = np.where(finite, x, 0.0)
        ratio = np.exp(np.where(finite, -0.5 * xf * xf - 0.5 * math.log(2.0 * math.pi) - log_mass, -np.inf))
        return ratio, ratio * xf

    pa, xpa = weighted(a)
    pb, xpb = weighted(b)
    mean = pa - pb
    return mean, 1.0 + xpa - xpb - mean * mean


def _observed_given_field(kind, gain, obs_var, w, s, bias, b):
    """``(log p(b | w), d/dw log p(b | w), Var(phi | b, w))`` at the points ``b``, for
    ``y ~ N(w, s)``, ``t = phi(y + bias)`` and ``b = gain t + N(0, obs_var)``: a closed
    form per piece (an atom's window mass times a Gaussian in ``b``; a slope's Gaussian
    marginal of ``b`` times the window mass of the posterior of ``y``)."""
    sqs = math.sqrt(s)
    logs, shifts, means, variances = [], [], [], []
    for lo, hi, g, c in PIECES[kind]:
        lo, hi = lo - bias, hi - bias
        offset = c + g * bias  # t = g y + offset on this piece
        bp = b - gain * offset
        if g == 0.0:
            alpha, beta = (lo - w) / sqs, (hi - w) / sqs
            log_mass = _log_window(np.full_like(b, alpha), np.full_like(b, beta))
            mu, var = _truncated_moments(alpha, beta, log_mass)
            logs.append(-0.5 * bp * bp / obs_var - 0.5 * math.log(2.0 * math.pi * obs_var) + log_mass)
            shifts.append(sqs * mu)
            means.append(np.full_like(b, offset))
            variances.append(np.zeros_like(b))
        else:
            a = gain * g
            total = obs_var + a * a * s
            shift = s * a * (bp - a * w) / total  # the posterior mean of y, minus w
            post = s * obs_var / total
            sd = math.sqrt(post)
            alpha, beta = (lo - w - shift) / sd, (hi - w - shift) / sd
            log_mass = _log_window(alpha, beta)
            mu, var = _truncated_moments(alpha, beta, log_mass)
            logs.append(-0.5 * (bp - a * w) ** 2 / total - 0.5 * math.log(2.0 * math.pi * total) + log_mass)
            shifts.append(shift + sd * mu)
            means.append(g * (w + shift + sd * mu) + offset)
            variances.append(g * g * post * var)
    logs = np.array(logs)
    log_p = np.logaddexp.reduce(logs, axis=0)
    weight = np.exp(logs - log_p)
    mean = np.sum(weight * np.array(means), axis=0)
    var = np.sum(weight * (np.array(variances) + np.array(means) ** 2), axis=0) - mean * mean
    return log_p, np.sum(weight * np.array(shifts), axis=0) / s, np.maximum(var, 0.0)


def piecewise_observed(kind, gain, obs_var, V, noise, rho, bias=0.0, tol=1e-10):
    """``(-E_w h(b | w), E (d/dw log p(b | w))^2, E Var(phi | b, w))`` for
    ``w ~ N(0, rho - V)``, ``y ~ N(w, V + noise)``, ``t = phi(y + bias)`` piecewise affine
    and ``b = gain t + N(0, obs_var)``: SciPy ``quad_vec`` over ``w`` (split at the kinks),
    inside it :func:`adaptive_legendre` over ``b`` of the closed forms of
    :func:`_observed_given_field`."""
    s = V + noise
    sqs, spread = math.sqrt(s), math.sqrt(max(rho - V, 0.0))
    obs_sd = math.sqrt(obs_var)
    atoms = [c for _, _, g, c in PIECES[kind] if g == 0.0]

    def phi(y):
        out = np.zeros_like(y)
        for lo, hi, g, c in PIECES[kind]:
            x = y + bias
            out = np.where((x > lo) & (x <= hi), g * x + c, out)
        return out

    def given_w(w):
        u = np.linspace(-12.0, 12.0, 97)
        levels = gain * phi(w + sqs * u)
        lo, hi = levels.min() - 14.0 * obs_sd, levels.max() + 14.0 * obs_sd
        around = [gain * c + k * obs_sd for c in atoms for k in range(-8, 9)]
        edges = np.unique(np.clip(np.concatenate([levels, around, [lo, hi]]), lo, hi))

        def f(b):
            shape = b.shape
            log_p, dw, var = _observed_given_field(kind, gain, obs_var, w, s, bias, b.ravel())
            p = np.exp(log_p)
            return np.stack([p * log_p, p * dw * dw, p * var]).reshape((3, *shape))

        return adaptive_legendre(f, edges, 0.01 * tol, 0.1 * tol)

    if spread == 0.0:
        return tuple(given_w(0.0))
    kinks = sorted({(x - bias) / spread for lo, hi, _, _ in PIECES[kind] for x in (lo, hi) if np.isfinite(x)})
    # (the integrand changes on the scale sqrt(s)/spread around a kink: graded points)
    steps = [0.0] + [sign * 2.0**j for j in range(-2, 12) for sign in (-1.0, 1.0)]
    pts = sorted({k + j * sqs / spread for k in kinks for j in steps} | {0.0})
    pts = [p for p in pts if -12.0 < p < 12.0]
    out = integrate.quad_vec(lambda x: given_w(spread * x) * _gauss(x), -12.0, 12.0, points=pts or None,
                             epsabs=tol, epsrel=tol, norm="max", limit=2000)[0]
    return tuple(out)


def piecewise_functions(kind, role, A, V, noise, rho, bias=0.0, noise_after=0.0, tol=1e-10):
    """The channel functions of a piecewise-affine activation with noise ``noise`` before
    and ``noise_after`` after it, from :func:`piecewise_observed`. ``role="hidden"``: the
    reduced free entropy ``I_hidden - A E t^2/2``, ``Ahat`` and ``Vhat`` at
    ``(A, V, rho)`` (the observation is ``b = sqrt(A) t + N(0, 1)``, with the noise after
    folded into it: ``N(0, 1 + A noise_after)``, and ``Vhat = E Var(t | b, w)``, whose
    ``t`` includes the noise after). ``role="last"`` (``A`` unused; ``noise_after > 0``):
    ``I_last = -E_w h(t | w)`` and ``Ahat_last``."""
    if role == "last":
        free, ahat, _ = piecewise_observed(kind, 1.0, noise_after, V, noise, rho, bias, tol)
        return free, ahat
    q = 1.0 + A * noise_after
    free, ahat, var = piecewise_observed(kind, math.sqrt(A), q, V, noise, rho, bias, tol)
    return 0.5 * (1.0 + math.log(2.0 * math.pi)) + free, ahat, var / (q * q) + noise_after / q
