"""Training speed of an SB3 agent through each vector env: the native one against workers.

Trains PPO (or ``--algo``) with the shipped defaults, changing only ``vec_env``, for
``--timesteps`` steps on ``--env`` in the direct action mode (without the safe bound
features: no feasible-set search per step) and in the safe mode (the defaults: the safe
mode's searches, one cluster at a time), and reports the steps per second of
``model.learn`` (updates included; no evaluation), split into the rollout collection
(env steps and the policy's actions, where the vector envs differ) and the updates (the
same work for all). Next to it, the vector env alone: steps
per second of ``step`` with random actions, the same number of sub-envs. The runs alternate
between the vector envs (``--repeats`` rounds), and the load average before each run is
recorded: on a shared machine the numbers move with it.

    python benchmarks/sb3_speed.py                          # PPO, 10k steps per run
    python benchmarks/sb3_speed.py --vec-envs native,subproc,dummy --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

# run as a script, this file's folder comes first on sys.path and the benchmark named
# `solvers.py` would shadow the `solvers` package: drop it before importing the project
_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402

from agents.training import (  # noqa: E402
    ALGOS,
    _build_model,
    make_training_env,
    overlay_config,
    resolve_hyperparams,
)

#: the action modes measured: overrides of the defaults' env_config
MODES: dict[str, dict[str, Any]] = {
    "direct": {"action": {"mode": "direct"}, "observation": {"safe_bounds": False}},
    "safe": {},
}


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _env_only(
    env_id: str, vec_env: str, n_envs: int, config: dict[str, Any], steps: int, seed: int
) -> float:
    """Steps per second (all sub-envs) of the bare vector env under random actions."""
    venv = make_training_env(env_id, n_envs, vec_env, config, seed)
    rng = np.random.default_rng(seed)
    shape = (n_envs, *venv.action_space.shape)
    actions = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(64)]
    venv.reset()
    for a in actions[:8]:  # warm up (worker start, first draws)
        venv.step(a)
    n = max(steps // n_envs, 1)
    t0 = time.perf_counter()
    for i in range(n):
        venv.step(actions[i % len(actions)])
    dt = time.perf_counter() - t0
    venv.close()
    return n * n_envs / dt


def _train(
    algo: str, env_id: str, hp: dict[str, Any], config: dict[str, Any], steps: int, seed: int
) -> dict[str, float]:
    """Seconds of model.learn, of its rollout collection (env steps and the policy's
    actions; the rest is the updates) and of building the env and the model."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecNormalize

    class _Clock(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.collect_s, self._t = 0.0, 0.0

        def _on_rollout_start(self) -> None:
            self._t = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.collect_s += time.perf_counter() - self._t

        def _on_step(self) -> bool:
            return True

    t0 = time.perf_counter()
    venv = VecNormalize(
        make_training_env(env_id, int(hp["n_envs"]), hp["vec_env"], config, seed),
        norm_obs=bool(hp["normalize_obs"]),
        norm_reward=bool(hp["normalize_reward"]),
        gamma=float(hp["gamma"]),
    )
    model = _build_model(algo, hp, venv, seed, 0, None)
    clock = _Clock()
    t1 = time.perf_counter()
    model.learn(total_timesteps=steps, callback=clock)
    t2 = time.perf_counter()
    venv.close()
    return {
        "learn_s": t2 - t1,
        "collect_s": clock.collect_s,
        "setup_s": t1 - t0,
        "steps": float(model.num_timesteps),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--algo", default="ppo", choices=sorted(ALGOS))
    ap.add_argument("--env", default="DTFL-TableII-v0")
    ap.add_argument("--timesteps", type=int, default=10_000)
    ap.add_argument(
        "--env-steps",
        type=int,
        default=4_000,
        help="steps of the env-only measurement (0: skip it)",
    )
    ap.add_argument("--modes", default="direct,safe")
    ap.add_argument("--vec-envs", default="native,subproc")
    ap.add_argument("--overrides", default="{}", help="JSON: hyperparameter overrides")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch's threads in this process (0: torch's default); on a loaded "
        "machine 2 threads made a 256-256 MLP's batch-of-4 forward ~10x "
        "slower than 1",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/sb3_speed.json")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    vec_envs = [v for v in args.vec_envs.split(",") if v]
    for m in modes:
        if m not in MODES:
            ap.error(f"--modes: unknown mode {m!r} (known: {', '.join(MODES)})")
    import torch

    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    rows = []
    for mode in modes:
        for rep in range(args.repeats):
            for vec_env in vec_envs:
                hp = resolve_hyperparams(
                    None, {**json.loads(args.overrides), "vec_env": vec_env}, args.algo
                )
                config = overlay_config(hp["env_config"], MODES[mode])
                load = _load()
                env_sps = (
                    _env_only(
                        args.env, vec_env, int(hp["n_envs"]), config, args.env_steps, args.seed
                    )
                    if args.env_steps
                    else None
                )
                t = _train(args.algo, args.env, hp, config, args.timesteps, args.seed)
                row = {
                    "mode": mode,
                    "vec_env": vec_env,
                    "repeat": rep,
                    "n_envs": int(hp["n_envs"]),
                    **t,
                    "train_steps_per_s": t["steps"] / t["learn_s"],
                    "collect_steps_per_s": t["steps"] / t["collect_s"],
                    "update_s": t["learn_s"] - t["collect_s"],
                    "env_steps_per_s": env_sps,
                    "load_before": load,
                }
                rows.append(row)
                env_txt = f"{env_sps:6.0f}" if env_sps is not None else "     -"
                print(
                    f"{mode:6s} {vec_env:8s} rep {rep}: {args.algo} "
                    f"{row['train_steps_per_s']:5.0f} steps/s ({t['learn_s']:5.1f} s; "
                    f"collecting {row['collect_steps_per_s']:5.0f} steps/s, "
                    f"{t['collect_s']:5.1f} s; updates {row['update_s']:5.1f} s), "
                    f"env alone {env_txt} steps/s, load {load:.1f}",
                    flush=True,
                )
    res = {
        "args": vars(args),
        "rows": rows,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
