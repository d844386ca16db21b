"""Rendering of DTFLEnv: the ``ansi`` text report and the ``rgb_array`` topology frame."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import dtfl_env  # noqa: F401  (registers the ids)
from dtfl_env.envs.dtfl import DTFLEnv
from dtfl_env.envs.rendering import FRAME_SIZE_PX, synthetic_topology
from dtfl_env.scenarios import table2_cluster


def _stepped(env_id: str, render_mode: str | None) -> gym.Env:
    env = gym.make(env_id, render_mode=render_mode, config={"clusters": 3, "rounds": 2})
    env.reset(seed=0)
    env.action_space.seed(0)
    env.step(env.action_space.sample())
    return env


@pytest.mark.parametrize("env_id", ["DTFL-v0", "DTFL-TableII-v0", "DTFL-Fast-v0"])
def test_ansi_reports_cluster_and_last_step(env_id: str) -> None:
    env = gym.make(env_id, render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert isinstance(text, str) and "GLD" in text and "no step yet" in text
    env.step(env.action_space.sample())
    text = env.render()
    assert isinstance(text, str) and text.strip()
    assert "latency" in text and "secrecy" in text and "Emax" in text


def test_ansi_after_the_episode_ends() -> None:
    env = gym.make(
        "DTFL-v0",
        render_mode="ansi",
        config={"clusters": 2, "rounds": 1, "fl": {"backend": "none"}},
    )
    env.reset(seed=0)
    terminated = False
    while not terminated:
        terminated = env.step(env.action_space.sample())[2]
    text = env.render()
    assert "episode ended" in text and "latency" in text


@pytest.mark.parametrize("env_id", ["DTFL-TableII-v0", "DTFL-v0"])
def test_rgb_frame_before_and_after_a_step(env_id: str) -> None:
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frames = [env.render()]
    env.step(env.action_space.sample())
    frames.append(env.render())
    for frame in frames:
        assert isinstance(frame, np.ndarray)
        assert frame.dtype == np.uint8
        assert frame.shape == (*FRAME_SIZE_PX, 3)
        assert frame.std() > 0  # something was drawn
    assert not np.array_equal(frames[0], frames[1])  # the outcome shows


def test_rgb_frame_is_deterministic() -> None:
    a = _stepped("DTFL-TableII-v0", "rgb_array").render()
    b = _stepped("DTFL-TableII-v0", "rgb_array").render()
    assert np.array_equal(a, b)


def test_synthetic_table2_layout_follows_the_gains() -> None:
    c = table2_cluster()
    g, b = c.gld, c.bld
    topo = synthetic_topology(
        g.gain_coordinator, g.gain_eavesdropper, b.gain_coordinator, b.gain_eavesdropper
    )
    assert topo.gld_xy.shape == (6, 2) and topo.bld_xy.shape == (4, 2)
    d = np.linalg.norm(topo.gld_xy - topo.coordinator_xy, axis=1)
    # a stronger coordinator gain means a shorter distance (path loss inverted)
    assert np.array_equal(np.argsort(d), np.argsort(-g.gain_coordinator))
    assert np.linalg.norm(topo.eavesdropper_xy - topo.coordinator_xy) >= 25.0
    again = synthetic_topology(
        g.gain_coordinator, g.gain_eavesdropper, b.gain_coordinator, b.gain_eavesdropper
    )
    assert again == topo


def test_render_without_mode_warns_and_returns_none() -> None:
    env = gym.make("DTFL-v0", disable_env_checker=True)
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render"):
        assert env.render() is None


@pytest.mark.parametrize("mode", ["bogus", "human"])
def test_invalid_render_mode_raises(mode: str) -> None:
    with pytest.raises(ValueError, match="render_mode"):
        DTFLEnv(render_mode=mode)


def test_invalid_render_mode_raises_through_make() -> None:
    # ("human" through gym.make becomes rgb_array + gymnasium's HumanRendering wrapper)
    with (
        pytest.warns(UserWarning, match="render_mode"),
        pytest.raises(ValueError, match="render_mode"),
    ):
        gym.make("DTFL-v0", render_mode="bogus")


def test_view_is_the_public_state_the_renderer_reads() -> None:
    env = gym.make("DTFL-Fast-v0", config={"clusters": 2, "rounds": 1}).unwrapped
    assert not env.view.ready
    env.reset(seed=0)
    v = env.view
    assert v.ready and (v.round, v.cluster, v.last_step) == (0, 0, None)
    assert len(v.sites) == 2 and v.sites[0].cluster(env.constants) is env.cluster
    env.step(env.action_space.sample())
    v = env.view
    assert (v.round, v.cluster) == (0, 1) and v.last_step["cluster"] == 0
    with pytest.raises(AttributeError):
        v.round = 3  # read-only
