"""Fig. 7: accuracy of the global model against simulated wall-clock time, four schemes.

S seeded random clusters of k devices each (``classify_and_build``: eq. (3) splits every
cluster into GLDs and BLDs) share the embedded MNIST training set in proportion to their
data sizes (``FederatedSystem``). The time axis is the *latency model's* seconds (eq. (11)
and the rules below), never CPU time. The clusters are static over the run (same gains,
same data every round), so every scheme's round time is a constant.

1. ``proposed``: DT-assisted FL with optimal cooperative jamming. Per cluster the exact
   solver's allocation gives T_s = T* (eq. (11)); at its Q* every BLD has a positive secrecy
   rate, so every twin syncs and trains. Clusters run in parallel: a round lasts
   max_s T_s. A cluster the exact solver proves infeasible sits every round out (its
   devices' data never reaches the global model) and does not count in the max.
2. ``no_jamming``: the same scheme with Q = 0. A BLD whose secrecy rate R_j(0) is zero
   cannot sync securely, so its twin sits out (``fl.twin_stale_policy="skip"``,
   ``bld_synced`` = the BLDs with R_j(0) > 0). The cluster's time is that of the best
   allocation at Q = 0 (``agents.policies.allocation_at_q``) of the cluster reduced to its
   GLDs and the BLDs that do sync: tB_up = max over those BLDs of D_j / R_j(0) (eq. (23)),
   tB_loc over their twins only (eq. (6)). A cluster with no feasible allocation at Q = 0
   sits out.
3. ``fedavg``: plain FedAvg, no twins, no secrecy requirement. Our latency model of this
   baseline: a BLD trains on its own CPU v_j (the device's ``cpu_hz``) for eta iota D_j / v_j
   (eq. (4) with the BLD's data; ``--bld-slowdown`` multiplies it) and then uploads the
   model (L bits) on an orthogonal link at W log2(1 + p_j h_jC / n_j); the GLDs do exactly
   what they do in the proposed scheme (the exact allocation's y and tG; where the exact
   problem is infeasible, the best GLD-only allocation at Q = 0, and the cluster sits out if
   that is infeasible too). T_s = max(y + tG, max_j BLD path) + T_agg + T_up + T_MC.
   Every device trains as a client.
4. ``centralized``: one CNN trained on all the training data (``train_centralized``), from
   the same initial model. Simulated time per epoch (one pass) = iota * (sum of every
   device's D) / v_c (= eta iota sum D / v_c for the default eta = 1): the coordinator's
   CPU processing all data, as eq. (6) charges the twins. The one-off transfer of the raw
   data to the server is not charged (a lower bound; it is also what breaks privacy).

What the FL part shares: one partition, initial model and minibatch plan (``--fl-seed``);
local epochs = eta (``constants.local_iterations``). Hierarchical FedAvg (cluster, then
global, both by sample count) equals flat FedAvg over the same clients, so ``proposed`` and
``fedavg`` train the same model whenever the same clusters take part: they differ only on
the time axis.

    python examples/fig7_accuracy.py            # -> runs/fig7_accuracy/ (~8 min on 2 cores)
    python examples/fig7_accuracy.py --quick    # 3 clusters, 2 rounds, MLP, 1 epoch
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from _common import finish, new_figure, parse_args, prepare_out, save_figure, write_csv

from agents.policies import allocation_at_q
from dtfl_env.config import Cluster
from dtfl_env.fl.config import FLConfig
from dtfl_env.fl.system import ClusterRequest, FederatedSystem
from dtfl_env.fl.training import train_centralized
from dtfl_env.model import bld_twin_latency_s, evaluate_allocation, secrecy_rate_bps, sync_time_s
from dtfl_env.scenarios import Scenario, classify_and_build
from solvers import solve

FIGURE = "fig7_accuracy"
SCHEMES = ("proposed", "no_jamming", "fedavg", "centralized")
LABELS = {"proposed": "proposed (DT-assisted FL, optimal jamming)",
          "no_jamming": "proposed without jamming (Q = 0)",
          "fedavg": "FedAvg (BLDs train on device)",
          "centralized": "centralized CNN"}
STYLES = {"proposed": ("C0", "-", "o"), "no_jamming": ("C1", "--", "s"),
          "fedavg": ("C2", "-.", "^"), "centralized": ("C3", ":", "D")}


@dataclass
class Args:
    clusters: int = field(default=10, metadata={"help": "number S of clusters"})
    devices: int = field(default=10, metadata={"help": "local devices k per cluster"})
    rounds: int = field(default=10, metadata={"help": "global FL rounds per scheme"})
    central_epochs: int = field(default=5, metadata={"help": "epochs of the centralized CNN"})
    model: str = field(default="cnn", metadata={"help": "cnn (the paper's) or mlp"})
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate (FL and centralized)"})
    batch_size: int = field(default=10, metadata={"help": "minibatch size B"})
    bld_slowdown: float = field(
        default=1.0, metadata={"help": "FedAvg sensitivity: multiply the BLDs' on-device "
                               "training time eta iota D_j / v_j by this (1: the model's)"})
    target_accuracy: float = field(default=0.9,
                                   metadata={"help": "report the simulated time to reach it"})
    device: str = field(default="auto", metadata={"help": "torch device: auto, cpu or cuda"})
    fl_seed: int | None = field(default=None,
                                metadata={"help": "FL seed (partition, init, minibatches); "
                                          "none: --seed"})
    seed: int = field(default=0, metadata={"help": "seed of the random clusters"})
    quick: bool = field(default=False, metadata={"help": "tiny budget: 3 clusters, 2 rounds, "
                                                 "MLP, 1 centralized epoch"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


# ---------------------------------------------------------------------- latency per scheme
def _with_blds(cluster: Cluster, keep: np.ndarray) -> Cluster:
    """The cluster reduced to its GLDs and the BLDs at ``keep``."""
    return Cluster(gld=cluster.gld, bld=cluster.bld.subset(np.asarray(keep, dtype=np.int64)),
                   constants=cluster.constants)


def proposed_times(cluster: Cluster) -> tuple[dict[str, Any], Any]:
    """Scheme 1: the exact solver's T* (optimal jamming); every twin syncs at Q*."""
    res = solve(cluster, "exact")
    row: dict[str, Any] = {"exact_feasible": bool(res.feasible), "Q_star_w": res.Q,
                           "T_proposed_s": res.T if res.feasible else math.nan,
                           "T_GLD_star_s": res.T_GLD, "T_BLD_star_s": res.T_BLD,
                           "tB_up_star_s": res.tB_up, "min_secrecy_rate_star_bps": math.nan}
    if res.feasible and cluster.n_bld:
        rate = secrecy_rate_bps(cluster, res.Q)
        row["min_secrecy_rate_star_bps"] = float(rate.min())
        if not np.all(rate > 0):  # cannot happen: a finite T* needs every R_j > 0 (eq. (23))
            raise RuntimeError("exact allocation leaves a BLD with zero secrecy rate")
    return row, res


def no_jamming_times(cluster: Cluster) -> tuple[dict[str, Any], np.ndarray | None]:
    """Scheme 2: Q = 0; only BLDs with R_j(0) > 0 sync. Returns the row and the synced mask
    (``None``: the cluster sits out)."""
    k = cluster.constants
    synced = (secrecy_rate_bps(cluster, 0.0) > 0) if cluster.n_bld else np.zeros(0, bool)
    keep = np.flatnonzero(synced)
    row: dict[str, Any] = {"nojam_synced_blds": int(keep.size), "nojam_feasible": False,
                           "T_nojam_s": math.nan, "tB_up_nojam_s": math.nan}
    if cluster.n_gld == 0:
        if keep.size == 0:
            return row, None
        sub = Cluster(gld=cluster.gld, bld=cluster.bld.subset(keep), constants=k)
        t_bld = float(sync_time_s(sub, 0.0)) + bld_twin_latency_s(sub)
        row.update(nojam_feasible=True, T_nojam_s=t_bld + k.fixed_latency_s,
                   tB_up_nojam_s=float(sync_time_s(sub, 0.0)))
        return row, synced
    sub = _with_blds(cluster, keep)
    alloc = allocation_at_q(sub, 0.0)
    if alloc is None:
        return row, None
    y, tg, q = alloc
    ev = evaluate_allocation(sub, y_s=y, tg_s=tg, jam_power_w=q)
    if not ev.is_feasible(1e-7) or not math.isfinite(ev.latency_s):
        return row, None
    row.update(nojam_feasible=True, T_nojam_s=ev.latency_s, tB_up_nojam_s=ev.tb_up_s)
    return row, synced


def fedavg_times(sc: Scenario, res: Any, slowdown: float) -> dict[str, Any]:
    """Scheme 3: BLDs train on their own CPUs and upload the model; GLDs as in scheme 1."""
    c = sc.cluster
    k, b = c.constants, c.bld
    row: dict[str, Any] = {"fedavg_gld_source": "none", "fedavg_gld_path_s": 0.0,
                           "fedavg_bld_local_max_s": 0.0, "fedavg_bld_upload_max_s": 0.0,
                           "fedavg_bld_path_s": 0.0, "T_fedavg_s": math.nan}
    if c.n_bld:
        v = sc.attributes.cpu_hz[sc.bld_index]
        local = slowdown * k.cycles_per_round_bit * b.data_bits / v  # eq. (4) on the BLD
        rate = k.bandwidth_hz * np.log2(1.0 + b.power_w * b.gain_coordinator / k.noise_bld_w)
        upload = k.model_bits / rate  # orthogonal link, no secrecy requirement
        row.update(fedavg_bld_local_max_s=float(local.max()),
                   fedavg_bld_upload_max_s=float(upload.max()),
                   fedavg_bld_path_s=float(np.max(local + upload)))
        # for the crossover factor: this BLD's unscaled local time and its upload time
        row["_bld_local_unit"] = k.cycles_per_round_bit * b.data_bits / v
        row["_bld_upload"] = upload
    if c.n_gld:
        if res.feasible:
            row.update(fedavg_gld_source="exact", fedavg_gld_path_s=res.y + res.tG)
        else:
            alloc = allocation_at_q(_with_blds(c, np.zeros(0, dtype=np.int64)), 0.0)
            if alloc is None:
                return row
            row.update(fedavg_gld_source="gld-only, Q = 0", fedavg_gld_path_s=alloc[0] + alloc[1])
    row["T_fedavg_s"] = (max(row["fedavg_gld_path_s"], row["fedavg_bld_path_s"])
                         + k.fixed_latency_s)
    return row


# ---------------------------------------------------------------------- training
def run_fl(system: FederatedSystem, seed: int, scheme: str, rounds: int, round_s: float,
           requests: list[ClusterRequest]) -> list[dict[str, Any]]:
    """Fresh model, then ``rounds`` global rounds with the given cluster requests."""
    system.reset(seed=seed)
    acc, loss = system.evaluate()
    rows = [{"scheme": scheme, "round": 0, "sim_time_s": 0.0, "accuracy": acc, "loss": loss,
             "train_samples": 0, "clusters_in": len(requests)}]
    for r in range(1, rounds + 1):
        out = system.clusters_round(requests)
        system.global_aggregate([p for p, _ in out], [n for _, n in out])
        acc, loss = system.evaluate()
        rows.append({"scheme": scheme, "round": r, "sim_time_s": r * round_s, "accuracy": acc,
                     "loss": loss, "train_samples": int(sum(n for _, n in out)),
                     "clusters_in": len(requests)})
        print(f"  {scheme:11s} round {r:3d}  t = {r * round_s:8.2f} s  accuracy {acc:.4f}  "
              f"loss {loss:.4f}", flush=True)
    return rows


def time_to(rows: list[dict[str, Any]], target: float) -> float:
    for row in rows:
        if row["accuracy"] >= target:
            return float(row["sim_time_s"])
    return math.nan


def main(argv: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    t0 = time.perf_counter()
    if args.quick:
        args.clusters, args.rounds, args.model, args.central_epochs = 3, 2, "mlp", 1
    for name in ("clusters", "devices", "rounds", "central_epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')}: must be >= 1")
    if not args.bld_slowdown > 0:
        raise SystemExit("--bld-slowdown: must be > 0")
    fl_seed = args.seed if args.fl_seed is None else args.fl_seed
    out = prepare_out(args.out)

    # --- clusters and their latencies under each scheme
    rng = np.random.default_rng(args.seed)
    scenarios = [classify_and_build(rng, args.devices) for _ in range(args.clusters)]
    consts = scenarios[0].cluster.constants
    cluster_rows: list[dict[str, Any]] = []
    nojam_mask: dict[int, np.ndarray] = {}
    for s, sc in enumerate(scenarios):
        c = sc.cluster
        row: dict[str, Any] = {"cluster": s, "n_gld": c.n_gld, "n_bld": c.n_bld}
        prop, res = proposed_times(c)
        row.update(prop)
        nj, mask = no_jamming_times(c)
        row.update(nj)
        if mask is not None:
            nojam_mask[s] = mask
        row.update(fedavg_times(sc, res, args.bld_slowdown))
        cluster_rows.append(row)

    def round_time(key: str) -> tuple[float, list[int]]:
        ok = [r["cluster"] for r in cluster_rows if math.isfinite(r[key])]
        return (max(cluster_rows[s][key] for s in ok) if ok else math.nan), ok

    t_prop, in_prop = round_time("T_proposed_s")
    t_nojam, in_nojam = round_time("T_nojam_s")
    t_fed, in_fed = round_time("T_fedavg_s")
    # the BLD slowdown above which FedAvg's round outlasts the proposed one: the GLD path is
    # the same (y* + tG* <= T* - offsets), so only a BLD path can make it longer
    crossover = math.inf
    if any(cluster_rows[s]["fedavg_gld_path_s"] + consts.fixed_latency_s > t_prop
           for s in in_fed):  # a GLD-only allocation (exact infeasible) is already slower
        crossover = 0.0
    for r in cluster_rows:
        if "_bld_local_unit" in r and r["cluster"] in in_fed and math.isfinite(t_prop):
            need = (t_prop - consts.fixed_latency_s - r["_bld_upload"]) / r["_bld_local_unit"]
            crossover = max(0.0, min(crossover, float(np.min(need))))
    for r in cluster_rows:
        r.pop("_bld_local_unit", None)
        r.pop("_bld_upload", None)

    # --- federated training, one fresh model per scheme
    cfg = FLConfig(model=args.model, lr=args.lr, batch_size=args.batch_size,
                   local_epochs=max(1, round(consts.local_iterations)), seed=fl_seed,
                   twin_stale_policy="skip", device=args.device)
    system = FederatedSystem(cfg, [sc.cluster for sc in scenarios])
    init = system.global_params.copy()
    plans = {
        "proposed": (t_prop, [ClusterRequest(s) for s in in_prop]),
        "no_jamming": (t_nojam, [ClusterRequest(s, None, nojam_mask[s], None) for s in in_nojam]),
        "fedavg": (t_fed, [ClusterRequest(s) for s in in_fed]),
    }
    rows: list[dict[str, Any]] = []
    per_scheme: dict[str, list[dict[str, Any]]] = {}
    notes: dict[str, str] = {}
    for scheme, (t_round, reqs) in plans.items():
        if not reqs:
            notes[scheme] = "no cluster can take part (all infeasible): not run"
            print(f"  {scheme}: {notes[scheme]}")
            per_scheme[scheme] = []
            continue
        per_scheme[scheme] = run_fl(system, fl_seed, scheme, args.rounds, t_round, reqs)
        rows.extend(per_scheme[scheme])

    # --- centralized baseline
    total_bits = sum(float(np.sum(sc.cluster.gld.data_bits) + np.sum(sc.cluster.bld.data_bits))
                     for sc in scenarios)
    t_epoch = consts.cycles_per_bit * total_bits / consts.coordinator_cpu_hz
    system.reset(seed=fl_seed)
    acc0, loss0 = system.evaluate()
    cen = train_centralized(system.data, args.model, args.central_epochs, args.batch_size,
                            args.lr, seed=fl_seed, device=system.device, init=init)
    cen_rows = [{"scheme": "centralized", "round": 0, "sim_time_s": 0.0, "accuracy": acc0,
                 "loss": loss0, "train_samples": 0, "clusters_in": args.clusters}]
    for e, (acc, loss) in enumerate(zip(cen.accuracy, cen.loss, strict=True), start=1):
        cen_rows.append({"scheme": "centralized", "round": e, "sim_time_s": e * t_epoch,
                         "accuracy": acc, "loss": loss, "train_samples": system.data.n_train,
                         "clusters_in": args.clusters})
        print(f"  centralized epoch {e:3d}  t = {e * t_epoch:8.2f} s  accuracy {acc:.4f}  "
              f"loss {loss:.4f}", flush=True)
    per_scheme["centralized"] = cen_rows
    rows.extend(cen_rows)

    path_csv = write_csv(out / f"{FIGURE}.csv", rows, ["scheme", "round", "sim_time_s",
                                                       "accuracy", "loss", "train_samples",
                                                       "clusters_in"])
    path_clusters = write_csv(out / f"{FIGURE}_clusters.csv", cluster_rows)

    # --- figure
    fig, axes = new_figure(2, 1, width=5.6, height=4.4)
    for scheme in SCHEMES:
        pts = per_scheme.get(scheme) or []
        if not pts:
            continue
        color, ls, marker = STYLES[scheme]
        t = [p["sim_time_s"] for p in pts]
        a = [100 * p["accuracy"] for p in pts]
        x = [p["round"] for p in pts]
        axes[0].plot(t, a, color=color, ls=ls, marker=marker, ms=4, label=LABELS[scheme])
        axes[1].plot(x, a, color=color, ls=ls, marker=marker, ms=4, label=LABELS[scheme])
    axes[0].set_xlabel("simulated time (s, latency model)")
    axes[0].set_title("(a) accuracy against simulated wall-clock time", fontsize=9)
    axes[1].set_xlabel("global round (centralized: epoch)")
    axes[1].set_title("(b) accuracy per round / epoch", fontsize=9)
    for ax in axes:
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Fig. 7: global-model accuracy, {args.clusters} clusters x {args.devices} "
                 f"devices, {args.model.upper()}, {system.data.source} MNIST "
                 f"({system.data.n_train} train / {system.data.n_test} test)", fontsize=9)
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    # --- summary
    times = {"proposed": t_prop, "no_jamming": t_nojam, "fedavg": t_fed, "centralized": t_epoch}
    members = {"proposed": in_prop, "no_jamming": in_nojam, "fedavg": in_fed,
               "centralized": list(range(args.clusters))}
    schemes: dict[str, Any] = {}
    for scheme in SCHEMES:
        pts = per_scheme.get(scheme) or []
        last = pts[-1] if pts else {}
        schemes[scheme] = {
            "label": LABELS[scheme],
            "final_accuracy": last.get("accuracy", math.nan),
            "final_loss": last.get("loss", math.nan),
            "best_accuracy": max((p["accuracy"] for p in pts), default=math.nan),
            "rounds": last.get("round", 0),
            "time_per_round_s": times[scheme],
            "final_sim_time_s": last.get("sim_time_s", math.nan),
            "time_to_target_s": time_to(pts, args.target_accuracy) if pts else math.nan,
            "clusters_in": members[scheme],
            "train_samples_per_round": pts[-1]["train_samples"] if pts else 0,
            "note": notes.get(scheme, ""),
        }
    same = (bool(per_scheme["proposed"]) and in_prop == in_fed
            and [p["accuracy"] for p in per_scheme["proposed"]]
            == [p["accuracy"] for p in per_scheme["fedavg"]])
    checks = {
        "fedavg_slower_per_round_than_proposed": bool(t_fed > t_prop),
        "bld_slowdown_for_fedavg_slower": crossover,
        "fedavg_same_accuracy_per_round_as_proposed": same,
        "jamming_faster_per_round": bool(t_prop < t_nojam) if math.isfinite(t_nojam) else True,
    }

    print(f"Fig. 7 on {args.clusters} clusters x {args.devices} devices (seed {args.seed}), "
          f"{args.model}, {system.data.source} MNIST {system.data.n_train}/{system.data.n_test}")
    target = f"t to {args.target_accuracy:g}"
    print(f"  {'scheme':12s} {'clusters':>8} {'samples/rd':>10} {'s/round':>9} "
          f"{'rounds':>6} {'sim time (s)':>12} {'final acc':>9} {target:>9}")
    for scheme in SCHEMES:
        v = schemes[scheme]
        print(f"  {scheme:12s} {len(v['clusters_in']):>8d} {v['train_samples_per_round']:>10d} "
              f"{v['time_per_round_s']:>9.3f} {v['rounds']:>6d} {v['final_sim_time_s']:>12.2f} "
              f"{100 * v['final_accuracy']:>8.2f}% {v['time_to_target_s']:>9.2f}")
    print(f"  FedAvg slower per round than the proposed scheme: "
          f"{checks['fedavg_slower_per_round_than_proposed']} (it would be from a BLD "
          f"on-device slowdown of {crossover:.3g}x)")
    summary = {"schemes": schemes, "checks": checks, "clusters": cluster_rows,
               "centralized_data_bits": total_bits, "fl_config": cfg.to_dict(),
               "data": {"source": system.data.source, "n_train": system.data.n_train,
                        "n_test": system.data.n_test}}
    return finish(out, FIGURE, args, summary, t0, [path_csv, path_clusters, path_png])


if __name__ == "__main__":
    main()
