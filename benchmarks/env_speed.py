"""Environment speed: steps per second of the DTFL environments next to CartPole-v1.

Measures, in one process pinned to one CPU core, ``DTFL-Fast-v0`` (latency-only, lean
``info``), the same in the safe action mode (``DTFL-Fast-v0+safe``: four small searches per
step), ``DTFL-v0`` (the full environment: real FL training and the ledger) and
``CartPole-v1``, each created with ``gym.make(id, disable_env_checker=True)``
and also unwrapped (``.unwrapped``) to show the wrappers' overhead. Actions are sampled
before the clock starts; each run resets, warms up, then steps for ``--seconds`` (resetting
whenever an episode ends). Prints steps/s with and without the resets' time and the ratio to
CartPole-v1 (same wrapping), and saves JSON. ``--profile`` adds a cProfile of
``DTFL-Fast-v0``'s step (unwrapped, resets excluded) and of its reset.

    python benchmarks/env_speed.py              # about 40 s
    python benchmarks/env_speed.py --profile

The issue's target: >= 20,000 steps/s for the latency-only environment on one core.

``--vector`` times the native vector environments instead (``gym.make_vec(id, num_envs=N,
vectorization_mode="vector_entry_point")``, :class:`dtfl_env.envs.vector.DTFLVectorEnv`) at
``--num-envs`` (default 1, 64, 1024), in the direct and the safe action mode, beside
Gymnasium's ``CartPoleVectorEnv`` at the same N and the single envs (``gym.make``): env
steps per second (N per call). A call that resets every sub-env (the NEXT_STEP autoreset
after the episodes end together) is timed as a reset, not as N steps. ``--against PATH``
also times the checkout at PATH (e.g. ``git worktree add ../main-ref main``) with this
script, every run in a fresh process, the two checkouts alternating, and prints them side
by side (before / after a change, under the same machine load)::

    python benchmarks/env_speed.py --vector                      # about 2 min
    python benchmarks/env_speed.py --vector --against ../main-ref

The vector target (issue 20): >= 200,000 safe steps/s at N = 1,024.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# run as a script, this file's folder comes first on sys.path and the benchmark named
# `solvers.py` would shadow the `solvers` package: drop it before importing the project
_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import dtfl_env  # noqa: E402

#: ``ID+safe`` is ``ID`` in the safe action mode (``action.mode = "safe"``)
IDS = ("DTFL-Fast-v0", "DTFL-Fast-v0+safe", "DTFL-v0", "CartPole-v1")
BASELINE = "CartPole-v1"
TARGET_STEPS_PER_S = 20_000.0
#: ``--vector``: the ids timed as native vector envs (CartPole-v1: ``CartPoleVectorEnv``)
VECTOR_IDS = ("DTFL-Fast-v0", "DTFL-Fast-v0+safe", "CartPole-v1")
VECTOR_NUM_ENVS = (1, 64, 1024)
#: issue 20: safe steps per second of the vector env at N = VECTOR_TARGET_N
VECTOR_TARGET_STEPS_PER_S = 200_000.0
VECTOR_TARGET_N = 1024


@dataclass
class Result:
    """One timed run of one environment."""

    env_id: str
    wrapped: bool
    steps: int
    resets: int
    seconds: float
    reset_seconds: float
    num_envs: int = 0
    """Sub-envs of a vector env (N steps per call); 0: a single env (``gym.make``)."""

    @property
    def steps_per_s(self) -> float:
        """Throughput including the time spent in resets at episode ends."""
        return self.steps / self.seconds

    @property
    def step_only_per_s(self) -> float:
        """Throughput of ``step`` alone (reset time subtracted)."""
        return self.steps / (self.seconds - self.reset_seconds)


def _make(env_id: str, wrapped: bool) -> gym.Env:
    base, _, mode = env_id.partition("+")
    kwargs = {"config": {"action": {"mode": mode}}} if mode else {}
    env = gym.make(base, disable_env_checker=True, **kwargs)
    return env if wrapped else env.unwrapped


def _actions(env: gym.Env, n: int, seed: int) -> list[Any]:
    env.action_space.seed(seed)
    return [env.action_space.sample() for _ in range(n)]


def time_env(
    env_id: str,
    wrapped: bool,
    seconds: float,
    seed: int = 0,
    warmup_s: float = 0.2,
    n_actions: int = 4096,
    chunk: int = 256,
) -> Result:
    """Step ``env_id`` for about ``seconds`` (after reset and warm-up) and count the steps.

    The clock is read every ``chunk`` steps; resets at episode ends are timed separately so
    that the step-only rate can be reported too.
    """
    env = _make(env_id, wrapped)
    actions = _actions(env, n_actions, seed)
    step, reset = env.step, env.reset
    reset(seed=seed)
    clock = time.perf_counter
    # warm-up (imports, caches), then the timed run
    for phase_s in (warmup_s, seconds):
        steps = resets = 0
        reset_s = 0.0
        k = 0
        t0 = clock()
        t_end = t0 + phase_s
        while True:
            for _ in range(chunk):
                _, _, terminated, truncated, _ = step(actions[k])
                k = (k + 1) % n_actions
                if terminated or truncated:
                    r0 = clock()
                    reset()
                    reset_s += clock() - r0
                    resets += 1
            steps += chunk
            if (t1 := clock()) >= t_end:
                break
    env.close()
    return Result(env_id, wrapped, steps, resets, t1 - t0, reset_s)


def _make_vec(env_id: str, num_envs: int) -> Any:
    if env_id == BASELINE:
        from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

        return CartPoleVectorEnv(num_envs=num_envs)
    base, _, mode = env_id.partition("+")
    kwargs = {"config": {"action": {"mode": mode}}} if mode else {}
    return gym.make_vec(base, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def time_vector(
    env_id: str,
    num_envs: int,
    seconds: float,
    seed: int = 0,
    warmup_s: float = 0.2,
    n_actions: int = 16,
) -> Result:
    """Step the native vector env of ``env_id`` with ``num_envs`` sub-envs for about
    ``seconds`` (after reset and at least one warm-up call) and count env steps (N per
    call). A call that resets every sub-env (NEXT_STEP, after the episodes end together)
    counts as a reset; CartPole's sub-envs reset one by one inside ordinary calls."""
    venv = _make_vec(env_id, num_envs)
    venv.action_space.seed(seed)
    actions = [venv.action_space.sample() for _ in range(n_actions)]
    venv.reset(seed=seed)
    clock = time.perf_counter
    k = 0
    done = False
    for phase_s in (warmup_s, seconds):
        steps = resets = 0
        reset_s = 0.0
        t0 = clock()
        t_end = t0 + phase_s
        while True:
            c0 = clock()
            _, _, terminated, truncated, _ = venv.step(actions[k % n_actions])
            c1 = clock()
            k += 1
            if done:
                resets += 1
                reset_s += c1 - c0
            else:
                steps += num_envs
            done = bool(np.all(terminated | truncated))
            if c1 >= t_end:
                break
    venv.close()
    return Result(env_id, True, steps, resets, c1 - t0, reset_s, num_envs)


def _timed(env_id: str, num_envs: int, seconds: float, seed: int) -> Result:
    """One timed run: the vector env with ``num_envs`` sub-envs, or the single env
    (``gym.make``, wrapped) for ``num_envs`` = 0."""
    if num_envs == 0:
        return time_env(env_id, True, seconds, seed)
    return time_vector(env_id, num_envs, seconds, seed)


def _timed_in(tree: Path, env_id: str, num_envs: int, seconds: float, seed: int) -> Result:
    """:func:`_timed` in a fresh process importing the checkout at ``tree`` (this script,
    that checkout's ``dtfl_env``)."""
    job = json.dumps({"env_id": env_id, "num_envs": num_envs, "seconds": seconds, "seed": seed})
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", job],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: {env_id} N={num_envs} failed:\n{proc.stderr[-2000:]}")
    return Result(**json.loads(proc.stdout.strip().splitlines()[-1]))


def run_vector(args: argparse.Namespace) -> dict[str, Any]:
    """``--vector``: the table of vector envs (and single envs), optionally beside the
    checkout ``args.against``; returns the JSON record."""
    ns = [int(v) for v in args.num_envs.split(",") if v.strip()]
    if not ns or min(ns) < 1:
        raise SystemExit("--num-envs: comma list of integers >= 1")
    trees = {"this": _HERE.parent}
    if args.against:
        trees["against"] = Path(args.against).resolve()
        if not (trees["against"] / "dtfl_env").is_dir():
            raise SystemExit(f"--against: no dtfl_env package under {trees['against']}")
    ids = list(
        VECTOR_IDS if args.ids is None else [i.strip() for i in args.ids.split(",") if i.strip()]
    )
    if BASELINE not in ids:
        ids.append(BASELINE)
    cpu = _pin_one_core()
    cases = [(i, n) for i in ids for n in [0, *ns]]
    runs: dict[tuple[str, str, int], list[Result]] = {}
    for _ in range(args.repeats):  # the checkouts alternate, run by run
        for env_id, n in cases:
            for name, tree in trees.items():
                res = (
                    _timed(env_id, n, args.seconds, args.seed)
                    if len(trees) == 1
                    else _timed_in(tree, env_id, n, args.seconds, args.seed)
                )
                runs.setdefault((name, env_id, n), []).append(res)
    rows: list[dict[str, Any]] = []
    for env_id, n in cases:
        row: dict[str, Any] = {"env_id": env_id, "num_envs": n}
        for name in trees:
            rs = runs[(name, env_id, n)]
            row[name] = {
                "steps_per_s": statistics.median(r.steps_per_s for r in rs),
                "step_only_per_s": statistics.median(r.step_only_per_s for r in rs),
                "runs": [asdict(r) for r in rs],
            }
        rows.append(row)
    base = {r["num_envs"]: r["this"]["steps_per_s"] for r in rows if r["env_id"] == BASELINE}
    for r in rows:
        r["ratio_to_cartpole"] = r["this"]["steps_per_s"] / base[r["num_envs"]]
        if "against" in r:
            r["speedup"] = r["this"]["step_only_per_s"] / r["against"]["step_only_per_s"]

    print(
        f"one core (cpu {cpu}), {args.seconds:g} s per run, median of {args.repeats}; "
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"gymnasium {gym.__version__}; N = 0: the single env (gym.make)"
    )
    for name, tree in trees.items():
        print(f"{name}: {tree if len(trees) > 1 else Path(dtfl_env.__file__).parent.parent}")
    header = (
        f"{'env':<20}{'N':>6}{'steps/s':>12}{'step-only/s':>13}"
        + (f"{'against':>12}{'step-only/s':>13}{'speed-up':>10}" if args.against else "")
        + f"{'x CartPole':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        line = (
            f"{r['env_id']:<20}{r['num_envs']:>6}{r['this']['steps_per_s']:>12,.0f}"
            f"{r['this']['step_only_per_s']:>13,.0f}"
        )
        if args.against:
            line += (
                f"{r['against']['steps_per_s']:>12,.0f}"
                f"{r['against']['step_only_per_s']:>13,.0f}{r['speedup']:>9.1f}x"
            )
        print(line + f"{r['ratio_to_cartpole']:>12.3f}")
    safe = [
        r for r in rows if r["env_id"] == "DTFL-Fast-v0+safe" and r["num_envs"] == VECTOR_TARGET_N
    ]
    if safe:
        got = safe[0]["this"]["step_only_per_s"]
        verdict = "meets" if got >= VECTOR_TARGET_STEPS_PER_S else "misses"
        print(
            f"DTFL-Fast-v0+safe at N = {VECTOR_TARGET_N:,} {verdict} the target of "
            f"{VECTOR_TARGET_STEPS_PER_S:,.0f} steps/s ({got:,.0f})"
        )
    return {
        "mode": "vector",
        "seconds": args.seconds,
        "repeats": args.repeats,
        "seed": args.seed,
        "cpu": cpu,
        "num_envs": ns,
        "against": str(trees.get("against", "")) or None,
        "target_steps_per_s": VECTOR_TARGET_STEPS_PER_S,
        "target_num_envs": VECTOR_TARGET_N,
        "rows": rows,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "dtfl_env": dtfl_env.__version__,
    }


def profile_step(
    env_id: str = "DTFL-Fast-v0", steps: int = 20_000, seed: int = 0, top: int = 20
) -> str:
    """cProfile of ``steps`` unwrapped steps of ``env_id`` (resets excluded); the top costs."""
    env = _make(env_id, wrapped=False)
    actions = _actions(env, 4096, seed)
    env.reset(seed=seed)
    prof = cProfile.Profile()
    for k in range(steps):
        prof.enable()
        _, _, terminated, _, _ = env.step(actions[k % len(actions)])
        prof.disable()
        if terminated:
            env.reset()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def profile_reset(
    env_id: str = "DTFL-Fast-v0", resets: int = 300, seed: int = 0, top: int = 15
) -> str:
    """cProfile of ``resets`` unwrapped resets of ``env_id``; the top costs by total time."""
    env = _make(env_id, wrapped=False)
    env.reset(seed=seed)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(resets):
        env.reset()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def _pin_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table and save the JSON record."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per run")
    ap.add_argument("--repeats", type=int, default=3, help="runs per env (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ids", default=None, help=f"comma list (default {IDS}; with --vector {VECTOR_IDS})"
    )
    ap.add_argument(
        "--profile", action="store_true", help="also cProfile DTFL-Fast-v0's step and reset"
    )
    ap.add_argument(
        "--out",
        default=None,
        help="JSON record (default results/env_speed.json, "
        "results/env_speed_vector.json with --vector)",
    )
    ap.add_argument(
        "--vector",
        action="store_true",
        help="time the native vector envs (make_vec, vector_entry_point) at "
        "--num-envs, direct and safe, beside CartPoleVectorEnv",
    )
    ap.add_argument(
        "--num-envs",
        default=",".join(map(str, VECTOR_NUM_ENVS)),
        help="with --vector: comma list of N (default 1,64,1024)",
    )
    ap.add_argument(
        "--against",
        metavar="PATH",
        default=None,
        help="with --vector: also time the checkout at PATH, side by side",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # one run for --against, as JSON
    args = ap.parse_args(argv)
    if args.seconds <= 0:
        ap.error("--seconds: must be > 0")
    if args.repeats < 1:
        ap.error("--repeats: must be >= 1")
    if args.worker:
        job = json.loads(args.worker)
        _pin_one_core()
        res = _timed(job["env_id"], job["num_envs"], job["seconds"], job["seed"])
        print(json.dumps(asdict(res)))
        return asdict(res)
    if args.against and not args.vector:
        ap.error("--against: only with --vector")
    if args.vector:
        record = run_vector(args)
        out = Path(args.out or _HERE / "results" / "env_speed_vector.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"saved {out}")
        return record
    ids = [i.strip() for i in (args.ids or ",".join(IDS)).split(",") if i.strip()]
    if BASELINE not in ids:
        ids.append(BASELINE)
    cpu = _pin_one_core()

    rows: list[dict[str, Any]] = []
    for env_id in ids:
        for wrapped in (True, False):
            runs = [time_env(env_id, wrapped, args.seconds, args.seed) for _ in range(args.repeats)]
            rows.append(
                {
                    "env_id": env_id,
                    "wrapped": wrapped,
                    "steps_per_s": statistics.median(r.steps_per_s for r in runs),
                    "step_only_per_s": statistics.median(r.step_only_per_s for r in runs),
                    "runs": [asdict(r) for r in runs],
                }
            )
    base = {r["wrapped"]: r["steps_per_s"] for r in rows if r["env_id"] == BASELINE}
    for r in rows:
        r["ratio_to_cartpole"] = r["steps_per_s"] / base[r["wrapped"]]
        r["us_per_step"] = 1e6 / r["steps_per_s"]

    print(
        f"one core (cpu {cpu}), {args.seconds:g} s per run, median of {args.repeats}; "
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"gymnasium {gym.__version__}"
    )
    header = (
        f"{'env':<16}{'wrapping':<11}{'steps/s':>10}{'step-only/s':>13}{'us/step':>9}"
        f"{'x CartPole':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['env_id']:<16}{'gym.make' if r['wrapped'] else 'unwrapped':<11}"
            f"{r['steps_per_s']:>10,.0f}{r['step_only_per_s']:>13,.0f}"
            f"{r['us_per_step']:>9.1f}{r['ratio_to_cartpole']:>12.3f}"
        )
    fast = [r for r in rows if r["env_id"] == "DTFL-Fast-v0"]
    if fast:
        best = max(r["steps_per_s"] for r in fast)
        verdict = "meets" if best >= TARGET_STEPS_PER_S else "misses"
        print(
            f"DTFL-Fast-v0 {verdict} the target of {TARGET_STEPS_PER_S:,.0f} steps/s "
            f"(best {best:,.0f})"
        )

    record: dict[str, Any] = {
        "seconds": args.seconds,
        "repeats": args.repeats,
        "seed": args.seed,
        "cpu": cpu,
        "target_steps_per_s": TARGET_STEPS_PER_S,
        "rows": rows,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "numpy": np.__version__,
        "gymnasium": gym.__version__,
        "dtfl_env": dtfl_env.__version__,
    }
    if args.profile:
        text = profile_step(seed=args.seed)
        print(text)
        record["profile_fast_step"] = text
        text = profile_reset(seed=args.seed)
        print(text)
        record["profile_fast_reset"] = text
    out = Path(args.out or _HERE / "results" / "env_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return record


if __name__ == "__main__":
    main()
