"""Small pytree dataclasses whose constructors validate, without tripping inside ``jit``.

``pytree(cls)`` makes ``cls`` a frozen dataclass and registers it with JAX: fields
listed in ``cls._static`` are part of the tree structure, all others are leaves.
Unflattening bypasses ``__init__`` so that validation in ``__post_init__`` only runs
when a user builds the object, never on tracers or on JAX's internal placeholders.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def pytree(cls):
    cls = dataclasses.dataclass(frozen=True)(cls)
    static = tuple(getattr(cls, "_static", ()))
    fields = [f.name for f in dataclasses.fields(cls)]
    leaves = tuple(n for n in fields if n not in static)

    def flatten(obj):
        return [getattr(obj, n) for n in leaves], tuple(getattr(obj, n) for n in static)

    def unflatten(aux, children):
        obj = object.__new__(cls)
        for n, v in zip(leaves, children):
            object.__setattr__(obj, n, v)
        for n, v in zip(static, aux):
            object.__setattr__(obj, n, v)
        return obj

    jax.tree_util.register_pytree_node(cls, flatten, unflatten)
    cls.replace = lambda self, **kw: unflatten(
        tuple(kw.get(n, getattr(self, n)) for n in static),
        [kw.get(n, getattr(self, n)) for n in leaves],
    )
    return cls


def concrete(x) -> np.ndarray | None:
    """``x`` as a NumPy array if it holds concrete numbers (not a tracer), else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return None


def check(name: str, value, *, positive=False, nonnegative=False, open_unit=False, finite=True):
    """Raise ``ValueError`` naming ``name`` when a concrete ``value`` is out of range."""
    v = concrete(value)
    if v is None:
        return
    if finite and not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite (got {value!r})")
    if positive and not np.all(v > 0):
        raise ValueError(f"{name} must be positive (got {value!r})")
    if nonnegative and not np.all(v >= 0):
        raise ValueError(f"{name} must be non-negative (got {value!r})")
    if open_unit and not np.all((v > 0) & (v < 1)):
        raise ValueError(f"{name} must lie strictly between 0 and 1 (got {value!r})")


_RULES = {
    "finite": lambda v: jnp.isfinite(v),
    "positive": lambda v: jnp.isfinite(v) & (v > 0),
    "nonnegative": lambda v: jnp.isfinite(v) & (v >= 0),
    "open_unit": lambda v: (v > 0) & (v < 1),
}


class Validated:
    """Blocks whose numbers obey per-field rules, declared once in ``_rules``
    (``{field: "finite" | "positive" | "nonnegative" | "open_unit"}``).

    The same rules give the eager check (``ValueError`` naming the field, when the
    block is built from concrete numbers) and :meth:`invalid` (a traced flag, for
    numbers only known inside ``jit``, where nothing may raise)."""

    _rules: dict = {}

    def __post_init__(self):
        for name, rule in self._rules.items():
            if getattr(self, name, None) is not None:
                check(name, getattr(self, name), **({} if rule == "finite" else {rule: True}))

    def invalid(self):
        """True (as an array) when a number breaks its rule."""
        out = jnp.asarray(False)
        for name, rule in self._rules.items():
            if getattr(self, name, None) is not None:  # an absent optional number (None)
                out = out | ~jnp.all(_RULES[rule](jnp.asarray(getattr(self, name), dtype=jnp.float64)))
        return out


def tree_where(cond, a, b):
    """``jnp.where(cond, x, y)`` leaf by leaf over two trees of one structure."""
    return jax.tree_util.tree_map(lambda x, y: jax.numpy.where(cond, x, y), a, b)
