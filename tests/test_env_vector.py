"""Every registered id passes Gymnasium's and SB3's env checkers and runs vectorised.

The vector tests build their environments from the id string only (``"dtfl_env:<id>"``), and
the SB3 subprocess test uses the ``spawn`` start method, so that the worker processes find
the ids without inheriting an import of :mod:`dtfl_env`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import SubprocVecEnv

from dtfl_env.registration import ENV_IDS

FAST = "dtfl_env:DTFL-Fast-v0"
SMALL = {"clusters": 2, "rounds": 2}  # episodes of 4 steps: the vector envs autoreset


def _fresh_worker_factory() -> Callable[[], gym.Env]:
    """An env factory that cloudpickle ships by value (a local function, not importable).

    Unpickling it in a ``spawn`` worker does not import this test module (which imports
    :mod:`dtfl_env`), so the worker meets ``dtfl_env`` only through the id string. The env
    records whether ``dtfl_env`` was already imported when the factory ran.
    """

    def make() -> gym.Env:
        import sys

        preloaded = "dtfl_env" in sys.modules
        env = gym.make(FAST, config=SMALL)
        env.unwrapped.dtfl_env_preloaded = preloaded  # read back with get_attr
        return env

    return make


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_gymnasium_env_checker(env_id: str) -> None:
    env = gym.make(f"dtfl_env:{env_id}").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # warnings are advice; errors fail the test
        gym_check_env(env, skip_render_check=True)


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_gymnasium_env_checker_render_modes(env_id: str) -> None:
    for mode in ("ansi", "rgb_array"):
        env = gym.make(f"dtfl_env:{env_id}", render_mode=mode).unwrapped
        env.reset(seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gym_check_env(env, skip_render_check=False)


@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_sb3_env_checker(env_id: str) -> None:
    env = gym.make(f"dtfl_env:{env_id}").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "non-symmetric action space" advice
        sb3_check_env(env, warn=True, skip_render_check=True)


def _roll(envs: gym.vector.VectorEnv, steps: int) -> None:
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert obs.shape == (2, *envs.single_observation_space.shape)
        assert envs.single_observation_space.contains(obs[0])
        envs.action_space.seed(0)
        done = charged = 0
        for _ in range(steps):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            assert obs.shape[0] == 2 and reward.shape == (2,)
            assert np.all(np.isfinite(reward)) and np.all(np.isfinite(obs))
            charged += int(np.sum(info.get("_latency_s", 0)))  # absent on autoreset steps
            done += int(np.sum(terminated | truncated))
        assert done >= 2  # the 4-step episodes ended and the vector env reset them
        assert charged >= steps  # most steps charged a latency in both sub-envs
    except BaseException:
        envs.close(terminate=True)  # a failed step leaves async workers mid-call
        raise
    envs.close()


def test_sync_vector_env_from_make_vec() -> None:
    envs = gym.make_vec(FAST, num_envs=2, vectorization_mode="sync", config=SMALL)
    assert isinstance(envs, gym.vector.SyncVectorEnv)
    _roll(envs, 10)


def test_async_vector_env_spawn_finds_the_id() -> None:
    make = _fresh_worker_factory()
    envs = gym.vector.AsyncVectorEnv([make, make], context="spawn")
    assert envs.get_attr("dtfl_env_preloaded") == (False, False)
    _roll(envs, 10)


def test_sb3_subproc_vec_env_spawn_finds_the_id() -> None:
    make = _fresh_worker_factory()
    envs = SubprocVecEnv([make, make], start_method="spawn")
    try:
        assert envs.get_attr("dtfl_env_preloaded") == [False, False]
        envs.seed(0)
        obs = envs.reset()
        assert obs.shape == (2, *envs.observation_space.shape)
        done = 0
        for _ in range(6):
            actions = np.stack([envs.action_space.sample() for _ in range(2)])
            obs, rewards, dones, infos = envs.step(actions)
            assert obs.shape[0] == 2 and rewards.shape == (2,) and np.all(np.isfinite(rewards))
            assert len(infos) == 2 and "latency_s" in infos[0]
            done += int(dones.sum())
        assert done == 2  # each 4-step episode ended once and was reset
    finally:
        envs.close()
