"""The paper's Figure-2 sweep: ``H(T_1)``, ``H(T_2)`` of two wide layers against the weight scale.

Two layers of width ``n`` with ``x ~ N(0, I)``, weights ``sigma W_k`` where ``W_k`` has
i.i.d. ``N(0, 1/n)`` entries (the reference's demo draw: NumPy's legacy generator
seeded with ``seed``, two ``randn(n, n)/sqrt(n)`` matrices), noise ``noise`` before the
last activation, no noise on the hidden layer. One compiled program over ``sigma``
for all activations (the activation is data), ``lax.map`` on CPU, one thread per core, ``vmap`` over sigma on accelerators; with
``devices`` the sigmas are split over devices (:func:`jaxreplica.sharding.solve_layers_batched`).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxreplica as jr

ACTIVATIONS = {"linear": jr.Linear, "relu": jr.ReLU, "hardtanh": jr.HardTanh, "leaky_relu": jr.LeakyReLU, "probit": jr.Probit}
DEFAULT_SIGMAS = tuple(np.logspace(-1, 1, 9))


def draw_weights(width: int = 1000, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """``W_1, W_2`` of shape ``(width, width)``, entries ``N(0, 1/width)``, at ``sigma = 1``
    (NumPy's legacy generator seeded with ``seed``: the paper's demo draw for 42)."""
    rng = np.random.RandomState(seed)
    return tuple(rng.randn(width, width) / np.sqrt(width) for _ in range(2))


def spectra(weights) -> list[np.ndarray]:
    """Eigenvalues of ``W^T W`` for each matrix (clipped at zero)."""
    return [np.clip(np.linalg.eigvalsh(W.T @ W), 0.0, None) for W in weights]


def demo_spectra(width: int = 1000, seed: int = 42):
    """Eigenvalues of ``W_k^T W_k`` for the two demo matrices (the paper's draw)."""
    return spectra(draw_weights(width, seed))


def figure2_chain(activation: str, eig1, eig2, sigma, noise: float = 1e-5) -> jr.Chain:
    act = ACTIVATIONS[activation]
    return jr.Chain(
        prior=jr.Normal(mean=0.0, var=1.0),
        layers=[
            (jr.Empirical(eigenvalues=eig1 * sigma**2, alpha=1.0), act(noise=0.0)),
            (jr.Empirical(eigenvalues=eig2 * sigma**2, alpha=1.0), act(noise=noise)),
        ],
    )


def run_sweep(activations=("linear", "hardtanh", "relu"), sigmas=DEFAULT_SIGMAS, width=1000, noise=1e-5, seed=42,
              method="vamp", progress=True, devices=None):
    """Replica ``H(T_1)``, ``H(T_2)`` (and ``I(X; T_l)``) for every activation and sigma.

    Returns a dict with ``sigmas`` and, per activation, lists ``H1, H2, I1, I2`` and
    ``converged`` (per sigma, one flag per layer).

    ``devices=None`` (default) solves every ``(activation, sigma, layer)`` with *one*
    compiled program (:func:`replica_curves`: the activation is data, every entropy a
    two-layer solve) on the default device: on CPU a ``lax.map`` over them (a vmapped
    while loop would run every one as long as the slowest), run in one thread per core
    on interleaved shares; on accelerators one ``vmap`` over the sigmas per activation
    and layer (same compiled program). The result records ``compile_seconds``
    (tracing and compiling), ``solve_seconds`` and ``threads``. ``devices="all"``, an
    ``int`` or a list of ``jax.Device`` builds one chain per
    sigma (concrete spectra), stacks them and solves them with
    :func:`jaxreplica.sharding.solve_layers_batched`, the sigmas split over those
    devices (every process's, when ``jax.distributed`` is initialized; one program per
    activation); the result then also records ``devices`` (``"platform:id"`` in mesh
    order), ``processes`` and each activation's ``seconds``.
    """
    from tqdm.auto import tqdm

    for name in activations:
        if name not in ACTIVATIONS:
            raise ValueError(f"activations: unknown activation {name!r} (choose from {sorted(ACTIVATIONS)})")
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.ndim != 1 or sig.size == 0 or not np.all(sig > 0):
        raise ValueError("sigmas must be a non-empty list of positive numbers")
    if not noise > 0:
        raise ValueError(f"noise must be positive (got {noise})")
    eig1, eig2 = demo_spectra(width, seed)
    out = {"sigmas": sig.tolist(), "width": width, "noise": noise, "seed": seed, "method": method, "curves": {}}
    mesh = None
    if devices is not None:
        from jaxreplica.sharding import batch_mesh, describe_mesh

        mesh = batch_mesh(devices)
        out["devices"] = describe_mesh(mesh)
        out["processes"] = jax.process_count()
    if mesh is None:
        results, out["compile_seconds"], out["solve_seconds"], out["threads"] = replica_curves(
            activations, sig, eig1, eig2, noise, method, progress)
    bar = tqdm(activations, desc="sweep", disable=not progress or mesh is None)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        if mesh is None:
            H, I, conv = results[name]
        else:
            from jaxreplica.sharding import solve_layers_batched, stack_chains

            chains = stack_chains([figure2_chain(name, eig1, eig2, float(s), noise) for s in sig])
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


def replica_curves(activations, sig, eig1, eig2, noise=1e-5, method="vamp", progress=True, vectorize=None):
    """``H(T_l)``, ``I(X; T_l)`` of the Figure-2 chain (spectra ``sigma^2 eig_k``) for
    every activation and sigma, with one compiled program (see :func:`run_sweep`).

    Every entropy is one solve of a two-layer chain, so that the program holds a single
    solver loop: ``T_2`` is the Figure-2 chain itself, and ``T_1 = phi(sigma W_1 x + xi)``
    is solved as ``x -> O x -> T_1`` with ``O`` orthogonal (all eigenvalues 1) and a
    noiseless linear first layer: ``O x`` is again ``N(0, I)``, so the entropy is the same
    (the solutions agree to round-off; ``tests/test_sweep.py`` compares with
    :func:`jaxreplica.solve_layers`). With ``method="fixed_point"``, whose theta roots
    the all-ones spectrum of ``O`` lacks, ``T_1`` is solved as its own one-layer chain
    instead. The activation is data (:class:`jaxreplica.Switched`).

    ``vectorize`` (default: on accelerators) runs one ``vmap`` over the sigmas per
    activation and layer, both then unbatched so that every ``lax.switch`` runs one
    branch; otherwise (default on CPU) a ``lax.map`` over all items, in one thread per
    core on interleaved shares.

    Returns ``({name: (H, I, converged)}, compile_seconds, solve_seconds, threads)``,
    each array of shape ``(len(sig), 2)``.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    names = list(activations) + ([] if "linear" in activations else ["linear"])
    options = tuple(ACTIVATIONS[name]() for name in names)
    linear = names.index("linear")
    # (activation, sigma, layer): layer 0 is T_1, 1 is T_2.
    items = [(a, s, l) for a in range(len(activations)) for s in sig for l in (0, 1)]
    ones = np.ones_like(eig1)

    def one(index, sigma, deep):
        s2 = sigma**2
        layer = lambda eig, i, nz: (jr.Empirical(eigenvalues=eig, alpha=1.0), jr.Switched(options=options, index=i, noise=nz))
        if method == "vamp":
            chain = jr.Chain(prior=jr.Normal(mean=0.0, var=1.0), layers=[
                layer(jnp.where(deep, eig1 * s2, ones), jnp.where(deep, index, linear), 0.0),
                layer(jnp.where(deep, eig2 * s2, eig1 * s2), index, noise)])
            sol = jr.solve(chain, method)
            return sol.entropy, sol.mutual_information, sol.converged
        # The fixed-point scheme needs the theta root of every ensemble, which the
        # all-ones spectrum of O lacks once A V > 1/4; it solves T_1's own one-layer chain
        # (a second solver loop in the program; under lax.map only one branch runs).
        chain = jr.Chain(prior=jr.Normal(mean=0.0, var=1.0), layers=[layer(eig1 * s2, index, 0.0), layer(eig2 * s2, index, noise)])
        fields = lambda sol: (sol.entropy, sol.mutual_information, sol.converged)
        return jax.lax.cond(deep, lambda: fields(jr.solve(chain, method)),
                            lambda: fields(jr.solve(chain.truncated(1, noise), method)))

    if vectorize is None:
        vectorize = jax.default_backend() != "cpu"
    if vectorize:
        threads = 1
        calls = [[i for i, it in enumerate(items) if it[0] == a and it[2] == l]
                 for a in range(len(activations)) for l in (0, 1)]
        batch = jax.vmap(one, in_axes=(None, 0, None))
        arguments = lambda call: (jnp.int32(items[call[0]][0]), jnp.asarray([items[i][1] for i in call]),
                                  jnp.int32(items[call[0]][2]))
    else:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        threads = max(1, min(cores, len(items) // 2))  # shares are whole pairs
        # XLA spreads one execution partly over the cores; two executions side by side
        # gained about 10% on 2 cores (idle 2-core x86_64). Thread t gets both layers of
        # the (activation, sigma) pairs t, t + threads, ...: a fair share of each
        # activation and layer (hardtanh's two-layer solves cost several times the rest).
        # Shares are padded to one length with a repeated item, so that one compiled
        # shape serves all.
        calls = [[i for i in range(len(items)) if (i // 2) % threads == t] for t in range(threads)]
        size = max(len(c) for c in calls)
        calls = [c + [c[-1]] * (size - len(c)) for c in calls]
        batch = lambda *xs: jax.lax.map(lambda it: one(*it), xs)
        arguments = lambda call: tuple(
            jnp.asarray([items[i][j] for i in call], dtype=dt) for j, dt in enumerate((jnp.int32, jnp.float64, jnp.int32)))
    bar = tqdm(total=1, desc="compile", disable=not progress)
    start = time.perf_counter()
    compiled = jax.jit(batch).lower(*arguments(calls[0])).compile()
    compile_seconds = time.perf_counter() - start
    bar.update()
    bar.close()
    start = time.perf_counter()
    bar = tqdm(total=len(items), desc="sweep", disable=not progress)

    def execute(call):
        res = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(compiled(*arguments(call))))
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


def plot_sweep(result, path):
    import matplotlib.pyplot as plt

    names = list(result["curves"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        c = result["curves"][name]
        ax.semilogx(result["sigmas"], c["H1"], "o-", label=r"$H(T_1)/n_0$")
        ax.semilogx(result["sigmas"], c["H2"], "s-", label=r"$H(T_2)/n_0$")
        ax.set_title(name)
        ax.set_xlabel(r"weight scale $\sigma$")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("entropy per input unit (nats)")
    axes[0][0].legend()
    fig.suptitle(f"replica entropies, width {result['width']}, noise {result['noise']:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
