"""The ``dtfl`` command line.

``dtfl solve --preset table2`` prints the optimal allocation of a preset cluster as a table;
``dtfl solve --instance F1.json [F2.json ...] --json`` prints one JSON object per instance.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.evaluation import DEFAULT_TARGET_ACCURACY
from agents.training import ALGOS
from dtfl_env.config import Cluster
from dtfl_env.scenarios import PRESETS, get_preset

SOLVER_CHOICES = ("exact", "algorithm2", "algorithm2-paper", "cvxpy")
#: the stable-baselines3 algorithms of ``dtfl train`` and of ``ALGO:PATH`` policies
ALGO_CHOICES = tuple(ALGOS)
__all__ = ["build_parser", "main"]

JSON_KEYS = ("T", "Q", "y", "v", "tG", "q", "tB_up", "T_GLD", "T_BLD", "status", "message")


def _solve(cluster: Cluster, method: str):  # type: ignore[no-untyped-def]
    from solvers import solve  # solvers sit above dtfl_env in the data flow

    return solve(cluster, method)


def _table(name: str, cluster: Cluster, res) -> str:  # type: ignore[no-untyped-def]
    from dtfl_env.model.system import evaluate_allocation, secrecy_rate_bps

    lines = [
        f"cluster {name}: {cluster.n_gld} GLDs, {cluster.n_bld} BLDs, "
        f"L = {cluster.constants.model_bits / 1e6:g} Mbit, solver {res.solver}",
        f"status: {res.status} ({res.message})",
    ]
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
            lines.append(
                f"  {i + 1:>3}  {ev.cpu_hz[i] / 1e9:8.4f}  {ev.upload_power_w[i]:8.4f}"
                f"  {ev.jam_power_w[i]:7.4f}  {ev.energy_total_j[i]:7.4f}"
                f"  {cluster.gld.energy_budget_j[i]:7.4f}"
            )
    if cluster.n_bld:
        rates = secrecy_rate_bps(cluster, res.Q)
        lines.append("  BLD   R_sec [Mbit/s]")
        for j, r in enumerate(rates):
            lines.append(f"  {j + 1:>3}  {r / 1e6:10.4f}")
    return "\n".join(lines)


def _json_record(res, name: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    rec = res.to_json_dict()
    out = {key: rec[key] for key in JSON_KEYS}
    out.update(
        instance=name,
        solver=rec["solver"],
        iterations=rec["iterations"],
        wall_time_s=rec["wall_time_s"],
    )
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
            print(
                "error: --save needs exactly one valid cluster (--preset or one --instance)",
                file=sys.stderr,
            )
            return 2
        cluster = jobs[0][1]
        assert isinstance(cluster, Cluster)
        cluster.save(args.save)
        print(f"saved {jobs[0][0]} to {args.save}", file=sys.stderr)
    code = 0
    valid = [item for _, item in jobs if isinstance(item, Cluster)]
    batched: dict[int, object] = {}
    if args.solver in ("exact", "algorithm2") and len(valid) > 1:  # one batched solve
        from solvers import solve_batch

        batch = solve_batch(valid, args.solver)
        batched = {id(c): batch.result(i, c) for i, c in enumerate(valid)}
    for name, item in jobs:
        if isinstance(item, str):
            code = 2
            print(f"error: {item}", file=sys.stderr)
            if args.json:
                print(json.dumps(_error_record(name, item)), flush=True)
            continue
        try:
            res = batched.get(id(item)) or _solve(item, args.solver)
        except ImportError as exc:  # an optional solver's extra is missing (cvxpy: cvx)
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps(_json_record(res, name)), flush=True)
        else:
            print(_table(name, item, res), flush=True)
    return code


def _parse_config(text: str | None) -> dict | None:  # type: ignore[type-arg]
    if not text:
        return None
    try:
        is_file = Path(text).is_file()
    except OSError:  # e.g. a JSON text longer than a file name may be
        is_file = False
    try:
        data = json.loads(Path(text).read_text() if is_file else text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--config: not a JSON object or file ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("--config: must be a JSON object")
    return data


#: characters that make an agent path of ``--policies`` a glob pattern
_GLOB_CHARS = "*?["


def _is_agent(path: Path) -> bool:
    """A saved agent: a ``.zip`` file or a folder holding ``model.zip``."""
    return (path.is_file() and path.suffix == ".zip") or (path / "model.zip").is_file()


def _agent_paths(raw: str, spec: str) -> list[str] | None:
    """The folders of a seed group ``ALGO:SPEC`` of ``--policies``: SPEC split on ``+``,
    each part a path or a glob pattern (sorted matches); None where SPEC is one agent's path.
    A SPEC that reads both ways (an existing path with ``+`` or glob characters whose parts
    also exist) is an error, as is a part that matches nothing."""
    if "+" not in spec and not any(c in spec for c in _GLOB_CHARS):
        return None
    whole = Path(spec).exists()
    paths: list[str] = []
    missing: str | None = None
    for part in spec.split("+"):
        if not part:
            raise ValueError(f"--policies: {raw}: an empty path between '+' signs")
        if any(c in part for c in _GLOB_CHARS):  # agents only: folders and model zips
            hits = [h for h in sorted(glob.glob(part)) if _is_agent(Path(h))]
        else:
            hits = [part] if Path(part).exists() else []
        if not hits:
            missing = missing or part
        paths += [h for h in hits if h not in paths]
    if whole and missing is None:
        raise ValueError(
            f"--policies: {raw} is ambiguous: {spec} is a path and also reads as the agents "
            f"{', '.join(paths)}; rename the folder, or give the agents one by one"
        )
    if whole:
        return None
    if missing is not None:
        what = "matches no path" if any(c in missing for c in _GLOB_CHARS) else "is no path"
        raise ValueError(f"--policies: {raw}: {missing!r} {what}")
    return paths


def _build_policies(names: str, custom: list[str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The policies of ``--policies`` and ``--policy`` by display name, and the seed groups
    (``ALGO:DIR1+DIR2`` or ``ALGO:'runs/ppo_seed*'``: group name -> member names)."""
    from agents.base import CallablePolicy, load_policy_class
    from agents.policies import make_policy

    out: dict[str, Any] = {}
    groups: dict[str, list[str]] = {}
    for raw in [n.strip() for n in names.split(",") if n.strip()]:
        algo, sep, path = raw.partition(":")
        if sep and algo in ALGO_CHOICES:  # a trained agent: ppo:DIR, sac:DIR, ...
            from agents.training import load_agent

            members = _agent_paths(raw, path)
            if members is None:
                out[raw if path else algo] = load_agent(path, algo=algo, name=algo)
                continue
            groups[raw] = [f"{algo}:{m}" for m in members]
            for member, name in zip(members, groups[raw], strict=True):
                if name not in out:
                    out[name] = load_agent(member, algo=algo, name=algo)
        else:
            out[raw] = make_policy(raw)
    for spec in custom:
        cls = load_policy_class(spec)
        obj = cls() if isinstance(cls, type) else cls
        if not hasattr(obj, "predict"):
            obj = CallablePolicy(obj, name=spec)
        out[spec.rpartition(":")[2]] = obj
    if not out:
        raise ValueError("--policies: give at least one policy")
    return out, groups


def _show_progress(args: argparse.Namespace) -> bool:
    """Progress bars: on a terminal (stderr a TTY), never with ``--quiet``, always with
    ``--progress``."""
    if args.quiet:
        return False
    return bool(args.progress) or sys.stderr.isatty()


def _fraction(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def cmd_compare(args: argparse.Namespace) -> int:
    from agents.evaluation import evaluate_policies

    try:
        config = _parse_config(args.config)
        if args.instances:  # the scenario of their files, one cluster each unless set
            from dtfl_env.instances import instance_paths

            if config and "scenario" in config:
                raise ValueError("--instances and --config both set the scenario; give one")
            count = len(instance_paths(args.instances, "--instances"))
            scenario = {"instances": args.instances}
            config = {"clusters": count, **(config or {}), "scenario": scenario}
        policies, groups = _build_policies(args.policies, args.policy or [])
        report = evaluate_policies(
            policies,
            env_id=args.env,
            config=config,
            episodes=args.episodes,
            seed=args.seed,
            compute_gap=not args.no_gap,
            progress=_show_progress(args),
            target_accuracy=args.target_accuracy,
            groups=groups,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = report.save(args.out, plots=not args.no_plots)
    print(f"{args.env}, {args.episodes} episode(s), seed {args.seed}")
    print(report.markdown())
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from agents.training import train_agent

    if args.algo_name and args.algo and args.algo_name != args.algo:
        print(
            f"error: algorithm given twice: {args.algo_name} and --algo {args.algo}",
            file=sys.stderr,
        )
        return 2
    algo = args.algo or args.algo_name or "ppo"
    try:
        config = _parse_config(args.config)
        path = train_agent(
            algo,
            args.env,
            total_timesteps=args.timesteps,
            config=config,
            hyperparams=args.hyperparams,
            out_dir=args.out or f"runs/{algo}",
            seed=args.seed,
            eval_freq=args.eval_freq,
            progress_bar=_show_progress(args),
            torch_threads=args.torch_threads or None,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"saved {path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run one registered figure (``agents.figures.FIGURES``) or all of them in this process,
    each into ``<out>/<figure name>/``; a figure that fails is reported and the rest run."""
    import traceback

    from agents.figures import FIGURES, run_figure
    from agents.figures.common import progress_bar

    if args.figure == "all":
        keys = list(FIGURES)
    elif args.figure in FIGURES:
        keys = [args.figure]
    else:
        known = ", ".join([*FIGURES, "all"])
        print(f"error: unknown figure {args.figure!r} (known: {known})", file=sys.stderr)
        return 2
    # None: a bar only where stderr is a terminal (tqdm decides, inside each figure too)
    show = False if args.quiet else (True if args.progress else None)
    failed = []
    for key in progress_bar(keys, show, desc="dtfl reproduce"):
        entry = FIGURES[key]
        out = Path(args.out) / entry.name
        argv = [*(["--quick"] if args.quick else []), "--out", str(out)]
        print(f"=== {key}: {entry.title} -> {out}", flush=True)
        try:
            run_figure(key, argv, progress=show)
        except Exception:  # one broken figure must not stop ``all``
            traceback.print_exc()
            failed.append(key)
    if failed:
        print(f"error: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quiet", action="store_true", help="no progress bar (shown when stderr is a terminal)"
    )
    group.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtfl", description="dtfl-gym: DT-assisted, blockchain-verified FL benchmark"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="solve problem P (one cluster) and print the allocation")
    src = p.add_argument_group("cluster source (default: --preset table2)")
    src.add_argument("--preset", choices=sorted(PRESETS), help="a named preset cluster")
    src.add_argument(
        "--instance", nargs="+", metavar="FILE", help="instance JSON files (schema in the README)"
    )
    p.add_argument(
        "--solver", choices=SOLVER_CHOICES, default="exact", help="solver (default: exact)"
    )
    p.add_argument("--json", action="store_true", help="one JSON object per instance per line")
    p.add_argument("--save", metavar="FILE", help="write the cluster as an instance file")
    p.set_defaults(func=cmd_solve)

    c = sub.add_parser("compare", help="evaluate policies on identical seeded episodes")
    c.add_argument(
        "--policies",
        default="algorithm2,exact,random",
        help="comma list of built-in policies (algorithm2, algorithm2-paper, exact, random, "
        "no-jamming, max-jamming, equal-energy, best-fixed-q, greedy-local) and trained "
        "agents ALGO:PATH (ppo, a2c, sac, td3); several training seeds of one agent: "
        "ALGO:DIR1+DIR2 or a quoted glob 'ALGO:runs/ppo_seed*' (IQM and bootstrap CIs "
        "across seeds, docs/EVALUATION.md)",
    )
    c.add_argument(
        "--policy",
        action="append",
        metavar="MODULE:CLASS",
        help="a custom policy class (module:Class or path/file.py:Class); repeatable",
    )
    c.add_argument("--env", default="DTFL-v0", help="environment id (default DTFL-v0)")
    c.add_argument("--config", help="env config overrides: JSON text or a JSON file")
    c.add_argument(
        "--instances",
        metavar="DIR",
        help="evaluate on the instance files (*.json) of DIR: the env's scenario, clusters "
        "= their count unless --config sets it (with fading, Rayleigh draws around their "
        "gains; --config '{\"fading\": false}': their channels as given)",
    )
    c.add_argument("--episodes", type=int, default=2)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", default="runs/compare", help="output folder")
    c.add_argument("--no-gap", action="store_true", help="skip the exact-solver oracle")
    c.add_argument("--no-plots", action="store_true")
    c.add_argument(
        "--target-accuracy",
        type=_fraction,
        default=DEFAULT_TARGET_ACCURACY,
        metavar="A",
        help="ids with FL training: report the simulated time to this global test accuracy "
        f"(default {DEFAULT_TARGET_ACCURACY}; episodes that never reach it are counted)",
    )
    _progress_options(c)
    c.set_defaults(func=cmd_compare)

    t = sub.add_parser("train", help="train an agent (stable-baselines3: ppo, a2c, sac, td3)")
    t.add_argument(
        "algo_name",
        nargs="?",
        choices=ALGO_CHOICES,
        metavar="ALGO",
        help="the algorithm, as --algo (dtfl train sac)",
    )
    t.add_argument(
        "--algo",
        choices=ALGO_CHOICES,
        help="the algorithm (default ppo); its defaults: agents/<algo>_defaults.json",
    )
    t.add_argument("--env", default="DTFL-Fast-v0")
    t.add_argument("--timesteps", type=int, default=200_000)
    t.add_argument("--config", help="env config overrides: JSON text or a JSON file")
    t.add_argument(
        "--hyperparams",
        help="JSON file of hyperparameters, over the algorithm's "
        "defaults (vec_env: auto, native, subproc, dummy)",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--eval-freq",
        type=int,
        default=20_000,
        help="steps between evaluations and checkpoints (>= 1; --timesteps or "
        "more: the final evaluation only)",
    )
    t.add_argument("--out", help="output folder (default runs/<algo>)")
    t.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        metavar="N",
        help="torch's threads during training (default 1, faster for these small "
        "networks; 0: torch's own count)",
    )
    _progress_options(t)
    t.set_defaults(func=cmd_train)

    from agents.figures import FIGURES

    r = sub.add_parser("reproduce", help="regenerate a figure of the paper (runs/<figure name>/)")
    r.add_argument(
        "figure",
        help="; ".join(f"{e.key}: {e.title}" for e in FIGURES.values()) + "; or all",
    )
    r.add_argument("--quick", action="store_true", help="tiny budget")
    r.add_argument(
        "--out",
        default="runs",
        metavar="DIR",
        help="each figure goes to DIR/<figure name>/ (default runs)",
    )
    _progress_options(r)
    r.set_defaults(func=cmd_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
