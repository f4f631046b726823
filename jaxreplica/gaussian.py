"""Gaussian closed forms: ``log Phi`` and its differences without cancellation, and the
log of a Gaussian integral over a window, the integral every channel and prior reduces
to (with derivatives that stay finite at empty windows and point masses)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfc

__all__ = ["LOG_2PI", "TINY", "BIG", "gaussian_entropy", "log_ndtr", "standardize", "log_ndtr_diff",
           "log_gaussian_window"]

LOG_2PI = math.log(2.0 * math.pi)
TINY = 1e-300  # a floor for quantities that must stay positive


def gaussian_entropy(var):
    """``log(2 pi e var)/2``: the entropy of a Gaussian of variance ``var``."""
    return 0.5 * (LOG_2PI + 1.0 + jnp.log(var))


# log Phi(x) below this from its asymptotic series (erfc underflows near x = -37.5).
FAR_TAIL = -35.0
# log(1 - u + 3 u^2 - 15 u^3 + 105 u^4 - 945 u^5 + ...), u = 1/x^2, to fifth order: the
# truncation error at x = -35 is 3e-15 (on log Phi(-35) = -616).
_TAIL_SERIES = (-1.0, 2.5, -37.0 / 3.0, 353.0 / 4.0, -4081.0 / 5.0)
HALF_LOG_2PI = 0.5 * LOG_2PI


@jax.custom_jvp
def log_ndtr(x):
    """``log Phi(x)``, the standard normal log-CDF, with one ``erfc`` and one ``log``.

    Relative error about 1e-15 for ``x <= 0`` (``log(erfc(-x/sqrt 2)/2)``, and the
    asymptotic series of ``Phi`` below ``x = -35``); absolute error about 1e-16 for
    ``x > 0`` (``log(1 - erfc(x/sqrt 2)/2)``), which is all a log-mass near zero needs
    here. The three cases share one ``erfc`` and one ``log``:
    ``jax.scipy.special.log_ndtr`` computes all of its three branches (two ``log``, an
    ``erf``, an ``erfc``) and is 2.3x slower on CPU; it is a hot spot of the channels'
    averages. Derivative ``phi(x)/Phi(x)`` from the value.
    """
    x = jnp.asarray(x, dtype=jnp.float64)
    q = 0.5 * erfc(jnp.abs(x) * (1.0 / math.sqrt(2.0)))
    far = x < FAR_TAIL
    L = jnp.log(jnp.where(far, -x, jnp.where(x > 0, 1.0 - q, q)))
    u = 1.0 / (x * x)
    series = 0.0
    for c in reversed(_TAIL_SERIES):
        series = u * (c + series)
    return jnp.where(far, -0.5 * x * x - L - HALF_LOG_2PI + series, L)


@log_ndtr.defjvp
def _log_ndtr_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    y = log_ndtr(x)
    x = jnp.asarray(x, dtype=jnp.float64)
    return y, dx * jnp.exp(-0.5 * x * x - HALF_LOG_2PI - y)


BIG = 1e6  # standardized arguments are clipped here: Phi(-1e6) is an exact zero for us


def standardize(bound, centre, sd):
    """``(bound - centre)/sd``, with a static infinite ``bound`` mapped to ``+-BIG``.

    Dividing an infinite bound by a traced ``sd`` would give a NaN derivative.
    """
    if isinstance(bound, (int, float)) and math.isinf(bound):
        return jnp.full(jnp.shape(centre + sd), math.copysign(BIG, bound))
    return (bound - centre) / sd


def log_ndtr_diff(a, b):
    """``log(Phi(b) - Phi(a))`` for ``a <= b`` (infinite ends allowed), without cancellation.

    Uses the mirror image ``Phi(-a) - Phi(-b)`` when ``a > 0`` so that both tails keep
    full relative precision. Arguments are clipped to ``+-1e6`` and the ratio of the two
    ``Phi`` kept below one, so the value and its derivatives stay finite even for an
    empty window (whose log-probability is then about ``-5e11`` instead of ``-inf``).
    """
    a = jnp.clip(a, -BIG, BIG)
    b = jnp.clip(b, -BIG, BIG)
    flip = a > 0
    lo = jnp.where(flip, -b, a)
    hi = jnp.where(flip, -a, b)
    log_hi = log_ndtr(hi)
    ratio = jnp.exp(jnp.minimum(log_ndtr(lo) - log_hi, -1e-16))
    return log_hi + jnp.log1p(-ratio)


def log_gaussian_window(A, B, g, lo, hi, mean, var):
    """``log int_lo^hi dy N(y; mean, var) exp(-A (g y)^2 / 2 + B g y)``.

    The Gaussian integral that every channel and prior reduces to. Written so that it
    stays finite and exact for ``var -> 0`` (a point mass at ``mean``) and for large
    ``A``: with ``q = 1 + var A g^2`` the exponent is
    ``(2 B g m - A g^2 m^2 + var B^2 g^2) / (2 q)`` (no ``m^2/var`` cancellation), the
    window is centred at ``(m + var B g)/q`` with variance ``var/q``, and its
    probability uses :func:`log_ndtr_diff`.
    """
    q = 1.0 + var * A * g * g
    exponent = (2.0 * B * g * mean - A * g * g * mean * mean + var * B * B * g * g) / (2.0 * q)
    centre = (mean + var * B * g) / q
    post_sd = jnp.sqrt(jnp.maximum(var / q, TINY))
    window = log_ndtr_diff(standardize(lo, centre, post_sd), standardize(hi, centre, post_sd))
    return exponent - 0.5 * jnp.log(q) + window
