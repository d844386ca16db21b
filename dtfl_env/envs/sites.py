"""The cluster sites of an episode: drawn once per topology, with fresh channels every round.

A :class:`Site` is one cluster: its devices (episode constants), its path-loss means and,
per round, the true arrays the environment charges and the twin's view that a policy sees.
:class:`SiteLayout` concatenates every site's devices so that a round's fading is drawn in
one vectorised pass (:meth:`SiteLayout.draw_round`). Scenarios are named generators of sites
(:data:`SCENARIOS`: random clusters, Table II, instance files), several generators at once
(the vector env's sub-envs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams
from dtfl_env.model.batch import BLD_FIELDS, GLD_FIELDS, ClusterBatch, ClusterRow
from dtfl_env.model.feasible import (
    affordable_upload_time_s,
    sync_upload_time_s,
)
from dtfl_env.model.scoring import (
    DeviceAttributes,
    classify_devices,
    device_capabilities,
    resource_score,
)
from dtfl_env.scenarios import RandomClusterConfig, Topology, table2_cluster

if TYPE_CHECKING:
    from dtfl_env.envs.config import EnvConfig

__all__ = [
    "SCENARIOS",
    "RoundDraw",
    "Site",
    "SiteLayout",
    "cluster_from_arrays",
    "direct_bounds",
    "draw_sites",
    "instance_sites",
    "random_sites",
    "table2_sites",
]


def cluster_from_arrays(a: ClusterRow, constants: Constants) -> Cluster:
    """The validated :class:`Cluster` of one site's arrays (with ``constants``)."""
    c = a.cluster()
    return c if c.constants == constants else Cluster(c.gld, c.bld, constants)


class Site:
    """One cluster site of an episode: its devices (fixed) and, per round, its channels.

    ``gld`` / ``bld`` map the :class:`~dtfl_env.config.GLDParams` /
    :class:`~dtfl_env.config.BLDParams` field names to the devices' arrays (episode
    constants; GLDs in NOMA order); :attr:`base` is them as a validated ``Cluster``, built on
    first use. ``instance``: the index of the instance file a site of the ``instances``
    scenario comes from (``scenario.instances``' order; None in the other scenarios)."""

    def __init__(
        self,
        gld: dict[str, np.ndarray],
        bld: dict[str, np.ndarray],
        constants: Constants,
        topology: Topology | None,
        means: tuple[np.ndarray, ...],
        bld_battery_j: np.ndarray,
        *,
        instance: int | None = None,
    ) -> None:
        self.gld, self.bld, self.constants = gld, bld, constants
        self.instance = instance
        self._base: Cluster | None = None
        self.bld_battery_j = bld_battery_j  # BLD batteries (not in problem P)
        self.topology = topology
        self.mean_gc, self.mean_ge, self.mean_hc, self.mean_he = means
        self.m, self.n = gld["data_bits"].size, bld["data_bits"].size
        # per round: the round's draw and this site's row in it; the true arrays (charged)
        # and the twin's view of the BLDs (observed) are views of its batches, made on use
        self._draw: RoundDraw | None = None
        self._index = 0
        self._true: ClusterRow | None = None
        self._seen: ClusterRow | None = None
        self._cluster_cache: Cluster | None = None
        self.tg_base_s = math.nan  # safe action mode: lower end of the tG range (per round)

    @classmethod
    def from_cluster(
        cls,
        cluster: Cluster,
        topology: Topology | None,
        means: tuple[np.ndarray, ...],
        bld_battery_j: np.ndarray,
        *,
        instance: int | None = None,
    ) -> Site:
        """A site of a validated cluster."""
        site = cls(
            {f: getattr(cluster.gld, f) for f in GLD_FIELDS},
            {f: getattr(cluster.bld, f) for f in BLD_FIELDS},
            cluster.constants,
            topology,
            means,
            bld_battery_j,
            instance=instance,
        )
        site._base = cluster
        return site

    @property
    def base(self) -> Cluster:
        """The site's devices as a validated cluster (data sizes, budgets, powers; the gains
        of the draw that built it)."""
        if self._base is None:
            self._base = Cluster(GLDParams(**self.gld), BLDParams(**self.bld), self.constants)
        return self._base

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


_TINY = float(np.finfo(float).tiny)  # a fading draw of exactly 0 would zero a gain


# ----------------------------------------------------------------------------- scenarios
#: a scenario: (the env's settings, the topology generators, count) -> ``count`` sites per
#: generator, each drawn from its generator only, site by site
ScenarioFn = Callable[["EnvConfig", Sequence[np.random.Generator], int], list[list[Site]]]


def _gains(c: Cluster) -> tuple[np.ndarray, ...]:
    """A cluster's gains as a site's path-loss means (fading draws around them)."""
    return (
        c.gld.gain_coordinator,
        c.gld.gain_eavesdropper,
        c.bld.gain_coordinator,
        c.bld.gain_eavesdropper,
    )


def table2_sites(
    settings: EnvConfig, rngs: Sequence[np.random.Generator], count: int
) -> list[list[Site]]:
    """Table II's cluster every time (no positions; batteries ``bld_energy.table2_battery_j``;
    no draws)."""
    c = table2_cluster(settings.constants)  # one validated cluster, shared (immutable)
    battery = np.full(c.n_bld, float(settings.bld_energy.table2_battery_j))
    return [[Site.from_cluster(c, None, _gains(c), battery) for _ in range(count)] for _ in rngs]


def instance_sites(
    settings: EnvConfig, rngs: Sequence[np.random.Generator], count: int
) -> list[list[Site]]:
    """``count`` sites per generator dealt from the instance files (``scenario =
    {"instances": ...}``, :class:`dtfl_env.instances.InstanceSet`) like cards: a random
    permutation of all n instances from the generator, then another when they run out, so
    that each instance is dealt floor(count / n) or ceil(count / n) times (each exactly once
    when ``clusters`` = n) and every generator only deals (``rng.permutation(n)``,
    ceil(count / n) times).

    A site is its instance as given: the file's gains are the path-loss means (exactly the
    round's gains without ``fading``, the means of its Rayleigh draws with it), its GLDs keep
    the file's order (the NOMA order of problem P), the env's constants apply (the ones the
    files share, the config's ``constants`` over them); no positions, BLD batteries
    ``bld_energy.table2_battery_j``."""
    instances = settings.scenario
    assert not isinstance(instances, str)
    k = settings.constants
    clusters = [c if c.constants == k else Cluster(c.gld, c.bld, k) for c in instances.clusters]
    battery = float(settings.bld_energy.table2_battery_j)
    n = len(clusters)
    out = []
    for rng in rngs:
        deal = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
        out.append(
            [
                Site.from_cluster(
                    clusters[i],
                    None,
                    _gains(clusters[i]),
                    np.full(clusters[i].n_bld, battery),
                    instance=i,
                )
                for i in deal.tolist()
            ]
        )
    return out


def random_sites(
    settings: EnvConfig, rngs: Sequence[np.random.Generator], count: int
) -> list[list[Site]]:
    """``count`` random sites from each generator of ``rngs``: the sites of
    :func:`dtfl_env.scenarios.classify_and_build` plus the mean gains and NOMA order of an
    episode (tested bit for bit), with every generator called exactly as there (site by
    site, in its order) and everything else computed for all sites at once.

    Per site: k = devices_per_cluster draw, the devices' kinds and attributes, the eq. (3)
    scores and split (``score <= threshold``: BLD), then the layout (coordinator, device
    radii and angles, the eavesdropper and the BLD it closes in on), two fading draws per
    link and the GLD and BLD parameters that the attributes do not set. GLD slots end in
    ascending mean gain to the coordinator (after the draw's ascending faded gain)."""
    rc, constants = settings.random, settings.constants
    lo, hi = settings.devices_per_cluster
    threshold = float(settings.classification_threshold)
    n_rng = len(rngs)
    kinds = (
        (rc.gld_max_cpu_hz, rc.poor_cpu_hz),
        (rc.capable_storage_bits, rc.poor_storage_bits),
        (rc.capable_range_m, rc.poor_range_m),
        (rc.capable_bandwidth_hz, rc.poor_bandwidth_hz),
        (rc.gld_energy_budget_j, rc.poor_battery_j),
        (rc.gld_max_power_w, rc.bld_power_w),
    )
    # uniform(a, b, size) is a + (b - a) * random(size) draw for draw (numpy's Generator), so
    # consecutive uniform draws are taken in one call and scaled later, all sites at once
    raw: dict[str, list[Any]] = {
        key: [] for key in ("k", "capable", "attrs", "bld", "layout", "target", "fade", "params")
    }
    for _ in range(count):  # site by site: each draw's size follows the previous draws
        ks = [int(rng.integers(lo, hi + 1)) for rng in rngs]  # (the first draw of each site)
        us = [rng.random(13 * k) for rng, k in zip(rngs, ks, strict=True)]
        k_arr = np.array(ks)
        u = np.concatenate(us)
        start = np.cumsum(13 * k_arr) - 13 * k_arr
        site = np.repeat(np.arange(n_rng), k_arr)
        j = np.arange(site.size) - np.repeat(np.cumsum(k_arr) - k_arr, k_arr)
        capable = u[start[site] + j] < rc.capable_share  # the kinds, then per attribute
        base = start[site] + k_arr[site] + j  # then (good, poor) per attribute
        attrs = [
            np.where(
                capable,
                g[0] + (g[1] - g[0]) * u[base + 2 * i * k_arr[site]],
                p[0] + (p[1] - p[0]) * u[base + (2 * i + 1) * k_arr[site]],
            )
            for i, (g, p) in enumerate(kinds)
        ]
        bld = _classify(attrs, constants, threshold)  # eq. (3), every generator's site at once
        n_bld = np.add.reduceat(bld, np.cumsum(k_arr) - k_arr)
        for rng, k, n in zip(rngs, ks, n_bld.tolist(), strict=True):
            m = k - n
            raw["layout"].append(rng.random(2 * k + 4))  # coordinator, radii^2, angles, eve
            raw["target"].append(int(rng.integers(max(n, 1))))
            raw["fade"].append(rng.exponential(1.0, 2 * k))  # to the coordinator, to eve
            raw["params"].append(rng.random(5 * m + 2 * n))  # 5 GLD parameters, 2 BLD ones
        raw["k"].append(k_arr)
        raw["attrs"].append(attrs)
        raw["bld"].append(bld)
    sites = _build_sites(raw, rc, constants)  # site-index major: (site, generator)
    return [sites[r::n_rng] for r in range(n_rng)]


def _classify(attrs: list[np.ndarray], constants: Constants, threshold: float) -> np.ndarray:
    """The eq. (3) split of several sites' devices at once (``attrs``: CPU, storage, range,
    bandwidth, battery, power, flat over the devices): True where a device becomes a BLD
    (``score <= threshold``)."""
    cpu, storage, rng_m, bw, battery, power = attrs
    caps = device_capabilities(
        DeviceAttributes(
            cpu_hz=cpu,
            cycles_per_bit=np.full(cpu.size, constants.cycles_per_bit),
            storage_bits=storage,
            range_m=rng_m,
            bandwidth_hz=bw,
            battery_j=battery,
            tx_power_w=power,
        )
    )
    scores = resource_score(*caps)  # eq. (3)
    gld, _ = classify_devices(scores, threshold)
    is_bld = np.ones(scores.size, dtype=bool)
    is_bld[gld] = False
    return is_bld


def _build_sites(
    raw: dict[str, list[Any]], rc: RandomClusterConfig, constants: Constants
) -> list[Site]:
    """The sites of their draws (:func:`random_sites`), all at once, as classify_and_build
    and the episode's NOMA order build them: the layout (GLDs first, then BLDs;
    scenarios._draw_layout), the path-loss and faded gains, the overrides by the devices'
    attributes, the GLDs in ascending mean gain (after the draw's ascending faded gain)."""
    cat = np.concatenate
    k = cat(raw["k"]).astype(int)
    drawn_bld = cat(raw["bld"])
    start = np.cumsum(k) - k
    n = np.add.reduceat(drawn_bld, start).astype(int) if k.size else k
    m = k - n
    site = np.repeat(np.arange(k.size), k)  # per device (layout order), its site
    slot = np.arange(site.size) - start[site]
    is_gld = slot < m[site]  # the layout: a site's GLDs first
    # the layout draws, per site: coordinator (2), radii^2 (k), angles (k), eavesdropper (2)
    lay = cat(raw["layout"])
    lo_ = np.cumsum(2 * k + 4) - (2 * k + 4)
    rc_lo, rc_hi = rc.cluster_radius_m, rc.area_m - rc.cluster_radius_m
    coord = rc_lo + (rc_hi - rc_lo) * lay[lo_[:, None] + np.arange(2)]
    r0, r1 = rc.min_distance_m**2, rc.cluster_radius_m**2
    radius = np.sqrt(r0 + (r1 - r0) * lay[lo_[site] + 2 + slot])
    angle = 0.0 + (2 * np.pi - 0.0) * lay[lo_[site] + 2 + k[site] + slot]
    devices = coord[site] + radius[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    e0, e1 = rc.eavesdropper_min_distance_m, rc.eavesdropper_max_distance_m
    e_dist = e0 + (e1 - e0) * lay[lo_ + 2 + 2 * k]
    e_ang = 0.0 + (2 * np.pi - 0.0) * lay[lo_ + 3 + 2 * k]
    eve = coord + e_dist[:, None] * np.column_stack([np.cos(e_ang), np.sin(e_ang)])
    target = np.array(raw["target"], dtype=int)
    victim = np.where(
        (n > 0)[:, None],
        devices[np.minimum(start + m + target, site.size - 1)] if site.size else coord,
        coord,
    )
    eve = np.clip(eve + rc.difficulty * (victim - eve), 0.0, rc.area_m)
    penalty = np.where(is_gld, 0.0, rc.bld_gain_penalty_db)
    mean_c = _mean_gain(devices, coord[site], rc, penalty)
    mean_e = _mean_gain(devices, eve[site], rc, penalty)
    fade = cat(raw["fade"])  # per site: k to the coordinator, then k to the eavesdropper
    faded_c = mean_c * np.maximum(fade[2 * start[site] + slot], _TINY)
    faded_e = mean_e * np.maximum(fade[2 * start[site] + k[site] + slot], _TINY)
    # the devices' attributes are in drawn order: the k-th GLD (BLD) of a site is its k-th
    # device classified as one, and sits at layout slot k (m + k)
    cpu, _, _, _, battery, power = (cat([a[i] for a in raw["attrs"]]) for i in range(6))
    # the parameters the attributes do not set, per site: 5 GLD ones (m each), 2 BLD ones
    par = cat(raw["params"])
    po = np.cumsum(5 * m + 2 * n) - (5 * m + 2 * n)
    gsite = site[is_gld]
    gj = slot[is_gld]
    bsite, bj = site[~is_gld], slot[~is_gld] - m[site[~is_gld]]
    (d0, d1), (q0, q1), (b0, b1) = rc.gld_data_bits, rc.gld_max_jam_power_w, rc.bld_data_bits
    gld = {
        "data_bits": d0 + (d1 - d0) * par[po[gsite] + gj],
        "gain_coordinator": faded_c[is_gld],
        "gain_eavesdropper": faded_e[is_gld],
        "max_power_w": power[~drawn_bld],
        "max_jam_power_w": q0 + (q1 - q0) * par[po[gsite] + 2 * m[gsite] + gj],
        "max_cpu_hz": cpu[~drawn_bld],
        "energy_budget_j": battery[~drawn_bld],
    }
    means_g = (mean_c[is_gld], mean_e[is_gld])
    # NOMA order per site: ascending mean gain, ties by the draw's faded gain (the two
    # stable sorts of classify_and_build and the episode, in one)
    keys = (
        (gld["gain_coordinator"], means_g[0], gsite) if rc.sort_gld_by_gain else (means_g[0], gsite)
    )
    order = np.lexsort(keys)
    gld = {f: v[order] for f, v in gld.items()}
    means_g = (means_g[0][order], means_g[1][order])
    gld_xy = devices[is_gld][order]
    bld = {
        "data_bits": b0 + (b1 - b0) * par[po[bsite] + 5 * m[bsite] + bj],
        "gain_coordinator": faded_c[~is_gld],
        "gain_eavesdropper": faded_e[~is_gld],
        "power_w": power[drawn_bld],
    }
    means_b = (mean_c[~is_gld], mean_e[~is_gld])
    bld_xy = devices[~is_gld]
    b_battery = battery[drawn_bld]
    for a in (coord, gld_xy, bld_xy, eve):  # the topologies' views are read-only
        a.setflags(write=False)
    go, bo = np.cumsum(m) - m, np.cumsum(n) - n
    sites = []
    for i in range(k.size):
        g, b = slice(go[i], go[i] + m[i]), slice(bo[i], bo[i] + n[i])
        topo = Topology(
            coordinator_xy=coord[i],
            gld_xy=gld_xy[g],
            bld_xy=bld_xy[b],
            eavesdropper_xy=eve[i],
            area_m=rc.area_m,
        )
        sites.append(
            Site(
                {f: v[g] for f, v in gld.items()},
                {f: v[b] for f, v in bld.items()},
                constants,
                topo,
                (means_g[0][g], means_g[1][g], means_b[0][b], means_b[1][b]),
                b_battery[b],
            )
        )
    return sites


def _mean_gain(
    xy: np.ndarray, to: np.ndarray, rc: RandomClusterConfig, penalty_db: np.ndarray
) -> np.ndarray:
    """Path-loss gain G0 d^-alpha (d floored at min_distance_m) with a per-link penalty (dB),
    as :func:`dtfl_env.scenarios.mean_gains` computes it."""
    d = np.maximum(np.linalg.norm(xy - to, axis=1), rc.min_distance_m)
    return rc.reference_gain * d ** (-rc.path_loss_exponent) * 10.0 ** (-penalty_db / 10)


#: scenario name (:attr:`dtfl_env.envs.config.EnvConfig.scenario_name`) -> its generator of
#: sites (add a scenario here and to :data:`dtfl_env.envs.config.SCENARIOS`)
SCENARIOS: dict[str, ScenarioFn] = {
    "random": random_sites,
    "table2": table2_sites,
    "instances": instance_sites,
}


def draw_sites(
    settings: EnvConfig, rngs: Sequence[np.random.Generator], count: int
) -> list[list[Site]]:
    """``count`` sites of the configured ``scenario`` from each generator of ``rngs`` (the
    single env: one generator; the vector env: one per sub-env)."""
    return SCENARIOS[settings.scenario_name](settings, rngs, count)


# ----------------------------------------------------------------------------- rounds


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
        self.g_counts = np.array([s.m for s in sites])
        self.b_counts = np.array([s.n for s in sites])
        cat = np.concatenate
        self.g_static = {
            f: cat([s.gld[f] for s in sites])
            for f in (
                "data_bits",
                "max_power_w",
                "max_jam_power_w",
                "max_cpu_hz",
                "energy_budget_j",
            )
        }
        self.b_static = {f: cat([s.bld[f] for s in sites]) for f in ("data_bits", "power_w")}
        self.means = [
            cat([getattr(s, f) for s in sites])
            for f in ("mean_gc", "mean_ge", "mean_hc", "mean_he")
        ]
        site_of = np.arange(len(sites))
        self.g_site = np.repeat(site_of, self.g_counts)
        self.b_site = np.repeat(site_of, self.b_counts)
        g_start = np.repeat(np.cumsum(self.g_counts) - self.g_counts, self.g_counts)
        b_start = np.repeat(np.cumsum(self.b_counts) - self.b_counts, self.b_counts)
        self.g_slot = np.arange(self.g_site.size) - g_start
        self.b_slot = np.arange(self.b_site.size) - b_start + self.g_counts[self.b_site]

    def draw_round(
        self, constants: Constants, rng: np.random.Generator, *, fading: bool, twin_deviation: float
    ) -> RoundDraw:
        """Fresh fading (and twin deviations) for every site, from ``rng``; installs the
        round in every site (:meth:`draw_noise`, then :meth:`apply`)."""
        return self.apply(
            constants, *self.draw_noise(rng, fading=fading, twin_deviation=twin_deviation)
        )

    def draw_noise(
        self, rng: np.random.Generator, *, fading: bool, twin_deviation: float
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The round's random draws: Rayleigh fading |h|^2 ~ Exp(1) of every link, shape
        (2 (M_all + N_all),) as [GLD->coordinator, GLD->eavesdropper, BLD->coordinator,
        BLD->eavesdropper] (None without ``fading``), then the twins' log-normal deviations
        of (D_j, h_jC, h_jE, p_j), shape (4, N_all) (None without ``twin_deviation``)."""
        m_all, n_all = self.g_site.size, self.b_site.size
        fade = dev = None
        if fading:
            fade = np.maximum(
                rng.exponential(1.0, 2 * (m_all + n_all)), _TINY
            )  # Rayleigh: |h|^2 ~ Exp(1)
        if twin_deviation > 0 and n_all:
            dev = np.exp(twin_deviation * rng.standard_normal((4, n_all)))
        return fade, dev

    def apply(
        self,
        constants: Constants,
        fade: np.ndarray | None,
        dev: np.ndarray | None,
        *,
        bind: bool = True,
    ) -> RoundDraw:
        """The round of the draws ``fade`` and ``dev`` (:meth:`draw_noise`'s layout): every
        site's true and observed arrays as :class:`ClusterBatch`es and the lower ends of the
        direct mode's ranges; ``bind``: install it in every site (:meth:`Site.new_round`)."""
        m_all, n_all = self.g_site.size, self.b_site.size
        mgc, mge, mhc, mhe = self.means
        if fade is None:
            gld = {**self.g_static, "gain_coordinator": mgc, "gain_eavesdropper": mge}
            bld = {**self.b_static, "gain_coordinator": mhc, "gain_eavesdropper": mhe}
        else:
            gld = {
                **self.g_static,
                "gain_coordinator": mgc * fade[:m_all],
                "gain_eavesdropper": mge * fade[m_all : 2 * m_all],
            }
            bld = {
                **self.b_static,
                "gain_coordinator": mhc * fade[2 * m_all : 2 * m_all + n_all],
                "gain_eavesdropper": mhe * fade[2 * m_all + n_all :],
            }
        true = ClusterBatch.from_flat(constants, gld, bld, self.g_counts, self.b_counts)
        seen_bld, seen = bld, true
        if dev is not None:
            seen_bld = {
                "data_bits": bld["data_bits"] * dev[0],
                "gain_coordinator": bld["gain_coordinator"] * dev[1],
                "gain_eavesdropper": bld["gain_eavesdropper"] * dev[2],
                "power_w": bld["power_w"] * dev[3],
            }
            seen = ClusterBatch.from_flat(constants, gld, seen_bld, self.g_counts, self.b_counts)
        tg_lo, y_lo = direct_bounds(seen)
        draw = RoundDraw(
            gld=gld, seen_bld=seen_bld, true=true, seen=seen, tg_lo_s=tg_lo, y_lo_s=y_lo
        )
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
    tg_e = np.zeros(gm.shape)  # the real GLDs only (no Newton on the padding)
    tg_e[gm] = affordable_upload_time_s(
        batch.noise_over_gain[gm],
        batch.sic[gm],
        e_max[gm],
        np.broadcast_to(batch.x_scale[:, None], gm.shape)[gm],
    )
    tg_e = np.where(gm & np.isfinite(tg_e), tg_e, 0.0)  # hopeless GLDs drop out anyway
    has = batch.n_gld > 0
    tg_lo = np.where(has, np.maximum(tg_e.max(1, initial=0.0), batch.tg_min_s), np.nan)
    ratio = np.where(gm, batch.k_loc / e_max, 0.0)  # e_max > 0: validated
    y_lo = np.where(has, np.maximum(batch.y_min_s, np.sqrt(ratio.max(1, initial=0.0))), np.nan)
    return tg_lo, y_lo
