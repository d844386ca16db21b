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


@dataclass
class Result:
    """One timed run of one environment."""

    env_id: str
    wrapped: bool
    steps: int
    resets: int
    seconds: float
    reset_seconds: float

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


def time_env(env_id: str, wrapped: bool, seconds: float, seed: int = 0,
             warmup_s: float = 0.2, n_actions: int = 4096, chunk: int = 256) -> Result:
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


def profile_step(env_id: str = "DTFL-Fast-v0", steps: int = 20_000, seed: int = 0,
                 top: int = 20) -> str:
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


def profile_reset(env_id: str = "DTFL-Fast-v0", resets: int = 300, seed: int = 0,
                  top: int = 15) -> str:
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
    ap.add_argument("--ids", default=",".join(IDS), help=f"comma list (default {IDS})")
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile DTFL-Fast-v0's step and reset")
    ap.add_argument("--out", default=str(_HERE / "results" / "env_speed.json"))
    args = ap.parse_args(argv)
    if args.seconds <= 0:
        ap.error("--seconds: must be > 0")
    if args.repeats < 1:
        ap.error("--repeats: must be >= 1")
    ids = [i.strip() for i in args.ids.split(",") if i.strip()]
    if BASELINE not in ids:
        ids.append(BASELINE)
    cpu = _pin_one_core()

    rows: list[dict[str, Any]] = []
    for env_id in ids:
        for wrapped in (True, False):
            runs = [time_env(env_id, wrapped, args.seconds, args.seed)
                    for _ in range(args.repeats)]
            rows.append({
                "env_id": env_id, "wrapped": wrapped,
                "steps_per_s": statistics.median(r.steps_per_s for r in runs),
                "step_only_per_s": statistics.median(r.step_only_per_s for r in runs),
                "runs": [asdict(r) for r in runs],
            })
    base = {r["wrapped"]: r["steps_per_s"] for r in rows if r["env_id"] == BASELINE}
    for r in rows:
        r["ratio_to_cartpole"] = r["steps_per_s"] / base[r["wrapped"]]
        r["us_per_step"] = 1e6 / r["steps_per_s"]

    print(f"one core (cpu {cpu}), {args.seconds:g} s per run, median of {args.repeats}; "
          f"python {platform.python_version()}, numpy {np.__version__}, "
          f"gymnasium {gym.__version__}")
    header = (f"{'env':<16}{'wrapping':<11}{'steps/s':>10}{'step-only/s':>13}{'us/step':>9}"
              f"{'x CartPole':>12}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['env_id']:<16}{'gym.make' if r['wrapped'] else 'unwrapped':<11}"
              f"{r['steps_per_s']:>10,.0f}{r['step_only_per_s']:>13,.0f}"
              f"{r['us_per_step']:>9.1f}{r['ratio_to_cartpole']:>12.3f}")
    fast = [r for r in rows if r["env_id"] == "DTFL-Fast-v0"]
    if fast:
        best = max(r["steps_per_s"] for r in fast)
        verdict = "meets" if best >= TARGET_STEPS_PER_S else "misses"
        print(f"DTFL-Fast-v0 {verdict} the target of {TARGET_STEPS_PER_S:,.0f} steps/s "
              f"(best {best:,.0f})")

    record: dict[str, Any] = {
        "seconds": args.seconds, "repeats": args.repeats,
        "seed": args.seed, "cpu": cpu, "target_steps_per_s": TARGET_STEPS_PER_S,
        "rows": rows, "python": platform.python_version(), "machine": platform.machine(),
        "processor": platform.processor(), "numpy": np.__version__,
        "gymnasium": gym.__version__, "dtfl_env": dtfl_env.__version__,
    }
    if args.profile:
        text = profile_step(seed=args.seed)
        print(text)
        record["profile_fast_step"] = text
        text = profile_reset(seed=args.seed)
        print(text)
        record["profile_fast_reset"] = text
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {out}")
    return record


if __name__ == "__main__":
    main()
