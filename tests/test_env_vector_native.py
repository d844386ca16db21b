"""The native vector env (DTFLVectorEnv) against the single env, sub-env by sub-env.

Sub-env k reset with seed s + k must reproduce the single env reset with s + k: the same
observations, rewards and infos to 1e-12 over whole episodes (both action modes, every reward
form, safe bounds, fading, twin deviation, deadlines, BLD batteries), through the NEXT_STEP
and SAME_STEP autoresets.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import dtfl_env  # noqa: F401
from dtfl_env.envs.vector import DTFLVectorEnv

SMALL = {"clusters": 3, "rounds": 2}
#: info keys that hold the exact optimum: the vector env's comes from solve_batch, the single
#: env's from solve_exact, both certified to the solver's rtol (1e-7), not bit for bit
OPTIMUM_KEYS = ("optimal_latency_s", "optimality_gap", "latency_baseline_s", "reward_latency")


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    return float(np.max(np.abs(a[~same] - b[~same]) / np.maximum(np.abs(b[~same]), 1e-300)))


def _compare(
    env_id: str,
    config: dict,
    *,
    n: int = 3,
    seed: int = 7,
    episodes: int = 2,
    mode: AutoresetMode = AutoresetMode.NEXT_STEP,
    tol: float = 1e-12,
    optimum_tol: float = 1e-12,
) -> None:
    venv = gym.make_vec(
        env_id,
        num_envs=n,
        vectorization_mode="vector_entry_point",
        config=config,
        autoreset_mode=mode,
    )
    assert isinstance(venv.unwrapped, DTFLVectorEnv)
    singles = [gym.make(env_id, config=config).unwrapped for _ in range(n)]
    obs, info = venv.reset(seed=seed)
    for k, env in enumerate(singles):
        s_obs, s_info = env.reset(seed=seed + k)
        assert _relative(obs[k], s_obs) == 0.0
        assert set(s_info) == {key for key in info if not key.startswith("_")}
        for key, val in s_info.items():
            assert info[f"_{key}"][k]
            assert _relative(info[key][k], val) == 0.0, key
    steps = episodes * config["clusters"] * config["rounds"]
    rng = np.random.default_rng(seed)
    reset_next = False
    for _ in range(steps + (episodes if mode == AutoresetMode.NEXT_STEP else 0)):
        actions = rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32)
        obs, reward, term, trunc, info = venv.step(actions)
        assert not trunc.any()
        assert term.all() or not term.any()  # the sub-envs run in lockstep
        for k, env in enumerate(singles):
            if reset_next:  # NEXT_STEP: this step reset every sub-env
                s_obs, s_info = env.reset()
                s_rew, s_term = 0.0, False
            else:
                s_obs, s_rew, s_term, _, s_info = env.step(actions[k])
            step_info = info
            if s_term and mode == AutoresetMode.SAME_STEP:
                assert _relative(info["final_obs"][k], s_obs) == 0.0
                step_info = info["final_info"]
                s_obs, _ = env.reset()
            assert _relative(obs[k], s_obs) == 0.0
            assert _relative(reward[k], s_rew) <= max(tol, optimum_tol)
            assert bool(term[k]) == s_term
            assert set(s_info) == {
                key
                for key in step_info
                if not key.startswith("_") and key not in ("final_obs", "final_info")
            }
            for key, val in s_info.items():
                assert step_info[f"_{key}"][k]
                assert np.asarray(step_info[key]).dtype.kind == np.asarray(val).dtype.kind, key
                lim = optimum_tol if key in OPTIMUM_KEYS else tol
                assert _relative(step_info[key][k], val) <= lim, key
        reset_next = mode == AutoresetMode.NEXT_STEP and bool(term[0])
    venv.close()


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"fading": False, "twin_deviation": 0.2},
        {"round_deadline_s": 3.0, "bld_energy": {"enforce": True}},
        {
            "reward": {
                "latency_form": "log_weighted",
                "latency_baseline": "center",
                "violation_measure": "count",
            }
        },
        {"new_topology_each_episode": False, "reward": {"latency_form": "log"}},
        {"devices_per_cluster": [1, 16]},
    ],
    ids=["default", "twins", "deadline", "center", "same-topology", "wide"],
)
def test_direct_mode_matches_single_env(config: dict) -> None:
    _compare("DTFL-Fast-v0", {**SMALL, **config})


@pytest.mark.parametrize(
    "config",
    [
        {"action": {"mode": "safe"}},
        {
            "action": {"mode": "safe", "jamming": "sync", "scale": "excess"},
            "observation": {"safe_bounds": True},
            "twin_deviation": 0.1,
        },
    ],
    ids=["safe", "safe-sync-bounds"],
)
def test_safe_mode_matches_single_env(config: dict) -> None:
    _compare("DTFL-Fast-v0", {**SMALL, **config}, n=2)


@pytest.mark.parametrize("env_id", ["DTFL-TableII-v0", "DTFL-Random-v0"])
def test_latency_only_ids_match_single_env(env_id: str) -> None:
    _compare(env_id, dict(SMALL))


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"fading": False},
        {"new_topology_each_episode": False, "twin_deviation": 0.1},
        {"action": {"mode": "safe"}, "clusters": 5},
    ],
    ids=["fading", "as-given", "same-topology-twins", "safe-five"],
)
def test_instance_scenario_matches_single_env(config: dict, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each sub-env deals its sites from the instance files with its own generator, as the
    single env does (three sites of two instances: a second permutation is cut short)."""
    from dtfl_env.scenarios import random_cluster, table2_cluster

    table2_cluster().save(tmp_path / "a.json")
    random_cluster(3, 4, 3).save(tmp_path / "b.json")
    full = {**SMALL, "scenario": {"instances": str(tmp_path)}, **config}
    _compare("DTFL-Fast-v0", full, episodes=3)
    venv = DTFLVectorEnv(3, full, base_config={"fl": {"backend": "none"}})
    venv.reset(seed=7)
    sizes = []  # per step, each sub-env's cluster (Table II: 6 GLDs, the other: 4)
    for _ in range(full["clusters"]):
        sizes.append([c.n_gld for c in venv.clusters()])
        venv.step(np.zeros(venv.action_space.shape, dtype=np.float32))
    assert len({tuple(deal) for deal in zip(*sizes, strict=True)}) > 1  # dealt differently


def test_same_step_autoreset_matches_single_env() -> None:
    _compare("DTFL-Fast-v0", dict(SMALL), mode=AutoresetMode.SAME_STEP)


def test_optimum_baseline_within_solver_tolerance() -> None:
    """The exact optimum: solve_batch in the vector env, solve_exact in the single env."""
    _compare(
        "DTFL-Fast-v0",
        {**SMALL, "compute_optimal": True, "reward": {"latency_baseline": "optimum"}},
        n=2,
        episodes=1,
        optimum_tol=1e-6,
    )


def test_vector_entry_point_is_registered_for_latency_only_ids() -> None:
    for env_id in ("DTFL-Fast-v0", "DTFL-TableII-v0", "DTFL-Random-v0"):
        assert gym.spec(env_id).vector_entry_point is not None
    assert gym.spec("DTFL-v0").vector_entry_point is None
    with pytest.raises(ValueError, match=r"fl\.backend"):
        DTFLVectorEnv(2, base_config={})  # DTFL-v0's real training does not batch


def test_spaces_seeding_and_errors() -> None:
    venv = DTFLVectorEnv(4, SMALL, base_config={"fl": {"backend": "none"}})
    assert venv.action_space.shape == (4, *venv.single_action_space.shape)
    assert venv.observation_space.shape == (4, *venv.single_observation_space.shape)
    obs_a, _ = venv.reset(seed=3)
    obs_b, _ = venv.reset(seed=[3, 4, 5, 6])
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.array_equal(obs_a[0], obs_a[1])
    assert obs_a.dtype == np.float32 and venv.observation_space.contains(obs_a)
    with pytest.raises(ValueError, match="seed"):
        venv.reset(seed=[1, 2])
    bad = np.zeros(venv.action_space.shape)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"actions\[2, 1\]"):
        venv.step(bad)
    with pytest.raises(ValueError, match="actions"):
        venv.step(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="num_envs"):
        DTFLVectorEnv(0, SMALL, base_config={"fl": {"backend": "none"}})
    with pytest.raises(ValueError, match="autoreset_mode"):
        DTFLVectorEnv(2, SMALL, base_config={"fl": {"backend": "none"}}, autoreset_mode="never")
    with pytest.raises(ValueError, match="clustres"):
        DTFLVectorEnv(2, {"clustres": 3}, base_config={"fl": {"backend": "none"}})


def test_current_clusters_are_the_single_envs() -> None:
    venv = DTFLVectorEnv(3, SMALL, base_config={"fl": {"backend": "none"}})
    venv.reset(seed=11)
    singles = [gym.make("DTFL-Fast-v0", config=SMALL).unwrapped for _ in range(3)]
    for k, env in enumerate(singles):
        env.reset(seed=11 + k)
    for _ in range(4):
        for env, c in zip(singles, venv.clusters(), strict=True):
            assert env.unwrapped.cluster == c
        batch = venv.current_batch(true=True)
        for k, env in enumerate(singles):
            assert batch.cluster(k) == env.unwrapped.true_cluster
        actions = venv.action_space.sample()
        venv.step(actions)
        for k, env in enumerate(singles):
            env.step(actions[k])


def test_mixed_seed_list_keeps_unseeded_topologies() -> None:
    """With new_topology_each_episode off, a sub-env reset without a seed keeps its sites
    (as the single env does) while a seeded one draws new ones."""
    cfg = {**SMALL, "new_topology_each_episode": False}
    venv = gym.make_vec(
        "DTFL-Random-v0", num_envs=2, vectorization_mode="vector_entry_point", config=cfg
    )
    singles = [gym.make("DTFL-Random-v0", config=cfg).unwrapped for _ in range(2)]
    venv.reset(seed=[5, 6])
    singles[0].reset(seed=5)
    singles[1].reset(seed=6)
    obs, _ = venv.reset(seed=[None, 7])
    expected = [singles[0].reset()[0], singles[1].reset(seed=7)[0]]
    for k in range(2):
        np.testing.assert_array_equal(obs[k], expected[k])


def test_step_info_owns_its_arrays() -> None:
    """Writing to a step's info changes neither the env's state nor another key."""
    venv = DTFLVectorEnv(2, SMALL, base_config={"fl": {"backend": "none"}})
    venv.reset(seed=0)
    charged = venv.current_batch(true=True)  # views of the env's round
    n_gld, tb_loc = charged.n_gld.copy(), charged.tb_loc_s.copy()
    _, _, _, _, info = venv.step(np.zeros(venv.action_space.shape))
    info["n_gld"][:] = 99
    info["T"][:] = -1.0
    assert np.all(info["latency_s"] != -1.0)
    np.testing.assert_array_equal(charged.n_gld, n_gld)
    np.testing.assert_array_equal(charged.tb_loc_s, tb_loc)
