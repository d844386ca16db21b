"""PPO (stable-baselines3) on any DTFL id: training, periodic evaluation against Algorithm 2,
checkpoints, the saved configuration, and loading a trained agent as a policy."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import dtfl_env  # noqa: F401  (registers the ids)
from agents.base import SB3Policy

__all__ = ["DEFAULT_HYPERPARAMS", "load_ppo", "train_ppo"]

#: PPO settings used unless a JSON file overrides them (keys of ``stable_baselines3.PPO``
#: plus ``n_envs``, ``normalize_obs``, ``normalize_reward``, ``net_arch``).
DEFAULT_HYPERPARAMS: dict[str, Any] = {
    "n_envs": 4,
    "n_steps": 512,
    "batch_size": 256,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 0.9,
    "gae_lambda": 0.95,
    "clip_range": 0.2,
    "ent_coef": 0.0,
    "log_std_init": -1.0,
    "net_arch": [256, 256],
    "normalize_obs": True,
    "normalize_reward": True,
}


def _hyperparams(path: str | Path | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
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
    return hp


def _mean_latency(policy: Any, env_id: str, config: dict[str, Any] | None, seeds: list[int]
                  ) -> tuple[float, float]:
    """Mean round latency and violation rate of ``policy`` over one episode per seed."""
    lat, viol = [], []
    for s in seeds:
        env = gym.make(env_id, config=config)
        obs, _ = env.reset(seed=s)
        if hasattr(policy, "bind"):
            policy.bind(env)
        done = False
        while not done:
            action, _ = policy.predict(obs, deterministic=True)
            obs, _, term, trunc, info = env.step(action)
            lat.append(info["latency_s"])
            viol.append(info["rewards"]["violation"] < 0)
            done = term or trunc
        env.close()
    return float(np.mean(lat)), float(np.mean(viol))


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
    eval_seeds: tuple[int, ...] = (10_001, 10_002),
    progress_bar: bool = False,
    verbose: int = 0,
) -> Path:
    """Train PPO on ``env_id`` and save it under ``out_dir``; returns the model path.

    Writes ``model.zip``, ``vecnormalize.pkl`` (observation/reward statistics),
    ``config.json`` (env id, env config, hyperparameters, seed, timesteps),
    ``evaluations.csv`` (periodic mean latency and violation rate of PPO beside Algorithm 2
    on fixed evaluation seeds), checkpoints, and TensorBoard logs when ``tensorboard`` is
    installed.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.policies import SolverPolicy

    if total_timesteps < 1:
        raise ValueError(f"total_timesteps: must be >= 1, got {total_timesteps}")
    hp = _hyperparams(hyperparams, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    gym.make(env_id, config=config).close()  # validate the id and config up front
    venv = make_vec_env(f"dtfl_env:{env_id}" if ":" not in env_id else env_id,
                        n_envs=int(hp["n_envs"]), seed=seed, env_kwargs={"config": config})
    venv = VecNormalize(venv, norm_obs=bool(hp["normalize_obs"]),
                        norm_reward=bool(hp["normalize_reward"]), gamma=float(hp["gamma"]))
    try:
        import tensorboard  # noqa: F401

        tb_log: str | None = str(out / "tb")
    except ImportError:
        tb_log = None
    ppo_kwargs = {k: hp[k] for k in ("n_steps", "batch_size", "n_epochs", "learning_rate",
                                     "gamma", "gae_lambda", "clip_range", "ent_coef")}
    model = PPO("MlpPolicy", venv, seed=seed, verbose=verbose, tensorboard_log=tb_log,
                policy_kwargs={"net_arch": list(hp["net_arch"]),
                               "log_std_init": float(hp["log_std_init"])},
                device="cpu", **ppo_kwargs)
    (out / "config.json").write_text(json.dumps(
        {"env_id": env_id, "config": config or {}, "hyperparams": hp, "seed": seed,
         "total_timesteps": total_timesteps}, indent=2) + "\n")
    ref_latency, _ = _mean_latency(SolverPolicy("algorithm2"), env_id, config,
                                   list(eval_seeds))
    rows: list[dict[str, float]] = []

    class _Eval(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next = eval_freq
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += eval_freq
                self._evaluate()
            return True

        def _evaluate(self) -> None:
            pol = SB3Policy(self.model, venv if hp["normalize_obs"] else None)
            lat, viol = _mean_latency(pol, env_id, config, list(eval_seeds))
            rows.append({"timesteps": self.num_timesteps, "ppo_latency_s": lat,
                         "ppo_violation_rate": viol, "algorithm2_latency_s": ref_latency,
                         "gap": lat / ref_latency - 1.0,
                         "minutes": (time.perf_counter() - self.t0) / 60})
            self.logger.record("eval/latency_s", lat)
            self.logger.record("eval/gap_to_algorithm2", lat / ref_latency - 1.0)
            self.logger.record("eval/violation_rate", viol)

    evaluator = _Eval()
    ckpt = CheckpointCallback(save_freq=max(eval_freq // int(hp["n_envs"]), 1),
                              save_path=str(out / "checkpoints"), name_prefix="ppo")
    model.learn(total_timesteps=total_timesteps, callback=CallbackList([evaluator, ckpt]),
                progress_bar=progress_bar)
    evaluator._evaluate()
    model.save(out / "model.zip")
    venv.save(str(out / "vecnormalize.pkl"))
    with (out / "evaluations.csv").open("w") as fh:
        keys = list(rows[0])
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(f"{r[k]:.6g}" for k in keys) + "\n")
    return out / "model.zip"


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
    norm = None
    stats = p.parent / "vecnormalize.pkl"
    if stats.is_file():
        with stats.open("rb") as fh:
            norm = pickle.load(fh)
        if not getattr(norm, "norm_obs", False):
            norm = None
    return SB3Policy(model, norm, name=name)

