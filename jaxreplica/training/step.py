"""One optimizer step and one epoch, pure and jittable.

A step is ``(params, opt_state, pstate, frozen, x, y) -> (params, opt_state, pstate,
metrics)``: ``params`` are the :class:`flax.nnx.Param` leaves of the network (the ``S``
of USV layers, the ``W`` of dense layers), ``frozen`` the rest (the ``U``, ``V`` of USV
layers), ``pstate`` the penalty's state (``None`` without a stateful penalty) and
``metrics`` a dict of scalars (``loss`` at least). The objective on a batch is::

    L(params) = mean_i loss(z_L(x_i), y_i) + penalty(params)

Nothing in a step depends on the batch size, so the batch can be split over devices
(``mesh``): each device computes the mean loss of its share, ``lax.pmean`` averages
the shares inside a ``jax.shard_map`` and the gradient of that mean updates every
replica the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import PartitionSpec

from jaxreplica.training.penalty import InformationPenalty, information_penalty, singular_values

__all__ = ["loss_function", "data_loss", "make_step", "make_epoch", "make_evaluate", "penalty_summary"]


def loss_function(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Per-sample loss of the network's logits ``z_L`` (shape ``(batch, n_L)``) against targets.

    * ``"mse"``: ``mean_j (z_j - y_j)^2`` (Keras' mean squared error; linear output);
    * ``"cross_entropy"``: ``-sum_j y_j log softmax(z)_j`` (categorical cross-entropy
      of a softmax output, computed from the logits).
    """
    if name == "mse":
        return lambda z, y: jnp.mean(jnp.square(z - y), axis=-1)
    if name == "cross_entropy":
        return lambda z, y: -jnp.sum(y * jax.nn.log_softmax(z, axis=-1), axis=-1)
    raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {name!r}")


def data_loss(graphdef, loss: str, mesh=None):
    """``(params, frozen, x, y) -> mean_i loss(z_L(x_i), y_i)``; with a 1-D ``mesh`` the
    batch is split over its devices and the shares' means are averaged (``lax.pmean``)."""
    per_sample = loss_function(loss)

    def mean_loss(params, frozen, x, y):
        model = nnx.merge(graphdef, params, frozen)
        return jnp.mean(per_sample(model.logits(x), y))

    if mesh is None:
        return mean_loss
    axis = mesh.axis_names[0]
    return jax.shard_map(lambda *a: jax.lax.pmean(mean_loss(*a), axis), mesh=mesh,
                         in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(axis), PartitionSpec(axis)),
                         out_specs=PartitionSpec())


def _tree_nonfinite(tree) -> jax.Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return sum(jnp.sum(~jnp.isfinite(x)) for x in leaves) if leaves else jnp.zeros((), jnp.int32)


def make_step(graphdef, tx: optax.GradientTransformation, loss: str, *, mesh=None, penalty=None):
    """One optimizer step (see the module doc) for ``penalty``:

    * ``None``: the data loss alone; ``metrics = {"loss"}``;
    * a function ``penalty(params) -> scalar``: added to the objective and
      differentiated with it; ``metrics = {"loss"}``;
    * an :class:`~jaxreplica.training.penalty.InformationPenalty`: ``sum_l beta_l
      I(X; T_l)/n_0`` through the replica fixed points, warm-started from ``pstate``
      (a :class:`~jaxreplica.training.penalty.PenaltyState`). The data gradient and the
      penalty gradient are computed separately and added; non-finite entries of the
      penalty gradient are zeroed and counted. ``metrics``: ``loss`` (data + penalty),
      ``task``, ``penalty``, ``mutual_information`` ``(n,)``, ``not_converged``
      (layers), ``nonfinite`` (gradient entries).
    """
    task = data_loss(graphdef, loss, mesh)

    if isinstance(penalty, InformationPenalty):
        def info_objective(params, pstate):
            return information_penalty(singular_values(params, penalty.depth), penalty, pstate)

        def info_step(params, opt_state, pstate, frozen, x, y):
            value_task, g_task = jax.value_and_grad(task)(params, frozen, x, y)
            (value, pstate), g_info = jax.value_and_grad(info_objective, has_aux=True)(params, pstate)
            nonfinite = _tree_nonfinite(g_info)
            g_info = jax.tree_util.tree_map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), g_info)
            grads = jax.tree_util.tree_map(jnp.add, g_task, g_info)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            metrics = {"loss": value_task + value, "task": value_task, "penalty": value,
                       "mutual_information": pstate.mutual_information,
                       "not_converged": pstate.not_converged, "nonfinite": nonfinite}
            return params, opt_state, pstate, metrics

        return info_step

    def objective(params, frozen, x, y):
        value = task(params, frozen, x, y)
        if penalty is not None:
            value = value + penalty(params)
        return value

    def step(params, opt_state, pstate, frozen, x, y):
        value, grads = jax.value_and_grad(objective)(params, frozen, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, pstate, {"loss": value}

    return step


def _mean_metrics(metrics, params, pstate):
    return pstate, jax.tree_util.tree_map(jnp.mean, metrics)


def make_epoch(step, batch_size: int, summarize=None):
    """Jitted epoch ``(params, opt_state, pstate, frozen, key, x, y) -> (params, opt_state,
    pstate, summary)``.

    Shuffles with ``key``, cuts ``floor(n / batch_size)`` batches (a remainder smaller
    than a batch is left out of that epoch) and scans ``step`` over them.
    ``summarize(metrics, params, pstate) -> (pstate, summary)`` reduces the per-batch
    metrics (default: their means); an information penalty also evaluates itself at
    the epoch's final parameters there (:func:`penalty_summary`).
    """
    summarize = _mean_metrics if summarize is None else summarize

    @jax.jit
    def epoch(params, opt_state, pstate, frozen, key, x, y):
        n_batches = x.shape[0] // batch_size
        perm = jax.random.permutation(key, x.shape[0])[: n_batches * batch_size].reshape(n_batches, batch_size)

        def body(carry, idx):
            p, s, st = carry
            p, s, st, m = step(p, s, st, frozen, x[idx], y[idx])
            return (p, s, st), m

        (params, opt_state, pstate), metrics = jax.lax.scan(body, (params, opt_state, pstate), perm)
        pstate, summary = summarize(metrics, params, pstate)
        return params, opt_state, pstate, summary

    return epoch


def penalty_summary(penalty: InformationPenalty):
    """The epoch summary of a penalised run (``summarize`` of
    :func:`make_epoch`): means of ``loss`` and ``task`` over
    the batches; ``penalty`` and ``mutual_information`` ``(n,)`` evaluated once more at
    the epoch's final parameters (no gradient); ``not_converged`` (every solve of the
    epoch) and ``nonfinite`` summed."""

    def reduce(metrics, params, pstate):
        value, pstate = information_penalty(singular_values(params, penalty.depth), penalty, pstate)
        summary = {"loss": jnp.mean(metrics["loss"]), "task": jnp.mean(metrics["task"]), "penalty": value,
                   "mutual_information": pstate.mutual_information,
                   "not_converged": jnp.sum(metrics["not_converged"]) + pstate.not_converged,
                   "nonfinite": jnp.sum(metrics["nonfinite"])}
        return pstate, summary

    return reduce



def make_evaluate(graphdef, loss: str, classification: bool, chunk: int = 10000):
    """``(params, frozen, x, y) -> (mean loss, accuracy)`` over a whole set, in chunks
    (accuracy NaN for regression)."""
    per_sample = loss_function(loss)

    @jax.jit
    def totals(params, frozen, x, y):
        z = nnx.merge(graphdef, params, frozen).logits(x)
        correct = jnp.sum(jnp.argmax(z, -1) == jnp.argmax(y, -1)) if classification else jnp.zeros((), jnp.int32)
        return jnp.sum(per_sample(z, y)), correct

    def evaluate(params, frozen, x, y):
        n = x.shape[0]
        loss_sum, correct = 0.0, 0
        for start in range(0, n, chunk):
            s, c = totals(params, frozen, x[start:start + chunk], y[start:start + chunk])
            loss_sum += float(s)
            correct += int(c)
        return loss_sum / n, (correct / n if classification else float("nan"))

    return evaluate
