"""Scale-out: a small Ray Tune sweep of RLlib PPO's hyperparameters on the native vector env.

A grid over the learning rate (``--lrs``) and the SGD epochs per iteration (``--epochs``),
every trial the PPO of ``examples/rllib_ppo.py`` (same env config, runners and vector envs)
for ``--iterations`` iterations; Tune runs as many trials at once as the Ray cluster's
CPUs allow (a trial takes 1 CPU plus 1 per env runner). Reported per trial: the last
iteration's mean episode return (the training reward: the log-weighted latency term plus
violations) and its env steps; the best trial by that return is marked. The reward is a
training signal, not the benchmark's metric: evaluate the chosen setting with
``examples/rllib_ppo.py --lr ... --epochs ...`` (gap to Algorithm 2).

    python examples/rllib_tune.py                           # 2 x 2 trials, 5 iterations each
    python examples/rllib_tune.py --quick                   # 2 tiny trials of 1 iteration
    RAY_AUTH_MODE=token python examples/rllib_tune.py --address auto --env-runners 4 \
        --iterations 50

Outputs in ``--out`` (default ``runs/rllib_tune``): Tune's trial folders,
``rllib_tune_trials.csv`` and ``rllib_tune_summary.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rllib_ppo import Args as PPOArgs
from rllib_ppo import env_config, ppo_config

from agents.figures.common import finish, parse_args, prepare_out, write_csv

FIGURE = "rllib_tune"
METRIC = "env_runners/episode_return_mean"
QUICK = {
    "lrs": (3e-4,),
    "epochs": (1, 2),
    "iterations": 1,
    "env_runners": 0,
    "envs_per_runner": 2,
    "train_batch": 64,
    "minibatch": 32,
    "hidden": 16,
}


@dataclass
class Args:
    env: str = field(default="DTFL-TableII-v0", metadata={"help": "a latency-only id"})
    config: str | None = field(
        default=None, metadata={"help": "env config overrides (JSON text or file)"}
    )
    lrs: tuple[float, ...] = field(
        default=(1e-4, 3e-4), metadata={"help": "learning rates of the grid"}
    )
    epochs: tuple[int, ...] = field(
        default=(5, 10), metadata={"help": "SGD epochs per iteration of the grid"}
    )
    iterations: int = field(default=5, metadata={"help": "training iterations per trial"})
    env_runners: int = field(default=1, metadata={"help": "env runners per trial"})
    envs_per_runner: int = field(default=8, metadata={"help": "environments per runner"})
    train_batch: int = field(default=4096, metadata={"help": "env steps per iteration"})
    minibatch: int = field(default=256, metadata={"help": "SGD minibatch size"})
    hidden: int = field(default=256, metadata={"help": "units of each of the 2 hidden layers"})
    seed: int = field(default=0, metadata={"help": "training seed of every trial"})
    address: str | None = field(
        default=None, metadata={"help": "Ray cluster to join; none: a local Ray"}
    )
    quick: bool = field(
        default=False, metadata={"help": "tiny budget: 2 trials of 1 iteration of 64 steps"}
    )
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def main(args: Args) -> dict[str, Any]:
    import ray
    from ray import tune

    if args.quick:
        args = Args(**{**asdict(args), **QUICK})
    t0 = time.perf_counter()
    out = prepare_out(args.out)
    base = PPOArgs(
        env=args.env,
        config=args.config,
        env_runners=args.env_runners,
        envs_per_runner=args.envs_per_runner,
        train_batch=args.train_batch,
        minibatch=args.minibatch,
        hidden=args.hidden,
        seed=args.seed,
        quick=args.quick,
    )
    config = ppo_config(base, env_config(base)).training(
        lr=tune.grid_search(list(args.lrs)), num_epochs=tune.grid_search(list(args.epochs))
    )
    if args.address:
        ray.init(address=args.address, logging_level="ERROR")
    else:
        # "local": a new private Ray, even where a stopped cluster left its address behind
        ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    try:
        tuner = tune.Tuner(
            "PPO",
            param_space=config,
            run_config=tune.RunConfig(
                name=FIGURE,
                storage_path=str(Path(out).resolve()),
                stop={"training_iteration": args.iterations},
                verbose=0,
            ),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    if results.errors:
        raise SystemExit(f"{len(results.errors)} trial(s) failed: {results.errors[0]}")
    rows = []
    for res in results:
        m = res.metrics
        rows.append(
            {
                "lr": res.config["lr"],
                "num_epochs": res.config["num_epochs"],
                "iterations": int(m["training_iteration"]),
                "env_steps": int(m["num_env_steps_sampled_lifetime"]),
                "episode_return_mean": m["env_runners"]["episode_return_mean"],
                "time_s": m["time_total_s"],
            }
        )
    best = max(rows, key=lambda r: r["episode_return_mean"])
    for r in sorted(rows, key=lambda r: (r["lr"], r["num_epochs"])):
        mark = "  <- best" if r is best else ""
        print(
            f"lr {r['lr']:.1e}  epochs {r['num_epochs']:3d}  iterations {r['iterations']}  "
            f"env steps {r['env_steps']:7d}  episode return "
            f"{r['episode_return_mean']:.4g}{mark}"
        )
    files = [write_csv(out / f"{FIGURE}_trials.csv", rows)]
    summary = {
        "trials": len(rows),
        "metric": METRIC,
        "best": {
            "lr": best["lr"],
            "num_epochs": best["num_epochs"],
            "episode_return_mean": best["episode_return_mean"],
        },
    }
    return finish(out, FIGURE, args, summary, t0, files)


if __name__ == "__main__":
    main(parse_args(Args, description=__doc__.split("\n")[0]))
