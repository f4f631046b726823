"""Smooth increasing activations: ``t = phi(z + xi_in + bias) + xi_out``.

Built in: :class:`Tanh`, :class:`Sigmoid` (logistic), :class:`Softplus`, :class:`ELU`
and :class:`Erf`, each with ``phi``, ``phi'``, ``log phi'`` and ``phi^-1`` in closed form;
:class:`Activation` takes any non-decreasing JAX function. The replica functions are
those of :class:`jaxreplica.smooth.SmoothChannel`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, erfinv

from jaxreplica._struct import pytree
from jaxreplica.gaussian import TINY
from jaxreplica.smooth import EPS, SmoothChannel

__all__ = ["Tanh", "Sigmoid", "Softplus", "ELU", "Erf", "Activation"]

# The grid on which a user's function is checked to be non-decreasing.
CHECK_GRID = np.concatenate([-np.geomspace(60.0, 1e-3, 300), [0.0], np.geomspace(1e-3, 60.0, 300)])


@pytree
class Tanh(SmoothChannel):
    """``t = tanh(y)``, ``y = z + xi + bias``."""

    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None
    odd = True

    def _phi(self, x):
        return jnp.tanh(x)

    def _phi_and_slope(self, x):
        # One exponential for both: e = exp(-2|x|), tanh = sign(x) (1 - e)/(1 + e),
        # tanh' = 4 e/(1 + e)^2 (no 1 - tanh^2 cancellation). tanh ends in a division:
        # XLA's CPU fusion copies cheap element-wise operations into each consumer but not
        # a division, so a posterior's (node, xi) pairs read tanh instead of computing it
        # again for every xi (a full evaluation 13% faster).
        e = jnp.exp(-2.0 * jnp.abs(x))
        r = 1.0 / (1.0 + e)
        return jnp.sign(x) * (1.0 - e) / (1.0 + e), 4.0 * e * r * r

    def _log_slope(self, x):
        a = jnp.abs(x)
        return math.log(4.0) - 2.0 * a - 2.0 * jnp.log1p(jnp.exp(-2.0 * a))

    def _inverse(self, t, lo, hi):
        return jnp.arctanh(jnp.clip(t, -1.0 + EPS, 1.0 - EPS))


@pytree
class Sigmoid(SmoothChannel):
    """``t = 1/(1 + exp(-y))`` (logistic), ``y = z + xi + bias``."""

    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None

    def _phi(self, x):
        return jax.nn.sigmoid(x)

    def _phi_and_slope(self, x):
        e = jnp.exp(-jnp.abs(x))
        return jax.nn.sigmoid(x), e / (1.0 + e) ** 2

    def _log_slope(self, x):
        a = jnp.abs(x)
        return -a - 2.0 * jnp.log1p(jnp.exp(-a))

    def _inverse(self, t, lo, hi):
        t = jnp.clip(t, TINY, 1.0 - EPS)
        return jnp.log(t) - jnp.log1p(-t)


@pytree
class Softplus(SmoothChannel):
    """``t = log(1 + exp(y))``, ``y = z + xi + bias``."""

    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None

    def _phi(self, x):
        return jax.nn.softplus(x)

    def _phi_and_slope(self, x):
        return jax.nn.softplus(x), jax.nn.sigmoid(x)

    def _log_slope(self, x):
        return jax.nn.log_sigmoid(x)

    def _inverse(self, t, lo, hi):
        # log(exp(t) - 1) = t + log(1 - exp(-t))
        t = jnp.maximum(t, TINY)
        return t + jnp.log(-jnp.expm1(-t))


@pytree
class ELU(SmoothChannel):
    """``t = y`` for ``y > 0``, else ``alpha (exp(y) - 1)``; ``y = z + xi + bias``. Its
    slope jumps at 0 (from ``alpha`` to 1; for ``alpha = 1`` only the curvature does),
    where the rules put a breakpoint."""

    noise: float = 0.0
    alpha: float = 1.0
    noise_after: float | None = None
    bias: float | None = None

    _rules = {**SmoothChannel._rules, "alpha": "positive"}

    def _phi(self, x):
        return jnp.where(x > 0, x, self.alpha * jnp.expm1(jnp.minimum(x, 0.0)))

    def _phi_and_slope(self, x):
        neg = jnp.minimum(x, 0.0)
        return self._phi(x), jnp.where(x > 0, 1.0, self.alpha * jnp.exp(neg))

    def _log_slope(self, x):
        return jnp.where(x > 0, 0.0, jnp.log(self.alpha) + jnp.minimum(x, 0.0))

    def _inverse(self, t, lo, hi):
        neg = jnp.clip(t / self.alpha, -1.0 + EPS, 0.0)
        return jnp.where(t > 0, t, jnp.log1p(neg))

    def _kinks(self):
        return (0.0,)


@pytree
class Erf(SmoothChannel):
    """``t = erf(y)``, ``y = z + xi + bias``."""

    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None
    odd = True

    def _phi(self, x):
        return erf(x)

    def _phi_and_slope(self, x):
        return erf(x), (2.0 / math.sqrt(math.pi)) * jnp.exp(-x * x)

    def _log_slope(self, x):
        return math.log(2.0 / math.sqrt(math.pi)) - x * x

    def _inverse(self, t, lo, hi):
        return erfinv(jnp.clip(t, -1.0 + EPS, 1.0 - EPS))


@pytree
class Activation(SmoothChannel):
    """``t = fn(y)``, ``y = z + xi + bias``, for a user's non-decreasing JAX function ``fn``
    (element-wise, differentiable; e.g. ``jnp.arctan`` or ``lambda x: x + 0.5 * jnp.tanh(x)``).

    ``fn`` is part of the structure (a new function compiles a new program). It is checked
    on a grid from -60 to 60 at construction (``ValueError`` if it decreases anywhere or
    is not finite). ``phi'`` comes from automatic differentiation and ``phi^-1`` from
    bracketed Newton steps. A last layer's entropy is finite where ``fn' > 0``: a flat
    stretch of ``fn`` would be an atom of ``t``.
    """

    fn: object
    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None

    _static = ("fn",)

    def __post_init__(self):
        if not callable(self.fn):
            raise ValueError(f"fn must be a callable JAX function (got {self.fn!r})")
        try:
            with jax.ensure_compile_time_eval():  # concrete numbers, also inside jit
                values = np.asarray(self.fn(jnp.asarray(CHECK_GRID)), dtype=float)
        except Exception as err:  # noqa: BLE001 - any failure means fn is unusable here
            raise ValueError(f"fn must map an array element-wise to floats ({type(err).__name__}: {err})") from None
        if values.shape != CHECK_GRID.shape or not np.all(np.isfinite(values)):
            raise ValueError("fn must map an array element-wise to finite floats on [-60, 60]")
        drop = np.flatnonzero(np.diff(values) < 0)
        if drop.size:
            i = drop[0]
            raise ValueError(f"fn must be non-decreasing: fn({CHECK_GRID[i]:.4g}) = {values[i]:.6g} > "
                             f"fn({CHECK_GRID[i + 1]:.4g}) = {values[i + 1]:.6g}")
        if values[-1] <= values[0]:
            raise ValueError("fn must be increasing (it is constant on [-60, 60])")
        super().__post_init__()

    def _phi(self, x):
        return self.fn(x)
