"""Fig. 6: secrecy throughput of each BLD with and without cooperative jamming (Table II).

Three jamming choices on the Table II cluster (6 GLDs jam, 4 BLDs sync their twins):

- ``optimal``: the exact solver's jamming powers q* (aggregate Q* at the eavesdropper);
- ``fixed``: every GLD jams at ``--fixed-fraction`` (default half) of its Q_max;
- ``none``: no jamming, Q = 0.

For each: the secrecy rate R_j of every BLD (eqs. (9), (21)), its sync time D_jB / R_j, the
DT sync time tB_up = max_j D_jB / R_j (eq. (23); infinite, i.e. sync impossible, when some
R_j = 0) and, where defined, the round latency T (eq. (11)) with the best (y, tG) for that
jamming: for ``optimal`` the exact T*; for ``fixed`` the jamming powers are held and (y, tG)
minimise y + tG under the energy budgets left after jamming (a 1-D search over tG).

    dtfl reproduce fig6                   # -> runs/fig6_secrecy/
    python -m agents.figures.fig6 --help  # every option (the example script takes the same)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.patches import Patch
from scipy.optimize import minimize_scalar

from agents.figures.common import (
    finish,
    new_figure,
    parse_args,
    prepare_out,
    progress_bar,
    save_figure,
    write_csv,
)
from dtfl_env.model import (
    bld_twin_latency_s,
    evaluate_allocation,
    min_upload_time_s,
    secrecy_rate_bps,
    sync_time_s,
    upload_energy_j,
)
from dtfl_env.scenarios import table2_cluster
from solvers import solve

FIGURE = "fig6_secrecy"
CASES = ("none", "fixed", "optimal")
LABELS = {"none": "no jamming", "fixed": "fixed jamming", "optimal": "optimal jamming"}


@dataclass
class Args:
    fixed_fraction: float = field(
        default=0.5, metadata={"help": "fixed case: q_i = this * Q_max,i"}
    )
    seed: int = field(default=0, metadata={"help": "unused: the run is deterministic"})
    quick: bool = field(default=False, metadata={"help": "tiny budget (same run: it is fast)"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def best_times_fixed_jamming(
    cluster,
    q_w: np.ndarray,  # type: ignore[no-untyped-def]
) -> tuple[float, float] | None:
    """min y + tG with the jamming powers ``q_w`` held fixed; ``None`` if nothing is feasible.

    After jamming, GLD i has s_i = E_max,i - q_i tB_up left (eq. (10)); for a given tG the
    smallest y is max(y_min, max_i sqrt(K_i / (s_i - E_i^up(tG)))) with K_i = kappa (eta iota
    D_iG)^3 (eqs. (5), (17)) and y_min = max_i eta iota D_iG / V_max,i (14b). y + tG is
    minimised over tG >= tG_min (14c) on a log grid, then refined by a bounded search.
    """
    k, g = cluster.constants, cluster.gld
    q = np.asarray(q_w, dtype=float)
    u = float(sync_time_s(cluster, float(q @ g.gain_eavesdropper)))
    if not math.isfinite(u):
        return None
    left = g.energy_budget_j - q * u  # eq. (10)
    if np.any(left <= 0):
        return None
    cd = k.cycles_per_round_bit * g.data_bits
    k_loc = k.switched_capacitance * cd**3
    y_min = float(np.max(cd / g.max_cpu_hz))
    tg_min = min_upload_time_s(cluster)

    def y_of(tg: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            rest = left - upload_energy_j(cluster, tg)
            y = np.where(rest > 0, np.sqrt(k_loc / np.where(rest > 0, rest, 1.0)), np.inf)
        return np.maximum(np.max(y, axis=-1), y_min)

    grid = tg_min * np.geomspace(1.0, 1e4, 4000)
    total = y_of(grid) + grid
    if not np.isfinite(total).any():
        return None
    j = int(np.argmin(total))
    lo, hi = np.log(grid[max(j - 1, 0)]), np.log(grid[min(j + 1, grid.size - 1)])
    best = minimize_scalar(
        lambda s: float(y_of(np.array(math.exp(s))) + math.exp(s)),
        bounds=(lo, hi),
        method="bounded",
        options={"xatol": 1e-12},
    )
    tg = math.exp(best.x) if best.fun <= total[j] else float(grid[j])
    return float(y_of(np.array(tg))), tg


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    t0 = time.perf_counter()
    if not 0 <= args.fixed_fraction <= 1:
        raise SystemExit("--fixed-fraction: must be in [0, 1]")
    out = prepare_out(args.out)
    cluster = table2_cluster()
    g, b = cluster.gld, cluster.bld
    tb_loc = bld_twin_latency_s(cluster)
    res = solve(cluster, "exact")
    q_cases = {
        "none": np.zeros(cluster.n_gld),
        "fixed": args.fixed_fraction * g.max_jam_power_w,
        "optimal": np.asarray(res.q, dtype=float),
    }

    bld_rows, case_rows = [], []
    for case in progress_bar(CASES, progress, desc=FIGURE):
        q = q_cases[case]
        q_agg = float(q @ g.gain_eavesdropper)  # eq. (20)
        rate = secrecy_rate_bps(cluster, q_agg)  # eq. (21)
        with np.errstate(divide="ignore"):
            t_sync = np.where(rate > 0, b.data_bits / np.where(rate > 0, rate, 1.0), np.inf)
        tb_up = float(sync_time_s(cluster, q_agg))  # eq. (23)
        for j in range(cluster.n_bld):
            bld_rows.append(
                {
                    "case": case,
                    "bld": j + 1,
                    "Q_w": q_agg,
                    "secrecy_rate_bps": float(rate[j]),
                    "sync_time_s": float(t_sync[j]),
                    "can_sync": bool(rate[j] > 0),
                }
            )
        note = ""
        t = t_gld = t_bld = y = tg = math.nan
        feasible = False
        if not math.isfinite(tb_up):
            blocked = [j + 1 for j in range(cluster.n_bld) if rate[j] <= 0]
            note = (
                f"BLD(s) {blocked} have zero secrecy rate: their twins cannot sync "
                "securely, tB_up and T are undefined (infinite)"
            )
        else:
            if case == "optimal":
                y, tg = res.y, res.tG
            else:
                best = best_times_fixed_jamming(cluster, q)
                if best is None:
                    note = "the GLDs' energy budgets cannot pay for this jamming"
                else:
                    y, tg = best
            if math.isfinite(y):
                ev = evaluate_allocation(cluster, y_s=y, tg_s=tg, jam_power_w=q)
                feasible = ev.is_feasible(1e-7)
                t, t_gld, t_bld = ev.latency_s, ev.t_gld_s, ev.t_bld_s
                if not feasible:
                    note = f"allocation breaks a constraint: {ev.violated(1e-7)}"
                    t = math.nan
        case_rows.append(
            {
                "case": case,
                "Q_w": q_agg,
                "q_w": " ".join(f"{v:.6g}" for v in q),
                "min_secrecy_rate_bps": float(rate.min()),
                "tB_up_s": tb_up,
                "tB_loc_s": tb_loc,
                "y_s": y,
                "tG_s": tg,
                "T_GLD_s": t_gld,
                "T_BLD_s": t_bld,
                "T_s": t,
                "feasible": feasible,
                "note": note,
            }
        )
    if abs(case_rows[-1]["T_s"] - res.T) > 1e-6 * res.T:
        print(
            f"  WARNING: evaluated T at the exact q* ({case_rows[-1]['T_s']}) differs from "
            f"the solver's T* ({res.T})"
        )

    path_bld = write_csv(out / f"{FIGURE}.csv", bld_rows)
    path_case = write_csv(out / f"{FIGURE}_latency.csv", case_rows)

    fig, axes = new_figure(2, 1, width=5.8, height=4.4)
    width = 0.26
    x = np.arange(cluster.n_bld)
    for k, case in enumerate(CASES):
        r = np.array([row["secrecy_rate_bps"] for row in bld_rows if row["case"] == case]) / 1e6
        q_agg = case_rows[k]["Q_w"]
        extra = f" (q_i = {args.fixed_fraction:g} Q_max,i)" if case == "fixed" else ""
        bars = axes[0].bar(
            x + (k - 1) * width,
            r,
            width,
            label=f"{LABELS[case]}{extra}, Q = {q_agg:.3g} W",
            color=f"C{k}",
        )
        for bar, val in zip(bars, r, strict=True):
            if val <= 0:
                axes[0].annotate(
                    "0",
                    (bar.get_x() + bar.get_width() / 2, 0),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                    color=f"C{k}",
                )
    axes[0].set_xticks(x, [f"BLD {j + 1}" for j in range(cluster.n_bld)])
    axes[0].set_ylabel("secrecy throughput R_j (Mbit/s)")
    axes[0].set_title(
        "(a) secrecy throughput of each BLD, eq. (21) (0: the twin cannot sync)", fontsize=9
    )
    top = max(row["secrecy_rate_bps"] for row in bld_rows) / 1e6
    axes[0].set_ylim(0, 1.45 * top)
    axes[0].legend(fontsize=8, loc="upper center")
    for k, row in enumerate(case_rows):
        if not math.isfinite(row["tB_up_s"]):
            axes[1].annotate(
                "undefined:\nsync impossible",
                (k, 0),
                xytext=(0, 40),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
            continue
        for off, key, hatch in ((-0.2, "tB_up_s", ""), (0.2, "T_s", "//")):
            val = row[key]
            if math.isfinite(val):
                axes[1].bar(k + off, val, 0.38, color=f"C{k}", hatch=hatch, edgecolor="k")
                axes[1].annotate(
                    f"{val:.3f} s",
                    (k + off, val),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
            else:
                axes[1].annotate(
                    "infeasible",
                    (k + off, 0),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
    axes[1].legend(
        handles=[
            Patch(facecolor="white", edgecolor="k", label="DT sync time tB_up"),
            Patch(facecolor="white", edgecolor="k", hatch="//", label="round latency T"),
        ],
        fontsize=8,
        loc="upper left",
    )
    tops = [r[key] for r in case_rows for key in ("tB_up_s", "T_s") if math.isfinite(r[key])]
    if tops:
        axes[1].set_ylim(0, 1.2 * max(tops))
    axes[1].set_xticks(range(len(CASES)), [LABELS[c] for c in CASES], fontsize=8)
    axes[1].set_ylabel("time (s)")
    axes[1].set_title("(b) DT sync time (plain) and round latency T (hatched)", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(
        "Fig. 6: cooperative jamming and the BLDs' secrecy throughput (Table II)", fontsize=10
    )
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    print("Fig. 6 on Table II: secrecy throughput R_j (Mbit/s) per BLD")
    print(
        f"  {'case':22s} {'Q (W)':>10} "
        + " ".join(f"{'BLD ' + str(j + 1):>8}" for j in range(cluster.n_bld))
        + f" {'tB_up (s)':>10} {'T (s)':>8}"
    )
    for row in case_rows:
        r = [br["secrecy_rate_bps"] / 1e6 for br in bld_rows if br["case"] == row["case"]]
        print(
            f"  {LABELS[row['case']]:22s} {row['Q_w']:>10.4g} "
            + " ".join(f"{v:>8.4f}" for v in r)
            + f" {row['tB_up_s']:>10.4g} {row['T_s']:>8.4g}"
        )
        if row["note"]:
            print(f"    {row['note']}")
    opt = {br["bld"]: br["secrecy_rate_bps"] for br in bld_rows if br["case"] == "optimal"}
    none = {br["bld"]: br["secrecy_rate_bps"] for br in bld_rows if br["case"] == "none"}
    raised = all(opt[j] > none[j] for j in opt)
    print(f"  optimal jamming raises every BLD's secrecy throughput over no jamming: {raised}")
    summary = {
        "cases": case_rows,
        "per_bld": bld_rows,
        "optimal_raises_every_bld": raised,
        "exact": {"T_s": res.T, "Q_w": res.Q, "status": res.status},
    }
    return finish(out, FIGURE, args, summary, t0, [path_bld, path_case, path_png], argv=argv)


if __name__ == "__main__":
    main()
