"""Training USV networks with optax while the replica formula measures them.

* :mod:`~jaxreplica.training.step`: one optimizer step and one epoch (pure, jittable);
* :mod:`~jaxreplica.training.penalty`: ``sum_l beta_l I(X; T_l)/n_0`` as a loss term;
* :mod:`~jaxreplica.training.tracking`: ``H(T_l)``, ``I(X; T_l)`` during training;
* :mod:`~jaxreplica.training.history`: what a run records, and its files;
* :mod:`~jaxreplica.training.loop`: :func:`train` and :func:`recompute`.
"""

from jaxreplica.training.history import History
from jaxreplica.training.loop import TrainConfig, recompute, train
from jaxreplica.training.penalty import (InformationPenalty, PenaltyState, information_penalty,
                                         network_information, singular_values, spectrum_from_singular_values)
from jaxreplica.training.step import loss_function, make_epoch, make_step
from jaxreplica.training.tracking import Tracking, exact_linear_information

__all__ = [
    "History",
    "InformationPenalty",
    "PenaltyState",
    "TrainConfig",
    "Tracking",
    "exact_linear_information",
    "information_penalty",
    "loss_function",
    "make_epoch",
    "make_step",
    "network_information",
    "recompute",
    "singular_values",
    "spectrum_from_singular_values",
    "train",
]
