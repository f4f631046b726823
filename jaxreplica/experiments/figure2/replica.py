"""Figure 2's replica curves: ``H(T_1)``, ``H(T_2)`` of two wide layers against the weight scale.

Two layers of width ``n`` with ``x ~ N(0, I)``, weights ``sigma W_k`` where ``W_k`` has
i.i.d. ``N(0, 1/n)`` entries, noise ``noise`` before the last activation, no noise on
the hidden layer. The weights are the reference's demo draw: NumPy's legacy generator
seeded with ``weight_seed`` (42 in the paper), two ``randn(n, n)/sqrt(n)`` matrices.
That generator defines the published numbers, which is why it, and not ``jax.random``,
draws them. One compiled program covers every sigma and activation (the activation is
data); with ``devices`` the sigmas are split over devices
(:func:`jaxreplica.batched.solve_layers_batched`).
"""

from __future__ import annotations

import functools
import os
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxreplica._programs import compiled as keyed_program
from jaxreplica.activations import ACTIVATIONS, channel, check_position, has_channel
from jaxreplica.batched import batch_mesh, describe_mesh, solve_layers_batched, stack_chains
from jaxreplica.chain import Chain, SpectralLayer, chain_from_spectra
from jaxreplica.channels import Switched
from jaxreplica.priors import Normal
from jaxreplica.solvers import solve

__all__ = ["DEFAULT_SIGMAS", "demo_spectra", "draw_weights", "figure2_chain", "replica_curves", "run_sweep",
           "spectra"]

DEFAULT_SIGMAS = tuple(np.logspace(-1, 1, 9))


def draw_weights(width: int = 1000, weight_seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """``W_1, W_2`` of shape ``(width, width)``, entries ``N(0, 1/width)``, at ``sigma = 1``
    (NumPy's legacy generator seeded with ``weight_seed``: the paper's demo draw for 42)."""
    rng = np.random.RandomState(weight_seed)
    return tuple(rng.randn(width, width) / np.sqrt(width) for _ in range(2))


def spectra(weights) -> list[np.ndarray]:
    """Eigenvalues of ``W^T W`` for each matrix (clipped at zero)."""
    return [np.clip(np.linalg.eigvalsh(W.T @ W), 0.0, None) for W in weights]


def demo_spectra(width: int = 1000, weight_seed: int = 42):
    """Eigenvalues of ``W_k^T W_k`` for the two demo matrices (the paper's draw)."""
    return spectra(draw_weights(width, weight_seed))


def figure2_chain(activation, eig1, eig2, sigma, noise: float = 1e-5, hidden_noise=0.0,
                  noise_position: str = "before") -> Chain:
    """The two-layer chain with spectra ``sigma^2 eig_k``, ``noise`` at the last layer and
    ``hidden_noise`` (default none) at the first, both entering at ``noise_position``
    (``"before"`` the activation, ``"after"``, ``"both"``); ``activation`` is a name or a
    channel such as ``Switched``."""
    s2 = sigma**2
    return chain_from_spectra(Normal(mean=0.0, var=1.0),
                              [SpectralLayer(eig1 * s2, 1.0, activation), SpectralLayer(eig2 * s2, 1.0, activation)],
                              hidden_noise=hidden_noise, last_noise=noise, noise_position=noise_position)


def _check_activations(activations):
    for name in activations:
        try:
            known = has_channel(name)
        except ValueError:
            known = False
        if not known:
            raise ValueError(f"activations: unknown activation {name!r} (choose one with a replica channel: "
                             f"{', '.join(n for n in ACTIVATIONS if has_channel(n))})")


def run_sweep(activations=("linear", "hardtanh", "relu"), sigmas=DEFAULT_SIGMAS, width=1000, noise=1e-5,
              weight_seed=42, method="vamp", progress=True, devices=None, hidden_noise=0.0,
              noise_position="before"):
    """Replica ``H(T_1)``, ``H(T_2)`` (and ``I(X; T_l)``) for every activation and sigma.

    ``noise`` is the measured layer's noise variance, ``hidden_noise`` the first layer's
    when ``T_2`` is measured (default 0, the paper's setting), both entering at
    ``noise_position`` (``"before"`` the activation, ``"after"`` or ``"both"``).

    Returns a dict with ``sigmas`` and, per activation, lists ``H1, H2, I1, I2`` and
    ``converged`` (per sigma, one flag per layer).

    ``devices=None`` (default) solves every ``(activation, sigma, layer)`` with *one*
    compiled program (:func:`replica_curves`: the activation is data, every entropy a
    two-layer solve) on the default device: on CPU one call per (activation, sigma)
    pair, a ``lax.map`` over its two layers (a vmapped while loop would run every one
    as long as the slowest), the calls taken by one thread per core as each finishes;
    on accelerators one ``vmap`` over the sigmas per activation and layer (same
    compiled program). The result records ``compile_seconds``
    (tracing and compiling), ``solve_seconds`` and ``threads``. ``devices="all"``, an
    ``int`` or a list of ``jax.Device`` builds one chain per
    sigma (concrete spectra), stacks them and solves them with
    :func:`jaxreplica.batched.solve_layers_batched`, the sigmas split over those
    devices (every process's, when ``jax.distributed`` is initialized; one program per
    activation); the result then also records ``devices`` (``"platform:id"`` in mesh
    order), ``processes`` and each activation's ``seconds``.
    """
    _check_activations(activations)
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.ndim != 1 or sig.size == 0 or not np.all(sig > 0):
        raise ValueError("sigmas must be a non-empty list of positive numbers")
    if not noise > 0:
        raise ValueError(f"noise must be positive (got {noise})")
    if not hidden_noise >= 0:
        raise ValueError(f"hidden_noise must be non-negative (got {hidden_noise})")
    check_position(noise_position)
    eig1, eig2 = demo_spectra(width, weight_seed)
    out = {"sigmas": sig.tolist(), "width": width, "noise": noise, "seed": weight_seed, "method": method, "curves": {}}
    if hidden_noise or noise_position != "before":
        out.update(hidden_noise=hidden_noise, noise_position=noise_position)
    mesh = None
    if devices is not None:
        mesh = batch_mesh(devices)
        out["devices"] = describe_mesh(mesh)
        out["processes"] = jax.process_count()
    if mesh is None:
        results, out["compile_seconds"], out["solve_seconds"], out["threads"] = replica_curves(
            activations, sig, eig1, eig2, noise, method, progress, hidden_noise=hidden_noise,
            noise_position=noise_position)
    bar = tqdm(activations, desc="sweep", disable=not progress or mesh is None)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        if mesh is None:
            H, I, conv = results[name]
        else:
            chains = stack_chains([figure2_chain(name, eig1, eig2, float(s), noise, hidden_noise, noise_position)
                                   for s in sig])
            lay = solve_layers_batched(chains, mesh=mesh, method=method)
            H, I, conv = lay.entropy, lay.mutual_information, lay.converged
        H = np.asarray(jax.block_until_ready(H))
        out["curves"][name] = {
            "H1": H[:, 0].tolist(), "H2": H[:, 1].tolist(),
            "I1": np.asarray(I)[:, 0].tolist(), "I2": np.asarray(I)[:, 1].tolist(),
            "converged": np.asarray(conv).tolist(),
        }
        if mesh is not None:
            out["curves"][name]["seconds"] = time.perf_counter() - start
    return out


def _point(eig1, eig2, index, sigma, deep, *, options, linear, noise, hidden_noise, method, noise_position):
    """``(H, I, converged)`` of one item of :func:`replica_curves`: activation ``index``
    of ``options``, weight scale ``sigma``, ``T_2`` where ``deep`` else ``T_1``."""
    s2 = sigma**2
    switched = lambda i: Switched(options=options, index=i)  # noqa: E731
    # T_1's chain has the noiseless orthogonal layer first (a known zero keeps the
    # conditional chain out of the program when no layer of T_2 is noisy either).
    first_noise = jnp.where(deep, hidden_noise, 0.0) if hidden_noise else 0.0
    if method == "vamp":
        chain = chain_from_spectra(Normal(mean=0.0, var=1.0), [
            SpectralLayer(jnp.where(deep, eig1 * s2, jnp.ones_like(eig1)), 1.0, switched(jnp.where(deep, index, linear))),
            SpectralLayer(jnp.where(deep, eig2 * s2, eig1 * s2), 1.0, switched(index))],
            hidden_noise=first_noise, last_noise=noise, noise_position=noise_position)
        sol = solve(chain, method)
        return sol.entropy, sol.mutual_information, sol.converged
    # The fixed-point scheme needs the theta root of every ensemble, which the
    # all-ones spectrum of O lacks once A V > 1/4; it solves T_1's own one-layer chain
    # (a second solver loop in the program; under lax.map only one branch runs).
    chain = figure2_chain(switched(index), eig1, eig2, sigma, noise, hidden_noise, noise_position)
    shallow = chain_from_spectra(Normal(mean=0.0, var=1.0), [SpectralLayer(eig1 * s2, 1.0, switched(index))],
                                 last_noise=noise, noise_position=noise_position)
    fields = lambda sol: (sol.entropy, sol.mutual_information, sol.converged)  # noqa: E731
    return jax.lax.cond(deep, lambda: fields(solve(chain, method)), lambda: fields(solve(shallow, method)))


def _points(eig1, eig2, index, sigma, deep, *, vectorize, **statics):
    """:func:`_point` over a call's items: a ``vmap`` over the sigmas (one activation and
    layer) with ``vectorize``, else a ``lax.map`` over ``(index, sigma, deep)`` triples."""
    one = lambda i, s, d: _point(eig1, eig2, i, s, d, **statics)  # noqa: E731
    if vectorize:
        return jax.vmap(one, in_axes=(None, 0, None))(index, sigma, deep)
    return jax.lax.map(lambda it: one(*it), (index, sigma, deep))


def replica_curves(activations, sig, eig1, eig2, noise=1e-5, method="vamp", progress=True, vectorize=None, *,
                   hidden_noise=0.0, noise_position="before"):
    """``H(T_l)``, ``I(X; T_l)`` of the Figure-2 chain (spectra ``sigma^2 eig_k``) for
    every activation and sigma, with one compiled program (see :func:`run_sweep`).

    Every entropy is one solve of a two-layer chain, so that the program holds a single
    solver loop: ``T_2`` is the Figure-2 chain itself, and ``T_1 = phi(sigma W_1 x + xi)``
    is solved as ``x -> O x -> T_1`` with ``O`` orthogonal (all eigenvalues 1) and a
    noiseless linear first layer: ``O x`` is again ``N(0, I)``, so the entropy is the same
    (the solutions agree to round-off; the test suite compares with
    :func:`jaxreplica.solve_layers`). With ``method="fixed_point"``, whose theta roots
    the all-ones spectrum of ``O`` lacks, ``T_1`` is solved as its own one-layer chain
    instead. The activation is data (:class:`jaxreplica.Switched`). ``hidden_noise``
    and ``noise_position`` as in :func:`run_sweep` (a noisy first layer of ``T_2`` makes
    the program solve its conditional chain too).

    ``vectorize`` (default: on accelerators) runs one ``vmap`` over the sigmas per
    activation and layer, both then unbatched so that every ``lax.switch`` runs one
    branch; otherwise (default on CPU) one call per (activation, sigma) pair, a
    ``lax.map`` over its two layers, the calls taken by one thread per core as each
    finishes.

    Returns ``({name: (H, I, converged)}, compile_seconds, solve_seconds, threads)``,
    each array of shape ``(len(sig), 2)``.
    """
    names = list(activations) + ([] if "linear" in activations else ["linear"])
    options = tuple(channel(name) for name in names)
    linear = names.index("linear")
    # (activation, sigma, layer): layer 0 is T_1, 1 is T_2.
    items = [(a, s, l) for a in range(len(activations)) for s in sig for l in (0, 1)]

    if vectorize is None:
        vectorize = jax.default_backend() != "cpu"
    if vectorize:
        threads = 1
        calls = [[i for i, it in enumerate(items) if it[0] == a and it[2] == l]
                 for a in range(len(activations)) for l in (0, 1)]
        arguments = lambda call: (jnp.int32(items[call[0]][0]), jnp.asarray([items[i][1] for i in call]),
                                  jnp.int32(items[call[0]][2]))
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        threads = max(1, min(cores, len(items) // 2))
        # XLA spreads one execution partly over the cores; two executions side by side
        # gained about 10% on 2 cores (idle 2-core x86_64). One call per (activation,
        # sigma) pair, both layers (one compiled shape for all); the threads take the
        # next pair as each finishes, so that the work evens out whatever the pairs cost
        # (hardtanh's and tanh's two-layer solves cost several times the rest).
        calls = [[i, i + 1] for i in range(0, len(items), 2)]
        arguments = lambda call: tuple(
            jnp.asarray([items[i][j] for i in call], dtype=dt) for j, dt in enumerate((jnp.int32, jnp.float64, jnp.int32)))
    bar = tqdm(total=1, desc="compile", disable=not progress)
    start = time.perf_counter()
    statics = dict(options=options, linear=linear, noise=noise, hidden_noise=hidden_noise, method=method,
                   noise_position=noise_position, vectorize=bool(vectorize))
    first = (eig1, eig2) + arguments(calls[0])
    # The program from the store keyed before tracing (a later run neither traces nor
    # lowers it), else jit's.
    compiled = (keyed_program(_points, first, statics)
                or jax.jit(functools.partial(_points, **statics)).lower(*first).compile())
    compile_seconds = time.perf_counter() - start
    bar.update()
    bar.close()
    start = time.perf_counter()
    bar = tqdm(total=len(items), desc="sweep", disable=not progress)

    def execute(call):
        res = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(compiled(eig1, eig2, *arguments(call))))
        bar.update(len(set(call)))
        return res

    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(execute, calls))
    bar.close()
    solve_seconds = time.perf_counter() - start
    H, I, conv = np.zeros(len(items)), np.zeros(len(items)), np.zeros(len(items), dtype=bool)
    for call, (h, i, c) in zip(calls, parts):
        H[call], I[call], conv[call] = h, i, c
    shape = (len(activations), len(sig), 2)
    H, I, conv = H.reshape(shape), I.reshape(shape), conv.reshape(shape)
    results = {name: (H[a], I[a], conv[a]) for a, name in enumerate(activations)}
    return results, compile_seconds, solve_seconds, threads

