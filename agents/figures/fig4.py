"""Fig. 4: round latency T against the aggregate jamming Q for model sizes L = 1-4 Mbit.

On the Table II cluster, for each L, T(Q) is computed exactly on a dense grid: at each Q the
best (y, tG, q) is found by ``agents.policies.allocation_at_q`` (problem P-GLD solved
exactly) and charged by ``dtfl_env.model.evaluate_allocation``, i.e.
T(Q) = max(y + tG, tB_up(Q) + tB_loc) + T_agg + T_up + T_MC (eqs. (11)-(13), (23)).
The grid is log-spaced in Q - Q_lo (the latency blows up at the lower bound of eq. (22))
plus a linear grid over the whole interval. Q values with no feasible allocation (the GLDs
cannot pay for the jamming) are gaps. Each optimum from ``solve(..., "exact")`` is marked.

    dtfl reproduce fig4                   # -> runs/fig4_latency_vs_q/
    dtfl reproduce fig4 --quick
    python -m agents.figures.fig4 --help  # every option (the example script takes the same)
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.figures.common import (
    finish,
    new_figure,
    parse_args,
    prepare_out,
    progress_bar,
    save_figure,
    write_csv,
)
from dtfl_env.config import Constants
from dtfl_env.model import evaluate_allocation, jamming_lower_bound_w, jamming_upper_bound_w
from dtfl_env.scenarios import table2_cluster
from solvers import allocation_at_q, solve

FIGURE = "fig4_latency_vs_q"
#: docs/MODEL.md reference T* (s) for L = 1, 2, 3, 4 Mbit (independent exact solver)
REFERENCE_T = {1.0: 3.516, 2.0: 3.532, 3.0: 4.254, 4.0: 5.751}


@dataclass
class Args:
    model_mbit: tuple[float, ...] = field(
        default=(1.0, 2.0, 3.0, 4.0), metadata={"help": "model sizes L (Mbit)"}
    )
    log_points: int = field(default=300, metadata={"help": "log-grid points in Q - Q_lo"})
    lin_points: int = field(default=200, metadata={"help": "linear-grid points in Q"})
    plateau_rtol: float = field(
        default=1e-6, metadata={"help": "T within this of T* counts as optimal"}
    )
    seed: int = field(default=0, metadata={"help": "unused: the run is deterministic"})
    quick: bool = field(default=False, metadata={"help": "tiny budget (40 + 30 points)"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def q_grid(q_lo: float, q_hi: float, n_log: int, n_lin: int, extra: list[float]) -> np.ndarray:
    """Log grid in Q - Q_lo from 1e-6 of the span, a linear grid, and ``extra`` points."""
    span = q_hi - q_lo
    base = max(q_lo, 0.0)
    log_part = q_lo + span * np.geomspace(1e-6, 1.0, n_log)
    lin_part = np.linspace(base, q_hi, n_lin + 1)[1:]
    grid = np.unique(np.concatenate([log_part, lin_part, np.asarray(extra, float)]))
    return grid[(grid > base) & (grid <= q_hi)]


def latency_at_q(cluster, q_w: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Exact T(Q) and its terms; NaN where Q admits no feasible allocation."""
    alloc = allocation_at_q(cluster, q_w)
    nan = math.nan
    if alloc is None:
        return {"T_s": nan, "T_GLD_s": nan, "T_BLD_s": nan, "y_s": nan, "tG_s": nan, "tB_up_s": nan}
    y, tg, q = alloc
    ev = evaluate_allocation(cluster, y_s=y, tg_s=tg, jam_power_w=q)
    if not ev.is_feasible(1e-7):
        return {"T_s": nan, "T_GLD_s": nan, "T_BLD_s": nan, "y_s": nan, "tG_s": nan, "tB_up_s": nan}
    return {
        "T_s": ev.latency_s,
        "T_GLD_s": ev.t_gld_s,
        "T_BLD_s": ev.t_bld_s,
        "y_s": ev.y_s,
        "tG_s": ev.tg_s,
        "tB_up_s": ev.tb_up_s,
    }


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    t0 = time.perf_counter()
    n_log, n_lin = (40, 30) if args.quick else (args.log_points, args.lin_points)
    out = prepare_out(args.out)

    rows, optima = [], []
    for mbit in progress_bar(args.model_mbit, progress, desc=FIGURE):
        cluster = table2_cluster(Constants(model_bits=mbit * 1e6))
        res = solve(cluster, "exact")
        q_lo, q_hi = jamming_lower_bound_w(cluster), jamming_upper_bound_w(cluster)
        extra = [res.Q] if res.feasible else []
        grid = q_grid(q_lo, q_hi, n_log, n_lin, extra)
        curve = [latency_at_q(cluster, float(q)) for q in grid]
        t_curve = np.array([c["T_s"] for c in curve])
        for q, c in zip(grid, curve, strict=True):
            rows.append({"L_mbit": mbit, "Q_w": float(q), "feasible": math.isfinite(c["T_s"]), **c})
        feas = np.isfinite(t_curve)
        t_min = float(np.nanmin(t_curve)) if feas.any() else math.inf
        near = feas & (t_curve <= t_min * (1 + args.plateau_rtol))
        ref = REFERENCE_T.get(float(mbit), math.nan)
        optima.append(
            {
                "L_mbit": mbit,
                "status": res.status,
                "T_star_s": res.T,
                "Q_star_w": res.Q,
                "y_s": res.y,
                "tG_s": res.tG,
                "tB_up_s": res.tB_up,
                "T_reference_s": ref,
                "T_star_minus_reference_s": res.T - ref,
                "curve_min_T_s": t_min,
                "curve_min_Q_w": float(grid[np.nanargmin(t_curve)]) if feas.any() else math.nan,
                "plateau_Q_lo_w": float(grid[near][0]) if near.any() else math.nan,
                "plateau_Q_hi_w": float(grid[near][-1]) if near.any() else math.nan,
                "Q_lo_w": q_lo,
                "Q_hi_w": q_hi,
                "smallest_feasible_Q_w": float(grid[feas][0]) if feas.any() else math.nan,
                "largest_feasible_Q_w": float(grid[feas][-1]) if feas.any() else math.nan,
                "T_first_feasible_s": float(t_curve[feas][0]) if feas.any() else math.nan,
                "T_last_feasible_s": float(t_curve[feas][-1]) if feas.any() else math.nan,
                "points": int(grid.size),
                "feasible_points": int(feas.sum()),
            }
        )

    path_curve = write_csv(out / f"{FIGURE}.csv", rows)
    path_opt = write_csv(out / f"{FIGURE}_optima.csv", optima)

    fig, axes = new_figure(2, 1, width=6.0, height=4.6)
    colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]
    for k, opt in enumerate(optima):
        sub = [r for r in rows if r["L_mbit"] == opt["L_mbit"]]
        q = np.array([r["Q_w"] for r in sub])
        t = np.array([r["T_s"] for r in sub])  # NaN = infeasible: a gap in the line
        col = colors[k % len(colors)]
        lab = f"L = {opt['L_mbit']:g} Mbit"
        axes[0].plot(q - opt["Q_lo_w"], t, color=col, lw=1.3, label=lab)
        axes[1].plot(q, t, color=col, lw=1.3, label=lab)
        if math.isfinite(opt["T_star_s"]):
            axes[0].plot(opt["Q_star_w"] - opt["Q_lo_w"], opt["T_star_s"], "o", color=col, ms=6)
            axes[1].plot(
                opt["Q_star_w"],
                opt["T_star_s"],
                "o",
                color=col,
                ms=6,
                label=f"  T* = {opt['T_star_s']:.3f} s at Q* = {opt['Q_star_w']:.3g} W",
            )
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel(r"$Q - Q_{lo}$ (W)")
    axes[0].set_title(
        "(a) whole interval (22): T grows without bound towards Q_lo; gaps:\n"
        "no feasible allocation (jamming energy q_i tB_up(Q) over budget)",
        fontsize=9,
    )
    axes[1].set_xlim(0.5e-8, optima[0]["Q_hi_w"] if optima else None)
    t_stars = [o["T_star_s"] for o in optima if math.isfinite(o["T_star_s"])]
    if t_stars:
        axes[1].set_ylim(min(t_stars) * 0.95, max(t_stars) * 2.0)
    axes[1].set_xlabel("Q (W)")
    axes[1].set_title("(b) around the optima (dots: exact solver); gaps: infeasible Q", fontsize=9)
    for ax in axes:
        ax.set_ylabel("round latency T (s)")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7, ncols=2)
    axes[0].legend(fontsize=8)
    fig.suptitle("Fig. 4: latency against aggregate jamming Q (Table II, exact T(Q))", fontsize=10)
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    print(
        f"Fig. 4 on Table II: exact T(Q) on {optima[0]['points'] if optima else 0} Q values "
        "per model size"
    )
    print(
        f"  {'L':>5} {'T* (s)':>9} {'reference':>9} {'Q* (W)':>10} {'optimal Q plateau (W)':>24}"
        f" {'feasible Q range (W)':>22}"
    )
    for o in optima:
        print(
            f"  {o['L_mbit']:>3g}Mb {o['T_star_s']:>9.4f} {o['T_reference_s']:>9.3f} "
            f"{o['Q_star_w']:>10.4g} {o['plateau_Q_lo_w']:>11.3g}-{o['plateau_Q_hi_w']:<11.3g}"
            f" {o['smallest_feasible_Q_w']:>10.3g}-{o['largest_feasible_Q_w']:<10.4g}"
        )
    grows = all(b["T_star_s"] >= a["T_star_s"] for a, b in itertools.pairwise(optima))
    print(
        f"  latency grows with L: {grows}; T at the smallest feasible Q: "
        + ", ".join(f"{o['T_first_feasible_s']:.0f} s" for o in optima)
        + "; at the largest: "
        + ", ".join(f"{o['T_last_feasible_s']:.1f} s" for o in optima)
    )
    summary = {"optima": optima, "T_star_grows_with_L": grows}
    return finish(out, FIGURE, args, summary, t0, [path_curve, path_opt, path_png], argv=argv)


if __name__ == "__main__":
    main()
