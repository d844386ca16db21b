"""Named cluster presets: Table II of the paper and a seeded random-cluster generator."""

from __future__ import annotations

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams

__all__ = ["PRESETS", "get_preset", "table2_cluster"]


def table2_cluster(constants: Constants | None = None) -> Cluster:
    """The cluster of the paper's Table II: 6 GLDs and 4 BLDs.

    Erratum (MODEL.md): Table II lists 7 values of V_max for 6 GLDs; the 7th (2.2 GHz) is
    dropped. Constants the paper omits take the MODEL.md defaults unless given.
    """
    gld = GLDParams(
        data_bits=[30e6, 45e6, 40e6, 50e6, 55e6, 35e6],
        gain_coordinator=[2.3e-8, 2.5e-8, 2.4e-8, 2.2e-8, 2.7e-8, 2.6e-8],
        gain_eavesdropper=[1.6e-8, 1.3e-8, 1.7e-8, 1.4e-8, 1.2e-8, 1.5e-8],
        max_power_w=[1.9, 2.1, 1.8, 2.0, 2.2, 1.7],
        max_jam_power_w=[1.1, 0.8, 0.9, 1.2, 0.7, 1.0],
        max_cpu_hz=[1.0e9, 1.2e9, 1.4e9, 1.6e9, 1.8e9, 2.0e9],
        energy_budget_j=[3.8, 4.0, 3.4, 3.6, 3.8, 3.2],
    )
    bld = BLDParams(
        data_bits=[2.0e6, 3.5e6, 3.0e6, 2.5e6],
        gain_coordinator=[1.0e-9, 0.8e-9, 1.1e-9, 0.9e-9],
        gain_eavesdropper=[0.95e-9, 0.85e-9, 1.15e-9, 1.05e-9],
        power_w=[1.6, 1.4, 1.3, 1.5],
    )
    return Cluster(gld=gld, bld=bld, constants=constants or Constants())


PRESETS = {"table2": table2_cluster}


def get_preset(name: str) -> Cluster:
    """A named preset cluster (``table2``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"preset: unknown preset {name!r} (known: {', '.join(PRESETS)})") from None
