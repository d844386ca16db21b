"""The native vector env as a stable-baselines3 ``VecEnv``.

:class:`SB3VectorEnv` hands a Gymnasium vector env in ``SAME_STEP`` autoreset mode, above
all :class:`~dtfl_env.envs.vector.DTFLVectorEnv` (the ``vector_entry_point`` of the
latency-only ids), to stable-baselines3. SB3 expects what its ``DummyVecEnv`` gives: on the
step that ends an episode the *reset* observation, with the episode's last observation in
``info["terminal_observation"]``, ``info["TimeLimit.truncated"]`` on every step (truncated
and not terminated), one ``info`` dict per env, and the seeds of ``seed()`` used at the next
``reset()``. The adapter builds each env's ``info`` from the vector env's stacked arrays
(an entry where its ``_key`` mask is set; on an ending step from ``final_info``, so that
the list holds that step's ``latency_s`` and the rest, and the reset's entries go to
``reset_infos``, as in ``DummyVecEnv``); the keys are the single env's (``docs/INFO.md``),
numbers as Python scalars. With the same seeds it gives ``DummyVecEnv`` over single envs'
observations, rewards, dones, terminal observations and infos
(``tests/test_agents_vec_env.py``)::

    venv = make_native_vec_env("DTFL-TableII-v0", n_envs=16, seed=0)
    model = PPO("MlpPolicy", VecNormalize(venv, gamma=0.0))

Envpool's SB3 adapter (``examples/sb3_examples/ppo.py``) is the model; it leaves
``TimeLimit.truncated`` out, which SB3's off-policy algorithms read to bootstrap truncated
episodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

import dtfl_env  # noqa: F401  (registers the ids)

__all__ = ["SB3VectorEnv", "make_native_vec_env"]

#: the vector env's entries that describe the ending step, not the step's (SAME_STEP)
_FINAL_KEYS = ("final_obs", "_final_obs", "final_info", "_final_info")


class SB3VectorEnv(VecEnv):
    """A Gymnasium ``VectorEnv`` with ``SAME_STEP`` autoreset as an SB3 ``VecEnv``.

    The sub-envs of a native vector env are no separate objects: ``get_attr`` gives every
    index asked for the vector env's attribute (``observation_space`` and ``action_space``:
    the single spaces); ``set_attr`` and ``env_method`` act on the vector env, so on all
    sub-envs at once, and refuse a subset of them; ``env_is_wrapped`` is False (no sub-env
    is a ``gym.Env`` with wrappers). Options given with ``set_options`` must be the same
    for all sub-envs (one config).
    """

    def __init__(self, venv: VectorEnv) -> None:
        if not isinstance(venv, VectorEnv):
            raise ValueError(f"venv: expected a gymnasium VectorEnv, got {type(venv).__name__}")
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"venv: SB3 needs autoreset_mode=SAME_STEP (the reset observation "
                f"on the ending step), got {mode!r}"
            )
        self.venv = venv
        self._actions: np.ndarray | None = None
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)

    # ------------------------------------------------------------------ episodes
    def reset(self) -> VecEnvObs:
        """Reset every sub-env, with the seeds of :meth:`seed` (used once, as in
        ``DummyVecEnv``) and the options of ``set_options``."""
        seeds = list(self._seeds)
        seed = None if all(s is None for s in seeds) else seeds
        options = self._options[0] if self._options else {}
        if any(opt != options for opt in self._options):
            raise ValueError(
                "options: the sub-envs of a native vector env share one config; "
                "give every sub-env the same reset options"
            )
        obs, info = self.venv.reset(seed=seed, options=options or None)
        self.reset_infos = [_unstack(info, k) for k in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        dones = terminated | truncated
        ended = info.get("_final_obs", np.zeros(self.num_envs, dtype=bool))
        infos: list[dict[str, Any]] = []
        for k in range(self.num_envs):
            if dones[k]:
                if not ended[k]:
                    raise RuntimeError(
                        f"sub-env {k} ended without final_obs in its info "
                        "(is the vector env in SAME_STEP autoreset mode?)"
                    )
                env_info = _unstack(info["final_info"], k)
                env_info["terminal_observation"] = info["final_obs"][k]
                self.reset_infos[k] = _unstack(info, k)
            else:
                env_info = _unstack(info, k)
            env_info["TimeLimit.truncated"] = bool(truncated[k] and not terminated[k])
            infos.append(env_info)
        # float32 as DummyVecEnv's reward buffer
        return obs, np.asarray(reward, dtype=np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    # ------------------------------------------------------------------ attributes
    def _all(self, indices: VecEnvIndices, what: str) -> list[int]:
        idx = list(self._get_indices(indices))
        if sorted(idx) != list(range(self.num_envs)):
            raise ValueError(
                f"indices: {what} acts on every sub-env of a native vector env "
                f"at once (one config); got indices {idx}"
            )
        return idx

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The vector env's attribute for each index (``observation_space`` and
        ``action_space``: the single spaces); ``AttributeError`` where it has none."""
        idx = list(self._get_indices(indices))
        if attr_name in ("observation_space", "action_space"):
            value = getattr(self.venv, f"single_{attr_name}")
        else:
            value = getattr(self.venv, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the vector env (all sub-envs; a subset is an error)."""
        self._all(indices, "set_attr")
        setattr(self.venv, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call a method of the vector env once (for all sub-envs; a subset is an error);
        its result for each index."""
        idx = self._all(indices, "env_method")
        result = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [result for _ in idx]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """False for every index: the sub-envs are rows of one vector env, not wrapped
        ``gym.Env`` objects."""
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError(
            "the native vector env does not render; render a single env (gym.make) instead"
        )


def _unstack(info: dict[str, Any], k: int) -> dict[str, Any]:
    """Entry k of every key of a Gymnasium vector ``info`` whose ``_key`` mask is set
    (nested dicts recursively); numpy scalars as Python scalars, as the single env."""
    out: dict[str, Any] = {}
    for key, val in info.items():
        if key.startswith("_") or key in _FINAL_KEYS:
            continue
        mask = info.get(f"_{key}")
        if mask is not None and not mask[k]:
            continue
        if isinstance(val, dict):
            out[key] = _unstack(val, k)
            continue
        item = val[k]
        out[key] = item.item() if isinstance(item, np.generic) else item
    return out


def make_native_vec_env(
    env_id: str, n_envs: int = 1, *, config: dict[str, Any] | None = None, seed: int | None = None
) -> SB3VectorEnv:
    """``n_envs`` sub-envs of a latency-only id in one native vector env, for SB3.

    Sub-env k is reset with ``seed + k`` at the first reset, as ``make_vec_env`` seeds its
    envs; ``env_id`` may carry a module prefix (``dtfl_env:DTFL-Fast-v0``). Ids without a
    ``vector_entry_point`` (``DTFL-v0``: real FL training) raise ``ValueError``.
    """
    name = env_id.split(":", 1)[1] if ":" in env_id else env_id
    spec = gym.spec(name)
    if spec.vector_entry_point is None:
        raise ValueError(
            f"env_id: {name} has no native vector env (real FL training does "
            f"not batch); use SB3's SubprocVecEnv or DummyVecEnv"
        )
    venv = gym.make_vec(
        name,
        num_envs=int(n_envs),
        vectorization_mode="vector_entry_point",
        config=config,
        autoreset_mode=AutoresetMode.SAME_STEP,
    )
    out = SB3VectorEnv(venv)
    if seed is not None:
        out.seed(seed)
    return out
