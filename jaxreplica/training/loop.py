"""The training loop: :func:`train` a network with optax and track its information, and
:func:`recompute` a tracked trajectory afterwards."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxreplica._struct import pytree
from jaxreplica.batched import batch_mesh, describe_mesh
from jaxreplica.chain import SpectralLayer
from jaxreplica.data import prior_from_description
from jaxreplica.quadrature import DEFAULT, QuadratureConfig
from jaxreplica.training.history import History, PenaltyLog, json_default
from jaxreplica.training.penalty import InformationPenalty
from jaxreplica.training.step import loss_function, make_epoch, make_evaluate, make_step, penalty_summary
from jaxreplica.training.tracking import (Tracker, Tracking, check_track_layers, default_track_layers,
                                          exact_available, exact_linear_information)

__all__ = ["TrainConfig", "train", "recompute", "default_batch_size"]


@pytree
class TrainConfig:
    """How to fit: the original experiments' defaults (plain SGD at a constant learning
    rate 0.01; batch 50 for regression, 100 for classification; mean squared error or
    categorical cross-entropy by task).

    * ``epochs``; ``learning_rate`` of the default ``optax.sgd``, or any ``optimizer``
      (an optax transformation);
    * ``batch_size``, ``loss`` (``"mse"`` or ``"cross_entropy"``): ``None`` picks by task;
    * ``devices``: ``None`` trains on the default device; ``"all"``, a count ``N`` or a
      list of ``jax.Device`` splits every batch over those devices (data parallelism;
      ``batch_size`` must be a multiple of their number). Evaluation and the tracking
      solves stay on one device.
    """

    epochs: int = 100
    learning_rate: float = 0.01
    optimizer: Any = None
    batch_size: int | None = None
    loss: str | None = None
    devices: Any = None

    _static = ("epochs", "learning_rate", "optimizer", "batch_size", "loss", "devices")

    def __post_init__(self):
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {self.epochs!r}")
        if self.optimizer is None and not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}")
        if self.loss is not None:
            loss_function(self.loss)
        if isinstance(self.devices, list):
            object.__setattr__(self, "devices", tuple(self.devices))


class _DataParallel:
    """Where a data-parallel run keeps its arrays: replicated on ``mesh`` for the
    epochs, copied to one device for evaluation and tracking (which stay there)."""

    def __init__(self, devices, batch_size: int):
        self.mesh = batch_mesh(list(devices) if isinstance(devices, tuple) else devices)
        self.n = int(self.mesh.devices.size)
        if batch_size % self.n:
            raise ValueError(f"batch_size {batch_size} must be a multiple of the number of devices ({self.n}) "
                             "for data-parallel training")
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.home = self.mesh.devices.flat[0]
        self.names = describe_mesh(self.mesh)

    def replicate(self, tree):
        return jax.device_put(tree, self.replicated)

    def local(self, tree):
        return jax.device_put(tree, self.home)


def _infer_loss(network, data, loss: str | None) -> str:
    if loss is None:
        loss = "cross_entropy" if data.task == "classification" else "mse"
    if loss == "cross_entropy" and network.activations[-1] != "softmax":
        raise ValueError("loss: cross_entropy needs a softmax output layer")
    if loss == "mse" and network.activations[-1] == "softmax":
        raise ValueError("loss: mse with a softmax output is not supported; use cross_entropy")
    return loss


def _check_penalty(penalty, dp):
    if penalty is None or isinstance(penalty, InformationPenalty):
        if penalty is not None and dp is not None:
            raise ValueError("penalty: data-parallel training with an information penalty is not supported yet")
        return
    if not callable(penalty):
        raise ValueError(f"penalty must be a function of the parameters or an InformationPenalty, got {penalty!r}")


class _Recorder:
    """Evaluation and tracking rows of a run, turned into a :class:`History` at the end."""

    def __init__(self, network, data, tracker, m: int, exact: bool, tracking: Tracking):
        self.network, self.data, self.tracker, self.m, self.exact, self.tracking = (
            network, data, tracker, m, exact, tracking)
        self.rows = {k: [] for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "batch_loss",
                                     "epoch_seconds", "tracked_epoch", "entropy", "mutual_information", "converged",
                                     "iterations", "tracking_seconds", "exact_entropy", "exact_mutual_information")}
        self.spectra = [[] for _ in range(m)]
        self.failures: list[tuple[int, int, str]] = []

    def evaluation(self, evaluate, params, frozen, batch_loss, seconds):
        tl, ta = evaluate(params, frozen, self.data.x_train, self.data.y_train)
        vl, va = evaluate(params, frozen, self.data.x_test, self.data.y_test)
        for k, v in zip(("train_loss", "test_loss", "train_accuracy", "test_accuracy", "batch_loss", "epoch_seconds"),
                        (tl, vl, ta, va, batch_loss, seconds)):
            self.rows[k].append(v)

    def tracking_step(self, epoch: int):
        m, rec = self.m, self.rows
        t0 = time.perf_counter()
        spectra = [np.asarray(s, np.float64) for s in self.network.spectra(range(1, m + 1))]
        h, mi, conv, iters, fails = self.tracker.step(spectra)
        rec["tracking_seconds"].append(time.perf_counter() - t0)
        for k, v in zip(("tracked_epoch", "entropy", "mutual_information", "converged", "iterations"),
                        (epoch, h, mi, conv, iters)):
            rec[k].append(v)
        self.failures.extend((epoch, l, why) for l, why in fails)
        for l in range(m):
            self.spectra[l].append(spectra[l])
        if self.exact:
            ws = [np.asarray(w, np.float64) for w in self.network.matrices()[:m]]
            gen = [(np.asarray(g.weight, np.float64), g.noise) for g in self.data.generative]
            eh, emi = exact_linear_information(float(self.data.prior.var), gen, ws,
                                               hidden_noise=self.tracking.hidden_noise,
                                               last_noise=self.tracking.last_noise,
                                               noise_position=self.tracking.noise_position)
            rec["exact_entropy"].append(eh)
            rec["exact_mutual_information"].append(emi)

    def history(self, epochs: int, classification: bool, penalty_log, config: dict) -> History:
        rec, m = self.rows, self.m
        arr = lambda k: np.asarray(rec[k], dtype=np.float64)  # noqa: E731
        fields = dict(epoch=np.arange(epochs + 1), train_loss=arr("train_loss"), test_loss=arr("test_loss"),
                      train_accuracy=arr("train_accuracy") if classification else None,
                      test_accuracy=arr("test_accuracy") if classification else None,
                      batch_loss=arr("batch_loss"), epoch_seconds=arr("epoch_seconds"))
        if penalty_log is not None:
            fields.update(penalty_log.arrays())
        if self.tracker is not None:
            fields.update(tracked_epoch=np.asarray(rec["tracked_epoch"], np.int64),
                          entropy=np.asarray(rec["entropy"]).reshape(-1, m),
                          mutual_information=np.asarray(rec["mutual_information"]).reshape(-1, m),
                          converged=np.asarray(rec["converged"], bool).reshape(-1, m),
                          iterations=np.asarray(rec["iterations"], np.int64).reshape(-1, m),
                          tracking_seconds=arr("tracking_seconds"),
                          spectra=[np.stack(s) for s in self.spectra],
                          generative_spectra=[np.asarray(g.spectrum()) for g in self.data.generative])
            if self.exact:
                fields.update(exact_entropy=np.asarray(rec["exact_entropy"]).reshape(-1, m),
                              exact_mutual_information=np.asarray(rec["exact_mutual_information"]).reshape(-1, m))
        return History(**fields, failures=self.failures, config=config)


def _key_data(key) -> list:
    """The numbers of a ``jax.random`` key (typed or raw), for the saved configuration."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key).tolist()


def _tracker(network, data, tracking: Tracking):
    """``(tracker, m, exact)`` of a run (``(None, 0, False)`` with tracking off)."""
    if tracking.every == 0:
        return None, 0, False
    m = default_track_layers(network) if tracking.layers is None else tracking.layers
    if m == 0:
        raise ValueError("tracking: the network's first layer is not a USV layer; nothing to track")
    m = check_track_layers(network, m)
    gen = [SpectralLayer(g.spectrum(), g.alpha, g.activation, g.noise) for g in data.generative]
    tracker = Tracker(data.prior, gen, network.alphas[:m], network.activations[:m], tracking)
    exact = exact_available(data, network, m) if tracking.exact is None else bool(tracking.exact)
    if exact and not exact_available(data, network, m):
        raise ValueError("tracking.exact: exact values need a Normal prior and linear layers")
    return tracker, m, exact



def default_batch_size(data) -> int:
    """The batch size ``train`` uses when ``TrainConfig.batch_size`` is None: 100 for
    classification, 50 for regression."""
    return 100 if data.task == "classification" else 50

def train(network, data, key: jax.Array, config: TrainConfig | None = None, *, tracking: Tracking | None = None,
          penalty=None, progress: bool = True, metadata: dict | None = None):
    """Train ``network`` on ``data`` and track ``H(T_l)``, ``I(X; T_l)`` of its first layers.

    Args:
      network: a :class:`jaxreplica.nn.Network`, updated in place and returned.
      data: a :class:`jaxreplica.data.Dataset`.
      key: a ``jax.random`` key; it shuffles the batches.
      config: a :class:`TrainConfig` (epochs, optimizer, batch size, loss, devices).
      tracking: a :class:`~jaxreplica.training.tracking.Tracking` (default
        ``Tracking()``; ``Tracking(every=0)`` switches tracking off).
      penalty: ``None``; a function ``penalty(params) -> scalar`` of the trainable
        parameters, added to the loss inside the jitted step; or an
        :class:`~jaxreplica.training.penalty.InformationPenalty` (``sum_l beta_l
        I(X; T_l)/n_0`` through the replica fixed points), whose values the history
        records every epoch.
      progress: show a progress bar.
      metadata: extra top-level entries of ``History.config``.

    Returns:
      ``(network, history)`` with the :class:`~jaxreplica.training.history.History`.
      Training stops after the first epoch whose loss is not finite (a learning rate
      too large, typically): the history then ends with that epoch (its losses NaN or
      infinite, no tracking there) and ``history.diverged_at_epoch`` gives it
      (``None`` for a complete run).
    """
    config = TrainConfig() if config is None else config
    first_key = key
    tracking = Tracking() if tracking is None else tracking
    if network.sizes[0] != data.n_input:
        raise ValueError(f"network: input size {network.sizes[0]} does not match the data's {data.n_input}")
    if network.sizes[-1] != data.n_output:
        raise ValueError(f"network: output size {network.sizes[-1]} does not match the data's {data.n_output}")
    loss = _infer_loss(network, data, config.loss)
    classification = data.task == "classification"
    batch_size = default_batch_size(data) if config.batch_size is None else config.batch_size
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= data.x_train.shape[0]:
        raise ValueError(f"batch_size must be an integer in 1..{data.x_train.shape[0]}, got {batch_size!r}")
    optimizer = optax.sgd(config.learning_rate) if config.optimizer is None else config.optimizer
    dp = None if config.devices is None else _DataParallel(config.devices, batch_size)
    _check_penalty(penalty, dp)
    info = penalty if isinstance(penalty, InformationPenalty) else None

    graphdef, params, frozen = nnx.split(network, nnx.Param, ...)
    opt_state = optimizer.init(params)
    step = make_step(graphdef, optimizer, loss, mesh=None if dp is None else dp.mesh, penalty=penalty)
    epoch_fn = make_epoch(step, batch_size, None if info is None else penalty_summary(info))
    x_fit, y_fit, frozen_fit = data.x_train, data.y_train, frozen
    if dp is not None:
        params, opt_state, frozen_fit = dp.replicate((params, opt_state, frozen))
        x_fit, y_fit = dp.replicate((data.x_train, data.y_train))
    # the parameters as evaluation and tracking see them (on one device)
    current = (lambda: params) if dp is None else (lambda: dp.local(params))
    evaluate = make_evaluate(graphdef, loss, classification)
    tracker, m, exact = _tracker(network, data, tracking)
    recorder = _Recorder(network, data, tracker, m, exact, tracking)
    penalty_log = None if info is None else PenaltyLog(info)

    recorder.evaluation(evaluate, current(), frozen, math.nan, 0.0)
    pstate = None if penalty_log is None else penalty_log.start(params)
    if tracker is not None:
        nnx.update(network, current())
        recorder.tracking_step(0)
    diverged = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, desc="training", unit="epoch")
    for e in range(1, config.epochs + 1):
        key, sub = jax.random.split(key)
        t0 = time.perf_counter()
        params, opt_state, pstate, summary = epoch_fn(params, opt_state, pstate, frozen_fit, sub, x_fit, y_fit)
        batch_loss = float(summary["loss"])
        if penalty_log is not None:
            penalty_log.add(summary)
        recorder.evaluation(evaluate, current(), frozen, batch_loss, time.perf_counter() - t0)
        if not (math.isfinite(batch_loss) and math.isfinite(recorder.rows["train_loss"][-1])):
            # The parameters are no longer finite (or about to be): nothing after this
            # epoch means anything, and tracking would only measure NaN spectra.
            diverged = e
            break
        if tracker is not None and e % tracking.every == 0:
            nnx.update(network, current())
            recorder.tracking_step(e)
        if bar is not None:
            rows = recorder.rows
            post = {"train": f"{rows['train_loss'][-1]:.4g}", "test": f"{rows['test_loss'][-1]:.4g}"}
            if classification:
                post["acc"] = f"{rows['test_accuracy'][-1]:.3f}"
            if tracker is not None and rows["mutual_information"]:
                post["I"] = " ".join(f"{v:.3g}" for v in rows["mutual_information"][-1])
            bar.set_postfix(post)
            bar.update(1)
    if bar is not None:
        bar.close()
    nnx.update(network, current())
    described = {
        "data": data.describe(),
        "network": {"sizes": list(network.sizes), "activations": list(network.activations),
                    "usv": list(network.usv), "scales": list(network.scales)},
        "training": {"epochs": config.epochs, "learning_rate": config.learning_rate, "batch_size": batch_size,
                     "diverged_at_epoch": diverged,
                     "loss": loss, "key": _key_data(first_key),
                     "optimizer": "sgd" if config.optimizer is None else "custom",
                     "devices": None if dp is None else dp.names,
                     "penalty": penalty is not None and info is None,
                     "info_penalty": info.describe() if info is not None else None},
        "tracking": {**dataclasses.asdict(tracking), "layers": m, "exact": exact,
                     "generative": [{"alpha": g.alpha, "activation": g.activation, "noise": g.noise}
                                    for g in data.generative]} if tracker is not None else None,
        **(metadata or {}),
    }
    epochs_run = config.epochs if diverged is None else diverged
    return network, recorder.history(epochs_run, classification, penalty_log, described)


def _recorded_quadrature(tracking: dict) -> QuadratureConfig:
    """The tracking's quadrature rules as recorded (histories written before they were
    recorded used the defaults)."""
    recorded = tracking.get("quadrature")
    return DEFAULT if recorded is None else QuadratureConfig(**recorded)


def recompute(history: History, *, hidden_noise: float | None = None, last_noise: float | None = None,
              noise_position: str | None = None, tol: float | None = None, max_iter: int | None = None, method: str | None = None,
              quadrature: QuadratureConfig | None = None, every: int = 1) -> History:
    """Redo the tracked trajectory from the recorded spectra, possibly with other noise levels.

    Settings not given keep their recorded values; with all of them unchanged the
    recorded ``entropy`` and ``mutual_information`` are reproduced (same chains,
    same quadrature rules, same warm-start sequence). ``every = k`` uses every ``k``-th tracked epoch.
    Exact values need the weight matrices, which are not stored: the returned
    history has none (``exact_*`` is ``None``).
    """
    tr = history.config.get("tracking")
    if not tr or history.entropy is None:
        raise ValueError("history: no information was tracked, nothing to recompute")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    tracking = Tracking(every=tr["every"], layers=tr["layers"],
                        hidden_noise=tr["hidden_noise"] if hidden_noise is None else hidden_noise,
                        last_noise=tr["last_noise"] if last_noise is None else last_noise,
                        noise_position=tr.get("noise_position", "before") if noise_position is None else noise_position,
                        tol=tr["tol"] if tol is None else tol,
                        max_iter=tr["max_iter"] if max_iter is None else max_iter,
                        method=tr["method"] if method is None else method, exact=False,
                        quadrature=_recorded_quadrature(tr) if quadrature is None else quadrature)
    m = tr["layers"]
    net = history.config["network"]
    sizes = net["sizes"]
    alphas = [sizes[l + 1] / sizes[l] for l in range(m)]
    gen = [SpectralLayer(s, g["alpha"], g["activation"], g["noise"])
           for s, g in zip(history.generative_spectra, tr["generative"])]
    prior = prior_from_description(history.config["data"]["prior"])
    tracker = Tracker(prior, gen, alphas, net["activations"][:m], tracking)
    rows = np.arange(0, len(history.tracked_epoch), every)
    out = {k: [] for k in ("entropy", "mutual_information", "converged", "iterations", "tracking_seconds")}
    failures = []
    for i in rows:
        t0 = time.perf_counter()
        h, mi, conv, iters, fails = tracker.step([s[i] for s in history.spectra])
        out["tracking_seconds"].append(time.perf_counter() - t0)
        out["entropy"].append(h)
        out["mutual_information"].append(mi)
        out["converged"].append(conv)
        out["iterations"].append(iters)
        failures.extend((int(history.tracked_epoch[i]), l, why) for l, why in fails)
    config = json.loads(json.dumps(history.config, default=json_default))
    config["tracking"].update(dataclasses.asdict(tracking), recomputed=True)  # as train() records it
    return dataclasses.replace(
        history,
        tracked_epoch=history.tracked_epoch[rows],
        entropy=np.asarray(out["entropy"]).reshape(-1, m),
        mutual_information=np.asarray(out["mutual_information"]).reshape(-1, m),
        converged=np.asarray(out["converged"], bool).reshape(-1, m),
        iterations=np.asarray(out["iterations"], np.int64).reshape(-1, m),
        tracking_seconds=np.asarray(out["tracking_seconds"]),
        exact_entropy=None,
        exact_mutual_information=None,
        spectra=[s[rows] for s in history.spectra],
        failures=failures,
        config=config,
    )
