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

from dtfl_env.config import Cluster, Constants
from dtfl_env.model.batch import ClusterBatch, ClusterRow
from dtfl_env.model.feasible import (
    affordable_upload_time_s,
    sync_upload_time_s,
)
from dtfl_env.scenarios import (
    RandomClusterConfig,
    Topology,
    classify_and_build,
    mean_gains,
    table2_cluster,
)

__all__ = ["SCENARIOS", "RoundDraw", "Site", "SiteLayout", "cluster_from_arrays",
           "direct_bounds", "draw_site"]


def cluster_from_arrays(a: ClusterRow, constants: Constants) -> Cluster:
    """The validated :class:`Cluster` of one site's arrays (with ``constants``)."""
    c = a.cluster()
    return c if c.constants == constants else Cluster(c.gld, c.bld, constants)


class Site:
    """One cluster site of an episode: its devices (fixed) and, per round, its channels."""

    def __init__(self, cluster: Cluster, topology: Topology | None,
                 means: tuple[np.ndarray, ...], bld_battery_j: np.ndarray) -> None:
        self.base = cluster  # data sizes, budgets, powers (episode constants)
        self.bld_battery_j = bld_battery_j  # BLD batteries (not in problem P)
        self.topology = topology
        self.mean_gc, self.mean_ge, self.mean_hc, self.mean_he = means
        self.m, self.n = cluster.n_gld, cluster.n_bld
        # per round: the round's draw and this site's row in it; the true arrays (charged)
        # and the twin's view of the BLDs (observed) are views of its batches, made on use
        self._draw: RoundDraw | None = None
        self._index = 0
        self._true: ClusterRow | None = None
        self._seen: ClusterRow | None = None
        self._cluster_cache: Cluster | None = None
        self.tg_base_s = math.nan  # safe action mode: lower end of the tG range (per round)

    def new_round(self, draw: RoundDraw, index: int) -> None:
        """Install a round's channels (row ``index`` of ``draw``): forgets the
        round-dependent caches."""
        self._draw, self._index = draw, index
        self._true = self._seen = self._cluster_cache = None
        self.tg_base_s = math.nan

    @property
    def true(self) -> ClusterRow | None:
        """The round's true values (what the environment charges); None before a round."""
        if self._true is None and self._draw is not None:
            self._true = self._draw.true.row(self._index)
        return self._true

    @property
    def seen(self) -> ClusterRow | None:
        """The round's values as a policy sees them (twin estimates for the BLDs)."""
        if self._seen is None and self._draw is not None:
            d = self._draw
            self._seen = self.true if d.seen is d.true else d.seen.row(self._index)
        return self._seen

    @property
    def tg_lo_s(self) -> float:
        """The shortest upload time every GLD can pay (per round; NaN without GLDs)."""
        return float(self._draw.tg_lo_s[self._index]) if self._draw is not None else math.nan

    @property
    def y_lo_s(self) -> float:
        """The shortest common training time every GLD can pay (the direct mode's base)."""
        return float(self._draw.y_lo_s[self._index]) if self._draw is not None else math.nan

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
_TINY = float(np.finfo(float).tiny)  # a fading draw of exactly 0 would zero a gain

@dataclass(frozen=True)
class RoundDraw:
    """One round's channels of every site, flat over the devices (:class:`SiteLayout`)."""

    gld: dict[str, np.ndarray]  # GLD arrays (true = seen), flat, GLDParams field names
    seen_bld: dict[str, np.ndarray]  # the twins' view of the BLD arrays, flat
    true: ClusterBatch  # every site, the true values (charged)
    seen: ClusterBatch  # every site, as a policy sees it
    tg_lo_s: np.ndarray  # per site: the shortest upload every GLD can pay (NaN: no GLD)
    y_lo_s: np.ndarray  # per site: the shortest training every GLD can pay (NaN: no GLD)


class SiteLayout:
    """Every site's devices concatenated, so that a round is drawn in one vectorised pass."""

    def __init__(self, sites: list[Site]) -> None:
        self.sites = sites
        g = [s.base.gld for s in sites]
        b = [s.base.bld for s in sites]
        self.g_counts = np.array([s.m for s in sites])
        self.b_counts = np.array([s.n for s in sites])
        cat = np.concatenate
        self.g_static = {f: cat([getattr(x, f) for x in g])
                         for f in ("data_bits", "max_power_w", "max_jam_power_w", "max_cpu_hz",
                                   "energy_budget_j")}
        self.b_static = {f: cat([getattr(x, f) for x in b]) for f in ("data_bits", "power_w")}
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
        """Fresh fading (and twin deviations) for every site, from ``rng``; installs the
        round in every site (:meth:`draw_noise`, then :meth:`apply`)."""
        return self.apply(constants, *self.draw_noise(rng, fading=fading,
                                                      twin_deviation=twin_deviation))

    def draw_noise(self, rng: np.random.Generator, *, fading: bool, twin_deviation: float
                   ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The round's random draws: Rayleigh fading |h|^2 ~ Exp(1) of every link, shape
        (2 (M_all + N_all),) as [GLD->coordinator, GLD->eavesdropper, BLD->coordinator,
        BLD->eavesdropper] (None without ``fading``), then the twins' log-normal deviations
        of (D_j, h_jC, h_jE, p_j), shape (4, N_all) (None without ``twin_deviation``)."""
        m_all, n_all = self.g_site.size, self.b_site.size
        fade = dev = None
        if fading:
            fade = np.maximum(rng.exponential(1.0, 2 * (m_all + n_all)),
                              _TINY)  # Rayleigh: |h|^2 ~ Exp(1)
        if twin_deviation > 0 and n_all:
            dev = np.exp(twin_deviation * rng.standard_normal((4, n_all)))
        return fade, dev

    def apply(self, constants: Constants, fade: np.ndarray | None, dev: np.ndarray | None,
              *, bind: bool = True) -> RoundDraw:
        """The round of the draws ``fade`` and ``dev`` (:meth:`draw_noise`'s layout): every
        site's true and observed arrays as :class:`ClusterBatch`es and the lower ends of the
        direct mode's ranges; ``bind``: install it in every site (:meth:`Site.new_round`)."""
        m_all, n_all = self.g_site.size, self.b_site.size
        mgc, mge, mhc, mhe = self.means
        if fade is None:
            gld = {**self.g_static, "gain_coordinator": mgc, "gain_eavesdropper": mge}
            bld = {**self.b_static, "gain_coordinator": mhc, "gain_eavesdropper": mhe}
        else:
            gld = {**self.g_static, "gain_coordinator": mgc * fade[:m_all],
                   "gain_eavesdropper": mge * fade[m_all:2 * m_all]}
            bld = {**self.b_static,
                   "gain_coordinator": mhc * fade[2 * m_all:2 * m_all + n_all],
                   "gain_eavesdropper": mhe * fade[2 * m_all + n_all:]}
        true = ClusterBatch.from_flat(constants, gld, bld, self.g_counts, self.b_counts)
        seen_bld, seen = bld, true
        if dev is not None:
            seen_bld = {"data_bits": bld["data_bits"] * dev[0],
                        "gain_coordinator": bld["gain_coordinator"] * dev[1],
                        "gain_eavesdropper": bld["gain_eavesdropper"] * dev[2],
                        "power_w": bld["power_w"] * dev[3]}
            seen = ClusterBatch.from_flat(constants, gld, seen_bld, self.g_counts,
                                          self.b_counts)
        tg_lo, y_lo = direct_bounds(seen)
        draw = RoundDraw(gld=gld, seen_bld=seen_bld, true=true, seen=seen, tg_lo_s=tg_lo,
                         y_lo_s=y_lo)
        if bind:
            for i, site in enumerate(self.sites):
                site.new_round(draw, i)
        return draw


def direct_bounds(batch: ClusterBatch) -> tuple[np.ndarray, np.ndarray]:
    """(tg_lo, y_lo) per cluster, shape (B,): the lower ends of the direct mode's ranges, NaN
    for a cluster without GLDs.

    tg_lo is the shortest upload time every GLD can pay from its budget on its own (never
    below tG_min (24c); GLDs that cannot pay even an endless upload drop out whatever the
    action and are left out); y_lo = max(y_min, max_i sqrt(K_i / E_max,i)) is the shortest
    common training time every GLD can pay from its whole budget (eqs. (5), (17), (19))."""
    gm = batch.gld_mask
    e_max = batch.gld["energy_budget_j"]
    tg_e = affordable_upload_time_s(batch.noise_over_gain, batch.sic, e_max,
                                    batch.x_scale[:, None])
    tg_e = np.where(gm & np.isfinite(tg_e), tg_e, 0.0)  # hopeless GLDs drop out anyway
    has = batch.n_gld > 0
    tg_lo = np.where(has, np.maximum(tg_e.max(1, initial=0.0), batch.tg_min_s), np.nan)
    ratio = np.where(gm, batch.k_loc / e_max, 0.0)  # e_max > 0: validated
    y_lo = np.where(has, np.maximum(batch.y_min_s, np.sqrt(ratio.max(1, initial=0.0))),
                    np.nan)
    return tg_lo, y_lo
