"""The env's roles (HighwayEnv style): registries match the config, types are chosen by it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import dtfl_env  # noqa: F401  (registers the ids)
from dtfl_env.envs import config as env_config
from dtfl_env.envs.action import ACTION_SIZES, ACTION_TYPES, action_factory
from dtfl_env.envs.learning import ATTACKS, LearningRound
from dtfl_env.envs.reward import REWARD_TERMS
from dtfl_env.envs.sites import SCENARIOS


def test_registries_cover_the_config_choices() -> None:
    assert set(ACTION_TYPES) == set(env_config.ACTION_MODES)
    assert set(SCENARIOS) == set(env_config.SCENARIOS)
    assert set(ATTACKS) == set(env_config.ATTACKS)
    assert set(REWARD_TERMS) <= set(env_config.default_config()["reward"])  # their weights


def test_public_names_stay_importable_from_the_env_module() -> None:
    from dtfl_env.envs import dtfl

    for name in (
        "DTFLEnv",
        "ACTION_SIZES",
        "BOUND_FEATURES",
        "SLOT_FEATURES",
        "GLOBAL_FEATURES",
        "ActionRangeError",
        "RANGE_TOLERANCE",
    ):
        assert hasattr(dtfl, name)
    assert dtfl.ACTION_SIZES["direct"](16) == 18 and dtfl.ACTION_SIZES["safe"](16) == 3


@pytest.mark.parametrize("mode", sorted(ACTION_TYPES))
def test_the_env_holds_the_action_type_of_its_config(mode: str) -> None:
    env = gym.make("DTFL-Fast-v0", config={"action": {"mode": mode}}).unwrapped
    assert env.action_type.mode == mode
    assert env.action_space == env.action_type.space()
    assert env.action_type.size == ACTION_SIZES[mode](env.config["max_devices"])
    other = action_factory(env.config["action"], env.config["max_devices"], mode)
    env.reset(seed=1)
    a = env.action_space.sample()
    site = env.view.sites[env.view.cluster]
    y, tg, q = other.to_allocation(site, a)
    y2, tg2, q2 = env.action_to_allocation(a)
    assert (y, tg) == (y2, tg2) and np.array_equal(q, q2)


def test_observation_type_builds_the_space_and_rows() -> None:
    env = gym.make(
        "DTFL-Fast-v0", config={"observation": {"safe_bounds": True}, "clusters": 3}
    ).unwrapped
    obs, _ = env.reset(seed=0)
    ot = env.observation_type
    assert env.observation_space == ot.space() and ot.rows.shape == (3, ot.size)
    assert np.array_equal(obs, ot.observe(0, 0, 0.0))


def test_learning_round_without_training_does_nothing() -> None:
    learner = LearningRound()
    learner.configure(
        env_config.merge_config(env_config.default_config(), {"fl": {"backend": "none"}})
    )
    assert not learner.enabled
    assert learner.reset([], np.random.default_rng(0)) is None
    assert learner.end_round(0, [], 0.0) is None and learner.round_record is None
