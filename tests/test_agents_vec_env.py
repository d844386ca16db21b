"""The native vector env through SB3's VecEnv API (agents.vec_env) against DummyVecEnv.

SB3's DummyVecEnv over single envs seeded s, s + 1, ... and the adapter over one
DTFLVectorEnv seeded s must give the same observations, rewards, dones, terminal
observations and infos, step by step, over whole episodes; and the same under VecNormalize.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

import dtfl_env  # noqa: F401
from agents.vec_env import SB3VectorEnv, make_native_vec_env
from dtfl_env.envs.vector import DTFLVectorEnv

SMALL = {"clusters": 2, "rounds": 2}
MODES = {"direct": {}, "safe": {"action": {"mode": "safe"}, "observation": {"safe_bounds": True}}}


def _dummy(env_id: str, config: dict, n: int, seed: int) -> DummyVecEnv:
    venv = DummyVecEnv([lambda: gym.make(env_id, config=config) for _ in range(n)])
    venv.seed(seed)
    return venv


def _assert_info_close(got: dict, want: dict, where: str) -> None:
    """Same keys; numbers and arrays to 1e-12 (the vector env's tolerance to the single env)."""
    assert set(got) == set(want), (where, set(got) ^ set(want))
    for key, val in want.items():
        if isinstance(val, dict):
            _assert_info_close(got[key], val, f"{where}.{key}")
        else:
            assert type(got[key]) is type(val) or isinstance(val, np.ndarray), (where, key)
            np.testing.assert_allclose(got[key], val, rtol=1e-12, atol=0, err_msg=f"{where}.{key}")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_adapter_matches_dummy_vec_env(mode: str) -> None:
    config = {**SMALL, **MODES[mode]}
    n, seed = 3, 21
    native = make_native_vec_env("DTFL-Fast-v0", n, config=config, seed=seed)
    dummy = _dummy("DTFL-Fast-v0", config, n, seed)
    assert native.observation_space == dummy.observation_space
    assert native.action_space == dummy.action_space
    np.testing.assert_array_equal(native.reset(), dummy.reset())
    for k in range(n):
        _assert_info_close(native.reset_infos[k], dummy.reset_infos[k], f"reset {k}")
    rng = np.random.default_rng(seed)
    steps = SMALL["clusters"] * SMALL["rounds"]
    ends = 0
    for t in range(2 * steps):  # two episodes
        actions = rng.uniform(-1, 1, (n, *native.action_space.shape)).astype(np.float32)
        obs, rew, done, infos = native.step(actions)
        d_obs, d_rew, d_done, d_infos = dummy.step(actions)
        np.testing.assert_array_equal(obs, d_obs)
        assert rew.dtype == d_rew.dtype == np.float32
        np.testing.assert_allclose(rew, d_rew, rtol=1e-6)
        np.testing.assert_array_equal(done, d_done)
        assert done.all() == ((t + 1) % steps == 0)
        for k in range(n):
            assert "latency_s" in infos[k] and infos[k]["TimeLimit.truncated"] is False
            if done[k]:  # the episode's last observation, and the step's own info
                np.testing.assert_array_equal(
                    infos[k]["terminal_observation"], d_infos[k]["terminal_observation"]
                )
                _assert_info_close(native.reset_infos[k], dummy.reset_infos[k], f"reset {k}")
            _assert_info_close(infos[k], d_infos[k], f"step {t} env {k}")
        ends += int(done.all())
    assert ends == 2
    # the seeds serve one reset: the next one continues each sub-env's generator
    np.testing.assert_array_equal(native.reset(), dummy.reset())
    native.close()
    dummy.close()


def test_adapter_under_vec_normalize_and_vec_monitor() -> None:
    config = {**SMALL, **MODES["safe"]}
    n, seed = 2, 4
    native = VecNormalize(
        VecMonitor(make_native_vec_env("DTFL-Fast-v0", n, config=config, seed=seed)), gamma=0.0
    )
    dummy = VecNormalize(VecMonitor(_dummy("DTFL-Fast-v0", config, n, seed)), gamma=0.0)
    np.testing.assert_allclose(native.reset(), dummy.reset(), rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(3 * SMALL["clusters"] * SMALL["rounds"]):
        actions = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
        obs, rew, done, infos = native.step(actions)
        d_obs, d_rew, d_done, d_infos = dummy.step(actions)
        np.testing.assert_allclose(obs, d_obs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rew, d_rew, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(done, d_done)
        for k in np.flatnonzero(done):  # normalised in place by VecNormalize
            np.testing.assert_allclose(
                infos[k]["terminal_observation"],
                d_infos[k]["terminal_observation"],
                rtol=1e-5,
                atol=1e-5,
            )
            assert infos[k]["episode"]["l"] == d_infos[k]["episode"]["l"]
            assert infos[k]["episode"]["r"] == pytest.approx(d_infos[k]["episode"]["r"])
        episodes += int(done[0])
    assert episodes == 3
    np.testing.assert_allclose(native.obs_rms.mean, dummy.obs_rms.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(native.ret_rms.var, dummy.ret_rms.var, rtol=1e-6)
    assert not np.allclose(native.obs_rms.var, 1.0)  # the statistics did move
    native.close()
    dummy.close()


def test_attributes_methods_and_options() -> None:
    venv = make_native_vec_env("dtfl_env:DTFL-Fast-v0", 3, config=SMALL, seed=0)
    assert venv.get_attr("action_space") == [venv.action_space] * 3
    assert [c["clusters"] for c in venv.get_attr("config", indices=[0, 2])] == [2, 2]
    assert venv.has_attr("constants") and not venv.has_attr("no_such_attribute")
    assert venv.env_is_wrapped(Monitor) == [False] * 3
    assert venv.render_mode is None
    venv.reset()
    clusters = venv.env_method("clusters")
    assert len(clusters) == 3 and len(clusters[0]) == 3  # the vector env's, once
    venv.set_attr("marker", 7)
    assert venv.get_attr("marker", indices=1) == [7]
    with pytest.raises(ValueError, match="indices"):
        venv.set_attr("marker", 8, indices=[0])
    with pytest.raises(ValueError, match="indices"):
        venv.env_method("clusters", indices=[1, 2])
    # reset options reach the vector env (one config for all sub-envs)
    venv.set_options({"config": {"clusters": 3}})
    venv.reset()
    assert venv.get_attr("config")[0]["clusters"] == 3
    venv.set_options([{"config": {"clusters": 2}}, {}, {}])
    with pytest.raises(ValueError, match="options"):
        venv.reset()
    with pytest.raises(RuntimeError, match="step_async"):
        venv.step_wait()
    venv.close()


def test_adapter_refuses_what_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VectorEnv(DTFLVectorEnv(2, SMALL, base_config={"fl": {"backend": "none"}}))
    with pytest.raises(ValueError, match="VectorEnv"):
        SB3VectorEnv(gym.make("DTFL-Fast-v0"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="DTFL-v0"):
        make_native_vec_env("DTFL-v0", 2)
    # any gymnasium vector env in SAME_STEP mode works (here a SyncVectorEnv)
    sync = gym.make_vec(
        "DTFL-Fast-v0",
        num_envs=2,
        vectorization_mode="sync",
        config=SMALL,
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )
    venv = SB3VectorEnv(sync)
    venv.seed(3)
    venv.reset()
    for _ in range(SMALL["clusters"] * SMALL["rounds"]):
        _, _, done, infos = venv.step(np.zeros((2, 18), dtype=np.float32))
    assert done.all() and "terminal_observation" in infos[1] and "latency_s" in infos[1]
    venv.close()
