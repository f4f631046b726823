"""Many solves at once, split over devices with JAX's own sharding.

A batch of chains (a :class:`~jaxreplica.Chain` whose every leaf has a leading batch
axis, e.g. from :func:`stack_chains`) is solved by ``jax.vmap(jaxreplica.solve)``
with the batch axis split over a 1-D :class:`jax.sharding.Mesh`::

    chains = stack_chains([build(s) for s in sigmas])          # leaves (B, ...)
    sol = solve_batched(chains, devices="all")                  # sol.entropy: (B,)

How it runs (:func:`sharded_vmap`):

1. the batch is padded to a multiple of the device count ``D`` by repeating its last
   element (any ``B`` works; the padding is sliced off again);
2. it is placed on the mesh as a global array sharded ``PartitionSpec("batch")``
   (``jax.make_array_from_callback``, which also works when the mesh spans several
   processes, see the README's multi-host section);
3. one ``jax.jit``-compiled ``jax.shard_map`` runs ``fn`` on each device's
   ``ceil(B/D)`` elements (``jax.lax.map`` on CPU devices, ``jax.vmap`` on
   accelerators). ``shard_map`` (not a plain sharded ``jit``) keeps every
   device's ``while_loop`` local: a vmapped ``while_loop`` runs until its slowest
   element has converged, and under a sharded ``jit`` that "any element still
   running?" test would become a cross-device reduction at every iteration, making
   every device wait for the globally slowest solve. The computation has no
   collective at all;
4. the results are gathered in order once every shard is done, outside the
   computation: on one process by copying each shard to the host (no collective:
   XLA's CPU collectives abort a device that waits more than 40 s for the others,
   which a gather inside the computation did when the shards' solves took very
   different times); on several processes, once this process's shards are done,
   behind ``multihost_utils.sync_global_devices`` and then
   ``multihost_utils.process_allgather``. They are sliced back to ``B`` and put
   on every device of the mesh: every returned leaf is a ``(B, ...)`` array
   replicated there (``NamedSharding(mesh, PartitionSpec())``), readable with
   ``np.asarray`` on every process.

Each element is computed exactly as ``jax.vmap(jaxreplica.solve)`` computes it on
one device (the same program on fewer elements). Compiled functions are cached per
(solver settings, batch size, mesh).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxreplica.chain import Chain
from jaxreplica.solution import LayerSolutions, Solution
from jaxreplica.solvers import check_method, solve, solve_layers

__all__ = [
    "batch_mesh",
    "describe_mesh",
    "parse_devices",
    "stack_chains",
    "sharded_vmap",
    "solve_batched",
    "solve_layers_batched",
]

BATCH_AXIS = "batch"
_SOLVE_KWARGS = ("tol", "max_iter", "polish_steps", "quadrature")


# --------------------------------------------------------------------------- meshes


def parse_devices(spec) -> Any:
    """A command-line ``--devices`` value: ``"all"`` stays ``"all"``, ``"4"`` becomes ``4``."""
    if spec is None or not isinstance(spec, str):
        return spec
    s = spec.strip().lower()
    if s == "all":
        return "all"
    try:
        return int(s)
    except ValueError:
        raise ValueError(f"devices must be 'all' or a positive integer (got {spec!r})") from None


def batch_mesh(devices=None, *, mesh: Mesh | None = None, axis_name: str = BATCH_AXIS) -> Mesh:
    """The 1-D mesh a batch is split over.

    Args:
      devices: ``None`` or ``"all"``: every device of every process (``jax.devices()``);
        an ``int`` ``N``: the first ``N`` of them; a list of ``jax.Device``: those.
      mesh: a ready 1-D :class:`jax.sharding.Mesh` (then ``devices`` must be ``None``);
        returned as it is.
      axis_name: name of the mesh axis when the mesh is built here.
    """
    if mesh is not None:
        if devices is not None:
            raise ValueError("give devices or mesh, not both")
        if not isinstance(mesh, Mesh):
            raise ValueError(f"mesh must be a jax.sharding.Mesh (got {type(mesh).__name__})")
        if len(mesh.axis_names) != 1:
            raise ValueError(f"mesh must be 1-D (got axes {mesh.axis_names})")
        return mesh
    devices = parse_devices(devices)
    available = jax.devices()
    if devices is None or devices == "all":
        chosen = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= int(devices) <= len(available):
            raise ValueError(f"devices must be between 1 and {len(available)}, the number of devices (got {devices})")
        chosen = list(available[: int(devices)])
    elif isinstance(devices, Sequence) and not isinstance(devices, str):
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices must not be an empty list")
        if not all(isinstance(d, jax.Device) for d in chosen):
            raise ValueError("devices: a list must hold jax.Device objects (e.g. from jax.devices())")
        if len({d.id for d in chosen}) != len(chosen):
            raise ValueError("devices: the list names a device twice")
    else:
        raise ValueError(f"devices must be None, 'all', a positive integer or a list of devices (got {devices!r})")
    return Mesh(np.array(chosen, dtype=object), (axis_name,))


def describe_mesh(mesh: Mesh) -> list[str]:
    """``["cpu:0", "cpu:1", ...]``: the devices of ``mesh`` in order (platform:id)."""
    return [f"{d.platform}:{d.id}" for d in mesh.devices.flat]


# --------------------------------------------------------------------------- batches


def stack_chains(chains: Sequence[Chain]) -> Chain:
    """One :class:`~jaxreplica.Chain` whose leaves stack those of ``chains`` on a new leading axis.

    Every chain must have the same structure (same prior, channel and ensemble kinds,
    same depth) and same-shaped leaves (e.g. spectra of the same width). Each chain is
    validated when built; the stacked one is not built through the constructor.
    """
    chains = list(chains)
    if not chains:
        raise ValueError("chains must not be empty")
    for i, c in enumerate(chains):
        if not isinstance(c, Chain):
            raise ValueError(f"chains[{i}] must be a jaxreplica.Chain (got {type(c).__name__})")
    first = jax.tree_util.tree_structure(chains[0])
    for i, c in enumerate(chains[1:], start=1):
        if jax.tree_util.tree_structure(c) != first:
            raise ValueError(f"chains[{i}] has another structure than chains[0] (layer kinds or depth differ)")
    leaves = [jax.tree_util.tree_leaves(c) for c in chains]
    stacked = []
    for j, column in enumerate(zip(*leaves)):
        arrays = [np.asarray(x, dtype=np.float64) for x in column]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"chains: leaf {j} has different shapes across chains ({sorted({a.shape for a in arrays})})")
        stacked.append(jax.numpy.asarray(np.stack(arrays)))
    return jax.tree_util.tree_unflatten(first, stacked)


def _batch_size(tree, what: str) -> int:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"{what} has no array leaves")
    sizes = set()
    for x in leaves:
        if isinstance(x, jax.core.Tracer):
            raise ValueError(f"{what}: leaves are traced; call this outside jax.jit (inside, use jax.vmap(jaxreplica.solve))")
        shape = np.shape(x)
        if len(shape) == 0:
            raise ValueError(f"{what}: every leaf needs a leading batch axis (found a scalar leaf; build the batch "
                             "with jaxreplica.batched.stack_chains)")
        sizes.add(shape[0])
    if len(sizes) != 1:
        raise ValueError(f"{what}: leaves have different leading (batch) sizes {sorted(sizes)}")
    size = sizes.pop()
    if size == 0:
        raise ValueError(f"{what}: the batch is empty")
    return size


def _pad(x: np.ndarray, total: int) -> np.ndarray:
    """``x`` with its last element repeated along axis 0 up to length ``total``."""
    extra = total - x.shape[0]
    if extra == 0:
        return x
    return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)], axis=0)


LAYOUTS = ("map", "vmap")


def default_layout(mesh: Mesh) -> str:
    """``"map"`` on CPU devices, ``"vmap"`` on accelerators.

    On CPU each device runs its elements one after the other (``lax.map``: the cost is
    the sum of their iterations; a vmapped ``while_loop`` runs every element as long as
    the slowest one). On accelerators the elements are vmapped.
    """
    return "map" if mesh.devices.flat[0].platform == "cpu" else "vmap"


@functools.lru_cache(maxsize=64)
def _compiled(fn: Callable, mesh: Mesh, layout: str):
    axis = mesh.axis_names[0]
    batch = NamedSharding(mesh, PartitionSpec(axis))
    # check_vma=False: the body has no collectives (each device solves its own slice),
    # and the solver's while_loops mix per-element and constant carries.
    per_device = (lambda xs: jax.lax.map(fn, xs)) if layout == "map" else jax.vmap(fn)
    local = jax.shard_map(per_device, mesh=mesh, in_specs=PartitionSpec(axis), out_specs=PartitionSpec(axis),
                          check_vma=False)
    return jax.jit(local, in_shardings=batch, out_shardings=batch)


def _gather(tree):
    """Host (NumPy) copies of the global arrays in ``tree``, on every process."""
    if jax.process_count() == 1:
        return jax.tree_util.tree_map(np.asarray, tree)  # shard by shard, no collective
    # This process's shards are done before the processes meet and gather.
    jax.block_until_ready(tree)
    multihost_utils.sync_global_devices("jaxreplica batched gather")
    return multihost_utils.process_allgather(tree, tiled=True)


def sharded_vmap(fn: Callable, batched, *, devices=None, mesh: Mesh | None = None, layout: str | None = None):
    """``jax.vmap(fn)(batched)`` with the leading axis of ``batched`` split over devices.

    ``batched`` is any pytree whose leaves share a leading batch axis of size ``B``
    (concrete arrays, not tracers); ``fn`` maps one element to a pytree of arrays. The
    result has leaves of shape ``(B, ...)``, in the input's order, replicated on every
    device of the mesh. ``devices``/``mesh`` as in :func:`batch_mesh`. ``layout``: how each
    device runs its elements, ``"map"`` (one after the other) or ``"vmap"``; default
    :func:`default_layout`. Both give the same values. ``fn`` should be
    a stable object (a module-level function or a cached partial) for the compiled
    function to be reused between calls.
    """
    mesh = batch_mesh(devices, mesh=mesh)
    layout = default_layout(mesh) if layout is None else layout
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'map' or 'vmap' (got {layout!r})")
    size = _batch_size(batched, "batched")
    n_dev = mesh.devices.size
    total = -(-size // n_dev) * n_dev
    leaves, treedef = jax.tree_util.tree_flatten(batched)
    axis = mesh.axis_names[0]
    sharding = NamedSharding(mesh, PartitionSpec(axis))
    # make_array_from_callback builds the global array from each process's own copy
    # of the (identical) host data: the same call works on one or several processes.
    placed = []
    for x in leaves:
        host = _pad(np.asarray(x), total)
        placed.append(jax.make_array_from_callback(host.shape, sharding, lambda idx, h=host: h[idx]))
    padded = jax.tree_util.tree_unflatten(treedef, placed)
    host = _gather(_compiled(fn, mesh, layout)(padded))
    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(
        lambda h: jax.make_array_from_callback(h[:size].shape, replicated, lambda idx, h=h[:size]: h[idx]), host)


# --------------------------------------------------------------------------- solves


def _check_kwargs(method: str, kwargs: dict):
    check_method(method)
    unknown = sorted(set(kwargs) - set(_SOLVE_KWARGS))
    if unknown:
        raise ValueError(f"unknown solve arguments {unknown} (accepted: init, {', '.join(_SOLVE_KWARGS)})")
    try:
        items = tuple(sorted(kwargs.items()))
        hash(items)
    except TypeError:
        raise ValueError("solve arguments must be hashable values (tol, max_iter, polish_steps: numbers; "
                         "quadrature: a QuadratureConfig)") from None
    return items


@functools.lru_cache(maxsize=64)
def _element_fn(kind: str, method: str, items: tuple, with_init: bool):
    solver = solve if kind == "solve" else solve_layers
    kw = dict(items)
    if with_init:
        return lambda pair: solver(pair[0], method, init=pair[1], **kw)
    return lambda chain: solver(chain, method, **kw)


def _batched(kind: str, chains, devices, mesh, layout, method, init, kwargs):
    if not isinstance(chains, Chain):
        raise ValueError(f"chains must be a jaxreplica.Chain with batched leaves (got {type(chains).__name__}); "
                         "stack a list of chains with jaxreplica.batched.stack_chains")
    items = _check_kwargs(method, kwargs)
    size = _batch_size(chains, "chains")
    if init is None:
        return sharded_vmap(_element_fn(kind, method, items, False), chains, devices=devices, mesh=mesh,
                            layout=layout)
    if _batch_size(init, "init") != size:
        raise ValueError("init must have the same batch size as chains")
    return sharded_vmap(_element_fn(kind, method, items, True), (chains, init), devices=devices, mesh=mesh,
                        layout=layout)


def solve_batched(chains: Chain, *, devices=None, mesh: Mesh | None = None, layout: str | None = None,
                  method: str = "vamp", init=None, **solve_kwargs) -> Solution:
    """:func:`jaxreplica.solve` of every chain of a batch, the batch split over devices.

    Args:
      chains: a :class:`~jaxreplica.Chain` whose leaves all have a leading batch axis
        of size ``B`` (:func:`stack_chains`, or ``jax.vmap`` of a chain-building
        function); any ``B``.
      devices: ``None``/``"all"`` (every device), an ``int`` (the first ``N``), or a
        list of ``jax.Device``; or give ``mesh``, a 1-D :class:`jax.sharding.Mesh`.
      layout: ``"map"`` or ``"vmap"`` per device (see :func:`sharded_vmap`).
      method: ``"vamp"`` (default) or ``"fixed_point"``.
      init: optional batched ``Solution.fixed_point`` (leaves ``(B, L)``) to
        warm-start from, e.g. the ``fixed_point`` of a previous ``solve_batched``.
      **solve_kwargs: ``tol``, ``max_iter``, ``polish_steps``, ``quadrature``, as in
        :func:`jaxreplica.solve` (the same for every element).

    Returns:
      A :class:`~jaxreplica.Solution` whose leaves have shape ``(B, ...)`` in the
      order of ``chains``, replicated on every device of the mesh; equal to
      ``jax.vmap(jaxreplica.solve)(chains)``.
    """
    return _batched("solve", chains, devices, mesh, layout, method, init, solve_kwargs)


def solve_layers_batched(chains: Chain, *, devices=None, mesh: Mesh | None = None, layout: str | None = None,
                         method: str = "vamp", init=None, **solve_kwargs) -> LayerSolutions:
    """:func:`jaxreplica.solve_layers` of every chain of a batch, split over devices.

    As :func:`solve_batched`; ``init`` may be a batched ``LayerSolutions.fixed_points``.
    Returns a :class:`~jaxreplica.LayerSolutions` with leaves of shape ``(B, L)``.
    """
    return _batched("layers", chains, devices, mesh, layout, method, init, solve_kwargs)
