"""The paper's experiments on top of the engine and the training stack.

* :mod:`~jaxreplica.experiments.figure2`: replica entropies of two wide layers
  against the weight scale, exact values and sample-based estimators;
* :mod:`~jaxreplica.experiments.presets`: the training experiments (Figures 3-5) as
  presets of network, data and tracking settings;
* :mod:`~jaxreplica.experiments.plots`: every figure.
"""
