"""Scale-out: PPO on Ray RLlib (new API stack) over the native vector env, then
``dtfl compare`` against Algorithm 2.

1. train PPO with ``--env-runners`` env runners (Ray actors; 0: sample in the driver) of
   ``--envs-per-runner`` environments each. Every runner builds one ``DTFLVectorEnv``
   (``gym.make_vec(..., vectorization_mode="vector_entry_point")``, RLlib's
   ``gym_env_vectorize_mode``), so M clusters step as one numpy computation; the id carries
   the ``dtfl_env:`` prefix, which imports the package (and registers the ids) in every
   worker, and runner w seeds its envs with ``--seed`` + w M + k
   (``agents.rllib.disjoint_env_seeds``: no two envs of any runners replay the same
   episodes). The env config is the PPO defaults' (``agents/ppo_defaults.json``: the ``safe``
   mode with ``sync`` jamming and the ``excess`` scale, the bound features, the
   log-weighted latency reward against the box centre) under ``--config``; PPO settings as
   there where RLlib has them (gamma 0, GAE lambda 0.95, clip 0.2, 10 epochs, 256 x 256 tanh
   nets), without observation or reward normalisation;
2. save the checkpoint (``<out>/checkpoint``) and the env config (``<out>/config.json``
   with the run's settings, ``<out>/env_config.json`` the overrides alone);
3. evaluate the RLModule with ``dtfl compare`` as a custom policy
   (``agents.rllib:RLlibPolicy``, deterministic: the mean action) beside Algorithm 2 on
   ``--eval-episodes`` held-out episodes (seeds ``--eval-seed``, ...), and print the gap of
   its mean latency to Algorithm 2's over the clusters with a feasible allocation.

    pip install -e '.[rllib]'
    python examples/rllib_ppo.py                              # 2 runners x 8 envs, 20 iterations
    python examples/rllib_ppo.py --quick                      # 2 tiny iterations (smoke test)
    ray start --head                                          # on a cluster: see docs/SCALE_OUT.md
    RAY_AUTH_MODE=token python examples/rllib_ppo.py --address auto --env-runners 16 \
        --envs-per-runner 32

Outputs in ``--out`` (default ``runs/rllib_ppo``): ``checkpoint/``, ``config.json``,
``env_config.json``,
``rllib_ppo_iterations.csv`` (env steps, steps/s, episode return per iteration),
``compare/`` (the ``dtfl compare`` report) and ``rllib_ppo_summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import agents
from agents.figures.common import finish, parse_args, prepare_out, write_csv
from agents.training import overlay_config

FIGURE = "rllib_ppo"
#: the SB3 PPO defaults (env config, gamma, GAE lambda, clip range, entropy coefficient)
PPO_DEFAULTS: dict[str, Any] = json.loads(
    (Path(agents.__file__).parent / "ppo_defaults.json").read_text()
)
QUICK = {
    "iterations": 2,
    "env_runners": 1,
    "envs_per_runner": 2,
    "train_batch": 64,
    "minibatch": 32,
    "epochs": 1,
    "hidden": 16,
    "eval_episodes": 1,
}
QUICK_CONFIG = {"clusters": 3, "rounds": 2}
VECTORIZE = ("vector_entry_point", "sync")


@dataclass
class Args:
    env: str = field(
        default="DTFL-TableII-v0",
        metadata={
            "help": "a latency-only id (DTFL-TableII-v0, DTFL-Random-v0, "
            "DTFL-Fast-v0): they have the native vector env"
        },
    )
    config: str | None = field(
        default=None,
        metadata={
            "help": "env config overrides (JSON text or file) over the PPO defaults' env_config"
        },
    )
    env_runners: int = field(
        default=2, metadata={"help": "RLlib env runners (Ray actors); 0: sample in the driver"}
    )
    envs_per_runner: int = field(
        default=8, metadata={"help": "environments per runner (one vector env)"}
    )
    vectorize: str = field(
        default="vector_entry_point",
        metadata={
            "help": "RLlib's gym_env_vectorize_mode: vector_entry_point (the native DTFLVectorEnv) "
            "or sync (Gymnasium's SyncVectorEnv of single envs, for comparison)"
        },
    )
    iterations: int = field(default=20, metadata={"help": "training iterations"})
    train_batch: int = field(default=4096, metadata={"help": "env steps per iteration"})
    minibatch: int = field(default=256, metadata={"help": "SGD minibatch size"})
    epochs: int = field(default=10, metadata={"help": "SGD epochs per iteration"})
    lr: float = field(default=3e-4, metadata={"help": "learning rate"})
    hidden: int = field(default=256, metadata={"help": "units of each of the 2 hidden layers"})
    seed: int = field(default=0, metadata={"help": "training seed"})
    eval_episodes: int = field(default=3, metadata={"help": "evaluation episodes"})
    eval_seed: int = field(default=1000, metadata={"help": "first evaluation episode seed"})
    address: str | None = field(
        default=None,
        metadata={
            "help": "Ray cluster to join ('auto' on one of its nodes, or HEAD_IP:6379; with "
            "RAY_AUTH_MODE=token, docs/SCALE_OUT.md); none: a private local Ray"
        },
    )
    quick: bool = field(
        default=False,
        metadata={"help": "tiny budget: 2 iterations of 64 steps, 1 x 2 envs, 1 episode"},
    )
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def env_config(args: Args) -> dict[str, Any]:
    """The PPO defaults' env config under the user's ``--config`` (and the quick sizes)."""
    cfg = PPO_DEFAULTS["env_config"]
    if args.quick:
        cfg = overlay_config(cfg, QUICK_CONFIG)
    if args.config:
        path = Path(args.config)
        user = json.loads(path.read_text() if path.is_file() else args.config)
        if not isinstance(user, dict):
            raise SystemExit("--config: must be a JSON object")
        cfg = overlay_config(cfg, user)
    return cfg


def ppo_config(args: Args, cfg: dict[str, Any]) -> Any:
    """The RLlib ``PPOConfig`` of the run (new API stack, the native vector env)."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from agents.rllib import disjoint_env_seeds

    hp = PPO_DEFAULTS
    return (
        PPOConfig()
        .environment(env=f"dtfl_env:{args.env}", env_config={"config": cfg})
        .env_runners(
            num_env_runners=args.env_runners,
            num_envs_per_env_runner=args.envs_per_runner,
            gym_env_vectorize_mode=args.vectorize,
            rollout_fragment_length="auto",
        )
        .training(
            train_batch_size_per_learner=args.train_batch,
            minibatch_size=args.minibatch,
            num_epochs=args.epochs,
            lr=args.lr,
            gamma=hp["gamma"],
            lambda_=hp["gae_lambda"],
            clip_param=hp["clip_range"],
            entropy_coeff=hp["ent_coef"],
            use_kl_loss=False,
        )
        .callbacks(on_environment_created=disjoint_env_seeds)
        .rl_module(
            model_config=DefaultModelConfig(
                fcnet_hiddens=[args.hidden] * 2, fcnet_activation="tanh", vf_share_layers=False
            )
        )
        .debugging(seed=args.seed, log_level="ERROR")
    )


def train(args: Args, cfg: dict[str, Any], out: Path) -> list[dict[str, float]]:
    """Train, save ``out/checkpoint`` and return one row per iteration."""
    import ray

    if args.address:
        ray.init(address=args.address, logging_level="ERROR")
    else:
        # "local": a new private Ray, even where a stopped cluster left its address behind
        ray.init(address="local", include_dashboard=False, logging_level="ERROR")
    rows: list[dict[str, float]] = []
    try:
        algo = ppo_config(args, cfg).build_algo()
        t_start, steps_before = time.perf_counter(), 0
        for it in range(1, args.iterations + 1):
            t0 = time.perf_counter()
            result = algo.train()
            wall = time.perf_counter() - t0
            runners = result.get("env_runners", {})
            steps = int(result.get("num_env_steps_sampled_lifetime", 0))
            sample_s = float(result.get("timers", {}).get("env_runner_sampling_timer", 0.0))
            rows.append(
                {
                    "iteration": it,
                    "env_steps": steps,
                    "iteration_s": wall,
                    "env_steps_per_s": (steps - steps_before) / wall,
                    # RLlib's sampling timer (all runners in parallel; smoothed)
                    "sampling_s": sample_s,
                    "sampling_steps_per_s": (steps - steps_before) / sample_s
                    if sample_s > 0
                    else float("nan"),
                    "episode_return_mean": runners.get("episode_return_mean", float("nan")),
                    "episode_len_mean": runners.get("episode_len_mean", float("nan")),
                    "elapsed_s": time.perf_counter() - t_start,
                }
            )
            steps_before = steps
            r = rows[-1]
            print(
                f"iter {it:3d}  env steps {steps:8d}  {r['env_steps_per_s']:7.0f} steps/s "
                f"({r['sampling_steps_per_s']:.0f} while sampling)  "
                f"episode return {r['episode_return_mean']:.4g}",
                flush=True,
            )
        algo.save_to_path((out / "checkpoint").resolve().as_posix())
        algo.stop()
    finally:
        ray.shutdown()
    return rows


def compare(args: Args, cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    """``dtfl compare`` with the checkpoint as a custom policy beside Algorithm 2."""
    from agents.cli import main as dtfl
    from agents.rllib import CHECKPOINT_ENV_VAR

    os.environ[CHECKPOINT_ENV_VAR] = str(out)
    code = dtfl(
        [
            "compare",
            "--env",
            args.env,
            "--config",
            str(out / "env_config.json"),
            "--policies",
            "algorithm2",
            "--policy",
            "agents.rllib:RLlibPolicy",
            "--episodes",
            str(args.eval_episodes),
            "--seed",
            str(args.eval_seed),
            "--out",
            str(out / "compare"),
            "--no-plots",
        ]
    )
    if code:
        raise SystemExit(f"dtfl compare failed (exit {code})")
    summary = json.loads((out / "compare" / "results.json").read_text())["summary"]
    rl, a2 = summary["RLlibPolicy"], summary["algorithm2"]
    gap = rl["latency_feasible_s"] / a2["latency_feasible_s"] - 1.0
    print(
        f"RLlib PPO: mean latency {rl['latency_feasible_s']:.4g} s on feasible clusters, "
        f"Algorithm 2 {a2['latency_feasible_s']:.4g} s: gap {100 * gap:+.2f} %; "
        f"per-cluster gap to exact {100 * rl['gap']:+.2f} %, violations on feasible "
        f"clusters {100 * rl['violation_rate_feasible']:.1f} %"
    )
    return {
        "latency_feasible_s": rl["latency_feasible_s"],
        "algorithm2_latency_feasible_s": a2["latency_feasible_s"],
        "gap_to_algorithm2": gap,
        "gap_to_exact": rl["gap"],
        "violation_rate_feasible": rl["violation_rate_feasible"],
        "infeasible_share": rl["infeasible_share"],
    }


def main(args: Args) -> dict[str, Any]:
    if args.quick:
        args = Args(**{**asdict(args), **QUICK})
    if args.vectorize not in VECTORIZE:
        raise SystemExit(f"--vectorize: one of {VECTORIZE}, got {args.vectorize!r}")
    t0 = time.perf_counter()
    out = prepare_out(args.out)
    cfg = env_config(args)
    (out / "config.json").write_text(
        json.dumps({"env_id": args.env, "config": cfg, "args": asdict(args)}, indent=2) + "\n"
    )
    (out / "env_config.json").write_text(json.dumps(cfg, indent=2) + "\n")  # for --config
    rows = train(args, cfg, out)
    files = [
        write_csv(out / f"{FIGURE}_iterations.csv", rows),
        out / "checkpoint",
        out / "config.json",
        out / "env_config.json",
    ]
    evaluation = compare(args, cfg, out)
    steps, wall = rows[-1]["env_steps"], rows[-1]["elapsed_s"]
    summary = {
        "env_steps": steps,
        "train_s": wall,
        "env_steps_per_s": steps / wall,
        "episode_return_mean": rows[-1]["episode_return_mean"],
        **evaluation,
    }
    return finish(out, FIGURE, args, summary, t0, files)


if __name__ == "__main__":
    main(parse_args(Args, description=__doc__.split("\n")[0]))
