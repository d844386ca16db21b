"""Test helpers shared by several test modules."""

from __future__ import annotations

import numpy as np

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams


def perturbed_cluster(seed: int, m: int, n: int, *, budget_scale: float = 1.0) -> Cluster:
    """A Table II-like cluster with m GLDs and n BLDs, values drawn around Table II's ranges.

    Independent of the scenario generator, so solver tests do not hinge on its calibration.
    """
    rng = np.random.default_rng(seed)
    gld = GLDParams(
        data_bits=rng.uniform(30e6, 55e6, m),
        gain_coordinator=rng.uniform(2.2e-8, 2.7e-8, m),
        gain_eavesdropper=rng.uniform(1.2e-8, 1.7e-8, m),
        max_power_w=rng.uniform(1.7, 2.2, m),
        max_jam_power_w=rng.uniform(0.7, 1.2, m),
        max_cpu_hz=rng.uniform(1.0e9, 2.0e9, m),
        energy_budget_j=rng.uniform(3.2, 4.0, m) * budget_scale,
    )
    bld = BLDParams(
        data_bits=rng.uniform(2.0e6, 3.5e6, n),
        gain_coordinator=rng.uniform(0.8e-9, 1.1e-9, n),
        gain_eavesdropper=rng.uniform(0.85e-9, 1.15e-9, n),
        power_w=rng.uniform(1.3, 1.6, n),
    )
    return Cluster(gld=gld, bld=bld, constants=Constants())
