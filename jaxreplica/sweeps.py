"""The paper's Figure-2 sweep: ``H(T_1)``, ``H(T_2)`` of two wide layers against the weight scale.

Two layers of width ``n`` with ``x ~ N(0, I)``, weights ``sigma W_k`` where ``W_k`` has
i.i.d. ``N(0, 1/n)`` entries (the reference's demo draw: NumPy's legacy generator
seeded with ``seed``, two ``randn(n, n)/sqrt(n)`` matrices), noise ``noise`` before the
last activation, no noise on the hidden layer. One compiled program over ``sigma``
for all activations (the activation is data), ``lax.map`` on CPU, one thread per core, ``vmap`` on accelerators; with
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

    ``devices=None`` (default) solves every ``(activation, sigma)`` pair with *one*
    compiled program (the activation is data: :class:`jaxreplica.Switched`) on the
    default device: on CPU a ``lax.map`` over the pairs (a vmapped while loop would run
    every pair as long as the slowest one), run in one thread per core on interleaved
    shares of them; on accelerators one ``vmap`` over all pairs (where every
    activation's branch runs for every pair). The result records ``compile_seconds``
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


def replica_curves(activations, sig, eig1, eig2, noise=1e-5, method="vamp", progress=True):
    """``H(T_l)``, ``I(X; T_l)`` of the Figure-2 chain (spectra ``sigma^2 eig_k``) for
    every activation and sigma, with one compiled program (see :func:`run_sweep`).

    Returns ``({name: (H, I, converged)}, compile_seconds, solve_seconds, threads)``,
    each array of shape ``(len(sig), 2)``.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    options = tuple(ACTIVATIONS[name]() for name in activations)
    pairs = [(a, s) for a in range(len(activations)) for s in sig]
    on_cpu = jax.default_backend() == "cpu"
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    threads = max(1, min(cores, len(pairs))) if on_cpu else 1
    # XLA spreads one execution partly over the cores (one share of the Figure-2 sweep:
    # 3.7 s on one core, 2.8 s on two); two executions side by side gain about 10% more
    # (4.9 s instead of 5.5 s for both shares; idle 2-core x86_64). Thread t gets pairs t, t + threads, ...: a fair
    # share of each activation (hardtanh's solves cost several times ReLU's). Shares are
    # padded to one length with a repeated pair, so that one compiled shape serves all.
    shares = [list(range(t, len(pairs), threads)) for t in range(threads)]
    size = max(len(sh) for sh in shares)
    shares = [sh + [sh[-1]] * (size - len(sh)) for sh in shares]

    def one(item):
        index, sigma = item

        def layer(eig, nz):
            return (jr.Empirical(eigenvalues=eig * sigma**2, alpha=1.0), jr.Switched(options=options, index=index, noise=nz))

        chain = jr.Chain(prior=jr.Normal(mean=0.0, var=1.0), layers=[layer(eig1, 0.0), layer(eig2, noise)])
        lay = jr.solve_layers(chain, method)
        return lay.entropy, lay.mutual_information, lay.converged

    batch = (lambda xs: jax.lax.map(one, xs)) if on_cpu else jax.vmap(one)
    as_items = lambda share: (jnp.asarray([pairs[i][0] for i in share], dtype=jnp.int32),
                              jnp.asarray([pairs[i][1] for i in share], dtype=jnp.float64))
    bar = tqdm(total=1, desc="compile", disable=not progress)
    start = time.perf_counter()
    compiled = jax.jit(batch).lower(as_items(shares[0])).compile()
    compile_seconds = time.perf_counter() - start
    bar.update()
    bar.close()
    start = time.perf_counter()
    bar = tqdm(total=len(pairs), desc="sweep", disable=not progress)

    def execute(share):
        res = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(compiled(as_items(share))))
        bar.update(len(set(share)))
        return res

    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(execute, shares))
    bar.close()
    solve_seconds = time.perf_counter() - start
    H = np.zeros((len(pairs), 2))
    I = np.zeros((len(pairs), 2))
    conv = np.zeros((len(pairs), 2), dtype=bool)
    for share, (h, i, c) in zip(shares, parts):
        H[share], I[share], conv[share] = h, i, c
    n = len(sig)
    results = {name: (H[a * n:(a + 1) * n], I[a * n:(a + 1) * n], conv[a * n:(a + 1) * n])
               for a, name in enumerate(activations)}
    return results, compile_seconds, solve_seconds, threads


def plot_sweep(result, path):
    import matplotlib

    matplotlib.use("Agg", force=False)
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
