"""Build jaxreplica chains from the reference files' case descriptions."""

from __future__ import annotations

import numpy as np

import jaxreplica as jr

PRIORS = {
    "normal": lambda p: jr.Normal(mean=p["mean"], var=p["var"]),
    "bimodal": lambda p: jr.Bimodal(prob=p["prob"]),
    "spikeslab": lambda p: jr.SpikeSlab(prob=p["prob"], mean=p["mean"], var=p["var"]),
}
CHANNELS = {"linear": jr.Linear, "relu": jr.ReLU, "probit": jr.Probit, "hardtanh": jr.HardTanh, "leaky_relu": jr.LeakyReLU}


def channel(kind: str, params: dict):
    kw = {"noise": params["var_noise"]}
    if "slope" in params:
        kw["slope"] = params["slope"]
    return CHANNELS[kind](**kw)


def chain_from_case(case: dict, spectra) -> jr.Chain:
    prior = PRIORS[case["layers"][0]["kind"]](case["layers"][0])
    layers = []
    for layer, w in zip(case["layers"][1:], case["weights"]):
        if w["kind"] == "gaussian":
            ens = jr.Gaussian(alpha=w["alpha"])
        else:
            ens = jr.Empirical(eigenvalues=np.asarray(spectra[w["spectrum"]]), alpha=w["alpha"])
        layers.append((ens, channel(layer["kind"], layer)))
    return jr.Chain(prior=prior, layers=layers)
