"""A Ray RLlib checkpoint as a policy of the project's protocol (``agents.base``).

``RLlibPolicy`` loads the RLModule of an RLlib (new API stack) checkpoint and acts
deterministically: the mean of its action distribution, mapped to the action space as
RLlib's env runners map it (``normalize_actions``, the default: unsquashed from [-1, 1] to
the box and clipped). It reuses :class:`agents.base.SB3Policy`'s mapping between action and
observation configs, so an agent trained in the ``safe`` mode is evaluated beside policies
in either mode, like ``ppo:PATH``.

``dtfl compare`` builds a ``--policy module:Class`` without arguments, so the checkpoint can
come from the environment variable ``DTFL_RLLIB_CHECKPOINT``::

    DTFL_RLLIB_CHECKPOINT=runs/rllib_ppo dtfl compare --env DTFL-TableII-v0 \\
        --config runs/rllib_ppo/env_config.json --policies algorithm2 \\
        --policy agents.rllib:RLlibPolicy

:func:`disjoint_env_seeds` is an RLlib ``on_environment_created`` callback that gives every
env runner its own block of env seeds (``examples/rllib_ppo.py`` sets it).

``ray[rllib]`` (the ``rllib`` extra) and torch are imported only when a policy is built.
The checkpoint's module must take the raw observation: an RLlib env-to-module connector
such as ``MeanStdFilter`` is not replayed here (``examples/rllib_ppo.py`` trains without one;
the observation is clipped to [-5, 5] and of order one by construction).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from agents.base import SB3Policy

__all__ = [
    "CHECKPOINT_ENV_VAR",
    "RLlibPolicy",
    "disjoint_env_seeds",
    "find_module_dir",
    "saved_env_configs",
]

#: where ``RLlibPolicy()`` without a ``checkpoint`` argument looks for one
CHECKPOINT_ENV_VAR = "DTFL_RLLIB_CHECKPOINT"
#: the RLModule of a single-agent algorithm checkpoint, below the checkpoint folder
MODULE_SUBDIR = Path("learner_group", "learner", "rl_module", "default_policy")


def disjoint_env_seeds(env_runner: Any, **kwargs: Any) -> None:
    """RLlib ``on_environment_created`` callback: env runner w seeds its M sub-envs with
    ``seed + w M + k`` (k < M), a block of its own.

    RLlib resets runner w's vector env with ``seed + w`` and a vector env seeds sub-env k
    with that plus k (Gymnasium's convention, ``DTFLVectorEnv`` and ``SyncVectorEnv``
    alike), so runner w's sub-env k + 1 would replay runner w + 1's sub-env k, cluster for
    cluster: N runners x M envs would sample N + M - 1 distinct episode streams, not N M.
    The callback runs after the env is built and before its first reset, and sets the seed
    RLlib passes to that reset (``EnvRunner._seed`` in Ray 2.60; ``tests/test_rllib.py``
    checks the streams are disjoint). Without ``config.seed`` it does nothing.
    """
    config = env_runner.config
    if config.seed is None:
        return
    env_runner._seed = int(
        config.seed
        + (env_runner.worker_index or 0) * env_runner.num_envs
        + 1_000_000 * bool(config.in_evaluation)
    )  # RLlib's eval offset


def find_module_dir(path: str | Path) -> Path:
    """The RLModule folder of ``path``: a run folder with ``checkpoint/`` (what
    ``examples/rllib_ppo.py`` writes), an algorithm checkpoint, or the module folder."""
    p = Path(path)
    for cand in (p / "checkpoint" / MODULE_SUBDIR, p / MODULE_SUBDIR, p / MODULE_SUBDIR.name, p):
        if (cand / "class_and_ctor_args.pkl").is_file() and any(cand.glob("module_state*")):
            return cand
    raise ValueError(
        f"rllib: no RLModule checkpoint at {path} (looked for "
        f"checkpoint/{MODULE_SUBDIR.as_posix()}, {MODULE_SUBDIR.as_posix()}, "
        f"{MODULE_SUBDIR.name} and the folder itself)"
    )


def saved_env_configs(path: str | Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The training env's full ``action`` and ``observation`` blocks from the ``config.json``
    beside the checkpoint (``{"config": overrides}``), or ``(None, None)`` without one."""
    p = Path(path)
    for cand in (p / "config.json", p.parent / "config.json"):
        if cand.is_file():
            try:
                env_cfg = json.loads(cand.read_text()).get("config") or {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"rllib: {cand} is not valid JSON ({exc})") from None
            from dtfl_env.envs.config import default_config

            return (
                {**default_config()["action"], **(env_cfg.get("action") or {})},
                {**default_config()["observation"], **(env_cfg.get("observation") or {})},
            )
    return None, None


class _ModulePredictor:
    """An RLModule behind SB3's ``model.predict`` (one observation, deterministic mean)."""

    def __init__(self, module: Any) -> None:
        import torch
        from ray.rllib.utils.spaces.space_utils import unsquash_action

        self.module, self._torch, self._unsquash = module, torch, unsquash_action
        self.observation_space = module.observation_space
        self.action_space = module.action_space
        self._dist_cls = module.get_inference_action_dist_cls()
        module.eval()

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        torch = self._torch
        obs = torch.as_tensor(np.asarray(observation, dtype=np.float32)[None])
        with torch.no_grad():
            out = self.module.forward_inference({"obs": obs})
            dist = self._dist_cls.from_logits(out["action_dist_inputs"])
            if deterministic:
                dist = dist.to_deterministic()
            action = dist.sample()[0].cpu().numpy()
        return np.asarray(self._unsquash(action, self.action_space), dtype=np.float32), state


class RLlibPolicy(SB3Policy):
    """An RLlib RLModule checkpoint as a policy (deterministic by default).

    ``checkpoint``: a run folder of ``examples/rllib_ppo.py``, an algorithm checkpoint or an
    RLModule folder; ``None`` reads ``$DTFL_RLLIB_CHECKPOINT``. The training env's action and
    observation configs come from a ``config.json`` beside it (``{"config": overrides}``);
    bound to an env with other ones, actions and observations are mapped as for
    ``ppo:PATH`` (:class:`agents.base.SB3Policy`).
    """

    def __init__(self, checkpoint: str | Path | None = None, name: str = "rllib") -> None:
        if checkpoint is None:
            checkpoint = os.environ.get(CHECKPOINT_ENV_VAR)
            if not checkpoint:
                raise ValueError(f"rllib: give a checkpoint or set ${CHECKPOINT_ENV_VAR}")
        module_dir = find_module_dir(checkpoint)
        try:
            from ray.rllib.core.rl_module.rl_module import RLModule
        except ImportError as exc:
            raise ValueError(
                f"rllib: ray[rllib] is not installed ({exc}); pip install -e '.[rllib]'"
            ) from None
        action_cfg, obs_cfg = saved_env_configs(checkpoint)
        super().__init__(
            _ModulePredictor(RLModule.from_checkpoint(module_dir)),
            name=name,
            action_config=action_cfg,
            observation_config=obs_cfg,
        )
        self.checkpoint = Path(checkpoint)
