"""One policy protocol for solvers, heuristics and learned agents (stable-baselines3 style).

Every policy offers ``predict(obs, state=None, episode_start=None, deterministic=False) ->
(action, state)``, the signature of ``stable_baselines3.common.base_class.BaseAlgorithm``,
so one evaluation runner serves an SB3 model, the Algorithm 2 policy and every heuristic.
Policies that need the raw cluster (analytical policies) are *bound* to an environment with
:meth:`EnvPolicy.bind`; they read ``env.unwrapped.cluster`` at each call.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from dtfl_env.envs.dtfl import BOUND_FEATURES

__all__ = ["CallablePolicy", "EnvPolicy", "Policy", "SB3Policy", "load_policy_class"]


@runtime_checkable
class Policy(Protocol):
    """The SB3 ``predict`` protocol."""

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]: ...


class EnvPolicy:
    """Base class of policies that act from the environment's raw cluster.

    Subclasses implement :meth:`act` on the unwrapped ``DTFLEnv``; ``bind(env)`` must be
    called before ``predict`` (the evaluation harness does it).
    """

    name = "policy"
    needs_env = True

    def __init__(self) -> None:
        self.env: Any = None

    def bind(self, env: gym.Env) -> EnvPolicy:
        self.env = env.unwrapped
        return self

    def reset(self, seed: int | None = None) -> None:
        """Called at the start of every evaluation episode."""

    def act(self, env: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        if self.env is None:
            raise RuntimeError(f"{type(self).__name__}: call bind(env) before predict()")
        # float64, not the space's float32: an analytical allocation must round-trip exactly
        # (float32 resolves a jamming power only to ~3e-8 Q_max, and just above the least
        # jamming that syncs the BLDs that moves the sync time enough to break budgets)
        return np.asarray(self.act(self.env), dtype=np.float64), state


class CallablePolicy:
    """Adapter: a plain function ``f(obs) -> action`` (or ``f(obs, env)``) as a policy."""

    needs_env = False

    def __init__(
        self, fn: Callable[..., np.ndarray], name: str = "callable", pass_env: bool = False
    ) -> None:
        if not callable(fn):
            raise ValueError("fn: must be callable")
        self.fn, self.name, self.pass_env = fn, name, pass_env
        self.env: Any = None
        self.needs_env = pass_env

    def bind(self, env: gym.Env) -> CallablePolicy:
        self.env = env.unwrapped
        return self

    def reset(self, seed: int | None = None) -> None:
        pass

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, Any]:
        out = self.fn(observation, self.env) if self.pass_env else self.fn(observation)
        return np.asarray(out, dtype=np.float32), state


class SB3Policy:
    """Adapter for a stable-baselines3 model (optionally with its ``VecNormalize`` stats).

    ``action_mode`` is the environment action mode the model was trained in (``"direct"``
    or ``"safe"``; ``None``: whatever the environment uses) and ``action_config`` the whole
    ``action`` config block of its training environment (mode and ranges). Bound to an
    environment whose action config differs, the adapter maps the model's action to its
    allocation (y, tG, q) under the training config and back to an action of the
    environment's, so an agent can be evaluated beside policies in either mode (the
    observation is the same in both). ``observation_config`` is its training environment's
    ``observation`` block: an agent trained with ``observation.safe_bounds`` bound to an
    environment without them gets the bound features appended (``env.bound_features``, with
    the training ``tg_range``), and the other way round they are cut off.
    """

    needs_env = False

    def __init__(
        self,
        model: Any,
        obs_normalizer: Any = None,
        name: str = "ppo",
        action_mode: str | None = None,
        action_config: dict[str, Any] | None = None,
        observation_config: dict[str, Any] | None = None,
    ) -> None:
        self.model, self.obs_normalizer, self.name = model, obs_normalizer, name
        self.action_config = dict(action_config or {})
        self.observation_config = dict(observation_config or {})
        if action_mode is not None:
            self.action_config["mode"] = action_mode
        self.action_mode = self.action_config.get("mode")
        self.env: Any = None

    def bind(self, env: gym.Env) -> SB3Policy:
        self.env = env.unwrapped
        return self

    def reset(self, seed: int | None = None) -> None:
        pass

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        obs = self._own_observation(np.asarray(observation, dtype=np.float32))
        if self.obs_normalizer is not None:
            obs = self.obs_normalizer.normalize_obs(obs[None])[0]
        action, state = self.model.predict(
            obs, state=state, episode_start=episode_start, deterministic=deterministic
        )
        env = self.env
        cfg = self.action_config
        if cfg and env is not None and hasattr(env, "config"):
            own = env.config["action"]
            if any(own.get(k) != v for k, v in cfg.items()):
                alloc = env.action_to_allocation(
                    action,
                    mode=cfg.get("mode"),
                    tg_range=cfg.get("tg_range"),
                    y_range=cfg.get("y_range"),
                    jamming=cfg.get("jamming"),
                    sync_range=cfg.get("sync_range"),
                    scale=cfg.get("scale"),
                )
                action = env.allocation_to_action(*alloc, clip=True)
        return np.asarray(action, dtype=np.float32), state

    def _own_observation(self, obs: np.ndarray) -> np.ndarray:
        """The observation as the model's training environment would have built it."""
        env = self.env
        want = self.observation_config.get("safe_bounds")
        if want is not None and env is not None and hasattr(env, "config"):
            has = env.config["observation"]["safe_bounds"]
            if want and not has:
                extra = env.bound_features(tg_range=self.action_config.get("tg_range"))
                obs = np.concatenate([obs, extra])
            elif has and not want:
                obs = obs[: -len(BOUND_FEATURES)]
        space = getattr(self.model, "observation_space", None)
        shape = getattr(space, "shape", None)
        if shape and obs.shape[-1:] != tuple(shape)[-1:]:
            raise ValueError(
                f"{self.name}: the model expects observations of shape "
                f"{tuple(shape)}, got {obs.shape} (trained with another "
                "max_devices or observation config?)"
            )
        return obs


def load_policy_class(spec: str) -> type:
    """Load ``module:Class`` or ``path/to/file.py:Class`` (a custom policy, no install needed)."""
    if ":" not in spec:
        raise ValueError(f"policy: expected 'module:Class' or 'file.py:Class', got {spec!r}")
    where, _, cls_name = spec.rpartition(":")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"policy: no such file {where!r}")
        mod_name = f"dtfl_custom_{path.stem}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"policy: cannot import {where!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ValueError(f"policy: cannot import module {where!r} ({exc})") from None
    try:
        cls = getattr(module, cls_name)
    except AttributeError:
        raise ValueError(f"policy: {where!r} has no attribute {cls_name!r}") from None
    if not hasattr(cls, "predict") and not callable(cls):
        raise ValueError(f"policy: {spec!r} is neither a policy class nor callable")
    return cls
