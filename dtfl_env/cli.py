"""The ``dtfl`` command line.

``dtfl solve --preset table2`` prints the optimal allocation of a preset cluster as a table;
``dtfl solve --instance F1.json [F2.json ...] --json`` prints one JSON object per instance.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from dtfl_env.config import Cluster
from dtfl_env.scenarios import PRESETS, get_preset

SOLVER_CHOICES = ("exact", "algorithm2", "algorithm2-paper", "cvxpy")
__all__ = ["build_parser", "main"]

JSON_KEYS = ("T", "Q", "y", "v", "tG", "q", "tB_up", "T_GLD", "T_BLD", "status", "message")


def _solve(cluster: Cluster, method: str):  # type: ignore[no-untyped-def]
    from solvers import solve  # solvers sit above dtfl_env in the data flow

    return solve(cluster, method)


def _table(name: str, cluster: Cluster, res) -> str:  # type: ignore[no-untyped-def]
    from dtfl_env.model.system import evaluate_allocation, secrecy_rate_bps

    lines = [f"cluster {name}: {cluster.n_gld} GLDs, {cluster.n_bld} BLDs, "
             f"L = {cluster.constants.model_bits / 1e6:g} Mbit, solver {res.solver}",
             f"status: {res.status} ({res.message})"]
    if not res.feasible:
        lines.append("T = infeasible")
        return "\n".join(lines)
    lines += [
        f"  T*      = {res.T:.4f} s   (round latency, eq. 11)",
        f"  T_GLD   = {res.T_GLD:.4f} s   (y + tG, eq. 12)",
        f"  T_BLD   = {res.T_BLD:.4f} s   (tB_up + tB_loc, eq. 13)",
        f"  y       = {res.y:.4f} s   (local training time)",
        f"  tG      = {res.tG:.4f} s   (NOMA upload time)",
        f"  tB_up   = {res.tB_up:.4f} s   (DT sync time, eq. 23)",
        f"  Q       = {res.Q:.4e} W (aggregate jamming, eq. 20)",
    ]
    if cluster.n_gld:
        ev = evaluate_allocation(cluster, tg_s=res.tG, y_s=res.y, jam_power_w=res.q)
        lines.append("  GLD   v [GHz]   p_up [W]  q [W]    E [J]   E_max [J]")
        for i in range(cluster.n_gld):
            lines.append(f"  {i + 1:>3}  {ev.cpu_hz[i] / 1e9:8.4f}  {ev.upload_power_w[i]:8.4f}"
                         f"  {ev.jam_power_w[i]:7.4f}  {ev.energy_total_j[i]:7.4f}"
                         f"  {cluster.gld.energy_budget_j[i]:7.4f}")
    if cluster.n_bld:
        rates = secrecy_rate_bps(cluster, res.Q)
        lines.append("  BLD   R_sec [Mbit/s]")
        for j, r in enumerate(rates):
            lines.append(f"  {j + 1:>3}  {r / 1e6:10.4f}")
    return "\n".join(lines)


def _json_record(res, name: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    rec = res.to_json_dict()
    out = {key: rec[key] for key in JSON_KEYS}
    out.update(instance=name, solver=rec["solver"], iterations=rec["iterations"],
               wall_time_s=rec["wall_time_s"])
    return out


def _error_record(name: str, message: str) -> dict:  # type: ignore[type-arg]
    out: dict = dict.fromkeys(JSON_KEYS)  # type: ignore[type-arg]
    out.update(status="error", message=message, instance=name)
    return out


def cmd_solve(args: argparse.Namespace) -> int:
    if not args.preset and not args.instance:
        args.preset = "table2"
    jobs: list[tuple[str, Cluster | str]] = []
    if args.preset:
        jobs.append((args.preset, get_preset(args.preset)))
    for path in args.instance or []:
        try:
            jobs.append((path, Cluster.load(path)))
        except ValueError as exc:
            jobs.append((path, str(exc)))
    if args.save:
        if len(jobs) != 1 or isinstance(jobs[0][1], str):
            print("error: --save needs exactly one valid cluster (--preset or one --instance)",
                  file=sys.stderr)
            return 2
        cluster = jobs[0][1]
        assert isinstance(cluster, Cluster)
        cluster.save(args.save)
        print(f"saved {jobs[0][0]} to {args.save}", file=sys.stderr)
    code = 0
    for name, item in jobs:
        if isinstance(item, str):
            code = 2
            print(f"error: {item}", file=sys.stderr)
            if args.json:
                print(json.dumps(_error_record(name, item)), flush=True)
            continue
        res = _solve(item, args.solver)
        if args.json:
            print(json.dumps(_json_record(res, name)), flush=True)
        else:
            print(_table(name, item, res), flush=True)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtfl", description="dtfl-gym: DT-assisted, blockchain-verified FL benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="solve problem P (one cluster) and print the allocation")
    src = p.add_argument_group("cluster source (default: --preset table2)")
    src.add_argument("--preset", choices=sorted(PRESETS), help="a named preset cluster")
    src.add_argument("--instance", nargs="+", metavar="FILE",
                     help="instance JSON files (schema in the README)")
    p.add_argument("--solver", choices=SOLVER_CHOICES, default="exact",
                   help="solver (default: exact)")
    p.add_argument("--json", action="store_true", help="one JSON object per instance per line")
    p.add_argument("--save", metavar="FILE", help="write the cluster as an instance file")
    p.set_defaults(func=cmd_solve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

