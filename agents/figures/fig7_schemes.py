"""Fig. 7's schemes: each one's per-cluster round time and participants.

The clusters as each scheme sees them (BLDs kept or dropped, the BLDs' data rescaled, the
state update of ``static`` mode), a BLD's own hardware for FedAvg (b), and the round time
T_s with its participants per cluster for the proposed scheme, the two no-jamming
baselines and FedAvg (a), (b), with FedAvg (b)'s crossover iota_B. The rules of every
scheme are in :mod:`agents.figures.fig7`'s docstring; :mod:`agents.figures.fig7_rounds`
turns these per-cluster times into rounds and accuracy curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtfl_env.config import BLDParams, Cluster
from dtfl_env.model import (
    bld_twin_latency_s,
    evaluate_allocation,
    jamming_lower_bound_w,
    min_jamming_for_sync_w,
    secrecy_rate_bps,
    sync_time_s,
)
from dtfl_env.scenarios import Scenario
from solvers import allocation_at_q, solve

FL_SCHEMES = ("proposed", "nojam_sitout", "nojam_wait", "fedavg_a", "fedavg_b", "fedavg_b_cross")
SCHEMES = (*FL_SCHEMES, "centralized")
SWEEP_SCHEMES = ("proposed", "nojam_sitout", "nojam_wait", "fedavg_a", "fedavg_b")
SYNC_SCHEMES = ("proposed", "nojam_sitout", "nojam_wait")
LABELS = {
    "proposed": "proposed (DT, optimal jamming)",
    "nojam_sitout": "no jamming, unsyncable twins sit out",
    "nojam_wait": "no jamming, round waits for every twin",
    "fedavg_a": "FedAvg (a): BLDs sit out",
    "fedavg_b": "FedAvg (b): BLDs train on device",
    "fedavg_b_cross": "FedAvg (b) at the crossover iota_B",
    "centralized": "centralized",
}


# ---------------------------------------------------------------------- clusters
def with_blds(cluster: Cluster, keep: np.ndarray) -> Cluster:
    """The cluster reduced to its GLDs and the BLDs at ``keep`` (indices)."""
    return Cluster(
        gld=cluster.gld,
        bld=cluster.bld.subset(np.asarray(keep, dtype=np.int64)),
        constants=cluster.constants,
    )


def with_bld_data(cluster: Cluster, data_bits: np.ndarray) -> Cluster:
    """The cluster with the BLDs' D_jB replaced (sync, eq. (23), and twin training, eq. (6))."""
    b = cluster.bld
    return Cluster(
        gld=cluster.gld,
        bld=BLDParams(
            data_bits=np.asarray(data_bits, dtype=float),
            gain_coordinator=b.gain_coordinator,
            gain_eavesdropper=b.gain_eavesdropper,
            power_w=b.power_w,
        ),
        constants=cluster.constants,
    )


def state_update_cluster(cluster: Cluster, state_bits: float) -> Cluster:
    """``static`` mode after round 1: each BLD syncs ``state_bits``; the twins still train on
    D_jB. v_c is rescaled so that tB_loc (eq. (6)) keeps its value on the smaller D."""
    if cluster.n_bld == 0:
        return cluster
    d = cluster.bld.data_bits
    small = with_bld_data(cluster, np.full(d.size, float(state_bits)))
    k = cluster.constants
    vc = k.coordinator_cpu_hz * float(np.sum(small.bld.data_bits) / np.sum(d))
    return Cluster(gld=small.gld, bld=small.bld, constants=k.replace(coordinator_cpu_hz=vc))


def bld_share(clusters: list[Cluster]) -> float:
    """Share of all data bits held by BLDs."""
    b = sum(float(np.sum(c.bld.data_bits)) for c in clusters)
    g = sum(float(np.sum(c.gld.data_bits)) for c in clusters)
    return b / (b + g)


def rescale_bld_share(clusters: list[Cluster], share: float) -> list[Cluster]:
    """Every BLD's D multiplied by one factor so that the BLDs hold ``share`` of all data."""
    if not 0 < share < 1:
        raise ValueError(f"share: must lie in (0, 1), got {share}")
    b = sum(float(np.sum(c.bld.data_bits)) for c in clusters)
    g = sum(float(np.sum(c.gld.data_bits)) for c in clusters)
    if b <= 0 or g <= 0:
        raise ValueError("clusters: need BLD and GLD data to rescale the share")
    f = share / (1 - share) * g / b
    return [with_bld_data(c, c.bld.data_bits * f) if c.n_bld else c for c in clusters]


@dataclass(frozen=True)
class BLDHardware:
    """A BLD's own hardware (the drawn device's attributes), for FedAvg (b)."""

    cpu_hz: np.ndarray
    bandwidth_hz: np.ndarray
    battery_j: np.ndarray

    @classmethod
    def of(cls, sc: Scenario) -> BLDHardware:
        a, j = sc.attributes, sc.bld_index
        return cls(cpu_hz=a.cpu_hz[j], bandwidth_hz=a.bandwidth_hz[j], battery_j=a.battery_j[j])


# ---------------------------------------------------------------------- latency per scheme
def proposed_latency(cluster: Cluster) -> dict[str, Any]:
    """Scheme 1: the exact solver (optimal jamming); every twin syncs at Q*."""
    res = solve(cluster, "exact")
    ok = bool(res.feasible)
    return {
        "T_s": res.T if ok else math.nan,
        "Q_w": res.Q if ok else math.nan,
        "y_s": res.y if ok else math.nan,
        "tG_s": res.tG if ok else math.nan,
        "bld": np.arange(cluster.n_bld) if ok else None,
        "gld": ok,
    }


def _fixed_q_latency(cluster: Cluster, q_w: float) -> float:
    """Best round time at a fixed aggregate jamming Q (``nan``: infeasible)."""
    k = cluster.constants
    if cluster.n_gld == 0:
        if q_w > 0:
            return math.nan  # nobody to jam
        t = float(sync_time_s(cluster, 0.0)) + bld_twin_latency_s(cluster)
        return t + k.fixed_latency_s if math.isfinite(t) else math.nan
    alloc = allocation_at_q(cluster, q_w)
    if alloc is None:
        return math.nan
    y, tg, q = alloc
    ev = evaluate_allocation(cluster, y_s=y, tg_s=tg, jam_power_w=q)
    if not ev.is_feasible(1e-7) or not math.isfinite(ev.latency_s):
        return math.nan
    return ev.latency_s


def nojam_sitout_latency(cluster: Cluster) -> dict[str, Any]:
    """Scheme 2: Q = 0; only BLDs with R_j(0) > 0 sync, the others' twins sit out."""
    synced = (
        np.flatnonzero(secrecy_rate_bps(cluster, 0.0) > 0)
        if cluster.n_bld
        else np.zeros(0, dtype=np.int64)
    )
    if cluster.n_gld == 0 and synced.size == 0:
        return {"T_s": math.nan, "bld": None, "gld": False, "Q_w": 0.0}
    t = _fixed_q_latency(with_blds(cluster, synced), 0.0)
    ok = math.isfinite(t)
    return {"T_s": t, "bld": synced if ok else None, "gld": ok and cluster.n_gld > 0, "Q_w": 0.0}


def wait_jamming_w(cluster: Cluster, factor: float) -> float:
    """Scheme 3's Q: 0 if every R_j(0) > 0 (eq. (22)'s bound < 0), else the least Q that
    syncs every BLD within ``factor`` x the slowest clean-link sync time (``inf``: none)."""
    if cluster.n_bld == 0 or jamming_lower_bound_w(cluster) < 0:
        return 0.0
    k, b = cluster.constants, cluster.bld
    clean = b.data_bits / (
        k.bandwidth_hz * np.log2(1 + b.power_w * b.gain_coordinator / k.noise_bld_w)
    )
    return max(0.0, float(min_jamming_for_sync_w(cluster, factor * float(clean.max()))))


def nojam_wait_latency(cluster: Cluster, factor: float) -> dict[str, Any]:
    """Scheme 3: every twin syncs at the least sufficient jamming; the GLDs must pay it."""
    q = wait_jamming_w(cluster, factor)
    t = _fixed_q_latency(cluster, q) if math.isfinite(q) else math.nan
    ok = math.isfinite(t)
    return {
        "T_s": t,
        "Q_w": q,
        "bld": np.arange(cluster.n_bld) if ok else None,
        "gld": ok and cluster.n_gld > 0,
    }


def fedavg_gld_path_s(cluster: Cluster) -> float:
    """FedAvg's GLDs: y + tG of the exact GLD-only problem (no BLDs, so no jamming, and the
    full energy budgets). 0 with no GLD; ``nan`` where even that is infeasible."""
    if cluster.n_gld == 0:
        return 0.0
    res = solve(with_blds(cluster, np.zeros(0, dtype=np.int64)), "exact")
    return float(res.T_GLD) if res.feasible else math.nan


def fedavg_a_latency(cluster: Cluster) -> dict[str, Any]:
    """Scheme 4: FedAvg, BLDs cannot train (eq. (3)) and sit out; GLD-only optimum."""
    path = fedavg_gld_path_s(cluster)
    ok = cluster.n_gld > 0 and math.isfinite(path)
    return {
        "T_s": path + cluster.constants.fixed_latency_s if ok else math.nan,
        "gld_path_s": path,
        "bld": np.zeros(0, dtype=np.int64) if ok else None,
        "gld": ok,
    }


def fedavg_b_blds(
    cluster: Cluster, hw: BLDHardware, cycles_per_bit: float
) -> dict[str, np.ndarray]:
    """Scheme 5's BLDs on their own hardware: times, energies and who affords the round."""
    k, b = cluster.constants, cluster.bld
    cycles = k.local_iterations * cycles_per_bit * b.data_bits
    t_loc = cycles / hw.cpu_hz  # eq. (4) on the BLD
    e_loc = k.switched_capacitance * cycles * hw.cpu_hz**2  # eq. (5) on the BLD
    rate = hw.bandwidth_hz * np.log2(1.0 + b.power_w * b.gain_coordinator / k.noise_bld_w)
    t_up = k.model_bits / rate  # orthogonal link, no secrecy requirement
    e_up = b.power_w * t_up
    return {
        "t_loc_s": t_loc,
        "t_up_s": t_up,
        "energy_j": e_loc + e_up,
        "kept": e_loc + e_up <= hw.battery_j,
    }


def fedavg_b_latency(
    cluster: Cluster, hw: BLDHardware, cycles_per_bit: float, gld_path_s: float
) -> dict[str, Any]:
    """Scheme 5: T_s = max(GLD path, slowest kept BLD path) + fixed; BLDs over budget drop."""
    k = cluster.constants
    gld_ok = cluster.n_gld > 0 and math.isfinite(gld_path_s)
    paths: list[float] = [gld_path_s] if gld_ok else []
    kept = np.zeros(0, dtype=np.int64)
    if cluster.n_bld:
        d = fedavg_b_blds(cluster, hw, cycles_per_bit)
        kept = np.flatnonzero(d["kept"])
        paths += list((d["t_loc_s"] + d["t_up_s"])[kept])
    if not paths:
        return {"T_s": math.nan, "bld": None, "gld": False, "dropped": cluster.n_bld}
    return {
        "T_s": max(paths) + k.fixed_latency_s,
        "bld": kept,
        "gld": gld_ok,
        "dropped": cluster.n_bld - kept.size,
    }


def crossover_cycles_per_bit(
    clusters: list[Cluster], hws: list[BLDHardware], gld_paths: list[float], t_prop_s: float
) -> float:
    """Smallest iota_B at which FedAvg (b)'s round exceeds ``t_prop_s`` (0: already at any
    iota_B; ``inf``: never, every BLD slow enough drops out first)."""
    best = math.inf
    for c, hw, g in zip(clusters, hws, gld_paths, strict=True):
        k = c.constants
        if c.n_gld and math.isfinite(g) and g + k.fixed_latency_s > t_prop_s:
            return 0.0
        if not c.n_bld:
            continue
        d = fedavg_b_blds(c, hw, 1.0)  # per unit iota_B: t_loc and e_loc scale linearly
        e_loc_unit = d["energy_j"] - c.bld.power_w * d["t_up_s"]
        affordable = (hw.battery_j - c.bld.power_w * d["t_up_s"]) / e_loc_unit
        need = (t_prop_s - k.fixed_latency_s - d["t_up_s"]) / d["t_loc_s"]
        for n, a in zip(need, affordable, strict=True):
            if a <= 0:
                continue  # drops out at any iota_B (its upload alone exceeds the battery)
            if n <= 0:
                return 0.0
            if n < a:
                best = min(best, float(n))
    return best
