"""Drop-outs (a GLD that cannot pay refuses its assignment whole: no training, upload or
jamming) and the action box's reach (every feasible optimum is an action, in both modes)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dtfl_env  # noqa: F401  (registers the ids)
from agents.evaluation import evaluate_policies
from agents.policies import GreedyLocalPolicy, SolverPolicy
from dtfl_env.config import Cluster
from dtfl_env.envs.dtfl import ActionRangeError
from dtfl_env.model import evaluate_allocation
from dtfl_env.model.batch import ClusterRow
from dtfl_env.model.round import gld_dropouts, round_outcome
from dtfl_env.registration import ENV_IDS
from dtfl_env.scenarios import random_cluster, table2_cluster
from solvers import solve


def _reduced(cluster: Cluster, keep_gld: np.ndarray, keep_bld: np.ndarray) -> Cluster:
    return Cluster(
        cluster.gld.subset(np.flatnonzero(keep_gld)),
        cluster.bld.subset(np.flatnonzero(keep_bld)),
        cluster.constants,
    )


def test_dropped_glds_do_not_jam_table2_example():
    """Every q at its maximum, tG and y at the bottom of the box, no fading: the GLDs cannot
    pay. They used to drop out while their jamming still counted (Q = 8.35e-8 W, every BLD
    synced, T = 3.512 s: below the certified optimum 3.5315 s)."""
    env = gym.make("DTFL-TableII-v0", config={"fading": False}).unwrapped
    env.reset(seed=0)
    a = np.ones(env.action_space.shape[0])
    a[0] = a[1] = -1.0
    y, tg, q = env.action_to_allocation(a)
    *_, info = env.step(a)
    t_star = solve(table2_cluster(), "exact").T
    assert t_star == pytest.approx(3.5315, abs=1e-4)
    assert info["n_dropouts"] == 6
    assert info["Q"] == 0.0  # nobody jams
    assert np.all(info["q_w"] == 0.0) and np.all(info["cpu_hz"] == 0.0)
    assert info["n_unsynced"] == 3  # at Q = 0 only one Table II BLD has a positive rate
    assert info["latency_s"] > t_star  # no longer below the optimum
    # what the GLDs refused is reported as their excess over the budget
    assert np.all(info["energy_excess_j"][:6] > 0)
    ev = evaluate_allocation(table2_cluster(), tg_s=tg, y_s=y, jam_power_w=q)
    assert ev.gld_dropped.all()


def _random_case(seed: int, n_gld: int, n_bld: int, u: np.ndarray):
    cluster = random_cluster(seed, n_gld=n_gld, n_bld=n_bld)
    arr = ClusterRow.from_cluster(cluster)
    # an allocation in the direct box's spirit: tG >= tG_min, y >= y_min, any q in [0, Q_max]
    tg = arr.tg_min_s * math.exp(6.0 * u[0])
    y = arr.y_min_s * math.exp(6.0 * u[1])
    q = cluster.gld.max_jam_power_w * u[2 : 2 + n_gld]
    return cluster, arr, y, tg, q


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_gld=st.integers(1, 8),
    n_bld=st.integers(0, 5),
    u=st.lists(st.floats(0.0, 1.0), min_size=10, max_size=10),
)
def test_outcome_equals_evaluation_without_the_dropped_glds(seed, n_gld, n_bld, u):
    cluster, arr, y, tg, q = _random_case(seed, n_gld, n_bld, np.array(u))
    out = round_outcome(arr, y_s=y, tg_s=tg, jam_power_w=q)
    keep = ~out.gld_dropped
    # one definition: the reference evaluation reports the same drop-outs
    np.testing.assert_array_equal(
        evaluate_allocation(cluster, tg_s=tg, y_s=y, jam_power_w=q).gld_dropped, out.gld_dropped
    )
    np.testing.assert_array_equal(gld_dropouts(arr, y_s=y, tg_s=tg, jam_power_w=q), out.gld_dropped)
    if not keep.any():
        assert out.jamming_w == 0.0 and out.t_gld_s == 0.0
        return
    red = _reduced(cluster, keep, out.bld_synced)
    ev = evaluate_allocation(red, tg_s=tg, y_s=y, jam_power_w=q[keep])
    assert np.all(ev.slack["energy"] >= -1e-5)  # whoever remains can pay
    assert out.jamming_w == pytest.approx(ev.jamming_w, rel=1e-12, abs=0)
    assert out.tb_up_s == pytest.approx(ev.tb_up_s if red.n_bld else 0.0, rel=1e-9)
    assert out.t_gld_s == pytest.approx(ev.t_gld_s, rel=1e-12)
    np.testing.assert_allclose(out.energy_j[keep], ev.energy_total_j, rtol=1e-9)
    np.testing.assert_allclose(out.upload_power_w[keep], ev.upload_power_w, rtol=1e-9)
    np.testing.assert_allclose(
        out.secrecy_rate_bps[out.bld_synced], ev.secrecy_rate_bps, rtol=1e-12
    )
    # the dropped GLDs neither train, upload nor jam
    assert np.all(out.cpu_hz[~keep] == 0) and np.all(out.jam_power_w[~keep] == 0)
    assert np.all(out.upload_power_w[~keep] == 0)
    assert np.all(out.energy_excess_j[~keep] > 0) and np.all(out.energy_excess_j[keep] == 0)


def test_drop_out_cascade_is_charged_on_the_remaining_jammers():
    """A GLD that refuses leaves less jamming, a slower sync and dearer jamming for the rest:
    a second GLD can then refuse too; the last one standing pays."""
    found = 0
    for seed in range(400):
        cluster, arr, y, tg, q = _random_case(seed, 5, 3, np.r_[0.3, 0.5, np.full(8, 0.9)])
        out = round_outcome(arr, y_s=y, tg_s=tg, jam_power_w=q)
        full = evaluate_allocation(cluster, tg_s=tg, y_s=y, jam_power_w=q)
        first = full.slack["energy"] < -1e-5  # over budget with everyone jamming
        if out.gld_dropped.sum() > first.sum() and out.gld_dropped.sum() < 5:
            assert np.all(out.gld_dropped[first])
            found += 1
    assert found >= 1


def _round_trip(env_id: str, mode: str, episodes: int) -> int:
    config = {"action": {"mode": mode}}
    if ENV_IDS[env_id].get("fl", {}).get("backend") != "none":
        config["fl"] = {"backend": "none"}  # the clusters do not depend on the training
        config["ledger"] = {"enabled": False}
    env = gym.make(env_id, config=config).unwrapped
    checked = 0
    for ep in range(episodes):
        env.reset(seed=ep)
        done = False
        while not done:
            res = solve(env.cluster, "exact")
            if res.feasible:
                action = env.allocation_to_action(res.y, res.tG, res.q)  # raises if outside
            else:
                action = np.zeros(env.action_space.shape[0])
            *_, term, trunc, info = env.step(action)
            if res.feasible:
                assert info["T"] == pytest.approx(res.T, rel=1e-6), (env_id, mode, ep)
                assert info["n_dropouts"] == 0 and info["n_unsynced"] == 0
                assert info["action_clipped"] == 0
                checked += 1
            done = term or trunc
    return checked


@pytest.mark.parametrize("mode", ["direct", "safe"])
@pytest.mark.parametrize("env_id", list(ENV_IDS))
def test_every_feasible_optimum_round_trips(env_id, mode):
    """The exact optimum of every feasible cluster of 20 seeded episodes of every id is an
    action (about 1,800 feasible clusters per id and mode)."""
    assert _round_trip(env_id, mode, 20) >= 1000


def test_issue_example_optimum_beyond_the_old_range_round_trips():
    """Seed 1000, round 1, cluster 1 of DTFL-TableII-v0: T* = 393.7 s at tG = 377.6 s, past
    the old direct range's top (50 tG_min = 312.7 s); Algorithm 2 reported 328.8 s."""
    env = gym.make("DTFL-TableII-v0").unwrapped
    env.reset(seed=1000)
    rng = np.random.default_rng(0)
    for _ in range(env.config["clusters"] + 1):  # to round 1, cluster 1
        *_, info = env.step(rng.uniform(-1, 1, env.action_space.shape[0]))
    assert (info["next_round"], info["next_cluster_index"]) == (1, 1)
    res = solve(env.cluster, "exact")
    assert res.T == pytest.approx(393.71, abs=0.01) and res.tG > 312.7
    pol = SolverPolicy("algorithm2").bind(env)
    action, _ = pol.predict(None)
    *_, info = env.step(action)
    assert info["n_dropouts"] == 0 and info["action_clipped"] == 0
    assert info["latency_s"] == pytest.approx(res.T, rel=1e-5)


def test_out_of_range_allocation_raises_or_is_counted():
    env = gym.make("DTFL-TableII-v0", config={"action": {"tg_range": 2.0}}).unwrapped
    env.reset(seed=0)
    res = solve(env.cluster, "exact")
    tg_lo, _ = env.direct_bounds
    far = 10 * tg_lo  # beyond the range's top 2 tg_lo
    with pytest.raises(ActionRangeError, match=r"^tG: .*action\.tg_range"):
        env.allocation_to_action(res.y, far, res.q)
    with pytest.raises(ActionRangeError, match=r"^tG"):
        env.allocation_to_action(res.y, 0.5 * tg_lo, res.q)  # below what every GLD can pay
    a = env.allocation_to_action(res.y, far, res.q, clip=True)
    assert a[0] == 1.0
    *_, info = env.step(a)
    assert info["action_clipped"] == 1
    *_, info = env.step(np.zeros(env.action_space.shape[0]))
    assert info["action_clipped"] == 0  # the flag belongs to one step
    safe = gym.make(
        "DTFL-TableII-v0", config={"action": {"mode": "safe", "y_range": 2.0}}
    ).unwrapped
    safe.reset(seed=0)
    res = solve(safe.cluster, "exact")
    with pytest.raises(ActionRangeError, match=r"^y: .*safe action box"):
        safe.allocation_to_action(50 * res.y, res.tG, res.q)


def test_evaluation_counts_out_of_range_steps_apart():
    cfg = {"rounds": 1, "clusters": 4, "action": {"tg_range": 1.5, "y_range": 1.5}}
    rep = evaluate_policies(
        {"exact": SolverPolicy("exact")}, env_id="DTFL-TableII-v0", config=cfg, episodes=1
    )
    s = rep.summary["exact"]
    assert s["out_of_range_steps"] >= 1
    steps = [r for r in rep.records if r["out_of_range"]]
    assert len(steps) == s["out_of_range_steps"]
    assert "out-of-range steps" in rep.markdown()
    wide = evaluate_policies(
        {"exact": SolverPolicy("exact")},
        env_id="DTFL-TableII-v0",
        config={"rounds": 1, "clusters": 4},
        episodes=1,
    )
    assert wide.summary["exact"]["out_of_range_steps"] == 0
    assert wide.summary["exact"]["gap"] == pytest.approx(0.0, abs=1e-6)


def test_greedy_local_plays_inside_the_box_and_overspends():
    env = gym.make("DTFL-Random-v0").unwrapped
    env.reset(seed=0)
    pol = GreedyLocalPolicy().bind(env)
    drops = 0
    for _ in range(30):
        action, _ = pol.predict(None)
        *_, info = env.step(action)
        assert info["action_clipped"] == 0
        drops += info["n_dropouts"]
    assert drops > 0


def test_analytical_actions_are_not_quantised_into_drop_outs():
    """Just above the least jamming that syncs the BLDs the sync time is steep in Q: a float32
    action resolves q_i only to ~3e-8 Q_max, enough to break budgets. Analytical policies
    answer in float64, so their allocations are played as computed."""
    from agents.policies import NoJammingPolicy

    drops = {}
    for dtype in (np.float32, None):
        env = gym.make("DTFL-Random-v0").unwrapped
        env.reset(seed=0)
        pol = NoJammingPolicy().bind(env)
        drops[dtype] = 0
        for _ in range(100):
            action, _ = pol.predict(None)
            assert action.dtype == np.float64
            *_, term, _, info = env.step(action if dtype is None else action.astype(dtype))
            drops[dtype] += info["n_dropouts"]
            if term:
                env.reset()
    assert drops[None] <= 2 < 10 <= drops[np.float32]


def test_action_clipped_belongs_to_the_played_action():
    env = gym.make("DTFL-TableII-v0", config={"action": {"tg_range": 2.0}}).unwrapped
    env.reset(seed=0)
    res = solve(env.cluster, "exact")
    tg_lo, _ = env.direct_bounds
    zero = np.zeros(env.action_space.shape[0])
    # a clipped query in another mode, or a clipped candidate that is not played: no flag
    env.allocation_to_action(res.y, 100 * res.tG, res.q, mode="safe", clip=True)
    *_, info = env.step(zero)
    assert info["action_clipped"] == 0
    env.allocation_to_action(res.y, 10 * tg_lo, res.q, clip=True)
    *_, info = env.step(zero)
    assert info["action_clipped"] == 0
    a = env.allocation_to_action(res.y, 10 * tg_lo, res.q, clip=True)
    *_, info = env.step(a.astype(np.float32))  # played as float32: still the same action
    assert info["action_clipped"] == 1
    with pytest.raises(ValueError, match="tg_s"):
        env.allocation_to_action(res.y, float("nan"), res.q)
    with pytest.raises(ValueError, match="jam_power_w"):
        env.allocation_to_action(res.y, res.tG, np.full(6, np.inf))


def test_unsyncable_blds_are_not_counted_as_energy_short():
    env = gym.make("DTFL-TableII-v0", config={"fading": False}).unwrapped
    env.reset(seed=0)
    a = np.full(env.action_space.shape[0], -1.0)  # no jamming: 3 of 4 BLDs cannot sync
    *_, info = env.step(a)
    m = 6
    unsynced = info["unsynced"][m : m + 4]
    assert unsynced.sum() == 3
    assert not np.any(info["bld_energy_short"][m : m + 4] & unsynced)
    assert np.all(info["bld_sync_energy_j"][m : m + 4][unsynced] == 0)
