"""The paper's Figure 2: entropies of two wide layers against the weight scale.

:mod:`~jaxreplica.experiments.figure2.replica` computes the replica curves (the
program of ``jaxreplica sweep``); :mod:`~jaxreplica.experiments.figure2.compare` sets
them against exact values and sample-based estimators (``jaxreplica figure2``).
"""

from jaxreplica.experiments.figure2.compare import (ACTIVATIONS, compute_figure2, exact_linear_rotated,
                                                    haar_rotations, linear_gap_summary, to_json)
from jaxreplica.experiments.figure2.replica import (DEFAULT_SIGMAS, demo_spectra, draw_weights, figure2_chain,
                                                    replica_curves, run_sweep, spectra)

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_SIGMAS",
    "compute_figure2",
    "demo_spectra",
    "draw_weights",
    "exact_linear_rotated",
    "figure2_chain",
    "haar_rotations",
    "linear_gap_summary",
    "replica_curves",
    "run_sweep",
    "spectra",
    "to_json",
]
