"""The env's typed configuration (dtfl_env.envs.config): the dataclasses behind the dict."""

from __future__ import annotations

import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest

import dtfl_env  # noqa: F401  (registers the ids)
from dtfl_env.envs.action import action_factory
from dtfl_env.envs.config import (
    ActionConfig,
    BLDEnergyConfig,
    EnvConfig,
    LedgerConfig,
    ObservationConfig,
    RewardConfig,
    default_config,
    merge_config,
    validate_config,
)
from dtfl_env.fl.config import FLConfig, model_size_bits

BLOCKS = [ActionConfig, ObservationConfig, RewardConfig, LedgerConfig, BLDEnergyConfig, FLConfig]
#: a value other than the default for one field of each block
CHANGED = {
    ActionConfig: {"mode": "safe", "tg_range": 50.0, "scale": "excess"},
    ObservationConfig: {"safe_bounds": True},
    RewardConfig: {"latency_form": "log_weighted", "violation": 0.0},
    LedgerConfig: {"attack": "label_flip", "malicious_clusters": 2},
    BLDEnergyConfig: {"enforce": True, "table2_battery_j": 1.0},
    FLConfig: {"model": "mlp", "threads": 2},
}


@pytest.mark.parametrize("cls", BLOCKS, ids=lambda c: c.__name__)
def test_blocks_round_trip_are_frozen_and_keep_the_dict_defaults(cls) -> None:
    default = cls()
    assert cls.from_dict(default.to_dict()) == default
    changed = cls.from_dict(CHANGED[cls])
    assert changed != default and cls.from_dict(changed.to_dict()) == changed
    assert {k: v for k, v in changed.to_dict().items() if k in CHANGED[cls]} == CHANGED[cls]
    assert default_config()[cls.section] == default.to_dict()  # the dict's defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(default, next(iter(CHANGED[cls])), None)
    with pytest.raises(ValueError, match=rf"unknown key\(s\): {cls.section}\.bogus"):
        cls.from_dict({"bogus": 1})


def test_env_config_round_trips_through_json() -> None:
    cfg = EnvConfig.from_dict(
        merge_config(
            default_config(),
            {
                "clusters": 4,
                "devices_per_cluster": [2, 5],
                "round_deadline_s": 3.0,
                "random": {"difficulty": 0.5},
                "constants": {"bandwidth_hz": 2e6},
                **{cls.section: CHANGED[cls] for cls in BLOCKS},
            },
        )
    )
    again = EnvConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.devices_per_cluster == (2, 5)
    assert cfg.random.difficulty == 0.5 and cfg.constants.bandwidth_hz == 2e6
    assert EnvConfig.from_dict(EnvConfig().to_dict()) == EnvConfig()


def test_upload_size_follows_the_trained_model_unless_set() -> None:
    assert validate_config(default_config()).constants.model_bits == model_size_bits("cnn")
    mlp = merge_config(default_config(), {"fl": {"model": "mlp"}})
    assert validate_config(mlp).constants.model_bits == model_size_bits("mlp")
    none = merge_config(default_config(), {"fl": {"backend": "none"}})
    assert validate_config(none).constants.model_bits == 2e6  # Constants' default
    fixed = merge_config(default_config(), {"constants": {"model_bits": 1e6}})
    assert validate_config(fixed).constants.model_bits == 1e6


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"reward": {"latncy": 1.0}}, r"unknown config key: reward\.latncy"),
        (
            {"action": {"mode": "fast"}},
            r"action\.mode: must be one of \['direct', 'safe'\], got 'fast'",
        ),
        ({"action": {"tg_range": 1.0}}, r"action\.tg_range: must be a finite number > 1, got 1\.0"),
        (
            {"reward": {"latency_form": "exp"}},
            r"reward\.latency_form: must be one of \['linear', 'log', 'log_weighted'\]",
        ),
        ({"reward": {"latency": True}}, r"reward\.latency: must be a finite number >= 0, got True"),
        ({"reward": {"latency_reference_s": 0}}, r"reward\.latency_reference_s: .* > 0, got 0"),
        (
            {"observation": {"safe_bounds": "yes"}},
            r"observation\.safe_bounds: must be true or "
            r"false, got 'yes'",
        ),
        ({"ledger": {"validation_samples": 0}}, r"ledger\.validation_samples: .* >= 1, got 0"),
        (
            {"ledger": {"malicious_clusters": 11}},
            r"ledger\.malicious_clusters: must be an integer in \[0, clusters\], got 11",
        ),
        ({"bld_energy": {"table2_battery_j": -1}}, r"bld_energy\.table2_battery_j: .* > 0"),
        ({"max_devices": 300}, r"max_devices: must be an integer in \[1, 256\], got 300"),
        ({"devices_per_cluster": [5, 2]}, r"devices_per_cluster: must be \[low, high\]"),
        ({"devices_per_cluster": [2, 20]}, r"devices_per_cluster: high \(20\) exceeds max_devices"),
        ({"round_deadline_s": -1.0}, r"round_deadline_s: must be a finite number > 0 or None"),
        (
            {"scenario": "table2", "max_devices": 8, "devices_per_cluster": [2, 4]},
            r"max_devices: the table2 scenario",
        ),
        ({"fl": {"lr": "fast"}}, r"fl\.lr: must be a finite number > 0"),
    ],
)
def test_bad_values_name_their_dotted_path(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        gym.make("DTFL-Fast-v0", config=overrides)


def test_env_settings_follow_its_dict_config() -> None:
    env = gym.make(
        "DTFL-Fast-v0", config={"reward": {"latency_form": "log"}, "action": {"mode": "safe"}}
    ).unwrapped
    assert env.settings == validate_config(env.config)
    assert env.settings.reward.latency_form == env.config["reward"]["latency_form"] == "log"
    assert env.reward_function.config is env.settings.reward
    assert env.action_type.config is env.settings.action
    env.reset(seed=0, options={"config": {"reward": {"latency_form": "linear"}, "clusters": 3}})
    assert env.settings.reward.latency_form == env.config["reward"]["latency_form"] == "linear"
    assert env.settings.clusters == 3 and env.settings.action.mode == "safe"


def test_role_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match=r"action\.tg_rnage"):
        action_factory({"tg_rnage": 2.0}, 4)
    assert action_factory({"mode": "safe"}, 4).size == 3
    env = gym.make("DTFL-Fast-v0").unwrapped
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape)
    with pytest.raises(ValueError, match=r"action\.tg_range"):
        env.action_to_allocation(a, tg_range=0.5)
    with pytest.raises(ValueError, match=r"action\.scale"):
        env.action_to_allocation(a, mode="safe", scale="log")
