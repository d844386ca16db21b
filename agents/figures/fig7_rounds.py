"""Fig. 7's settings (``Args``) and the run of one configuration.

One configuration is one topology seed at one BLD share: every scheme's per-cluster times
(:mod:`agents.figures.fig7_schemes`) become round times (a round lasts the longest
per-cluster time of the clusters that take part), each distinct participation set is
trained once with :class:`dtfl_env.fl.system.FederatedSystem` and its accuracy curve
reused on each scheme's own time axis, and FedAvg (b)'s iota_B is swept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.figures.fig7_schemes import (
    SWEEP_SCHEMES,
    SYNC_SCHEMES,
    BLDHardware,
    bld_share,
    crossover_cycles_per_bit,
    fedavg_a_latency,
    fedavg_b_latency,
    nojam_sitout_latency,
    nojam_wait_latency,
    proposed_latency,
    state_update_cluster,
)
from dtfl_env.config import Cluster, Constants
from dtfl_env.fl.config import FLConfig
from dtfl_env.fl.system import ClusterRequest, FederatedSystem
from dtfl_env.scenarios import Scenario

FIGURE = "fig7_accuracy"


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


# ---------------------------------------------------------------------- latency per scheme
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
