"""The env's ``info`` holds numbers only, the same keys, types and shapes at every step.

Every registered id is run over a short episode; reset's info (:func:`info_defaults` plus
what the env knows at reset) must have exactly the keys of every step's info, each value a
number or a numeric array whose dtype and shape never change, so that vector envs stack it.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from dtfl_env.envs.info import (
    LEDGER_HASH_BYTES,
    info_defaults,
    ledger_info,
    reward_key,
)
from dtfl_env.envs.reward import REWARD_TERMS
from dtfl_env.registration import ENV_IDS

TINY = {"clusters": 2, "rounds": 2}  # 4 steps, 2 of them close a round
TINY_FL = {**TINY, "fl": {"model": "mlp", "device": "cpu"}}  # real training, kept small


def _tiny(env_id: str) -> dict[str, Any]:
    return TINY_FL if ENV_IDS[env_id].get("fl", {}).get("backend") != "none" else TINY


def _spec(value: Any) -> tuple[str, tuple[int, ...]]:
    """(dtype kind, shape) of an info value; fails for anything but a number or a numeric
    array (Gymnasium's vector envs stack Python int/float/bool, numpy numbers and arrays;
    anything else, numpy bools included, becomes an object array)."""
    if isinstance(value, np.ndarray):
        assert value.dtype.kind in "biuf", value.dtype
        return value.dtype.kind, value.shape
    assert type(value) in (int, float, bool) or isinstance(value, np.number), type(value)
    return np.asarray(value).dtype.kind, ()


def _specs(info: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {key: _spec(value) for key, value in info.items()}


def _episode(
    env_id: str, config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[tuple]]:
    """The env's full config, reset's info and (reward, info) of each step of an episode."""
    env = gym.make(env_id, config=config)
    _, reset_info = env.reset(seed=0)
    env.action_space.seed(0)
    steps, done = [], False
    while not done:
        _, reward, term, trunc, info = env.step(env.action_space.sample())
        steps.append((reward, info))
        done = term or trunc
    full = env.unwrapped.config
    assert reset_info.keys() == info_defaults(full).keys()
    assert _specs(reset_info) == _specs(info_defaults(full))
    env.close()
    return full, reset_info, steps


CASES = [(env_id, _tiny(env_id)) for env_id in ENV_IDS] + [
    ("DTFL-Fast-v0", {**TINY, "compute_optimal": True, "action": {"mode": "safe"}}),
    ("DTFL-v0", {**TINY_FL, "ledger": {"mode": "none"}}),  # no block: a zero hash
    ("DTFL-v0", {**TINY_FL, "ledger": {"enabled": False}}),  # training, no ledger keys
]


@pytest.mark.parametrize(
    ("env_id", "config"), CASES, ids=[f"{i}-{n}" for n, (i, _) in enumerate(CASES)]
)
def test_info_has_fixed_numeric_keys(env_id: str, config: dict[str, Any]) -> None:
    full, reset_info, steps = _episode(env_id, config)
    expect = _specs(reset_info)
    for reward, info in steps:
        assert info.keys() == reset_info.keys(), set(info) ^ set(reset_info)
        assert _specs(info) == expect
        terms = [info[reward_key(name)] for name in REWARD_TERMS]
        assert reward == pytest.approx(sum(terms))
    assert all(math.isnan(reset_info[reward_key(name)]) for name in REWARD_TERMS)
    assert math.isnan(reset_info["latency_s"]) and reset_info["n_gld"] == 0
    assert not any(isinstance(v, dict) for _, info in steps for v in info.values())
    assert "cluster" not in reset_info and "rewards" not in reset_info
    s, d = full["clusters"], full["max_devices"]
    assert expect["q_w"] == ("f", (d,)) and expect["dropped"] == ("b", (d,))
    ledger = {k for k in reset_info if k.startswith("ledger_")}
    if not ledger:
        return
    assert full["fl"]["backend"] == "torch" and full["ledger"]["enabled"]
    assert expect["ledger_accepted_clusters"] == ("b", (s,))
    assert expect["ledger_block_hash"] == ("u", (LEDGER_HASH_BYTES,))
    closed = [info["ledger_round_closed"] for _, info in steps]
    assert closed == [0, 1, 0, 1]  # the last step of each round
    assert reset_info["ledger_round_closed"] == 0
    for _, info in steps:
        if info["ledger_round_closed"]:
            assert info["ledger_validator_cluster"] in range(s)
            assert info["ledger_block_hash"].any() == (full["ledger"]["mode"] != "none")
        else:
            assert info["ledger_validator_cluster"] == -1
            assert not info["ledger_accepted_clusters"].any()


def test_sync_vector_env_stacks_every_info_key() -> None:
    """Every step of both sub-envs (autoreset steps included) reports every key, and each
    stacks into a numeric array of (2, ...)."""
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make("DTFL-Fast-v0", config=TINY) for _ in range(2)]
    )
    _, info = envs.reset(seed=[0, 1])
    keys = {k for k in info if not k.startswith("_")}
    assert {"reward_latency", "q_w", "n_dropouts"} <= keys
    envs.action_space.seed(0)
    done = restarted = 0
    for _ in range(10):
        _, reward, term, trunc, info = envs.step(envs.action_space.sample())
        done += int(np.sum(term | trunc))
        assert {k for k in info if not k.startswith("_")} == keys
        for key in keys:
            assert info[f"_{key}"].all(), key  # present in both sub-envs
            assert isinstance(info[key], np.ndarray) and info[key].shape[0] == 2, key
            assert info[key].dtype.kind in "biuf", (key, info[key].dtype)
        assert info["q_w"].shape == (2, 16)
        terms = sum(info[reward_key(t)] for t in REWARD_TERMS)
        reset_now = np.isnan(info["latency_s"])  # autoreset steps report reset's info
        np.testing.assert_allclose(reward[~reset_now], terms[~reset_now])
        assert np.all(reward[reset_now] == 0) and np.all(np.isnan(terms[reset_now]))
        restarted += int(reset_now.sum())
    assert done >= 2 and restarted >= 2  # the 4-step episodes ended and were reset


def test_cluster_in_info_is_removed() -> None:
    for flag in (True, False):
        with pytest.raises(ValueError, match=r"cluster_in_info.*env\.unwrapped\.cluster"):
            gym.make("DTFL-Fast-v0", config={"cluster_in_info": flag})
    env = gym.make("DTFL-Fast-v0", config=TINY)
    with pytest.raises(ValueError, match=r"cluster_in_info.*removed"):
        env.reset(options={"config": {"cluster_in_info": True}})
    env.reset(seed=0)
    assert env.unwrapped.cluster.n_gld >= 0  # the raw cluster's place


def test_reward_keys_follow_the_reward_terms(monkeypatch) -> None:
    """A new reward term is one entry of REWARD_TERMS: info reports it at reset and at
    every step under ``reward_<term>``."""
    monkeypatch.setitem(REWARD_TERMS, "bonus", lambda w, s: 0.25)
    env = gym.make("DTFL-Fast-v0", config=TINY)
    _, info = env.reset(seed=0)
    assert math.isnan(info["reward_bonus"])
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert info["reward_bonus"] == 0.25
    assert reward == pytest.approx(sum(info[reward_key(t)] for t in REWARD_TERMS))


def test_ledger_info_keeps_the_record() -> None:
    digest = bytes(range(32))
    record = {
        "validator": "gc-1",
        "block_hash": digest.hex(),
        "block_size_bytes": 1234,
        "accepted_clusters": np.array([True, False, True]),
        "rejected_clusters": np.array([False, True, False]),
        "validator_cluster": 1,
        "validator_malicious": 1,
        "audit_failed": 1,
        "audit_overturned": np.array([False, False, True]),
    }
    info = ledger_info(record, 3)
    assert info["ledger_round_closed"] == 1 and info["ledger_block_size_bytes"] == 1234
    assert info["ledger_block_hash"].tobytes() == digest
    assert (
        info["ledger_validator_cluster"],
        info["ledger_validator_malicious"],
        info["ledger_audit_failed"],
    ) == (1, 1, 1)
    for key in ("accepted_clusters", "rejected_clusters", "audit_overturned"):
        np.testing.assert_array_equal(info[f"ledger_{key}"], record[key])
        assert info[f"ledger_{key}"] is not record[key]  # a copy, not the learner's array
    no_block = ledger_info({**record, "block_hash": ""}, 3)
    assert not no_block["ledger_block_hash"].any()
    assert _specs(no_block) == _specs(info) == _specs(ledger_info(None, 3))
    with pytest.raises(ValueError, match="block_hash"):
        ledger_info({**record, "block_hash": "abcd"}, 3)
    with pytest.raises(ValueError, match="length 4"):
        ledger_info(record, 4)


def test_docs_list_every_info_key() -> None:
    """docs/INFO.md's tables name exactly the keys of the fullest config's info."""
    import re
    from pathlib import Path

    from dtfl_env.envs.config import default_config, merge_config, validate_config

    cfg = merge_config(default_config(), {"compute_optimal": True})  # training, ledger
    validate_config(cfg)
    text = (Path(__file__).resolve().parents[1] / "docs" / "INFO.md").read_text()
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("| `")]
    documented = {name for cell in rows for name in re.findall(r"`([^`]+)`", cell)}
    assert documented == set(info_defaults(cfg))
