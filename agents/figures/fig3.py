"""Fig. 3: convergence of the dual multipliers lambda_i of Algorithm 2 (Table II).

Runs the dual subgradient loop of Algorithm 2 (lines 2-6: Sub-Y (29), Sub-T (32), Sub-Q (35),
step (36)) at a fixed aggregate jamming Q = 3e-8 W on the Table II cluster, once as the paper
writes it (``mode="paper"``: raw step alpha_0 / sqrt(n) in s/J^2) and once with the corrected,
unit-free step (``mode="corrected"``), and plots one lambda trajectory per GLD.

The paper's Fig. 3(b) uses Q = 3e-7 W. At Table II that value is infeasible: eq. (22) caps Q
at sum_i Q_max,i g_iE = 8.35e-8 W (every GLD jamming at full power), so it is checked and
reported, not plotted.

    dtfl reproduce fig3                   # -> runs/fig3_lambda/
    dtfl reproduce fig3 --quick           # 60 iterations
    python -m agents.figures.fig3 --help  # every option (the example script takes the same)
"""

from __future__ import annotations

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
from dtfl_env.model import (
    evaluate_allocation,
    jamming_lower_bound_w,
    jamming_upper_bound_w,
    sync_time_s,
)
from dtfl_env.scenarios import table2_cluster
from solvers import allocation_at_q
from solvers.algorithm2 import dual_at_q

FIGURE = "fig3_lambda"
MODES = ("paper", "corrected")


@dataclass
class Args:
    q_w: float = field(default=3e-8, metadata={"help": "aggregate jamming Q of Fig. 3(a) (W)"})
    q_paper_b_w: float = field(
        default=3e-7, metadata={"help": "Q of the paper's Fig. 3(b) (W), checked"}
    )
    iterations: int = field(default=300, metadata={"help": "dual iterations per mode"})
    band: float = field(
        default=0.02,
        metadata={
            "help": "settling band (s/J): lambda settled once every GLD stays this close to "
            "its tail mean"
        },
    )
    seed: int = field(default=0, metadata={"help": "unused: the run is deterministic"})
    quick: bool = field(default=False, metadata={"help": "tiny budget (60 iterations)"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def q_statement(cluster, q_w: float) -> tuple[bool, str]:  # type: ignore[no-untyped-def]
    """Whether Q is in the interval (22) and admits an allocation; and why not if not."""
    q_lo, q_hi = jamming_lower_bound_w(cluster), jamming_upper_bound_w(cluster)
    if q_w > q_hi:
        return False, (
            f"Q = {q_w:.3g} W (the paper's Fig. 3(b)) is infeasible at Table II: it exceeds the "
            f"largest reachable Q = sum_i Q_max,i g_iE = {q_hi:.3g} W of eq. (22) (every GLD "
            f"jamming at full power reaches only {q_hi / q_w:.0%} of it), so no lambda "
            "trajectory exists for it"
        )
    if q_w <= max(q_lo, 0.0):
        return False, f"Q = {q_w:.3g} W is at or below the lower bound {q_lo:.3g} W of eq. (22)"
    if allocation_at_q(cluster, q_w) is None:
        return False, (
            f"Q = {q_w:.3g} W is inside eq. (22) but the GLDs' energy budgets cannot pay for it"
        )
    return True, f"Q = {q_w:.3g} W is feasible (eq. (22): ({q_lo:.3g}, {q_hi:.3g}] W)"


def settle_iteration(lam: np.ndarray, band: float) -> int:
    """First iteration after which every lambda stays within ``band`` of its tail mean."""
    tail = lam[-max(1, lam.shape[0] // 3) :].mean(axis=0)
    off = np.flatnonzero(np.max(np.abs(lam - tail), axis=1) > band)
    return int(off[-1] + 1) if off.size else 0


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    t0 = time.perf_counter()
    iters = 60 if args.quick else args.iterations
    out = prepare_out(args.out)
    cluster = table2_cluster()
    m = cluster.n_gld
    e_max = cluster.gld.energy_budget_j

    ok_a, note_a = q_statement(cluster, args.q_w)
    if not ok_a:
        raise SystemExit(f"--q-w: {note_a}")
    ok_b, note_b = q_statement(cluster, args.q_paper_b_w)
    try:  # the solver API must refuse it too
        dual_at_q(cluster, args.q_paper_b_w, mode="paper", max_iter=1)
        api_b = "accepted by solvers.algorithm2.dual_at_q"
    except ValueError as exc:
        api_b = f"refused by solvers.algorithm2.dual_at_q: {exc}"

    # exact optimum of P-GLD at this Q, for the paper iterate's latency to be compared against
    exact_alloc = allocation_at_q(cluster, args.q_w)
    assert exact_alloc is not None
    ev_exact = evaluate_allocation(
        cluster, y_s=exact_alloc[0], tg_s=exact_alloc[1], jam_power_w=exact_alloc[2]
    )

    rows, per_mode = [], {}
    for mode in progress_bar(MODES, progress, desc=FIGURE):
        tr = dual_at_q(cluster, args.q_w, mode=mode, max_iter=iters)
        lam = tr.lam[:, 0, :]  # (iterations + 1, M)
        for n in range(lam.shape[0]):
            rows.append(
                {
                    "mode": mode,
                    "iteration": n,
                    **{f"lambda_gld{i + 1}": lam[n, i] for i in range(m)},
                }
            )
        jumps = np.max(np.abs(np.diff(lam, axis=0)), axis=1)
        excess = tr.energy_j[0] - e_max
        t_iter = (
            max(float(tr.y_s[0] + tr.tg_s[0]), float(tr.tb_up_s[0]) + ev_exact.tb_loc_s)
            + cluster.constants.fixed_latency_s
        )
        per_mode[mode] = {
            "iterations": int(tr.iterations[0]),
            "converged_theta2": bool(tr.converged[0]),
            "min_lambda": float(lam.min()),
            "final_lambda_s_per_j": lam[-1],
            "tail_mean_lambda_s_per_j": lam[-max(1, lam.shape[0] // 3) :].mean(axis=0),
            "settle_iteration": settle_iteration(lam, args.band),
            "spikes": int(np.sum(jumps > args.band)),
            "last_spike_iteration": int(np.flatnonzero(jumps > args.band)[-1] + 1)
            if np.any(jumps > args.band)
            else 0,
            "last_iterate_energy_excess_j": excess,
            "last_iterate_max_excess_j": float(excess.max()),
            "last_iterate_T_s": t_iter,
        }

    path_lam = write_csv(out / f"{FIGURE}.csv", rows)
    q_rows = [
        {
            "Q_w": args.q_w,
            "Q_lo_w": jamming_lower_bound_w(cluster),
            "Q_max_reachable_w": jamming_upper_bound_w(cluster),
            "feasible": ok_a,
            "tB_up_s": float(sync_time_s(cluster, args.q_w)),
            "T_exact_at_Q_s": ev_exact.latency_s,
            "note": note_a,
        },
        {
            "Q_w": args.q_paper_b_w,
            "Q_lo_w": jamming_lower_bound_w(cluster),
            "Q_max_reachable_w": jamming_upper_bound_w(cluster),
            "feasible": ok_b,
            "tB_up_s": float("nan"),
            "T_exact_at_Q_s": float("nan"),
            "note": note_b,
        },
    ]
    path_q = write_csv(out / f"{FIGURE}_q_check.csv", q_rows)

    fig, axes = new_figure(2, 1, width=6.0, height=4.6)
    for ax, mode in zip(axes, MODES, strict=True):
        sub = [r for r in rows if r["mode"] == mode]
        x = [r["iteration"] for r in sub]
        for i in range(m):
            ax.plot(x, [r[f"lambda_gld{i + 1}"] for r in sub], lw=1.2, label=f"GLD {i + 1}")
        info = per_mode[mode]
        title = (
            "(a) paper-faithful step (36)" if mode == "paper" else "(b) corrected (unit-free) step"
        )
        ax.set_title(
            f"{title}, Q = {args.q_w:.0e} W\nsettled (±{args.band} s/J) after "
            f"{info['settle_iteration']} it.; last iterate breaks E_max by up to "
            f"{info['last_iterate_max_excess_j']:.2f} J",
            fontsize=9,
        )
        ax.set_xlabel("iteration n")
        ax.set_ylabel(r"$\lambda_i$ (s/J)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncols=2)
    fig.suptitle(
        "Fig. 3: convergence of the multipliers of Algorithm 2 (Table II)\n"
        f"Q = {args.q_paper_b_w:.0e} W (paper's Fig. 3(b)) is infeasible: it exceeds "
        f"max reachable Q = sum Q_max,i g_iE = {jamming_upper_bound_w(cluster):.3g} W",
        fontsize=10,
    )
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    print(f"Fig. 3 on Table II at Q = {args.q_w:.3g} W ({iters} dual iterations per mode)")
    for mode, info in per_mode.items():
        lam_txt = ", ".join(f"{v:.4f}" for v in info["tail_mean_lambda_s_per_j"])
        print(
            f"  {mode:9s}: lambda >= 0: {info['min_lambda'] >= 0}; settles within "
            f"±{args.band} s/J after {info['settle_iteration']} iterations "
            f"({info['spikes']} spikes, last at {info['last_spike_iteration']}); "
            f"theta2-converged: {info['converged_theta2']}"
        )
        print(f"             tail-mean lambda (s/J) = [{lam_txt}]")
        print(
            f"             last iterate: T = {info['last_iterate_T_s']:.4f} s, energy excess "
            f"up to {info['last_iterate_max_excess_j']:+.3f} J "
            f"(exact T at this Q: {ev_exact.latency_s:.4f} s, feasible)"
        )
    print(f"  {note_b}.")
    print(f"  ({api_b})")
    summary = {
        "Q_w": args.q_w,
        "iterations": iters,
        "modes": per_mode,
        "T_exact_at_Q_s": ev_exact.latency_s,
        "Q_max_reachable_w": jamming_upper_bound_w(cluster),
        "paper_fig3b": {
            "Q_w": args.q_paper_b_w,
            "feasible": ok_b,
            "statement": note_b,
            "api": api_b,
        },
    }
    return finish(out, FIGURE, args, summary, t0, [path_lam, path_q, path_png], argv=argv)


if __name__ == "__main__":
    main()
