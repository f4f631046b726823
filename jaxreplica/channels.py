"""The activations a layer can have: ``t = phi(z + xi_in + bias) + xi_out``.

Each is described by its pieces (:class:`jaxreplica.piecewise.PiecewiseChannel` turns that
description into the scalar functions of the replica formula); a few override a
function with its closed form (the linear channel everywhere, the sign channel's
hidden average). Every channel takes ``noise`` (variance of ``xi_in``, before the
activation), ``noise_after`` (variance of ``xi_out``, after it; ``None`` for none) and
``bias``. :class:`Switched` makes the activation itself data.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxreplica._struct import concrete, pytree
from jaxreplica.channel import Channel
from jaxreplica.priors import MMSE_FLOOR
from jaxreplica.piecewise import INF, Piece, PiecewiseChannel
from jaxreplica.gaussian import log_ndtr
from jaxreplica.quadrature import DEFAULT, QuadratureConfig, kinked_gaussian_rule

__all__ = ["Linear", "ReLU", "LeakyReLU", "HardTanh", "Probit", "Switched"]


@pytree
class Linear(PiecewiseChannel):
    """``t = z + xi + bias``. Closed forms (``s = noise + V``): ``Ahat = 1/(s + 1/A)``,
    ``Vhat = 1/(A + 1/s)``, reduced ``I_hidden = -log(1 + A s)/2``,
    ``I_last = -log(2 pi e s)/2``, ``Ahat_last = 1/s`` (a bias shifts ``t`` and changes only
    its second moment)."""

    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None
    closed_form = True

    def _pieces(self):
        return [Piece(-INF, INF, 1.0)]

    def _second_moment(self, rho):
        return rho + self.noise + self.shift**2

    def _noise_free(self, rho, cfg: QuadratureConfig):
        return -0.5 * jnp.log(2.0 * jnp.pi * jnp.e * self.noise) + 0.0 * rho

    def _output(self, V, rho, cfg: QuadratureConfig):
        s = V + self.noise
        return -0.5 * (jnp.log(2.0 * jnp.pi * jnp.e) + jnp.log(s)), 1.0 / s

    def _hidden(self, A, V, rho, cfg: QuadratureConfig):
        s = V + self.noise
        return -0.5 * jnp.log1p(A * s), A / (1.0 + A * s), s / (1.0 + A * s)

    def _hidden_extrinsic(self, A, V, ahat, vhat):
        """``(noise + 1/A, 1/(noise + V))`` in closed form; ``noise + V`` held at the floor
        where it is zero (a noiseless layer seen with ``V = 0``: its output known exactly)."""
        return self.noise + 1.0 / A, 1.0 / jnp.maximum(V + self.noise, MMSE_FLOOR)

    def _folded(self):
        """The same channel with the noise after the map added to the one before it."""
        return self if self.noise_after is None else self.replace(noise=self.noise + self.noise_after, noise_after=None)

    def output_functions(self, V, rho, cfg: QuadratureConfig = DEFAULT):
        # (exact for every noise after, zero included, derivatives too)
        return PiecewiseChannel.output_functions(self._folded(), V, rho, cfg)

    def noise_free_entropy(self, rho, cfg: QuadratureConfig = DEFAULT):
        return PiecewiseChannel.noise_free_entropy(self._folded(), rho, cfg)


@pytree
class ReLU(PiecewiseChannel):
    """``t = max(0, y)``, ``y = z + xi + bias``."""

    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None

    def _pieces(self):
        return [Piece(-INF, 0.0, None, 0.0), Piece(0.0, INF, 1.0)]


@pytree
class LeakyReLU(PiecewiseChannel):
    """``t = y`` for ``y = z + xi + bias > 0``, else ``slope * y``."""

    noise: float = 0.0
    slope: float = 0.1
    noise_after: float | None = None
    bias: float | None = None

    _rules = {**PiecewiseChannel._rules, "slope": "positive"}

    def _pieces(self):
        return [Piece(-INF, 0.0, self.slope), Piece(0.0, INF, 1.0)]


@pytree
class HardTanh(PiecewiseChannel):
    """``t = clip(y, -threshold, threshold)``, ``y = z + xi + bias``."""

    noise: float = 0.0
    threshold: float = 1.0
    noise_after: float | None = None
    bias: float | None = None
    odd = True

    _rules = {**PiecewiseChannel._rules, "threshold": "positive"}

    def _pieces(self):
        c = self.threshold
        return [Piece(-INF, -c, None, -c), Piece(-c, c, 1.0), Piece(c, INF, None, c)]


@pytree
class Probit(PiecewiseChannel):
    """``t = sign(y)``, ``y = z + xi + bias``."""

    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None
    odd = True
    continuous = False

    def _pieces(self):
        return [Piece(-INF, 0.0, None, -1.0), Piece(0.0, INF, None, 1.0)]

    def _second_moment(self, rho):
        return jnp.ones_like(jnp.asarray(rho, dtype=jnp.float64))

    def _hidden(self, A, V, rho, cfg: QuadratureConfig):
        return _probit_hidden(self, A, V, rho, cfg)


def _probit_hidden(channel: Probit, A, V, rho, cfg: QuadratureConfig):
    """Hidden sign channel, whose two atoms make ``log Z`` kinked in ``B`` as well.

    With ``u = (w + bias)/sqrt(s)`` and ``r = log(Phi(u)/Phi(-u))/2``,
    ``log Z = -A/2 + log(Phi(u) Phi(-u))/2 + log(2 cosh(B + r))``: the switch between
    the atoms sits at ``B = -r``, with width 1/2, which in the teacher noise ``xi``
    (``B = A t0 + sqrt(A) xi``) is a kink of width ``1/(2 sqrt(A))`` that moves with
    ``w``. Each ``(y0, w)`` node gets its own kinked rule in ``xi``. The atoms' prior
    masses ``Phi(+-u)`` change on the scale ``sqrt(s)`` in ``w``, for most teacher nodes
    in the tail of ``w``'s rule: ``cfg.sign_hermite_w`` nodes there at least.
    """
    A = jnp.asarray(A, dtype=jnp.float64)
    teacher_cfg = dataclasses.replace(cfg, hermite_w=max(cfg.hermite_w, cfg.sign_hermite_w))
    s, y0, w, weight = channel._teacher(V, rho, teacher_cfg, A)
    sqrt_a = jnp.sqrt(A)
    t0 = jnp.broadcast_to(channel.activation(y0), w.shape)
    sd = jnp.sqrt(s)
    # 8 Gauss-Legendre nodes a segment: the rule's mass and variance to 1e-12 wherever the
    # kink sits (6 leave 1e-8 once it is far out, as when A is large).
    xi_cfg = dataclasses.replace(cfg, bulk_segments=8, grades=8, half_width=8.0, legendre=max(cfg.legendre, 8))

    def log_pair(ww):
        ww = ww + channel.shift
        lp, lm = log_ndtr(ww / sd), log_ndtr(-ww / sd)
        return 0.5 * (lp + lm), 0.5 * (lp - lm)

    def per_node(t, ww):
        base, r = log_pair(ww)
        xi, wxi = kinked_gaussian_rule(1.0, [-(A * t + r) / sqrt_a], 0.5 / sqrt_a, xi_cfg)
        u = sqrt_a * xi + r
        h = A * t + u  # B + r
        # log Z - A t0^2/2 = -A + base + |h| + log(1 + e^{-2|h|}), with |h| - A formed
        # without the cancellation of two numbers of size A (A reaches 1e10 when the
        # layer's output is recovered exactly).
        excess = jnp.where(t * h >= 0, t * u, -2.0 * A - t * u)
        logz = base + excess + jnp.log1p(jnp.exp(-2.0 * jnp.abs(h)))
        sech2 = 1.0 - jnp.tanh(h) ** 2
        # d/dw log Z = base'(w) + tanh(h) r'(w)
        _, (dbase, dr) = jax.jvp(log_pair, (ww,), (jnp.ones_like(ww),))
        dw = dbase + jnp.tanh(h) * dr
        return jnp.sum(wxi * logz), jnp.sum(wxi * dw**2), jnp.sum(wxi * sech2)

    f = jax.vmap(per_node)(t0.reshape(-1), w.reshape(-1))
    wf = weight.reshape(-1)
    return tuple(jnp.sum(wf * x) for x in f)




@pytree
class Switched(Channel):
    """The channel ``options[index]``, where ``index`` is data.

    A chain of ``Switched`` layers has one structure whatever the activation, so one
    compiled program serves every activation of ``options`` (the Figure-2 sweep
    compiles its solver once instead of once per activation). Each method is a
    ``lax.switch`` over the options: under ``lax.map`` or a plain call only the
    chosen branch runs; under ``vmap`` with a batched ``index`` every branch runs.

    Args:
      options: channels (their own ``noise``, ``noise_after`` and ``bias`` are ignored:
        the fields below are used).
      index: which option, an integer (clamped to the options' range inside ``jit``).
      noise, noise_after, bias: as for every channel.
    """

    options: tuple
    index: int = 0
    noise: float = 0.0
    noise_after: float | None = None
    bias: float | None = None

    def __post_init__(self):
        opts = tuple(self.options)
        if not opts or not all(isinstance(o, Channel) and not isinstance(o, Switched) for o in opts):
            raise ValueError("options must be a non-empty sequence of channels (Linear, ReLU, ...), not Switched")
        object.__setattr__(self, "options", opts)
        index = concrete(self.index)
        if index is not None and not (index.shape == () and index == int(index) and 0 <= index < len(opts)):
            raise ValueError(f"index must be an integer in [0, {len(opts)}) (got {self.index!r})")
        super().__post_init__()

    @property
    def closed_form(self) -> bool:
        return all(o.closed_form for o in self.options)

    @property
    def posterior_quadrature(self) -> bool:
        # Static, so it speaks for every option: a solver takes the steps that pay for
        # the costliest one (the chord steps of a smooth activation) whichever is chosen.
        return any(o.posterior_quadrature for o in self.options)

    def _switch(self, method: str, args, cfg=None):
        extra = () if cfg is None else (cfg,)
        chosen = lambda o: o.replace(noise=self.noise, noise_after=None, bias=self.bias)  # noqa: E731
        branches = [lambda a, o=o: getattr(chosen(o), method)(*a, *extra) for o in self.options]
        return jax.lax.switch(jnp.asarray(self.index, dtype=jnp.int32), branches, _f64(*args))

    def activation(self, y):
        return self._switch("activation", (y,))

    def _second_moment(self, rho):
        return self._switch("_second_moment", (rho,))

    def _output(self, V, rho, cfg: QuadratureConfig):
        return self._switch("_output", (V, rho), cfg)

    def _noise_free(self, rho, cfg: QuadratureConfig):
        return self._switch("_noise_free", (rho,), cfg)

    def _hidden(self, A, V, rho, cfg: QuadratureConfig):
        return self._switch("_hidden", (A, V, rho), cfg)

    def _hidden_sharp(self, A, V, rho, cfg: QuadratureConfig):
        return self._switch("_hidden_sharp", (A, V, rho), cfg)

    def _output_extrinsic(self, V, ahat):
        return self._switch("_output_extrinsic", (V, ahat))

    def _hidden_extrinsic(self, A, V, ahat, vhat):
        return self._switch("_hidden_extrinsic", (A, V, ahat, vhat))

    def mean_square_slope(self, rho):
        return self._switch("mean_square_slope", (rho,))


def _f64(*xs):
    return tuple(jnp.asarray(x, dtype=jnp.float64) for x in xs)
