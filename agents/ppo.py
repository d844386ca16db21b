"""PPO (stable-baselines3) on any DTFL id: training, periodic evaluation against Algorithm 2,
checkpoints, the saved configuration, and loading a trained agent as a policy."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

import dtfl_env  # noqa: F401  (registers the ids)
from agents.base import SB3Policy

__all__ = ["DEFAULT_HYPERPARAMS", "load_ppo", "train_ppo", "worker_fl_threads"]

#: PPO settings used unless a JSON file overrides them (keys of ``stable_baselines3.PPO``
#: plus ``n_envs``, ``normalize_obs``, ``normalize_reward``, ``net_arch`` and ``env_config``,
#: the overrides of the training environment's config, under the user's ``config``).
#: Why these values (docs/PPO.md has what was tried):
#: - every step is one cluster and, without FL, an action does not change later clusters (a
#:   contextual bandit): ``gamma = 0`` removes the value function's bootstrapping noise;
#: - the ``safe`` action mode (3 actions inside the energy-feasible set) instead of 2 + 16
#:   raw actions of which most break budgets;
#: - ``log`` latency reward: the same per-cluster optimum, scale-free across clusters whose
#:   optimal latency spans 3-100 s; ``count`` violations: a GLD that cannot pay even an
#:   endless upload (deep fade) drops out whatever the action, and its energy excess must
#:   not reward slowing everybody down.
DEFAULT_HYPERPARAMS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "ppo_defaults.json").read_text())


def resolve_hyperparams(path: str | Path | None,
                        overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults of ``ppo_defaults.json``, updated by the JSON file at ``path`` and then
    by ``overrides``; unknown keys and bad values raise ``ValueError`` naming them."""
    hp = dict(DEFAULT_HYPERPARAMS)
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"hyperparams: no such file {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"hyperparams: {path} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ValueError(f"hyperparams: {path} must hold a JSON object")
        hp.update(data)
    hp.update(overrides or {})
    unknown = set(hp) - set(DEFAULT_HYPERPARAMS)
    if unknown:
        raise ValueError(f"hyperparams: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(DEFAULT_HYPERPARAMS))})")
    if not isinstance(hp["env_config"], dict):
        raise ValueError("hyperparams: env_config must be a JSON object")
    for key, allowed in (("vec_env", ("dummy", "subproc")),
                         ("lr_schedule", ("constant", "linear"))):
        if hp[key] not in allowed:
            raise ValueError(f"hyperparams: {key} must be one of {allowed}, got {hp[key]!r}")
    return hp


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two config override dicts (``top`` wins); the env validates the result."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value)
        else:
            out[key] = value
    return out


def worker_fl_threads(n_envs: int, cores: int | None = None) -> int:
    """``fl.threads`` (torch's and numpy's BLAS threads) per vector-env worker process, so
    that ``n_envs`` workers share ``cores`` CPU cores (default: the cores this process may
    run on) without oversubscribing them: cores // n_envs, at least 1."""
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"n_envs: must be an integer >= 1, got {n_envs!r}")
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    return max(1, int(cores) // n_envs)


def _worker_config(env_id: str, env_config: dict[str, Any], n_envs: int) -> dict[str, Any]:
    """The config of subprocess workers: ``fl.threads`` = :func:`worker_fl_threads` where
    the env trains with torch and the user left ``fl.threads`` unset (``None``)."""
    probe = gym.make(env_id, config=env_config)
    try:
        fl = probe.unwrapped.config["fl"]  # type: ignore[attr-defined]
    finally:
        probe.close()
    if fl["backend"] != "torch" or fl["threads"] is not None:
        return env_config
    return _overlay(env_config, {"fl": {"threads": worker_fl_threads(n_envs)}})


def _eval_summary(policy: Any, env_id: str, config: dict[str, Any], episodes: int, seed: int
                  ) -> dict[str, float]:
    """Latency on feasible clusters, violation rate there, and gap to the exact optimum."""
    from agents.evaluation import evaluate_policies

    rep = evaluate_policies({"p": policy}, env_id=env_id, config=config, episodes=episodes,
                            seed=seed)
    s = rep.summary["p"]
    return {"latency_feasible_s": s["latency_feasible_s"], "gap": s["gap"],
            "violation_rate_feasible": s["violation_rate_feasible"],
            "latency_s": s["latency_s"], "violation_rate": s["violation_rate"]}


def train_ppo(
    env_id: str = "DTFL-Fast-v0",
    *,
    total_timesteps: int = 200_000,
    config: dict[str, Any] | None = None,
    hyperparams: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: str | Path = "runs/ppo",
    seed: int = 0,
    eval_freq: int = 20_000,
    eval_episodes: int = 2,
    eval_seed: int = 10_001,
    progress_bar: bool = False,
    verbose: int = 0,
) -> Path:
    """Train PPO on ``env_id`` and save it under ``out_dir``; returns the model path.

    The training environment's config is the hyperparameters' ``env_config`` with the
    user's ``config`` on top. Subprocess workers of an env that trains with torch get
    ``fl.threads`` = cores // n_envs unless the config sets it (recorded as
    ``worker_config``). Writes ``model.zip``, ``vecnormalize.pkl`` (observation and
    reward statistics), ``config.json`` (env id, the env config used, hyperparameters,
    seed, timesteps, training minutes), ``evaluations.csv`` and ``learning_curve.png``
    (every ``eval_freq`` steps and at the end: PPO's mean latency on feasible clusters, its
    violation rate there and its gap to the exact optimum, beside Algorithm 2 on the same
    ``eval_episodes`` episodes from seed ``eval_seed``), checkpoints (every ``eval_freq``
    steps), and TensorBoard logs when ``tensorboard`` is installed. ``eval_freq`` >=
    ``total_timesteps``: the final evaluation only.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.policies import SolverPolicy

    if total_timesteps < 1:
        raise ValueError(f"total_timesteps: must be >= 1, got {total_timesteps}")
    if isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1:
        # 0 would evaluate and checkpoint at every step; >= total_timesteps: the final only
        raise ValueError(f"eval_freq: must be an integer >= 1 (total_timesteps or more for "
                         f"the final evaluation only), got {eval_freq!r}")
    if eval_episodes < 1:
        raise ValueError(f"eval_episodes: must be >= 1, got {eval_episodes}")
    hp = resolve_hyperparams(hyperparams, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_config = _overlay(hp["env_config"], config or {})  # the user's config wins
    gym.make(env_id, config=env_config).close()  # validate the id and config up front
    vec_cls = None
    worker_config = env_config
    if hp["vec_env"] == "subproc" and int(hp["n_envs"]) > 1:
        from stable_baselines3.common.vec_env import SubprocVecEnv

        vec_cls = SubprocVecEnv  # env steps run in worker processes beside the PPO update
        # workers that train with torch share the cores instead of each taking all of them
        worker_config = _worker_config(env_id, env_config, int(hp["n_envs"]))
    venv = make_vec_env(f"dtfl_env:{env_id}" if ":" not in env_id else env_id,
                        n_envs=int(hp["n_envs"]), seed=seed,
                        env_kwargs={"config": worker_config},
                        vec_env_cls=vec_cls,
                        vec_env_kwargs={"start_method": "spawn"} if vec_cls else None)
    venv = VecNormalize(venv, norm_obs=bool(hp["normalize_obs"]),
                        norm_reward=bool(hp["normalize_reward"]), gamma=float(hp["gamma"]))
    try:
        import tensorboard  # noqa: F401

        tb_log: str | None = str(out / "tb")
    except ImportError:
        tb_log = None
    ppo_kwargs = {k: hp[k] for k in ("n_steps", "batch_size", "n_epochs", "learning_rate",
                                     "gamma", "gae_lambda", "clip_range", "ent_coef")}
    if hp["lr_schedule"] == "linear":  # decays to 0 over the run (SB3 passes 1 -> 0)
        lr0 = float(hp["learning_rate"])
        ppo_kwargs["learning_rate"] = lambda remaining: lr0 * remaining
    model = PPO("MlpPolicy", venv, seed=seed, verbose=verbose, tensorboard_log=tb_log,
                policy_kwargs={"net_arch": list(hp["net_arch"]),
                               "log_std_init": float(hp["log_std_init"])},
                device="cpu", **ppo_kwargs)
    record = {"env_id": env_id, "config": env_config, "hyperparams": hp, "seed": seed,
              "total_timesteps": total_timesteps}
    if worker_config is not env_config:  # what the subprocess workers ran with
        record["worker_config"] = worker_config
    (out / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    ref = _eval_summary(SolverPolicy("algorithm2"), env_id, env_config, eval_episodes,
                        eval_seed)
    rows: list[dict[str, float]] = []
    t0 = time.perf_counter()

    class _Eval(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next = eval_freq

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += eval_freq
                self.evaluate()
            return True

        def evaluate(self) -> None:
            pol = SB3Policy(self.model, venv if hp["normalize_obs"] else None)
            res = _eval_summary(pol, env_id, env_config, eval_episodes, eval_seed)
            gap_a2 = res["latency_feasible_s"] / ref["latency_feasible_s"] - 1.0
            rows.append({"timesteps": self.num_timesteps,
                         "ppo_latency_feasible_s": res["latency_feasible_s"],
                         "ppo_violation_rate_feasible": res["violation_rate_feasible"],
                         "ppo_gap_to_exact": res["gap"],
                         "algorithm2_latency_feasible_s": ref["latency_feasible_s"],
                         "gap_to_algorithm2": gap_a2,
                         "minutes": (time.perf_counter() - t0) / 60})
            self.logger.record("eval/latency_feasible_s", res["latency_feasible_s"])
            self.logger.record("eval/gap_to_algorithm2", gap_a2)
            self.logger.record("eval/violation_rate_feasible", res["violation_rate_feasible"])

    evaluator = _Eval()
    ckpt = CheckpointCallback(save_freq=max(eval_freq // int(hp["n_envs"]), 1),
                              save_path=str(out / "checkpoints"), name_prefix="ppo")
    try:
        model.learn(total_timesteps=total_timesteps, callback=CallbackList([evaluator, ckpt]),
                    progress_bar=progress_bar)
        minutes = (time.perf_counter() - t0) / 60
        if not rows or rows[-1]["timesteps"] != model.num_timesteps:
            evaluator.evaluate()
        model.save(out / "model.zip")
        venv.save(str(out / "vecnormalize.pkl"))
    finally:
        venv.close()
    (out / "config.json").write_text(json.dumps({**record, "training_minutes": minutes},
                                                indent=2) + "\n")
    with (out / "evaluations.csv").open("w") as fh:
        keys = list(rows[0])
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(f"{r[k]:.6g}" for k in keys) + "\n")
    _learning_curve(rows, out / "learning_curve.png")
    return out / "model.zip"


def _learning_curve(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    steps = [r["timesteps"] for r in rows]
    ax.plot(steps, [r["ppo_latency_feasible_s"] for r in rows], "o-", label="PPO")
    ax.axhline(rows[0]["algorithm2_latency_feasible_s"], color="k", ls="--",
               label="Algorithm 2")
    ax.set_xlabel("training steps")
    ax.set_ylabel("mean latency, feasible clusters [s]")
    ax.legend()
    ax.set_title("PPO learning curve (evaluation episodes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def load_ppo(path: str | Path, name: str = "ppo") -> SB3Policy:
    """Load a trained agent (``model.zip`` or its folder) as a policy, with its
    observation normalisation when ``vecnormalize.pkl`` lies beside it."""
    import pickle

    from stable_baselines3 import PPO

    p = Path(path)
    if p.is_dir():
        p = p / "model.zip"
    if not p.is_file():
        raise ValueError(f"ppo: no trained model at {path}")
    model = PPO.load(p, device="cpu")
    action_cfg: dict[str, Any] | None = None
    obs_cfg: dict[str, Any] | None = None
    saved = p.parent / "config.json"
    if saved.is_file():  # the training env's action config: mode and ranges
        from dtfl_env.envs.config import default_config

        try:
            env_cfg = json.loads(saved.read_text()).get("config") or {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"ppo: {saved} is not valid JSON ({exc})") from None
        action_cfg = {**default_config()["action"], **(env_cfg.get("action") or {})}
        obs_cfg = {**default_config()["observation"], **(env_cfg.get("observation") or {})}
    norm = None
    stats = p.parent / "vecnormalize.pkl"
    if stats.is_file():
        with stats.open("rb") as fh:
            norm = pickle.load(fh)
        if not getattr(norm, "norm_obs", False):
            norm = None
    return SB3Policy(model, norm, name=name, action_config=action_cfg,
                     observation_config=obs_cfg)

