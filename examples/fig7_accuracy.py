"""Fig. 7: accuracy of the global model against simulated time, each scheme on its own
optimised allocation, over several topology seeds.

Per seed, S random clusters of k devices (``classify_and_build``: eq. (3) splits each into
GLDs and BLDs) share the embedded MNIST training set in proportion to their data sizes D,
label-skewed (Dirichlet, ``--alpha``). The model upload L of eq. (7) is the trained model's
serialised size (``model_size_bits``: the CNN's 21,840 float32 parameters, 0.70 Mbit). Time
is the latency model's seconds (eq. (11)), never CPU time. Clusters run in parallel: a round
lasts the maximum of the per-cluster times T_s of the clusters that take part; a cluster
with no feasible allocation sits out (its devices' data never reaches the model).

Data and sync (``--data-mode``):

- ``stream`` (default, the paper's reading): every round each device collects D fresh bits
  (eqs. (4), (6) train on D per round; Algorithm 1 line 9 syncs the BLDs every round and
  eq. (23) charges D_jB per round: the sync is "dataset updates"). A twin starts empty and
  trains only on the chunk it synced securely this round (``fl.data_stream="window"``,
  ``--arrival-rounds`` A chunks per shard, repeating after A rounds as MNIST is finite); a
  FedAvg BLD trains on the same chunk on its own hardware.
- ``static``: the data never change; round 1 syncs D_jB, every later round syncs only a state
  update of ``--state-bits`` bits per BLD (eq. (1)'s State/Resource), the twins keep
  training on D_jB (eq. (6) unchanged).

Schemes (each on its own best allocation):

1. ``proposed``: the exact solver's T* (optimal jamming Q*; every twin syncs).
2. ``nojam_sitout``: Q = 0; twins with R_j(0) = 0 cannot sync and sit out; T_s from the
   best allocation at Q = 0 (``allocation_at_q``) of the cluster reduced to the GLDs and
   the BLDs that sync.
3. ``nojam_wait``: the round waits for every twin, at the least jamming that lets each sync:
   Q = 0 where eq. (22)'s lower bound is negative (every R_j(0) > 0), else the smallest Q
   with tB_up(Q) <= ``--wait-sync-factor`` x the slowest BLD's clean-link sync time
   D_j / (W log2(1 + p_j h_jC / n_j)) (``min_jamming_for_sync_w``). The GLDs must afford
   that Q (best allocation at fixed Q), else the cluster sits out.
4. ``fedavg_a``: FedAvg with the BLDs as eq. (3) and the paper have them: they cannot train,
   sit out, and their data is lost. The GLDs solve the GLD-only problem (no jamming, full
   energy budgets): the exact solver on the cluster without its BLDs.
5. ``fedavg_b``: FedAvg with the BLDs training and uploading on their own hardware (the
   scenario's CPU v_j, bandwidth W_j and battery B_j of the drawn device): local training
   iota_B D_j / v_j (eq. (4)) and kappa iota_B D_j v_j^2 J (eq. (5)), then the model (L
   bits) at W_j log2(1 + p_j h_jC / n_j) on an orthogonal link, p_j L / rate J. A BLD whose
   training plus upload energy exceeds its battery drops out. GLDs as in ``fedavg_a``.
   T_s = max(GLD path, slowest BLD path) + T_agg + T_up + T_MC. ``--bld-cycles-per-bit``
   iota_B (default: the cluster's iota) is swept (``--iota-sweep``); the crossover is the
   smallest iota_B at which FedAvg (b)'s round outlasts the proposed one (in ``static``
   mode the proposed rounds after the full sync), exactly: the least per-BLD
   (T_prop - fixed - t_up) v_j / D_j at which that BLD still affords its energy.
   ``fedavg_b_cross`` is FedAvg (b) just above its crossover.
6. ``centralized``: one model on all the training data; an epoch costs iota A sum(D) / v_c
   of coordinator time (A = 1 for ``static``); the raw-data transfer is not charged.

Schemes whose participating clients are the same train the same model (hierarchical FedAvg
by sample count is flat FedAvg, and a twin trains on its BLD's data): each distinct
participation set is trained once per seed and its accuracy curve reused on each scheme's
own time axis. ``--bld-shares`` rescales every BLD's D (sync, twin training and partition
alike) so that the BLDs hold the given share of all data, and reruns the schemes.

    python examples/fig7_accuracy.py            # -> runs/fig7_accuracy/
    python examples/fig7_accuracy.py --quick    # 2 seeds, 3 clusters, 2 rounds, MLP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _common import finish, new_figure, parse_args, prepare_out, save_figure, write_csv
from scipy import stats

from dtfl_env.config import BLDParams, Cluster, Constants
from dtfl_env.fl.config import FLConfig, model_size_bits
from dtfl_env.fl.data import load_mnist
from dtfl_env.fl.system import ClusterRequest, FederatedSystem
from dtfl_env.fl.training import train_centralized
from dtfl_env.model import (
    bld_twin_latency_s,
    evaluate_allocation,
    jamming_lower_bound_w,
    min_jamming_for_sync_w,
    secrecy_rate_bps,
    sync_time_s,
)
from dtfl_env.scenarios import Scenario, classify_and_build
from solvers import allocation_at_q, solve

FIGURE = "fig7_accuracy"
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
STYLES = {
    "proposed": ("C0", "-"),
    "nojam_sitout": ("C1", "--"),
    "nojam_wait": ("C4", "--"),
    "fedavg_a": ("C2", "-."),
    "fedavg_b": ("C5", "-."),
    "fedavg_b_cross": ("C6", ":"),
    "centralized": ("C3", ":"),
}


@dataclass
class Args:
    seeds: tuple[int, ...] = field(
        default=(0, 1, 2),
        metadata={"help": "topology seeds (each also seeds the partition, init and minibatches)"},
    )
    seed: int | None = field(
        default=None,
        metadata={"help": "run this one seed instead of --seeds (no confidence interval)"},
    )
    clusters: int = field(default=10, metadata={"help": "number S of clusters"})
    devices: int = field(default=10, metadata={"help": "local devices k per cluster"})
    rounds: int = field(default=60, metadata={"help": "global FL rounds per scheme"})
    central_epochs: int = field(default=3, metadata={"help": "epochs of the centralized model"})
    model: str = field(default="cnn", metadata={"help": "cnn (the paper's) or mlp"})
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate"})
    batch_size: int = field(default=10, metadata={"help": "minibatch size B"})
    alpha: float = field(default=0.5, metadata={"help": "Dirichlet concentration (non-IID)"})
    data_mode: str = field(
        default="stream",
        metadata={
            "help": "stream: fresh data and a full sync every round (the paper's); static: "
            "one full sync, then state updates"
        },
    )
    arrival_rounds: int = field(
        default=4,
        metadata={"help": "stream: A, chunks per shard (a device's data arrive over A rounds)"},
    )
    state_bits: float = field(
        default=1e4,
        metadata={"help": "static: bits per BLD of the state update synced after round 1"},
    )
    bld_cycles_per_bit: float | None = field(
        default=None,
        metadata={
            "help": "FedAvg (b): iota_B of a BLD training on device (none: the cluster's iota)"
        },
    )
    iota_sweep: tuple[float, ...] = field(
        default=(20, 50, 100, 200, 500, 1000, 2000),
        metadata={"help": "FedAvg (b): iota_B values swept"},
    )
    wait_sync_factor: float = field(
        default=10.0,
        metadata={
            "help": "nojam_wait: a twin that needs jamming gets the least Q that syncs it within "
            "this many times its clean-link sync time"
        },
    )
    bld_shares: tuple[float, ...] = field(
        default=(0.25, 0.5),
        metadata={"help": "BLD shares of all data to sweep (besides the drawn one)"},
    )
    sweep_rounds: int | None = field(
        default=30, metadata={"help": "rounds of the share sweep (none: --rounds)"}
    )
    target_accuracy: float = field(
        default=0.85, metadata={"help": "report the simulated time to reach it"}
    )
    device: str = field(default="cpu", metadata={"help": "torch device: auto, cpu or cuda"})
    quick: bool = field(
        default=False,
        metadata={"help": "tiny budget: seeds 0 1, 3 clusters, 2 rounds, MLP, 1 centralized epoch"},
    )
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def check_args(args: Args) -> None:
    """Validate the arguments; a bad one raises ``SystemExit`` naming its flag."""
    for name in ("clusters", "devices", "rounds", "central_epochs", "batch_size", "arrival_rounds"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: must be >= 1")
    if args.sweep_rounds is not None and args.sweep_rounds < 1:
        raise SystemExit("--sweep-rounds: must be >= 1")
    if not args.seeds or len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        raise SystemExit("--seeds: need distinct integers >= 0")
    if args.data_mode not in ("stream", "static"):
        raise SystemExit(f"--data-mode: must be 'stream' or 'static', got {args.data_mode!r}")
    for name in ("state_bits", "wait_sync_factor", "alpha", "lr"):
        v = getattr(args, name)
        if not (math.isfinite(v) and v > 0):
            raise SystemExit(f"--{name.replace('_', '-')}: must be finite and > 0, got {v}")
    if args.wait_sync_factor <= 1:
        raise SystemExit("--wait-sync-factor: must be > 1 (1 would need infinite jamming)")
    iota = args.bld_cycles_per_bit
    if iota is not None and not (math.isfinite(iota) and iota > 0):
        raise SystemExit(f"--bld-cycles-per-bit: must be finite and > 0, got {iota}")
    if any(not (math.isfinite(v) and v > 0) for v in args.iota_sweep):
        raise SystemExit("--iota-sweep: values must be finite and > 0")
    if any(not 0 < s < 1 for s in args.bld_shares):
        raise SystemExit("--bld-shares: values must lie in (0, 1)")
    if not 0 < args.target_accuracy <= 1:
        raise SystemExit("--target-accuracy: must be in (0, 1]")


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


def sync_latencies(cluster: Cluster, args: Args) -> dict[str, dict[str, Any]]:
    """The per-cluster time and participants of the schemes with twins (schemes 1-3)."""
    return {
        "proposed": proposed_latency(cluster),
        "nojam_sitout": nojam_sitout_latency(cluster),
        "nojam_wait": nojam_wait_latency(cluster, args.wait_sync_factor),
    }


def cluster_latencies(
    sc: Scenario, cluster: Cluster, args: Args, iota_b: float
) -> dict[str, dict[str, Any]]:
    """Every scheme's per-cluster time and participants (first round in ``static`` mode)."""
    fed_a = fedavg_a_latency(cluster)
    return {
        **sync_latencies(cluster, args),
        "fedavg_a": fed_a,
        "fedavg_b": fedavg_b_latency(cluster, BLDHardware.of(sc), iota_b, fed_a["gld_path_s"]),
    }


# ---------------------------------------------------------------------- one configuration
def round_times(
    per_cluster: list[dict[str, Any]], later: list[dict[str, Any]] | None, rounds: int
) -> tuple[list[float], list[int]]:
    """Per-round times (max over the clusters that take part) and those clusters."""
    members = [s for s, r in enumerate(per_cluster) if math.isfinite(r["T_s"])]
    if not members:
        return [math.nan] * rounds, []
    first = max(per_cluster[s]["T_s"] for s in members)
    if later is None:
        return [first] * rounds, members
    nxt = [
        later[s]["T_s"] if math.isfinite(later[s]["T_s"]) else per_cluster[s]["T_s"]
        for s in members
    ]  # a smaller sync is never infeasible where the full one was
    return [first] + [max(nxt)] * (rounds - 1), members


def requests_of(
    per_cluster: list[dict[str, Any]], members: list[int], clusters: list[Cluster]
) -> list[ClusterRequest]:
    reqs = []
    for s in members:
        r = per_cluster[s]
        gld = np.arange(clusters[s].n_gld) if r["gld"] else np.zeros(0, dtype=np.int64)
        bld = np.asarray(r["bld"], dtype=np.int64)
        reqs.append(ClusterRequest(s, gld, bld, bld))
    return reqs


def participation_key(reqs: list[ClusterRequest]) -> tuple[Any, ...]:
    return tuple(
        (
            r.cluster,
            tuple(np.asarray(r.gld_participants).tolist()),
            tuple(np.asarray(r.bld_participants).tolist()),
        )
        for r in reqs
    )


def run_fl(
    system: FederatedSystem, seed: int, reqs: list[ClusterRequest], rounds: int
) -> list[tuple[float, float, int]]:
    """(accuracy, loss, samples) after each of ``rounds`` rounds, from a fresh model."""
    system.reset(seed=seed)
    acc, loss = system.evaluate()
    curve = [(acc, loss, 0)]
    for _ in range(rounds):
        out = system.clusters_round(reqs)
        system.global_aggregate([p for p, _ in out], [n for _, n in out])
        acc, loss = system.evaluate()
        curve.append((acc, loss, int(sum(n for _, n in out))))
    return curve


def evaluate_config(
    scenarios: list[Scenario],
    clusters: list[Cluster],
    args: Args,
    seed: int,
    rounds: int,
    data: Any,
    cfg: FLConfig,
    *,
    headline: bool,
) -> dict[str, Any]:
    """Latencies, crossover (headline only) and accuracy curves of one seed / BLD share."""
    k = clusters[0].constants
    iota_b = k.cycles_per_bit if args.bld_cycles_per_bit is None else args.bld_cycles_per_bit
    per = [
        cluster_latencies(sc, c, args, iota_b) for sc, c in zip(scenarios, clusters, strict=True)
    ]
    later = None
    if args.data_mode == "static":
        later = [sync_latencies(state_update_cluster(c, args.state_bits), args) for c in clusters]
    schemes = list(SWEEP_SCHEMES)
    hws = [BLDHardware.of(sc) for sc in scenarios]
    gld_paths = [p["fedavg_a"]["gld_path_s"] for p in per]
    times: dict[str, list[float]] = {}
    members: dict[str, list[int]] = {}
    for name in schemes:  # FedAvg never syncs: its rounds are all alike in either mode
        syncs = later is not None and name in SYNC_SCHEMES
        times[name], members[name] = round_times(
            [p[name] for p in per], [p[name] for p in later] if syncs else None, rounds
        )
    extra: dict[str, Any] = {}
    if headline:
        t_prop = times["proposed"][-1]  # the steady round (static: after the full sync)
        cross = (
            crossover_cycles_per_bit(clusters, hws, gld_paths, t_prop)
            if math.isfinite(t_prop)
            else math.nan
        )
        extra["crossover_cycles_per_bit"] = cross
        sweep = []
        for iota in sorted({*args.iota_sweep, iota_b}):
            rows = [
                fedavg_b_latency(c, hw, iota, g)
                for c, hw, g in zip(clusters, hws, gld_paths, strict=True)
            ]
            t = [r["T_s"] for r in rows if math.isfinite(r["T_s"])]
            sweep.append(
                {
                    "iota_b": iota,
                    "T_fedavg_b_s": max(t) if t else math.nan,
                    "T_proposed_s": t_prop,
                    "dropped_blds": int(sum(r["dropped"] for r in rows)),
                }
            )
        extra["iota_sweep"] = sweep
        if math.isfinite(cross):
            iota_x = cross * (1 + 1e-9) if cross > 0 else iota_b
            rows = [
                fedavg_b_latency(c, hw, iota_x, g)
                for c, hw, g in zip(clusters, hws, gld_paths, strict=True)
            ]
            for p, r in zip(per, rows, strict=True):
                p["fedavg_b_cross"] = r
            times["fedavg_b_cross"], members["fedavg_b_cross"] = round_times(rows, None, rounds)
            schemes.append("fedavg_b_cross")
    # --- train once per distinct participation set
    system = FederatedSystem(cfg, clusters, seed=seed, data=data)
    cache: dict[tuple[Any, ...], list[tuple[float, float, int]]] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    reuse: dict[str, str] = {}
    for name in schemes:
        reqs = requests_of([p[name] for p in per], members[name], clusters)
        if not reqs:
            curves[name] = []
            continue
        key = participation_key(reqs)
        if key not in cache:
            cache[key] = run_fl(system, seed, reqs, rounds)
        else:
            reuse[name] = next(n for n in curves if curves[n] and curves[n][0]["_key"] == key)
        t = np.concatenate([[0.0], np.cumsum(times[name])])
        curves[name] = [
            {
                "round": r,
                "sim_time_s": float(t[r]),
                "accuracy": a,
                "loss": lo,
                "train_samples": n,
                "_key": key,
            }
            for r, (a, lo, n) in enumerate(cache[key])
        ]
    for pts in curves.values():
        for p in pts:
            p.pop("_key")
    cluster_rows = []
    for s, p in enumerate(per):
        row: dict[str, Any] = {
            "cluster": s,
            "n_gld": clusters[s].n_gld,
            "n_bld": clusters[s].n_bld,
            "Q_star_w": p["proposed"]["Q_w"],
            "Q_wait_w": p["nojam_wait"]["Q_w"],
            "fedavg_gld_path_s": p["fedavg_a"]["gld_path_s"],
            "proposed_y_plus_tG_s": p["proposed"]["y_s"] + p["proposed"]["tG_s"],
            "nojam_synced_blds": -1
            if p["nojam_sitout"]["bld"] is None
            else len(p["nojam_sitout"]["bld"]),
            "fedavg_b_dropped_blds": p["fedavg_b"]["dropped"],
        }
        for name in schemes:
            row[f"T_{name}_s"] = p[name]["T_s"]
            if later is not None and name in SYNC_SCHEMES:
                row[f"T_{name}_later_s"] = later[s][name]["T_s"]
        cluster_rows.append(row)
    return {
        "times": times,
        "members": members,
        "curves": curves,
        "clusters": cluster_rows,
        "trained_sets": len(cache),
        "reuse": reuse,
        "bld_share": bld_share(clusters),
        **extra,
    }


def fl_config(args: Args, constants: Constants) -> FLConfig:
    """The FL settings of a run: Dirichlet partition; twins that did not sync sit out;
    ``stream``: fresh chunks every round, twins start empty; ``static``: all data from the
    start (the one full sync of round 1 gives the twin everything). No validation split:
    Fig. 7 runs no ledger, so every non-test image trains (4,000 embedded digits)."""
    stream = args.data_mode == "stream"
    return FLConfig(
        model=args.model,
        lr=args.lr,
        batch_size=args.batch_size,
        local_epochs=max(1, round(constants.local_iterations)),
        partition="dirichlet",
        alpha=args.alpha,
        twin_stale_policy="skip",
        data_stream="window" if stream else "prefix",
        data_arrival_rounds=args.arrival_rounds if stream else 1,
        validation_fraction=0.0,
        device=args.device,
    )


# ---------------------------------------------------------------------- statistics
def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float, int]:
    """Mean and half-width of the two-sided Student-t interval over the finite values."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    if v.size == 1:
        return float(v[0]), math.nan, 1
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    return float(v.mean()), float(half), int(v.size)


def accuracy_at(curve: list[dict[str, Any]], t_s: float) -> float:
    """Accuracy of the last model finished by simulated time ``t_s``."""
    return max(
        (p for p in curve if p["sim_time_s"] <= t_s * (1 + 1e-12)), key=lambda p: p["sim_time_s"]
    )["accuracy"]


def common_time_s(curves: dict[str, list[dict[str, Any]]]) -> float:
    """The shortest final time among the FL schemes: a time every one of them has covered."""
    return min(c[-1]["sim_time_s"] for name, c in curves.items() if c and name in FL_SCHEMES)


def time_to(curve: list[dict[str, Any]], target: float) -> float:
    return next((p["sim_time_s"] for p in curve if p["accuracy"] >= target), math.nan)


def fmt(mean: float, half: float, scale: float = 1.0, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(half):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * half:.{digits}f}"


def main(argv: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    t0 = time.perf_counter()
    if args.quick:
        args.seeds, args.clusters, args.rounds, args.model = (0, 1), 3, 2, "mlp"
        args.central_epochs, args.bld_shares, args.sweep_rounds = 1, (0.5,), 2
    if args.seed is not None:
        args.seeds = (args.seed,)
    check_args(args)
    out = prepare_out(args.out)
    consts = Constants(model_bits=model_size_bits(args.model))  # L = the trained model
    stream = args.data_mode == "stream"
    cfg = fl_config(args, consts)
    data = load_mnist(
        cfg.data_source,
        cfg.data_root,
        cfg.download,
        cfg.test_fraction,
        seed=0,
        validation_fraction=cfg.validation_fraction,
    )
    sweep_rounds = args.sweep_rounds or args.rounds
    curve_rows: list[dict[str, Any]] = []
    cluster_rows: list[dict[str, Any]] = []
    iota_rows: list[dict[str, Any]] = []
    share_rows: list[dict[str, Any]] = []
    head: dict[int, dict[str, Any]] = {}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        scenarios = [
            classify_and_build(rng, args.devices, constants=consts) for _ in range(args.clusters)
        ]
        base = [sc.cluster for sc in scenarios]
        for share in (None, *args.bld_shares):
            clusters = base if share is None else rescale_bld_share(base, share)
            headline = share is None
            res = evaluate_config(
                scenarios,
                clusters,
                args,
                seed,
                args.rounds if headline else sweep_rounds,
                data,
                cfg,
                headline=headline,
            )
            tag = "drawn" if headline else f"{share:g}"
            print(
                f"seed {seed}, BLD share {tag} ({100 * res['bld_share']:.1f} % of the data):"
                f" {res['trained_sets']} distinct participation sets trained",
                flush=True,
            )
            for name, pts in res["curves"].items():
                for p in pts:
                    curve_rows.append(
                        {"seed": seed, "bld_share": res["bld_share"], "scheme": name, **p}
                    )
                if pts:
                    print(
                        f"  {name:15s} {res['times'][name][-1]:8.3f} s/round  "
                        f"t = {pts[-1]['sim_time_s']:9.2f} s  accuracy "
                        f"{100 * pts[-1]['accuracy']:.2f} %",
                        flush=True,
                    )
            for r in res["clusters"]:
                cluster_rows.append({"seed": seed, "bld_share": res["bld_share"], **r})
            for name in SWEEP_SCHEMES:  # the drawn share at the sweep's round count too
                pts = res["curves"][name][: sweep_rounds + 1]
                share_rows.append(
                    {
                        "seed": seed,
                        "share_setting": tag,
                        "bld_share": res["bld_share"],
                        "scheme": name,
                        "clusters_in": len(res["members"][name]),
                        "final_accuracy": pts[-1]["accuracy"] if pts else math.nan,
                        "final_sim_time_s": pts[-1]["sim_time_s"] if pts else math.nan,
                        "samples_last_round": pts[-1]["train_samples"] if pts else 0,
                    }
                )
            if headline:
                head[seed] = res
                for r in res["iota_sweep"]:
                    iota_rows.append({"seed": seed, **r})
        # centralized: every sample, an epoch = iota * A * sum(D) / v_c of coordinator time
        bits = sum(float(np.sum(c.gld.data_bits) + np.sum(c.bld.data_bits)) for c in base)
        a_eff = args.arrival_rounds if stream else 1
        t_epoch = consts.cycles_per_bit * a_eff * bits / consts.coordinator_cpu_hz
        system = FederatedSystem(cfg, base, seed=seed, data=data)
        acc0, loss0 = system.evaluate()
        cen = train_centralized(
            system.data,
            args.model,
            args.central_epochs,
            args.batch_size,
            args.lr,
            seed=seed,
            device=system.device,
            init=system.global_params,
        )
        pts = [{"round": 0, "sim_time_s": 0.0, "accuracy": acc0, "loss": loss0, "train_samples": 0}]
        pts += [
            {
                "round": e,
                "sim_time_s": e * t_epoch,
                "accuracy": a,
                "loss": lo,
                "train_samples": system.data.n_train,
            }
            for e, (a, lo) in enumerate(zip(cen.accuracy, cen.loss, strict=True), 1)
        ]
        head[seed]["curves"]["centralized"] = pts
        head[seed]["times"]["centralized"] = [t_epoch] * args.central_epochs
        head[seed]["members"]["centralized"] = list(range(args.clusters))
        for p in pts:
            curve_rows.append(
                {"seed": seed, "bld_share": head[seed]["bld_share"], "scheme": "centralized", **p}
            )
        print(
            f"  {'centralized':15s} {t_epoch:8.3f} s/epoch  t = {pts[-1]['sim_time_s']:9.2f}"
            f" s  accuracy {100 * pts[-1]['accuracy']:.2f} %",
            flush=True,
        )

    # --- tables: mean ± 95 % t-interval over the seeds
    table: dict[str, Any] = {}
    for name in SCHEMES:
        got = [head[s] for s in args.seeds if head[s]["curves"].get(name)]
        finals = [h["curves"][name][-1] for h in got]
        per_cluster = [
            [
                r[f"T_{name}_s"]
                for r in h["clusters"]
                if math.isfinite(r.get(f"T_{name}_s", math.nan))
            ]
            for h in got
        ]
        table[name] = {
            "label": LABELS[name],
            "seeds": len(got),
            "final_accuracy": mean_ci([f["accuracy"] for f in finals]),
            "final_sim_time_s": mean_ci([f["sim_time_s"] for f in finals]),
            "round_s": mean_ci([h["times"][name][-1] for h in got]),
            "first_round_s": mean_ci([h["times"][name][0] for h in got]),
            "cluster_median_s": mean_ci([float(np.median(p)) for p in per_cluster if p]),
            "clusters_in": mean_ci([len(h["members"][name]) for h in got]),
            "samples_last_round": mean_ci([f["train_samples"] for f in finals]),
            "time_to_target_s": mean_ci(
                [time_to(h["curves"][name], args.target_accuracy) for h in got]
            ),
            "accuracy_at_common_time": mean_ci(
                [accuracy_at(h["curves"][name], common_time_s(h["curves"])) for h in got]
            ),
        }
    cross = [head[s]["crossover_cycles_per_bit"] for s in args.seeds]
    shares: dict[str, Any] = {}
    for tag in ["drawn", *(f"{s:g}" for s in args.bld_shares)]:
        rows = [r for r in share_rows if r["share_setting"] == tag]
        shares[tag] = {"bld_share": mean_ci([r["bld_share"] for r in rows])[0]}
        for name in SWEEP_SCHEMES:
            mine = [r for r in rows if r["scheme"] == name]
            shares[tag][name] = {
                "final_accuracy": mean_ci([r["final_accuracy"] for r in mine]),
                "final_sim_time_s": mean_ci([r["final_sim_time_s"] for r in mine]),
                "clusters_in": mean_ci([r["clusters_in"] for r in mine]),
            }

    # --- files
    path_csv = write_csv(
        out / f"{FIGURE}.csv",
        curve_rows,
        ["seed", "bld_share", "scheme", "round", "sim_time_s", "accuracy", "loss", "train_samples"],
    )
    path_clusters = write_csv(out / f"{FIGURE}_clusters.csv", cluster_rows)
    path_iota = write_csv(out / f"{FIGURE}_iota.csv", iota_rows)
    path_shares = write_csv(out / f"{FIGURE}_shares.csv", share_rows)
    fig, axes = new_figure(3, 1, width=4.6, height=3.8)
    first = head[args.seeds[0]]
    for name in SCHEMES:
        pts = first["curves"].get(name) or []
        if pts:
            color, ls = STYLES[name]
            axes[0].plot(
                [p["sim_time_s"] for p in pts],
                [100 * p["accuracy"] for p in pts],
                color=color,
                ls=ls,
                label=LABELS[name],
            )
    axes[0].set_xscale("symlog", linthresh=10.0)  # rounds of 1.7 s to 110 s on one axis
    axes[0].set_xlabel("simulated time (s, linear to 10 s, then log)")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_title(f"(a) seed {args.seeds[0]}, drawn BLD share", fontsize=9)
    axes[0].legend(fontsize=6, loc="lower right")
    tags = list(shares)
    xs = [100 * shares[t]["bld_share"] for t in tags]
    for name in SWEEP_SCHEMES:
        m = [100 * shares[t][name]["final_accuracy"][0] for t in tags]
        h = [100 * np.nan_to_num(shares[t][name]["final_accuracy"][1]) for t in tags]
        color, ls = STYLES[name]
        axes[1].errorbar(
            xs, m, yerr=h, color=color, ls=ls, marker="o", ms=3, capsize=2, label=LABELS[name]
        )
    axes[1].set_xlabel("BLD share of all data (%)")
    axes[1].set_ylabel("final test accuracy (%)")
    axes[1].set_title(f"(b) BLD-share sweep, mean ± 95 % CI ({len(args.seeds)} seeds)", fontsize=9)
    axes[1].legend(fontsize=6)
    for seed in args.seeds:
        sw = head[seed]["iota_sweep"]
        line = axes[2].plot(
            [r["iota_b"] for r in sw],
            [r["T_fedavg_b_s"] for r in sw],
            marker="o",
            ms=3,
            label=f"FedAvg (b), seed {seed}",
        )
        axes[2].axhline(sw[0]["T_proposed_s"], color=line[0].get_color(), ls=":", lw=1)
    axes[2].set_xscale("log")
    axes[2].set_xlabel("BLD cycles per bit iota_B")
    axes[2].set_ylabel("round time (s); dotted: proposed")
    axes[2].set_title("(c) FedAvg (b) round against iota_B", fontsize=9)
    axes[2].legend(fontsize=6)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Fig. 7: {args.clusters} clusters x {args.devices} devices, "
        f"{args.model.upper()}, Dirichlet alpha {args.alpha:g}, data {args.data_mode}",
        fontsize=9,
    )
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    # --- printout
    n = len(args.seeds)
    print(
        f"\nFig. 7, {n} seeds, mean ± 95 % t-interval; L = {consts.model_bits:.0f} bits "
        f"({args.model}), data {args.data_mode}"
    )
    print(
        f"  {'scheme':15s} {'final acc (%)':>15} {'acc at common t':>16} "
        f"{'sim time (s)':>18} {'round (s)':>14} {'cluster median (s)':>18} {'clusters':>10}"
    )
    for name in SCHEMES:
        v = table[name]
        print(
            f"  {name:15s} {fmt(*v['final_accuracy'][:2], 100):>15} "
            f"{fmt(*v['accuracy_at_common_time'][:2], 100):>16} "
            f"{fmt(*v['final_sim_time_s'][:2]):>18} {fmt(*v['round_s'][:2], 1, 3):>14} "
            f"{fmt(*v['cluster_median_s'][:2], 1, 3):>18} "
            f"{fmt(*v['clusters_in'][:2], 1, 1):>10}"
        )
    print(
        f"  crossover iota_B (FedAvg (b) round > proposed): "
        f"{', '.join(f'{c:.4g}' for c in cross)} (seeds {list(args.seeds)})"
    )
    print("  BLD-share sweep, final accuracy (%):")
    for v in shares.values():
        print(
            f"    share {100 * v['bld_share']:5.1f} %: "
            + "  ".join(
                f"{name} {fmt(*v[name]['final_accuracy'][:2], 100)}" for name in SWEEP_SCHEMES
            )
        )
    summary = {
        "schemes": table,
        "crossover_cycles_per_bit": {"per_seed": cross, "mean_ci": mean_ci(cross)},
        "bld_share_sweep": shares,
        "model_bits": consts.model_bits,
        "common_time_s": {str(s): common_time_s(head[s]["curves"]) for s in args.seeds},
        "per_seed": {
            str(s): {
                "times": head[s]["times"],
                "members": head[s]["members"],
                "trained_sets": head[s]["trained_sets"],
                "reused_curves": head[s]["reuse"],
                "iota_sweep": head[s]["iota_sweep"],
            }
            for s in args.seeds
        },
        "fl_config": cfg.to_dict(),
        "data": {"source": data.source, "n_train": data.n_train, "n_test": data.n_test},
    }
    return finish(
        out, FIGURE, args, summary, t0, [path_csv, path_clusters, path_iota, path_shares, path_png]
    )


if __name__ == "__main__":
    main()
