"""Stable-baselines3 agents (PPO, A2C, SAC, TD3) on any DTFL id: one training path for all.

:func:`train_agent` trains ``algo`` with the defaults of ``agents/<algo>_defaults.json``
(why these values: ``docs/AGENTS.md``), evaluates it against Algorithm 2 while it trains,
checkpoints it and saves it with its ``VecNormalize`` statistics; :func:`load_agent` loads
a saved agent as a policy of the ``predict`` protocol (:class:`agents.base.SB3Policy`).

Every hyperparameter file holds the keys the training code reads itself (:data:`OWN_KEYS`:
the vector env, the schedule, the network, the normalisation and the env config) and,
besides them, keyword arguments of the algorithm's constructor, passed on as they are. The
vector env (``vec_env``): ``"native"`` is :class:`~dtfl_env.envs.vector.DTFLVectorEnv` (all
sub-envs in one numpy computation, through :class:`agents.vec_env.SB3VectorEnv`), which the
latency-only ids have; ``"subproc"`` runs one env per worker process (the real FL training
of ``DTFL-v0``, whose torch training does not batch, gets its cores shared out);
``"dummy"`` steps single envs in this process; ``"auto"`` (the default) is ``"native"``
where the id has a native vector env and the config does not train models, else
``"subproc"``. With the same seed and hyperparameters the three give the same rollouts.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

import dtfl_env  # noqa: F401  (registers the ids)
from agents.base import SB3Policy

__all__ = [
    "ALGOS",
    "VEC_ENVS",
    "default_hyperparams",
    "load_agent",
    "make_training_env",
    "overlay_config",
    "resolve_hyperparams",
    "resolve_vec_env",
    "train_agent",
    "worker_fl_threads",
]

#: the algorithms of ``dtfl train --algo``: name -> stable_baselines3 class name
ALGOS: dict[str, str] = {"ppo": "PPO", "a2c": "A2C", "sac": "SAC", "td3": "TD3"}
#: the choices of the ``vec_env`` hyperparameter (see the module)
VEC_ENVS = ("auto", "native", "subproc", "dummy")
#: hyperparameters the training code reads itself; every other key of a defaults file is a
#: keyword of the algorithm's constructor. ``net_arch`` and ``log_std_init`` go to the
#: policy (``policy_kwargs``); ``action_noise_sigma`` is the standard deviation of TD3's
#: Gaussian exploration noise on the [-1, 1] action box.
OWN_KEYS = (
    "n_envs",
    "vec_env",
    "lr_schedule",
    "net_arch",
    "log_std_init",
    "action_noise_sigma",
    "normalize_obs",
    "normalize_reward",
    "env_config",
)
_POLICY_KEYS = ("net_arch", "log_std_init")
_HERE = Path(__file__).parent


def _check_algo(algo: str) -> str:
    if algo not in ALGOS:
        raise ValueError(f"algo: must be one of {', '.join(ALGOS)}, got {algo!r}")
    return algo


def default_hyperparams(algo: str = "ppo") -> dict[str, Any]:
    """The shipped defaults of ``algo`` (``agents/<algo>_defaults.json``)."""
    return json.loads((_HERE / f"{_check_algo(algo)}_defaults.json").read_text())


def resolve_hyperparams(
    path: str | Path | None, overrides: dict[str, Any] | None, algo: str = "ppo"
) -> dict[str, Any]:
    """The defaults of ``algo``, updated by the JSON file at ``path`` and then by
    ``overrides``; unknown keys and bad values raise ``ValueError`` naming them."""
    defaults = default_hyperparams(algo)
    hp = dict(defaults)
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
    unknown = set(hp) - set(defaults)
    if unknown:
        raise ValueError(
            f"hyperparams: unknown key(s) {', '.join(sorted(unknown))} for "
            f"{algo} (known: {', '.join(sorted(defaults))})"
        )
    if not isinstance(hp["env_config"], dict):
        raise ValueError("hyperparams: env_config must be a JSON object")
    for key, allowed in (("vec_env", VEC_ENVS), ("lr_schedule", ("constant", "linear"))):
        if hp[key] not in allowed:
            raise ValueError(f"hyperparams: {key} must be one of {allowed}, got {hp[key]!r}")
    n_envs = hp["n_envs"]
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise ValueError(f"hyperparams: n_envs must be an integer >= 1, got {n_envs!r}")
    return hp


def overlay_config(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two config override dicts (``top`` wins); the env validates the result."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay_config(out[key], value)
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
        cores = (
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1
        )
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
    return overlay_config(env_config, {"fl": {"threads": worker_fl_threads(n_envs)}})


def _bare_id(env_id: str) -> str:
    return env_id.split(":", 1)[1] if ":" in env_id else env_id


def resolve_vec_env(env_id: str, choice: str, env_config: dict[str, Any] | None = None) -> str:
    """The vector env that ``choice`` means for ``env_id`` under ``env_config``: ``"auto"``
    is ``"native"`` where the id has a native vector env (``vector_entry_point``) and the
    config trains no models, else ``"subproc"``; ``"native"`` where it cannot run raises
    ``ValueError``. Validates the id and the config."""
    if choice not in VEC_ENVS:
        raise ValueError(f"vec_env: must be one of {VEC_ENVS}, got {choice!r}")
    probe = gym.make(env_id, config=env_config)
    try:
        learning = bool(getattr(probe.unwrapped, "learning", False))
    finally:
        probe.close()
    batched = gym.spec(_bare_id(env_id)).vector_entry_point is not None and not learning
    if choice == "auto":
        return "native" if batched else "subproc"
    if choice == "native" and not batched:
        raise ValueError(
            f"vec_env: 'native' needs a latency-only id (DTFL-Fast-v0, "
            f"DTFL-TableII-v0, DTFL-Random-v0 with fl.backend 'none'); {env_id} "
            f"trains models: use 'subproc' or 'dummy'"
        )
    return choice


def make_training_env(
    env_id: str, n_envs: int, vec_env: str, env_config: dict[str, Any], seed: int
) -> Any:
    """The SB3 vector env of a run, before normalisation: ``vec_env`` as resolved by
    :func:`resolve_vec_env`, sub-env k seeded ``seed + k`` at its first reset, episode
    statistics recorded (``Monitor`` / ``VecMonitor``)."""
    from stable_baselines3.common.env_util import make_vec_env

    if vec_env == "native":
        from stable_baselines3.common.vec_env import VecMonitor

        from agents.vec_env import make_native_vec_env

        return VecMonitor(make_native_vec_env(env_id, n_envs, config=env_config, seed=seed))
    vec_cls = None
    if vec_env == "subproc" and n_envs > 1:
        from stable_baselines3.common.vec_env import SubprocVecEnv

        vec_cls = SubprocVecEnv  # env steps run in worker processes beside the update
    return make_vec_env(
        f"dtfl_env:{env_id}" if ":" not in env_id else env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs={"config": env_config},
        vec_env_cls=vec_cls,
        vec_env_kwargs={"start_method": "spawn"} if vec_cls else None,
    )


def _build_model(
    algo: str, hp: dict[str, Any], venv: Any, seed: int, verbose: int, tb_log: str | None
) -> Any:
    """The SB3 model of ``algo``: the file's algorithm keywords as they are, plus the policy
    network, the learning-rate schedule and (TD3) the exploration noise."""
    import stable_baselines3

    kwargs = {k: v for k, v in hp.items() if k not in OWN_KEYS}
    if hp["lr_schedule"] == "linear":  # decays to 0 over the run (SB3 passes 1 -> 0)
        lr0 = float(hp["learning_rate"])
        kwargs["learning_rate"] = lambda remaining: lr0 * remaining
    if "action_noise_sigma" in hp:
        import numpy as np
        from stable_baselines3.common.noise import NormalActionNoise

        dim = int(np.prod(venv.action_space.shape))
        sigma = float(hp["action_noise_sigma"])
        kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), sigma * np.ones(dim))
    policy_kwargs = {k: hp[k] for k in _POLICY_KEYS if k in hp}
    if "net_arch" in policy_kwargs:
        policy_kwargs["net_arch"] = list(policy_kwargs["net_arch"])
    cls = getattr(stable_baselines3, ALGOS[algo])
    try:
        return cls(
            "MlpPolicy",
            venv,
            seed=seed,
            verbose=verbose,
            tensorboard_log=tb_log,
            policy_kwargs=policy_kwargs,
            device="cpu",
            **kwargs,
        )
    except TypeError as exc:  # a key the algorithm does not take
        raise ValueError(f"hyperparams: {ALGOS[algo]} rejects them ({exc})") from None


def _eval_summary(
    policy: Any, env_id: str, config: dict[str, Any], episodes: int, seed: int
) -> dict[str, float]:
    """Latency on feasible clusters, violation rate there, and gap to the exact optimum."""
    from agents.evaluation import evaluate_policies

    rep = evaluate_policies(
        {"p": policy}, env_id=env_id, config=config, episodes=episodes, seed=seed
    )
    s = rep.summary["p"]
    return {
        "latency_feasible_s": s["latency_feasible_s"],
        "gap": s["gap"],
        "violation_rate_feasible": s["violation_rate_feasible"],
        "latency_s": s["latency_s"],
        "violation_rate": s["violation_rate"],
    }


def train_agent(
    algo: str = "ppo",
    env_id: str = "DTFL-Fast-v0",
    *,
    total_timesteps: int = 200_000,
    config: dict[str, Any] | None = None,
    hyperparams: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    eval_freq: int = 20_000,
    eval_episodes: int = 2,
    eval_seed: int = 10_001,
    progress_bar: bool = False,
    verbose: int = 0,
    torch_threads: int | None = 1,
) -> Path:
    """Train ``algo`` (ppo, a2c, sac or td3) on ``env_id`` and save it under ``out_dir``
    (default ``runs/<algo>``); returns the model path.

    The hyperparameters are ``agents/<algo>_defaults.json`` updated by the JSON file
    ``hyperparams`` and then by ``overrides``. The training environment's config is their
    ``env_config`` with the user's ``config`` on top; ``vec_env`` picks the vector env (the
    module; the one used is recorded as ``vec_env``). Subprocess workers of an env that
    trains with torch get ``fl.threads`` = cores // n_envs unless the config sets it
    (recorded as ``worker_config``). Writes ``model.zip``, ``vecnormalize.pkl``
    (observation and reward statistics), ``config.json`` (algorithm, env id, the env config
    used, hyperparameters, vector env, seed, timesteps, training minutes),
    ``evaluations.csv`` and ``learning_curve.png`` (every ``eval_freq`` steps and at the
    end: the agent's mean latency on feasible clusters, its violation rate there and its gap
    to the exact optimum, beside Algorithm 2 on the same ``eval_episodes`` episodes from
    seed ``eval_seed``), checkpoints (every ``eval_freq`` steps), and TensorBoard logs when
    ``tensorboard`` is installed. ``eval_freq`` >= ``total_timesteps``: the final
    evaluation only. ``progress_bar``: a ``tqdm`` bar of the steps on stderr (``dtfl
    train`` shows it when stderr is a terminal). ``torch_threads``: torch's intra-op
    threads during the run (restored after it; None: as they are). 1, the default, was
    faster in every measurement of these small networks (``docs/AGENTS.md``): with the
    native vector env the env steps and the policy share one process, and a second torch
    thread only contends with them.
    """
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList, CheckpointCallback
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.policies import SolverPolicy

    _check_algo(algo)
    if total_timesteps < 1:
        raise ValueError(f"total_timesteps: must be >= 1, got {total_timesteps}")
    if isinstance(eval_freq, bool) or not isinstance(eval_freq, int) or eval_freq < 1:
        # 0 would evaluate and checkpoint at every step; >= total_timesteps: the final only
        raise ValueError(
            f"eval_freq: must be an integer >= 1 (total_timesteps or more for "
            f"the final evaluation only), got {eval_freq!r}"
        )
    if eval_episodes < 1:
        raise ValueError(f"eval_episodes: must be >= 1, got {eval_episodes}")
    if torch_threads is not None and (
        isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1
    ):
        raise ValueError(f"torch_threads: must be an integer >= 1 or None, got {torch_threads!r}")
    hp = resolve_hyperparams(hyperparams, overrides, algo)
    env_config = overlay_config(hp["env_config"], config or {})  # the user's config wins
    vec_env = resolve_vec_env(env_id, hp["vec_env"], env_config)  # validates id and config
    n_envs = int(hp["n_envs"])
    out = Path(out_dir if out_dir is not None else f"runs/{algo}")
    out.mkdir(parents=True, exist_ok=True)
    worker_config = env_config
    if vec_env == "subproc" and n_envs > 1:
        # workers that train with torch share the cores instead of each taking all of them
        worker_config = _worker_config(env_id, env_config, n_envs)
    venv = VecNormalize(
        make_training_env(env_id, n_envs, vec_env, worker_config, seed),
        norm_obs=bool(hp["normalize_obs"]),
        norm_reward=bool(hp["normalize_reward"]),
        gamma=float(hp["gamma"]),
    )
    try:
        import tensorboard  # noqa: F401

        tb_log: str | None = str(out / "tb")
    except ImportError:
        tb_log = None
    import torch

    threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        model = _build_model(algo, hp, venv, seed, verbose, tb_log)
    except ValueError:
        venv.close()
        torch.set_num_threads(threads)
        raise
    record: dict[str, Any] = {
        "algo": algo,
        "env_id": env_id,
        "config": env_config,
        "hyperparams": hp,
        "vec_env": vec_env,
        "seed": seed,
        "total_timesteps": total_timesteps,
        "torch_threads": torch.get_num_threads(),
    }
    if worker_config is not env_config:  # what the subprocess workers ran with
        record["worker_config"] = worker_config
    (out / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    ref = _eval_summary(SolverPolicy("algorithm2"), env_id, env_config, eval_episodes, eval_seed)
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
            pol = SB3Policy(self.model, venv if hp["normalize_obs"] else None, name=algo)
            res = _eval_summary(pol, env_id, env_config, eval_episodes, eval_seed)
            gap_a2 = res["latency_feasible_s"] / ref["latency_feasible_s"] - 1.0
            rows.append(
                {
                    "timesteps": self.num_timesteps,
                    f"{algo}_latency_feasible_s": res["latency_feasible_s"],
                    f"{algo}_violation_rate_feasible": res["violation_rate_feasible"],
                    f"{algo}_gap_to_exact": res["gap"],
                    "algorithm2_latency_feasible_s": ref["latency_feasible_s"],
                    "gap_to_algorithm2": gap_a2,
                    "minutes": (time.perf_counter() - t0) / 60,
                }
            )
            self.logger.record("eval/latency_feasible_s", res["latency_feasible_s"])
            self.logger.record("eval/gap_to_algorithm2", gap_a2)
            self.logger.record("eval/violation_rate_feasible", res["violation_rate_feasible"])

    class _ProgressBar(BaseCallback):
        """The run's steps as a plain ``tqdm`` bar on stderr (SB3's own ``progress_bar``
        needs ``rich`` besides ``tqdm``)."""

        def _on_training_start(self) -> None:
            from tqdm import tqdm

            total = total_timesteps - self.model.num_timesteps
            self.bar = tqdm(total=total, desc=f"training {algo}", unit="step", dynamic_ncols=True)

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    evaluator = _Eval()
    ckpt = CheckpointCallback(
        save_freq=max(eval_freq // n_envs, 1), save_path=str(out / "checkpoints"), name_prefix=algo
    )
    callbacks = [evaluator, ckpt, *([_ProgressBar()] if progress_bar else [])]
    try:
        model.learn(total_timesteps=total_timesteps, callback=CallbackList(callbacks))
        minutes = (time.perf_counter() - t0) / 60
        if not rows or rows[-1]["timesteps"] != model.num_timesteps:
            evaluator.evaluate()
        model.save(out / "model.zip")
        venv.save(str(out / "vecnormalize.pkl"))
    finally:
        venv.close()
        torch.set_num_threads(threads)
    (out / "config.json").write_text(
        json.dumps({**record, "training_minutes": minutes}, indent=2) + "\n"
    )
    with (out / "evaluations.csv").open("w") as fh:
        keys = list(rows[0])
        fh.write(",".join(keys) + "\n")
        for r in rows:
            fh.write(",".join(f"{r[k]:.6g}" for k in keys) + "\n")
    _learning_curve(rows, algo, out / "learning_curve.png")
    return out / "model.zip"


def _learning_curve(rows: list[dict[str, float]], algo: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    steps = [r["timesteps"] for r in rows]
    label = ALGOS[algo]
    ax.plot(steps, [r[f"{algo}_latency_feasible_s"] for r in rows], "o-", label=label)
    ax.axhline(rows[0]["algorithm2_latency_feasible_s"], color="k", ls="--", label="Algorithm 2")
    ax.set_xlabel("training steps")
    ax.set_ylabel("mean latency, feasible clusters [s]")
    ax.legend()
    ax.set_title(f"{label} learning curve (evaluation episodes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def load_agent(path: str | Path, algo: str | None = None, name: str | None = None) -> SB3Policy:
    """Load a trained agent (``model.zip`` or its folder) as a policy, with its
    observation normalisation when ``vecnormalize.pkl`` lies beside it and its training
    env's action and observation config from ``config.json``. ``path`` may also name a
    pretrained agent of the package where no such file or folder exists (``tableii`` with
    ``algo="ppo"``: ``ppo:tableii``, :mod:`agents.pretrained`). ``algo``: the algorithm
    (default: the one ``config.json`` records; ``ppo`` for runs that record none); a
    different one from the recorded raises ``ValueError``. ``name``: the policy's name
    (default ``algo``)."""
    import pickle

    import stable_baselines3

    from agents.pretrained import PRETRAINED, pretrained_path

    label = algo or "agent"
    p = Path(path)
    key = f"{algo or 'ppo'}:{path}"
    if not p.exists() and key in PRETRAINED:  # a shipped agent: ppo:tableii, ppo:random
        p = pretrained_path(key)
    if p.is_dir():
        p = p / "model.zip"
    if not p.is_file():
        raise ValueError(f"{label}: no trained model at {path}")
    action_cfg: dict[str, Any] | None = None
    obs_cfg: dict[str, Any] | None = None
    saved_algo = "ppo"  # runs before train_agent recorded it were PPO's
    saved = p.parent / "config.json"
    if saved.is_file():  # the training env's action config: mode and ranges
        from dtfl_env.envs.config import default_config

        try:
            record = json.loads(saved.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{label}: {saved} is not valid JSON ({exc})") from None
        saved_algo = record.get("algo", "ppo")
        env_cfg = record.get("config") or {}
        action_cfg = {**default_config()["action"], **(env_cfg.get("action") or {})}
        obs_cfg = {**default_config()["observation"], **(env_cfg.get("observation") or {})}
    if algo is None:
        algo = saved_algo
    _check_algo(algo)
    if saved.is_file() and algo != saved_algo:
        raise ValueError(
            f"{algo}: {p.parent} holds a {saved_algo} agent ({saved}); "
            f"load it as {saved_algo}:{p.parent}"
        )
    model = getattr(stable_baselines3, ALGOS[algo]).load(p, device="cpu")
    norm = None
    stats = p.parent / "vecnormalize.pkl"
    if stats.is_file():
        with stats.open("rb") as fh:
            norm = pickle.load(fh)
        if not getattr(norm, "norm_obs", False):
            norm = None
    return SB3Policy(
        model, norm, name=name or algo, action_config=action_cfg, observation_config=obs_cfg
    )
