"""The env's batched random sites against the scenario API they implement, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from dtfl_env.config import Constants
from dtfl_env.envs.config import default_config, merge_config, validate_config
from dtfl_env.envs.sites import random_sites
from dtfl_env.scenarios import RandomClusterConfig, Topology, classify_and_build, mean_gains


def _reference(
    cfg: dict, constants: Constants, rc: RandomClusterConfig, rng: np.random.Generator
) -> tuple:
    """One site the way the scenario API draws it: k, classify_and_build (eq. (3)), the mean
    gains, and the episode's NOMA order (ascending mean gain)."""
    lo, hi = cfg["devices_per_cluster"]
    k = int(rng.integers(lo, hi + 1))
    sc = classify_and_build(rng, k, rc, constants, threshold=cfg["classification_threshold"])
    gc, ge, hc, he = mean_gains(sc.topology, rc)
    order = np.argsort(gc, kind="stable")
    topo = sc.topology
    topo = Topology(
        coordinator_xy=topo.coordinator_xy,
        gld_xy=topo.gld_xy[order],
        bld_xy=topo.bld_xy,
        eavesdropper_xy=topo.eavesdropper_xy,
        area_m=topo.area_m,
    )
    return (
        sc.cluster.gld.subset(order),
        sc.cluster.bld,
        topo,
        (gc[order], ge[order], hc, he),
        sc.attributes.battery_j[sc.bld_index],
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"devices_per_cluster": [1, 16], "max_devices": 16},
        {"classification_threshold": 0.9},  # mostly BLDs, some sites without a GLD
        {"classification_threshold": 0.05},  # every device a GLD: no BLD
        {"random": {"difficulty": 0.7, "sort_gld_by_gain": False, "capable_share": 0.3}},
    ],
    ids=["default", "wide", "bld-heavy", "gld-only", "difficulty"],
)
def test_random_sites_match_the_scenario_api(overrides: dict) -> None:
    cfg = merge_config(default_config(), {**overrides, "fl": {"backend": "none"}})
    rc = RandomClusterConfig(**overrides.get("random", {}))
    constants = Constants()
    settings = validate_config(cfg)
    assert settings.random == rc and settings.constants == constants
    seeds = range(6)
    rngs = [np.random.default_rng(s) for s in seeds]
    sites = random_sites(settings, rngs, 5)
    for seed, per_rng, used in zip(seeds, sites, rngs, strict=True):
        rng = np.random.default_rng(seed)
        for site in per_rng:
            gld, bld, topo, means, battery = _reference(cfg, constants, rc, rng)
            assert site.base.gld == gld and site.base.bld == bld
            assert site.topology == topo
            for a, b in zip(
                (site.mean_gc, site.mean_ge, site.mean_hc, site.mean_he), means, strict=True
            ):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(site.bld_battery_j, battery)
        # every generator is left where the scenario API leaves it
        assert used.bit_generator.state == rng.bit_generator.state
