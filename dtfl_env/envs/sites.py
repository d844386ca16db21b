"""The cluster sites of an episode: drawn once per topology, with fresh channels every round.

A :class:`Site` is one cluster: its devices (episode constants), its path-loss means and,
per round, the true arrays the environment charges and the twin's view that a policy sees.
:class:`SiteLayout` concatenates every site's devices so that a round's fading is drawn in
one vectorised pass (:meth:`SiteLayout.draw_round`). Scenarios are named generators of one
site each (:data:`SCENARIOS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams
from dtfl_env.model.feasible import (
    affordable_upload_time_s,
    sync_upload_time_s,
    training_time_floor_s,
)
from dtfl_env.model.round import ClusterArrays, build_cluster_arrays, segment_max
from dtfl_env.scenarios import (
    RandomClusterConfig,
    Topology,
    classify_and_build,
    mean_gains,
    table2_cluster,
)

__all__ = ["SCENARIOS", "RoundDraw", "Site", "SiteLayout", "cluster_from_arrays", "draw_site"]


def cluster_from_arrays(a: ClusterArrays, constants: Constants) -> Cluster:
    """The validated :class:`Cluster` of one site's arrays."""
    return Cluster(
        GLDParams(data_bits=a.g_data, gain_coordinator=a.g_gain_c, gain_eavesdropper=a.g_gain_e,
                  max_power_w=a.g_p_max, max_jam_power_w=a.g_q_max, max_cpu_hz=a.g_v_max,
                  energy_budget_j=a.g_e_max),
        BLDParams(data_bits=a.b_data, gain_coordinator=a.b_gain_c, gain_eavesdropper=a.b_gain_e,
                  power_w=a.b_power),
        constants)


class Site:
    """One cluster site of an episode: its devices (fixed) and, per round, its channels."""

    def __init__(self, cluster: Cluster, topology: Topology | None,
                 means: tuple[np.ndarray, ...], bld_battery_j: np.ndarray) -> None:
        self.base = cluster  # data sizes, budgets, powers (episode constants)
        self.bld_battery_j = bld_battery_j  # BLD batteries (not in problem P)
        self.topology = topology
        self.mean_gc, self.mean_ge, self.mean_hc, self.mean_he = means
        self.m, self.n = cluster.n_gld, cluster.n_bld
        # per round: true arrays (charged) and the twin's view of the BLDs (observed)
        self.true: ClusterArrays | None = None
        self.seen: ClusterArrays | None = None
        self._cluster_cache: Cluster | None = None
        self.tg_lo_s = math.nan  # the shortest upload time every GLD can pay (per round)
        self.tg_base_s = math.nan  # safe action mode: lower end of the tG range (per round)
        self.y_lo_s = math.nan  # the shortest training every GLD can pay (direct mode's base)

    def new_round(self, true: ClusterArrays, seen: ClusterArrays) -> None:
        """Install a round's channels: forgets the round-dependent caches."""
        self.true, self.seen, self._cluster_cache = true, seen, None
        self.tg_base_s = math.nan

    def cluster(self, constants: Constants) -> Cluster:
        """The cluster as a policy sees it (twin estimates for the BLDs), validated."""
        if self._cluster_cache is None:
            assert self.seen is not None
            self._cluster_cache = cluster_from_arrays(self.seen, constants)
        return self._cluster_cache

    def tg_base(self, ln_tg_range: float, *, cached: bool = True) -> float:
        """The lower end of the safe mode's tG range: the shortest upload at which the BLDs
        can still be synced (or, where none can, the shortest every GLD can pay).

        ``cached``: computed on first use in a round and kept (for the configured
        ``action.tg_range``); otherwise computed every time (for another range)."""
        if not cached:
            assert self.seen is not None
            tg = sync_upload_time_s(self.seen, self.tg_lo_s, ln_tg_range) if self.m else 0.0
            return self.tg_lo_s if math.isnan(tg) else tg
        if math.isnan(self.tg_base_s) and self.m:
            assert self.seen is not None
            tg = sync_upload_time_s(self.seen, self.tg_lo_s, ln_tg_range)
            self.tg_base_s = self.tg_lo_s if math.isnan(tg) else tg
        return self.tg_base_s


# ----------------------------------------------------------------------------- scenarios
#: a scenario: (config, constants, the random topology config, topology rng) -> one site
ScenarioFn = Callable[[dict[str, Any], Constants, RandomClusterConfig, np.random.Generator],
                      Site]


def table2_site(cfg: dict[str, Any], constants: Constants, random_cfg: RandomClusterConfig,
                rng: np.random.Generator) -> Site:
    """Table II's cluster every time (no positions; batteries ``bld_energy.table2_battery_j``)."""
    c = table2_cluster(constants)
    means = (c.gld.gain_coordinator, c.gld.gain_eavesdropper,
             c.bld.gain_coordinator, c.bld.gain_eavesdropper)
    battery = np.full(c.n_bld, float(cfg["bld_energy"]["table2_battery_j"]))
    return Site(c, None, means, battery)


def random_site(cfg: dict[str, Any], constants: Constants, random_cfg: RandomClusterConfig,
                rng: np.random.Generator) -> Site:
    """k devices (k uniform in ``devices_per_cluster``) placed at random, classified by
    eq. (3); GLD slots in NOMA decoding order (ascending mean gain to the coordinator)."""
    lo, hi = cfg["devices_per_cluster"]
    k = int(rng.integers(lo, hi + 1))
    sc = classify_and_build(rng, k, random_cfg, constants,
                            threshold=cfg["classification_threshold"])  # eq. (3)
    gc, ge, hc, he = mean_gains(sc.topology, random_cfg)
    # NOMA decoding order for the whole episode: GLDs by ascending *mean* gain, so the
    # strongest link carries the largest SIC factor 2^((i-1) r) whatever the fading
    order = np.argsort(gc, kind="stable")
    topo = sc.topology
    topo = Topology(coordinator_xy=topo.coordinator_xy, gld_xy=topo.gld_xy[order],
                    bld_xy=topo.bld_xy, eavesdropper_xy=topo.eavesdropper_xy,
                    area_m=topo.area_m)
    cluster = Cluster(sc.cluster.gld.subset(order), sc.cluster.bld, constants)
    # a BLD's battery is the one its device drew for the classification of eq. (3)
    return Site(cluster, topo, (gc[order], ge[order], hc, he),
                sc.attributes.battery_j[sc.bld_index])


#: ``scenario`` config value -> the generator of one site (add a scenario here and to
#: :data:`dtfl_env.envs.config.SCENARIOS`)
SCENARIOS: dict[str, ScenarioFn] = {"random": random_site, "table2": table2_site}


def draw_site(cfg: dict[str, Any], constants: Constants, random_cfg: RandomClusterConfig,
              rng: np.random.Generator) -> Site:
    """One site of the configured ``scenario``."""
    return SCENARIOS[cfg["scenario"]](cfg, constants, random_cfg, rng)


# ----------------------------------------------------------------------------- rounds
@dataclass(frozen=True)
class RoundDraw:
    """One round's channels of every site, flat over the devices (:class:`SiteLayout`)."""

    gld: dict[str, np.ndarray]  # GLD arrays (true = seen)
    seen_bld: dict[str, np.ndarray]  # the twins' view of the BLD arrays
    seen: list[ClusterArrays]  # per site, as a policy sees it
    tg_lo_s: np.ndarray  # per site: the shortest upload every GLD can pay (NaN: no GLD)


class SiteLayout:
    """Every site's devices concatenated, so that a round is drawn in one vectorised pass."""

    def __init__(self, sites: list[Site]) -> None:
        self.sites = sites
        g = [s.base.gld for s in sites]
        b = [s.base.bld for s in sites]
        self.g_counts = np.array([s.m for s in sites])
        self.b_counts = np.array([s.n for s in sites])
        cat = np.concatenate
        self.g_static = {
            "g_data": cat([x.data_bits for x in g]), "g_p_max": cat([x.max_power_w for x in g]),
            "g_q_max": cat([x.max_jam_power_w for x in g]),
            "g_v_max": cat([x.max_cpu_hz for x in g]),
            "g_e_max": cat([x.energy_budget_j for x in g])}
        self.b_static = {"b_data": cat([x.data_bits for x in b]),
                         "b_power": cat([x.power_w for x in b])}
        self.means = [cat([getattr(s, f) for s in sites])
                      for f in ("mean_gc", "mean_ge", "mean_hc", "mean_he")]
        site_of = np.arange(len(sites))
        self.g_site = np.repeat(site_of, self.g_counts)
        self.b_site = np.repeat(site_of, self.b_counts)
        g_start = np.repeat(np.cumsum(self.g_counts) - self.g_counts, self.g_counts)
        b_start = np.repeat(np.cumsum(self.b_counts) - self.b_counts, self.b_counts)
        self.g_slot = np.arange(self.g_site.size) - g_start
        self.b_slot = np.arange(self.b_site.size) - b_start + self.g_counts[self.b_site]

    def draw_round(self, constants: Constants, rng: np.random.Generator, *, fading: bool,
                   twin_deviation: float) -> RoundDraw:
        """Fresh fading (and twin deviations) for every site; sets each site's arrays and
        the lower ends of the direct mode's ranges (``tg_lo_s``, ``y_lo_s``)."""
        m_all, n_all = self.g_site.size, self.b_site.size
        if fading:
            fade = np.maximum(rng.exponential(1.0, 2 * (m_all + n_all)),
                              np.finfo(float).tiny)  # Rayleigh: |h|^2 ~ Exp(1)
        else:
            fade = np.ones(2 * (m_all + n_all))
        mgc, mge, mhc, mhe = self.means
        gld = {**self.g_static, "g_gain_c": mgc * fade[:m_all],
               "g_gain_e": mge * fade[m_all:2 * m_all]}
        bld = {**self.b_static, "b_gain_c": mhc * fade[2 * m_all:2 * m_all + n_all],
               "b_gain_e": mhe * fade[2 * m_all + n_all:]}
        counts = {"gld_counts": self.g_counts, "bld_counts": self.b_counts}
        true = build_cluster_arrays(constants, gld=gld, bld=bld, **counts)
        seen_bld = bld
        if twin_deviation > 0 and n_all:
            dev = np.exp(twin_deviation * rng.standard_normal((4, n_all)))
            seen_bld = {"b_data": bld["b_data"] * dev[0], "b_gain_c": bld["b_gain_c"] * dev[1],
                        "b_gain_e": bld["b_gain_e"] * dev[2], "b_power": bld["b_power"] * dev[3]}
            seen = build_cluster_arrays(constants, gld=gld, bld=seen_bld, **counts)
        else:
            seen = true
        for site, t, v in zip(self.sites, true, seen, strict=True):
            site.new_round(t, v)
        tg_lo = np.full(len(self.sites), math.nan)
        if m_all:
            # the shortest upload time every GLD can pay, per site: the lower end of the safe
            # mode's tG range (and an observed feature in both modes)
            tg_e = affordable_upload_time_s(constants.noise_coordinator_w / gld["g_gain_c"],
                                            self.g_slot.astype(float), gld["g_e_max"],
                                            true[0].x_scale)
            tg_e = np.where(np.isfinite(tg_e), tg_e, 0.0)  # hopeless GLDs drop out anyway
            tg_lo = np.maximum(segment_max(tg_e, self.g_counts),
                               np.array([a.tg_min_s for a in seen]))
            for site, lo in zip(self.sites, tg_lo, strict=True):
                site.tg_lo_s = float(lo) if site.m else math.nan
                # the shortest common training time every GLD can pay from its whole
                # budget: the lower end of the direct mode's y range
                site.y_lo_s = (training_time_floor_s(site.seen, site.seen.g_e_max)
                               if site.m else math.nan)
        return RoundDraw(gld=gld, seen_bld=seen_bld, seen=list(seen), tg_lo_s=tg_lo)
