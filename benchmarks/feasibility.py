"""Feasibility of seeded random clusters under the exact solver, per difficulty setting.

For each ``--difficulty`` value, draws ``--clusters`` random clusters with M uniform in
``--gld-range`` (2-10) and N uniform in ``--bld-range`` (1-6) from one seeded generator,
solves each with :func:`solvers.exact.solve_exact` and prints a table: the feasible share,
the median and 95th percentile of T* over the feasible clusters, the share of feasible
clusters whose optimum jams (Q* > 0), the median Q*, the share that need jamming at all
(eq. (22)'s lower bound > 0: some BLD has zero secrecy rate without it) and the share in
which some GLD's energy budget binds. The clusters are paired across settings (same seed:
only the eavesdropper moves with the difficulty).
A JSON record (config, seed, versions, per-setting statistics) goes to
``benchmarks/results/feasibility-<seed>.json`` (or ``--out``).

Usage::

    .venv/bin/python benchmarks/feasibility.py --clusters 500 --seed 0 --difficulty 0 0.5 0.8 1
    .venv/bin/python benchmarks/feasibility.py --set path_loss_exponent=3.0
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

# run as a script, this file's folder comes first on sys.path and benchmarks/solvers.py would
# shadow the `solvers` package: drop the folder and put the repository root first
_HERE = Path(__file__).parent.resolve()
ROOT = _HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() not in (_HERE, ROOT)]

from dtfl_env.model.system import evaluate_allocation, jamming_lower_bound_w  # noqa: E402
from dtfl_env.scenarios import RandomClusterConfig, random_cluster  # noqa: E402
from solvers.exact import solve_exact  # noqa: E402

ENERGY_BINDS_RTOL = 1e-6
"""A GLD's energy budget binds when its relative energy slack is below this."""


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set: expected key=value, got {item!r}")
        out[key.strip()] = json.loads(value)
    return out


def run_setting(
    config: RandomClusterConfig,
    clusters: int,
    seed: int,
    gld_range: tuple[int, int],
    bld_range: tuple[int, int],
) -> dict[str, Any]:
    """Draw and solve ``clusters`` random clusters; return the summary statistics."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for _ in range(clusters):
        m = int(rng.integers(gld_range[0], gld_range[1] + 1))
        n = int(rng.integers(bld_range[0], bld_range[1] + 1))
        cluster = random_cluster(rng, m, n, config)
        res = solve_exact(cluster)
        binds = False
        if res.feasible and m:
            ev = evaluate_allocation(cluster, tg_s=res.tG, y_s=res.y, jam_power_w=res.q)
            binds = bool(np.min(ev.slack["energy"]) < ENERGY_BINDS_RTOL)
        rows.append(
            {
                "m": m,
                "n": n,
                "status": res.status,
                "T": res.T,
                "Q": res.Q if res.feasible else None,
                "energy_binds": binds,
                "jam_needed": jamming_lower_bound_w(cluster) > 0,
                "wall_time_s": res.wall_time_s,
            }
        )
    feas = [r for r in rows if r["status"] != "infeasible"]
    t = np.array([r["T"] for r in feas])
    share = len(feas) / max(len(rows), 1)

    def frac(pred: Any) -> float | None:
        return sum(1 for r in feas if pred(r)) / len(feas) if feas else None

    statuses = {
        s: sum(1 for r in rows if r["status"] == s)
        for s in ("optimal", "converged", "not_converged", "infeasible")
    }
    return {
        "clusters": len(rows),
        "feasible_share": share,
        "median_T_s": float(np.median(t)) if t.size else None,
        "p95_T_s": float(np.percentile(t, 95)) if t.size else None,
        "jamming_share": frac(lambda r: r["Q"] > 0),
        "median_Q_w": float(np.median([r["Q"] for r in feas])) if feas else None,
        "jam_needed_share": frac(lambda r: r["jam_needed"]),
        "energy_binds_share": frac(lambda r: r["energy_binds"]),
        "statuses": statuses,
        "mean_solve_s": float(np.mean([r["wall_time_s"] for r in rows])) if rows else None,
        "feasible_share_by_m": {
            str(m): float(np.mean([r["status"] != "infeasible" for r in rows if r["m"] == m]))
            for m in range(gld_range[0], gld_range[1] + 1)
            if any(r["m"] == m for r in rows)
        },
        "feasible_share_by_n": {
            str(n): float(np.mean([r["status"] != "infeasible" for r in rows if r["n"] == n]))
            for n in range(bld_range[0], bld_range[1] + 1)
            if any(r["n"] == n for r in rows)
        },
    }


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clusters", type=int, default=200, help="clusters per setting (200)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the cluster draws (0)")
    ap.add_argument(
        "--difficulty",
        type=float,
        nargs="+",
        default=[0.0, 0.5, 0.8, 1.0],
        help="difficulty values to compare (0 0.5 0.8 1)",
    )
    ap.add_argument(
        "--gld-range",
        type=int,
        nargs=2,
        default=[2, 10],
        metavar=("LO", "HI"),
        help="M drawn uniformly in LO..HI (2 10)",
    )
    ap.add_argument(
        "--bld-range",
        type=int,
        nargs=2,
        default=[1, 6],
        metavar=("LO", "HI"),
        help="N drawn uniformly in LO..HI (1 6)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a RandomClusterConfig field, e.g. path_loss_exponent=3",
    )
    ap.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = ap.parse_args(argv)
    if args.clusters < 1:
        ap.error("--clusters: must be >= 1")
    try:
        base = RandomClusterConfig.from_dict(_parse_set(args.set))
        configs = [replace(base, difficulty=d) for d in args.difficulty]
    except ValueError as exc:
        ap.error(str(exc))

    results = []
    print(
        f"{args.clusters} clusters per setting, seed {args.seed}, "
        f"M {args.gld_range[0]}-{args.gld_range[1]}, N {args.bld_range[0]}-{args.bld_range[1]}"
    )
    header = (
        f"{'difficulty':>10} {'feasible':>9} {'median T*':>10} {'p95 T*':>9} "
        f"{'Q*>0':>7} {'median Q*':>10} {'jam needed':>11} {'E binds':>8} {'solve':>8}"
    )
    print(header)
    print("-" * len(header))
    for cfg in configs:
        t0 = time.perf_counter()
        stats = run_setting(
            cfg, args.clusters, args.seed, tuple(args.gld_range), tuple(args.bld_range)
        )
        stats["difficulty"] = cfg.difficulty
        stats["wall_s"] = time.perf_counter() - t0
        results.append(stats)
        print(
            f"{cfg.difficulty:>10.2f} {stats['feasible_share']:>9.1%} "
            f"{_fmt(stats['median_T_s'], '>9.2f')}s {_fmt(stats['p95_T_s'], '>8.2f')}s "
            f"{_fmt(stats['jamming_share'], '>7.1%')} "
            f"{_fmt(stats['median_Q_w'], '>9.3g')}W "
            f"{_fmt(stats['jam_needed_share'], '>11.1%')} "
            f"{_fmt(stats['energy_binds_share'], '>8.1%')} "
            f"{stats['mean_solve_s'] * 1e3:>6.0f}ms"
        )

    record = {
        "benchmark": "feasibility",
        "clusters": args.clusters,
        "seed": args.seed,
        "gld_range": args.gld_range,
        "bld_range": args.bld_range,
        "config": base.to_dict(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "results": results,
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"feasibility-{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
