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

    dtfl reproduce fig7                   # -> runs/fig7_accuracy/
    dtfl reproduce fig7 --quick           # 2 seeds, 3 clusters, 2 rounds, MLP
    python -m agents.figures.fig7 --help  # every option (the example script takes the same)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from agents.figures.common import (
    finish,
    new_figure,
    parse_args,
    prepare_out,
    progress_bar,
    save_figure,
    write_csv,
)
from agents.figures.fig7_rounds import FIGURE, Args, check_args, evaluate_config, fl_config
from agents.figures.fig7_schemes import (
    FL_SCHEMES,
    LABELS,
    SCHEMES,
    SWEEP_SCHEMES,
    rescale_bld_share,
)
from dtfl_env.config import Constants
from dtfl_env.fl.config import model_size_bits
from dtfl_env.fl.data import load_mnist
from dtfl_env.fl.system import FederatedSystem
from dtfl_env.fl.training import train_centralized
from dtfl_env.scenarios import classify_and_build

STYLES = {
    "proposed": ("C0", "-"),
    "nojam_sitout": ("C1", "--"),
    "nojam_wait": ("C4", "--"),
    "fedavg_a": ("C2", "-."),
    "fedavg_b": ("C5", "-."),
    "fedavg_b_cross": ("C6", ":"),
    "centralized": ("C3", ":"),
}


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


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
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
    for seed in progress_bar(args.seeds, progress, desc=FIGURE):
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
        out,
        FIGURE,
        args,
        summary,
        t0,
        [path_csv, path_clusters, path_iota, path_shares, path_png],
        argv=argv,
    )


if __name__ == "__main__":
    main()
