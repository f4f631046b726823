"""The paper's Figure-2 sweep: ``H(T_1)``, ``H(T_2)`` of two wide layers against the weight scale.

Two layers of width ``n`` with ``x ~ N(0, I)``, weights ``sigma W_k`` where ``W_k`` has
i.i.d. ``N(0, 1/n)`` entries (the reference's demo draw: NumPy's legacy generator
seeded with ``seed``, two ``randn(n, n)/sqrt(n)`` matrices), noise ``noise`` before the
last activation, no noise on the hidden layer. One compiled program over ``sigma``
per activation (``lax.map`` on CPU, ``vmap`` on accelerators); with ``devices`` the sigmas are split over devices
(:func:`jaxreplica.sharding.solve_layers_batched`).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxreplica as jr

ACTIVATIONS = {"linear": jr.Linear, "relu": jr.ReLU, "hardtanh": jr.HardTanh, "leaky_relu": jr.LeakyReLU, "probit": jr.Probit}
DEFAULT_SIGMAS = tuple(np.logspace(-1, 1, 9))


def demo_spectra(width: int = 1000, seed: int = 42):
    """Eigenvalues of ``W_k^T W_k`` for the two demo matrices (the paper's draw)."""
    rng = np.random.RandomState(seed)
    mats = [rng.randn(width, width) / np.sqrt(width) for _ in range(2)]
    return [np.clip(np.linalg.eigvalsh(W.T @ W), 0.0, None) for W in mats]


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

    Returns a dict with ``sigmas`` and, per activation, arrays ``H1, H2, I1, I2``,
    ``converged`` and the wall time until that activation's solves were done (they run
    concurrently); ``compile_seconds`` is the time spent tracing and compiling (all
    activations, concurrently).

    ``devices=None`` (default) runs one compiled program per activation over the sigmas
    on the default device (``lax.map`` on CPU, ``vmap`` on accelerators). ``devices="all"``, an ``int`` or a list of ``jax.Device`` builds one chain per
    sigma (concrete spectra), stacks them and solves them with
    :func:`jaxreplica.sharding.solve_layers_batched`, the sigmas split over those
    devices (every process's, when ``jax.distributed`` is initialized); the result
    then also records ``devices`` (``"platform:id"`` in mesh order) and ``processes``.
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
    compiled = {}
    if mesh is None:
        # One program per activation (lax.map over the sigmas on CPU: a vmapped while
        # loop runs every sigma as long as the slowest one). They are traced here and
        # compiled concurrently in threads (XLA compiles without the GIL), so a 2-core
        # machine compiles two at a time.
        from concurrent.futures import ThreadPoolExecutor

        xs = jnp.asarray(sig)

        def program(name):
            def one(s):
                lay = jr.solve_layers(figure2_chain(name, eig1, eig2, s, noise), method)
                return lay.entropy, lay.mutual_information, lay.converged

            batch = jax.vmap(one) if jax.default_backend() != "cpu" else (lambda x: jax.lax.map(one, x))
            return jax.jit(batch).lower(xs)

        start = time.perf_counter()
        lowered = {name: program(name) for name in activations}
        with ThreadPoolExecutor(max_workers=len(activations)) as pool:
            futures = {name: pool.submit(low.compile) for name, low in lowered.items()}
            bar = tqdm(total=len(activations), desc="compile", disable=not progress)
            compiled = {}
            for name, f in futures.items():
                compiled[name] = f.result()
                bar.update()
            bar.close()
            out["compile_seconds"] = time.perf_counter() - start
            # The solves run concurrently too (each program is one thread of work).
            start = time.perf_counter()

            def execute(name):
                res = jax.block_until_ready(compiled[name](xs))
                return res, time.perf_counter() - start

            running = {name: pool.submit(execute, name) for name in activations}
            results = {}
            bar = tqdm(total=len(activations), desc="sweep", disable=not progress)
            for name in activations:
                bar.set_postfix_str(name)
                results[name] = running[name].result()
                bar.update()
            bar.close()
    bar = tqdm(activations, desc="sweep", disable=not progress or mesh is None)
    for name in bar:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        if mesh is None:
            (H, I, conv), seconds = results[name]
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
            "seconds": seconds if mesh is None else time.perf_counter() - start,
        }
    return out


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
