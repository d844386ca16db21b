"""Fig. 5: computation time of Algorithm 2 and the exact solver against a generic solver.

The paper times Algorithm 2 against CVX (Gurobi) and LINGO's global solver on 1-10 clusters
of 10 devices and reports identical answers at a fraction of the time. Here the generic
solver is the cvxpy cross-check (``solve(..., "cvxpy")``: a search over Q with each convex
subproblem solved by cvxpy). The same seeded random clusters (6 GLDs + 4 BLDs, as Table II)
are solved by every method; the total time for S clusters is the time to solve the first S
of them one after another (the prefix sum of the per-cluster times, each the best of
``--repeats`` runs after one untimed warm-up call per method). Agreement is reported as the
largest relative difference in T to the exact solver over those S clusters ("at equal T").
Clusters the exact solver proves infeasible are skipped (with ``--keep-infeasible`` they are
kept: every method must report them infeasible).

    dtfl reproduce fig5                   # 1..10 clusters -> runs/fig5_solver_time/
    dtfl reproduce fig5 --quick           # 1..3 clusters
    python -m agents.figures.fig5 --help  # every option (the example script takes the same)
"""

from __future__ import annotations

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
from dtfl_env.scenarios import random_cluster
from solvers import solve

FIGURE = "fig5_solver_time"
LABELS = {
    "exact": "exact solver",
    "algorithm2": "Algorithm 2 (corrected)",
    "algorithm2-paper": "Algorithm 2 (as written)",
    "cvxpy": "cvxpy (generic)",
}


@dataclass
class Args:
    max_clusters: int = field(default=10, metadata={"help": "S runs from 1 to this"})
    methods: tuple[str, ...] = field(
        default=("exact", "algorithm2", "cvxpy"),
        metadata={"help": "solvers to time (exact is required)"},
    )
    repeats: int = field(default=3, metadata={"help": "timing repeats per cluster (best)"})
    n_gld: int = field(default=6, metadata={"help": "GLDs per random cluster"})
    n_bld: int = field(default=4, metadata={"help": "BLDs per random cluster"})
    keep_infeasible: bool = field(
        default=False, metadata={"help": "keep clusters proven infeasible"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random clusters"})
    quick: bool = field(default=False, metadata={"help": "tiny budget (1-3 clusters, 1 repeat)"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def rel_diff(t: float, t_ref: float) -> float:
    """|T - T_exact| / T_exact; 0 when both are infinite (both say infeasible)."""
    if math.isinf(t) and math.isinf(t_ref):
        return 0.0
    if not (math.isfinite(t) and math.isfinite(t_ref)):
        return math.inf
    return abs(t - t_ref) / t_ref


def timed(cluster, method: str, repeats: int):  # type: ignore[no-untyped-def]
    """Best wall time of ``repeats`` calls and the last result (errors are reported)."""
    best, res, err = math.inf, None, ""
    for _ in range(repeats):
        t = time.perf_counter()
        try:
            res = solve(cluster, method)
        except Exception as exc:  # a solver under development must not stop the figure
            err = f"{type(exc).__name__}: {exc}"
            return math.nan, None, err
        best = min(best, time.perf_counter() - t)
    return best, res, err


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    t0 = time.perf_counter()
    n_max, repeats = (3, 1) if args.quick else (args.max_clusters, args.repeats)
    methods = list(dict.fromkeys(args.methods))
    if "exact" not in methods:
        methods.insert(0, "exact")
    if n_max < 1 or repeats < 1:
        raise SystemExit("--max-clusters, --repeats: must be >= 1")
    out = prepare_out(args.out)

    # the clusters: seeded, the same for every method; the feasibility pre-check is untimed
    clusters, seeds, skipped, k = [], [], 0, 0
    while len(clusters) < n_max and k < 20 * n_max:
        c = random_cluster(np.random.default_rng([args.seed, k]), args.n_gld, args.n_bld)
        if args.keep_infeasible or solve(c, "exact").feasible:
            clusters.append(c)
            seeds.append(k)
        else:
            skipped += 1
        k += 1

    for m in methods:  # warm-up: imports, cvxpy's first canonicalisation
        timed(clusters[0], m, 1)

    per_cluster, errors = [], {}
    results: dict[str, list] = {m: [] for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    for idx, c in enumerate(progress_bar(clusters, progress, desc=FIGURE)):
        for m in methods:
            wall, res, err = timed(c, m, repeats)
            if err:
                errors.setdefault(m, err)
            results[m].append(res)
            times[m].append(wall)
        t_ref = results["exact"][idx].T
        for m in methods:
            res = results[m][idx]
            t = res.T if res is not None else math.nan
            per_cluster.append(
                {
                    "cluster": idx + 1,
                    "seed_index": seeds[idx],
                    "method": m,
                    "T_s": t,
                    "Q_w": res.Q if res is not None else math.nan,
                    "status": res.status if res is not None else "error",
                    "wall_s": times[m][idx],
                    "rel_diff_T_vs_exact": rel_diff(t, t_ref) if res is not None else math.nan,
                }
            )

    rows = []
    for s in range(1, len(clusters) + 1):
        for m in methods:
            sub = [r for r in per_cluster if r["method"] == m and r["cluster"] <= s]
            diffs = [r["rel_diff_T_vs_exact"] for r in sub]
            rows.append(
                {
                    "clusters": s,
                    "method": m,
                    "total_wall_s": float(np.sum(times[m][:s])),
                    "max_rel_diff_T_vs_exact": float(np.max(diffs)) if diffs else math.nan,
                    "all_feasible": all(r["status"] not in ("infeasible", "error") for r in sub),
                }
            )
    path_rows = write_csv(out / f"{FIGURE}.csv", rows)
    path_pc = write_csv(out / f"{FIGURE}_per_cluster.csv", per_cluster)

    fig, axes = new_figure(2, 1, width=5.6, height=4.3)
    s_axis = np.arange(1, len(clusters) + 1)
    for j, m in enumerate(methods):
        tot = [r["total_wall_s"] for r in rows if r["method"] == m]
        diff = [r["max_rel_diff_T_vs_exact"] for r in rows if r["method"] == m]
        style = {"color": f"C{j}", "label": LABELS.get(m, m)}
        axes[0].plot(s_axis, tot, "o-", **style)
        if m != "exact":
            axes[1].plot(s_axis, np.maximum(diff, 1e-16), "o-", **style)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("number of clusters S")
    axes[0].set_ylabel("total computation time (s)")
    axes[0].set_title("(a) time to solve S clusters one after another", fontsize=9)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("number of clusters S")
    axes[1].set_ylabel("max |T - T_exact| / T_exact")
    axes[1].set_title("(b) agreement with the exact optimum (1e-16 = identical)", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        ax.set_xticks(s_axis)
    fig.suptitle(
        f"Fig. 5: solver computation time ({args.n_gld} GLDs + {args.n_bld} BLDs per "
        f"cluster, best of {repeats})",
        fontsize=10,
    )
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    s_last = len(clusters)
    last = {r["method"]: r for r in rows if r["clusters"] == s_last}
    print(
        f"Fig. 5: {s_last} seeded random clusters ({skipped} infeasible skipped), "
        f"best of {repeats} timings"
    )
    print(f"  {'method':26s} {'total (s)':>10} {'x faster than cvxpy':>20} {'max rel. diff T':>16}")
    for m in methods:
        r = last[m]
        speed = (
            last["cvxpy"]["total_wall_s"] / r["total_wall_s"]
            if "cvxpy" in last and r["total_wall_s"] > 0
            else math.nan
        )
        print(
            f"  {LABELS.get(m, m):26s} {r['total_wall_s']:>10.4f} {speed:>20.1f} "
            f"{r['max_rel_diff_T_vs_exact']:>16.2e}"
        )
    for m, err in errors.items():
        print(f"  WARNING: {m} raised {err}")
    summary = {
        "clusters": s_last,
        "skipped_infeasible": skipped,
        "seed_indices": seeds,
        "repeats": repeats,
        "at_max_clusters": last,
        "errors": errors,
    }
    return finish(out, FIGURE, args, summary, t0, [path_rows, path_pc, path_png], argv=argv)


if __name__ == "__main__":
    main()
