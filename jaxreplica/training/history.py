"""What a training run records: :class:`History`, its files, and the penalty's log."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from jaxreplica._struct import pytree
from jaxreplica.training.penalty import InformationPenalty, PenaltyState, singular_values

__all__ = ["History", "PenaltyLog"]


_ARRAYS = ("epoch", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "batch_loss", "epoch_seconds",
           "tracked_epoch", "entropy", "mutual_information", "converged", "iterations", "tracking_seconds",
           "exact_entropy", "exact_mutual_information",
           "penalty", "penalty_information", "penalty_not_converged", "penalty_nonfinite")


@pytree
class History:
    """Everything recorded during :func:`jaxreplica.training.train`.

    Per epoch ``e = 0..E`` (0: before training): ``epoch``, ``train_loss``,
    ``test_loss``, ``train_accuracy``, ``test_accuracy`` (classification only, else
    ``None``), ``batch_loss`` (mean over the epoch's batches; NaN at 0),
    ``epoch_seconds``. Per tracked epoch (``tracked_epoch``, ``T`` of them) and
    layer (``m``): ``entropy`` and ``mutual_information`` (``(T, m)``, per ``n_0``,
    nats), ``converged``, ``iterations``, ``tracking_seconds`` (``(T,)``),
    ``exact_entropy`` / ``exact_mutual_information`` when available, ``spectra``
    (list over layers of ``(T, n_{l-1})`` eigenvalues of ``W_l^T W_l``),
    ``generative_spectra``; ``failures`` lists ``(epoch, layer, reason)`` of tracking
    entries recorded as NaN; ``config`` is the JSON configuration.

    With an information penalty (``train(..., info_penalty={l: beta})``), per epoch
    ``e = 0..E`` (the network after epoch ``e``): ``penalty`` (``sum_l beta_l I(X; T_l)/n_0``),
    ``penalty_information`` ``(E + 1, n)`` (``I(X; T_l)/n_0`` of the penalised layers,
    ascending), ``penalty_not_converged`` (penalty solves that did not converge in the
    epoch; they contributed no gradient) and ``penalty_nonfinite`` (non-finite
    penalty-gradient entries zeroed); ``batch_loss`` then includes the penalty;
    ``config["training"]["info_penalty"]`` has the settings.
    """

    epoch: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    train_accuracy: np.ndarray | None = None
    test_accuracy: np.ndarray | None = None
    batch_loss: np.ndarray | None = None
    epoch_seconds: np.ndarray | None = None
    tracked_epoch: np.ndarray | None = None
    entropy: np.ndarray | None = None
    mutual_information: np.ndarray | None = None
    converged: np.ndarray | None = None
    iterations: np.ndarray | None = None
    tracking_seconds: np.ndarray | None = None
    exact_entropy: np.ndarray | None = None
    exact_mutual_information: np.ndarray | None = None
    penalty: np.ndarray | None = None
    penalty_information: np.ndarray | None = None
    penalty_not_converged: np.ndarray | None = None
    penalty_nonfinite: np.ndarray | None = None
    spectra: list[np.ndarray] = dataclasses.field(default_factory=list)
    generative_spectra: list[np.ndarray] = dataclasses.field(default_factory=list)
    failures: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)
    config: dict = dataclasses.field(default_factory=dict)

    _static = ("failures", "config")

    def __post_init__(self):
        # static parts are hashable, so that a History passes through jax.jit
        object.__setattr__(self, "failures", tuple(tuple(f) for f in self.failures))
        object.__setattr__(self, "config", _Config(self.config))

    @property
    def diverged_at_epoch(self) -> int | None:
        """The epoch whose loss was not finite, where training stopped (``None``: it ran to the end)."""
        return self.config.get("training", {}).get("diverged_at_epoch")

    @property
    def n_tracked_layers(self) -> int:
        return 0 if self.entropy is None else int(self.entropy.shape[1])

    # ---- saving and loading

    def save(self, directory: str | pathlib.Path) -> pathlib.Path:
        """Write ``directory/history.npz`` and ``directory/config.json``; returns the npz path."""
        directory = pathlib.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {name: np.asarray(getattr(self, name)) for name in _ARRAYS if getattr(self, name) is not None}
        for l, s in enumerate(self.spectra, start=1):
            arrays[f"spectrum_{l}"] = np.asarray(s)
        for k, s in enumerate(self.generative_spectra, start=1):
            arrays[f"generative_spectrum_{k}"] = np.asarray(s)
        arrays["failure_epoch"] = np.asarray([f[0] for f in self.failures], np.int64)
        arrays["failure_layer"] = np.asarray([f[1] for f in self.failures], np.int64)
        arrays["failure_reason"] = np.asarray([f[2] for f in self.failures], dtype=np.str_)
        path = directory / "history.npz"
        np.savez(path, **arrays)
        (directory / "config.json").write_text(json.dumps(self.config, indent=2, sort_keys=True, default=json_default))
        return path

    @classmethod
    def load(cls, path: str | pathlib.Path) -> History:
        """Load from a directory (``history.npz`` + ``config.json``) or from the npz path itself."""
        path = pathlib.Path(path)
        npz = path / "history.npz" if path.is_dir() else path
        cfg_path = npz.parent / "config.json"
        config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        with np.load(npz, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
        kwargs = {name: data.get(name) for name in _ARRAYS}
        spectra = []
        while f"spectrum_{len(spectra) + 1}" in data:
            spectra.append(data[f"spectrum_{len(spectra) + 1}"])
        gen = []
        while f"generative_spectrum_{len(gen) + 1}" in data:
            gen.append(data[f"generative_spectrum_{len(gen) + 1}"])
        failures = [(int(e), int(l), str(r)) for e, l, r in
                    zip(data.get("failure_epoch", []), data.get("failure_layer", []), data.get("failure_reason", []))]
        return cls(**kwargs, spectra=spectra, generative_spectra=gen, failures=failures, config=config)

    def squared_error(self) -> np.ndarray:
        """``(replica - exact)^2`` of ``I(X; T_l)``, shape ``(T, m)`` (needs exact values)."""
        if self.exact_mutual_information is None:
            raise ValueError("history: no exact values were recorded")
        return (self.mutual_information - self.exact_mutual_information) ** 2


class _Config(dict):
    """A JSON configuration that can be hashed (by its JSON text)."""

    def __hash__(self):
        return hash(json.dumps(self, sort_keys=True, default=json_default))


def json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


class PenaltyLog:
    """The per-epoch record of a penalised run, row ``e`` for the network after epoch ``e``
    (row 0: the initial network, from cold solves): ``penalty``, ``penalty_information``
    ``(E + 1, n)`` (``I(X; T_l)/n_0`` of the penalised layers, the last converged value
    where a solve failed; NaN if none yet), ``penalty_not_converged`` (layer solves that
    did not converge during the epoch) and ``penalty_nonfinite`` (non-finite
    penalty-gradient entries zeroed during the epoch)."""

    def __init__(self, penalty: InformationPenalty):
        self.penalty = penalty
        self.rows = {"penalty": [], "penalty_information": [], "penalty_not_converged": [], "penalty_nonfinite": []}

    def start(self, params) -> PenaltyState:
        """Cold solves at the initial network (row 0); returns the first warm starts."""
        value, state = self.penalty.initial(singular_values(params, self.penalty.depth))
        self._append(value, state.mutual_information, state.not_converged, 0)
        return state

    def add(self, summary) -> None:
        self._append(summary["penalty"], summary["mutual_information"], summary["not_converged"],
                     summary["nonfinite"])

    def _append(self, value, mi, not_converged, nonfinite):
        self.rows["penalty"].append(float(value))
        self.rows["penalty_information"].append(np.asarray(mi, np.float64))
        self.rows["penalty_not_converged"].append(int(not_converged))
        self.rows["penalty_nonfinite"].append(int(nonfinite))

    def arrays(self) -> dict[str, np.ndarray]:
        n = len(self.penalty.betas)
        return {"penalty": np.asarray(self.rows["penalty"], np.float64),
                "penalty_information": np.asarray(self.rows["penalty_information"], np.float64).reshape(-1, n),
                "penalty_not_converged": np.asarray(self.rows["penalty_not_converged"], np.int64),
                "penalty_nonfinite": np.asarray(self.rows["penalty_nonfinite"], np.int64)}
