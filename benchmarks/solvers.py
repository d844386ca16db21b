"""Solver benchmark: wall time and optimality gap of every solver, measured side by side.

On the Table II cluster and ``--clusters`` seeded random clusters (M in 2..10, N in 1..6),
runs the exact solver, corrected Algorithm 2, paper-faithful Algorithm 2 and the cvxpy
cross-check on the same instances in the same process, and prints per solver: the median
wall time (Table II and random), the speed-up over cvxpy (ratio of medians, same run), the
gap to the exact T*, the share of instances within 0.1 % of it, and the share of answers that
break a constraint. Results are saved as JSON.

    python benchmarks/solvers.py --clusters 50

With ``--batch`` it measures throughput instead: solves per second of
:func:`solvers.solve_batch` for B = 1, 64, 1,024 and 8,192 clusters (``--sizes``), for the
exact solver and then corrected Algorithm 2, each beside its per-cluster loop (and cvxpy) on
subsets of the same clusters, in the same run, with the ratios and the batch's largest
deviation from the loop's T (B = 1: one cluster per call, averaged over the loop's
clusters; larger B: the best of ``--repeats`` up to 64, one run above):

    python benchmarks/solvers.py --batch
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# run as a script, this file's folder comes first on sys.path and its name would shadow the
# `solvers` package: drop it before importing the project
_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from dtfl_env.model import evaluate_allocation  # noqa: E402
from dtfl_env.scenarios import random_cluster, table2_cluster  # noqa: E402
from solvers import solve, solve_batch  # noqa: E402

ALL = ("exact", "algorithm2", "algorithm2-paper", "cvxpy")


def _run(cluster, method: str, repeats: int):  # type: ignore[no-untyped-def]
    times = []
    res = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = solve(cluster, method)
        times.append(time.perf_counter() - t0)
    return res, min(times)


def _violates(cluster, res) -> bool:  # type: ignore[no-untyped-def]
    if not res.feasible:
        return False
    ev = evaluate_allocation(cluster, tg_s=res.tG, y_s=res.y, jam_power_w=res.q)
    return ev.min_slack < -1e-9


def _instances(n: int, seed: int) -> list:  # type: ignore[type-arg]
    """The random clusters of the benchmark (M in 2..10, N in 1..6), seeded."""
    return [
        random_cluster(seed + k, n_gld=2 + (k * 7) % 9, n_bld=1 + (k * 5) % 6) for k in range(n)
    ]


def _throughput(
    method: str,
    clusters: list,
    sizes: list[int],
    ref: list,  # type: ignore[type-arg]
    loop_us: float,
    cvx_us: float,
    repeats: int,
) -> tuple[list[dict], float]:  # type: ignore[type-arg]
    """Clusters per second of ``solve_batch(..., method)`` for each B in ``sizes`` beside the
    per-cluster loop (``ref``: its answers, ``loop_us``: its time per cluster), and the
    batch's largest relative deviation from the loop's T."""
    n_loop = len(ref)
    rows = []
    dev = 0.0
    for b in sizes:
        if b == 1:  # one cluster per call, over the loop's clusters (one alone is no mean)
            t0 = time.perf_counter()
            for c in clusters[:n_loop]:
                solve_batch([c], method)
            dt = (time.perf_counter() - t0) / n_loop
            res = solve_batch(clusters[:1], method)
        else:
            times = []
            for _ in range(repeats if b <= 64 else 1):
                t0 = time.perf_counter()
                res = solve_batch(clusters[:b], method)
                times.append(time.perf_counter() - t0)
            dt = min(times)
        us = 1e6 * dt / b
        k = min(b, n_loop)
        t_ref = np.array([r.T for r in ref[:k]])
        fin = np.isfinite(t_ref)
        if not np.array_equal(fin, np.isfinite(res.T[:k])):
            raise RuntimeError(f"{method} B={b}: the batch and the loop disagree on feasibility")
        if fin.any():
            dev = max(dev, float(np.max(np.abs(res.T[:k][fin] - t_ref[fin]) / t_ref[fin])))
        rows.append(
            {
                "B": b,
                "seconds": dt,
                "clusters_per_s": b / dt,
                "us_per_cluster": us,
                "speedup_vs_loop": loop_us / us,
                "speedup_vs_cvxpy": cvx_us / us,
                "infeasible": int(np.sum(~res.feasible)),
            }
        )
    return rows, dev


def _print_rows(rows: list[dict]) -> None:  # type: ignore[type-arg]
    header = f"{'B':>6}{'clusters/s':>12}{'us/cluster':>12}{'x loop':>9}{'x cvxpy':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['B']:>6}{r['clusters_per_s']:>12.0f}{r['us_per_cluster']:>12.1f}"
            f"{r['speedup_vs_loop']:>9.1f}{r['speedup_vs_cvxpy']:>10.0f}"
        )


def _batch_main(args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    """Throughput of solve_batch (exact, then corrected Algorithm 2) against the
    per-cluster loop and cvxpy, same clusters."""
    sizes = args.sizes
    clusters = _instances(max(sizes), args.seed)
    n_loop = min(args.loop_clusters, len(clusters))
    cvx_us = float("nan")
    if args.cvxpy_clusters > 0:
        sub = clusters[: args.cvxpy_clusters]
        t0 = time.perf_counter()
        for c in sub:
            solve(c, "cvxpy")
        cvx_us = 1e6 * (time.perf_counter() - t0) / len(sub)
    print(
        f"throughput on {max(sizes)} random clusters (seed {args.seed}, M 2-10, N 1-6); "
        f"loops on {n_loop}, cvxpy on {args.cvxpy_clusters}"
    )
    if args.cvxpy_clusters > 0:
        print(f"cvxpy:            {cvx_us:9.1f} us/cluster  {1e6 / cvx_us:9.1f} clusters/s")
    record = {
        "mode": "batch",
        "seed": args.seed,
        "sizes": sizes,
        "loop_clusters": n_loop,
        "cvxpy_clusters": args.cvxpy_clusters,
        "cvxpy_us_per_cluster": cvx_us,
    }
    for method in ("exact", "algorithm2"):
        t0 = time.perf_counter()
        ref = [solve(c, method) for c in clusters[:n_loop]]
        loop_us = 1e6 * (time.perf_counter() - t0) / n_loop
        rows, dev = _throughput(method, clusters, sizes, ref, loop_us, cvx_us, args.repeats)
        print(
            f"\n{method}: per-cluster loop {loop_us:9.1f} us/cluster  "
            f"{1e6 / loop_us:9.0f} clusters/s"
        )
        _print_rows(rows)
        if method == "exact":
            print(f"largest |T_batch - T_loop| / T_loop: {dev:.2e} (both certified to 1e-7)")
            record.update(loop_us_per_cluster=loop_us, rows=rows, max_rel_dev_vs_loop=dev)
        else:
            print(f"largest |T_batch - T_loop| / T_loop: {dev:.2e} (the same search)")
            record["algorithm2"] = {
                "loop_us_per_cluster": loop_us,
                "rows": rows,
                "max_rel_dev_vs_loop": dev,
            }
    record.update(
        python=platform.python_version(), machine=platform.machine(), numpy=np.__version__
    )
    out = Path(args.out or Path(__file__).parent / "results" / "solvers_batch.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return record


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of integers: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clusters", type=int, default=50, help="random clusters (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5, help="timing repeats on Table II")
    ap.add_argument("--solvers", default=",".join(ALL), help=f"comma list from {ALL}")
    ap.add_argument(
        "--out",
        default=None,
        help="JSON record (default results/solvers.json, results/solvers_batch.json with --batch)",
    )
    ap.add_argument(
        "--batch",
        action="store_true",
        help="throughput of solve_batch (exact, algorithm2) beside the loops and cvxpy",
    )
    ap.add_argument(
        "--sizes",
        type=_sizes,
        default=[1, 64, 1024, 8192],
        help="batch sizes for --batch (default 1,64,1024,8192)",
    )
    ap.add_argument(
        "--loop-clusters",
        type=int,
        default=256,
        help="clusters timed with each per-cluster loop for --batch (default 256)",
    )
    ap.add_argument(
        "--cvxpy-clusters",
        type=int,
        default=5,
        help="clusters timed with cvxpy for --batch (default 5; 0: skip)",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats: must be >= 1")
    if args.loop_clusters < 1:
        ap.error("--loop-clusters: must be >= 1")
    if args.cvxpy_clusters < 0:
        ap.error("--cvxpy-clusters: must be >= 0")
    if args.batch:
        return _batch_main(args)
    if args.out is None:
        args.out = str(Path(__file__).parent / "results" / "solvers.json")
    methods = [m.strip() for m in args.solvers.split(",") if m.strip()]
    for m in methods:
        if m not in ALL:
            ap.error(f"--solvers: unknown solver {m!r}")
    if "exact" not in methods:
        methods.insert(0, "exact")

    instances = [("table2", table2_cluster())]
    instances += [(f"random-{k}", c) for k, c in enumerate(_instances(args.clusters, args.seed))]

    rows: dict[str, dict[str, list]] = {
        m: {
            "t2": [],
            "rand": [],
            "gap": [],
            "viol": [],  # type: ignore[type-arg]
            "status": [],
        }
        for m in methods
    }
    infeasible = 0
    for name, cluster in instances:
        ref, _ = _run(cluster, "exact", 1)
        if not ref.feasible:
            infeasible += 1
        for m in methods:
            reps = args.repeats if name == "table2" else 1
            res, dt = _run(cluster, m, reps)
            bucket = "t2" if name == "table2" else "rand"
            rows[m][bucket].append(dt)
            rows[m]["status"].append(res.status)
            rows[m]["viol"].append(_violates(cluster, res))
            if ref.feasible and res.feasible:
                rows[m]["gap"].append((res.T - ref.T) / ref.T)
            elif ref.feasible != res.feasible:
                rows[m]["gap"].append(float("nan"))  # disagreement on feasibility

    def med(x: list) -> float:  # type: ignore[type-arg]
        return statistics.median(x) if x else float("nan")

    base_t2 = med(rows["cvxpy"]["t2"]) if "cvxpy" in rows else float("nan")
    base_r = med(rows["cvxpy"]["rand"]) if "cvxpy" in rows else float("nan")
    summary = {}
    for m in methods:
        r = rows[m]
        gaps = np.array(r["gap"], dtype=float)
        summary[m] = {
            "table2_ms": 1e3 * med(r["t2"]),
            "random_median_ms": 1e3 * med(r["rand"]),
            "speedup_vs_cvxpy_table2": base_t2 / med(r["t2"]),
            "speedup_vs_cvxpy_random": base_r / med(r["rand"]) if r["rand"] else float("nan"),
            "max_gap": float(np.nanmax(np.abs(gaps))) if gaps.size else 0.0,
            "median_gap": float(np.nanmedian(gaps)) if gaps.size else 0.0,
            "within_0.1pct": float(np.mean(np.abs(gaps) <= 1e-3)) if gaps.size else 1.0,
            "feasibility_disagreements": int(np.isnan(gaps).sum()),
            "constraint_violations": float(np.mean(r["viol"])),
        }
    header = (
        f"{'solver':<18}{'Table II ms':>12}{'random ms':>11}{'x cvxpy T2':>11}"
        f"{'x cvxpy rnd':>12}{'max |gap|':>11}{'<=0.1%':>8}{'violates':>9}"
    )
    print(
        f"{len(instances)} clusters (Table II + {args.clusters} random, seed {args.seed}); "
        f"{infeasible} infeasible per the exact solver"
    )
    print(header)
    print("-" * len(header))
    for m, s in summary.items():
        print(
            f"{m:<18}{s['table2_ms']:>12.2f}{s['random_median_ms']:>11.2f}"
            f"{s['speedup_vs_cvxpy_table2']:>11.1f}{s['speedup_vs_cvxpy_random']:>12.1f}"
            f"{s['max_gap']:>11.2e}{100 * s['within_0.1pct']:>7.0f}%"
            f"{100 * s['constraint_violations']:>8.0f}%"
        )
    record = {
        "clusters": args.clusters,
        "seed": args.seed,
        "infeasible": infeasible,
        "summary": summary,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": np.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return record


if __name__ == "__main__":
    main()
