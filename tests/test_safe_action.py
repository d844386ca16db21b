"""The energy-feasible set (dtfl_env.model.feasible) and the env's ``safe`` action mode."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import dtfl_env  # noqa: F401  (registers the ids)
from agents.base import SB3Policy
from dtfl_env.model.batch import ClusterRow
from dtfl_env.model.feasible import (
    UPLOAD_RESERVE,
    affordable_upload_time_s,
    jamming_interval,
    jamming_split,
    safe_allocation,
    training_time_floor_s,
)
from dtfl_env.model.round import round_outcome
from dtfl_env.scenarios import random_cluster, table2_cluster
from solvers import solve

SAFE = {"action": {"mode": "safe"}, "fl": {"backend": "none"}}


def _arrays(seed: int | None = None) -> ClusterRow:
    cluster = (
        table2_cluster()
        if seed is None
        else random_cluster(seed, n_gld=3 + seed % 6, n_bld=1 + seed % 4)
    )
    return ClusterRow.from_cluster(cluster)


def _charged(a: ClusterRow, y: float, tg: float, q: np.ndarray):
    return round_outcome(a, y_s=y, tg_s=tg, jam_power_w=q)


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 4, 5])
def test_affordable_upload_time_is_the_energy_bound(seed):
    a = _arrays(seed)
    tg = affordable_upload_time_s(a.g_nog, a.sic, a.g_e_max, a.x_scale)
    target = (1.0 - UPLOAD_RESERVE) * a.g_e_max
    for i, t in enumerate(tg):
        if not math.isfinite(t):
            assert a.g_nog[i] * a.x_scale >= target[i]  # even an endless upload costs too much
            continue
        assert a.upload_energy_j(t)[i] <= target[i] * (1 + 1e-9)
        assert a.upload_energy_j(t * (1 - 1e-6))[i] > target[i]  # the smallest such tG


def test_optimum_next_to_an_upload_asymptote_round_trips():
    """A deep-fade GLD whose budget lies just above its endless-upload energy: the optimum's
    tG (1,484 s) was below the safe range's floor while that floor kept 0.1 % of the budget
    back (1,895 s, T 26.6 % above the optimum); the reserve is now 1e-6."""
    env = gym.make("DTFL-TableII-v0", config=SAFE).unwrapped
    env.reset(seed=2003)
    for _ in range(89):
        env.step(np.zeros(3, dtype=np.float32))
    res = solve(env.cluster, "exact")
    assert res.feasible and res.T > 1000
    y, tg, q = env.action_to_allocation(env.allocation_to_action(res.y, res.tG, res.q))
    out = round_outcome(env.view.sites[env.view.cluster].true, y_s=y, tg_s=tg, jam_power_w=q)
    assert out.latency_s == pytest.approx(res.T, rel=1e-6)


@pytest.mark.parametrize("tg_range", [20.0, 50.0])
def test_box_starts_where_the_blds_can_sync_beyond_the_range(tg_range):
    """Seed 3, round 7, cluster 8: the BLDs can be synced only with an upload of 133
    tg_lo (the optimum: tG 1,298 s, T 1,368 s), beyond tg_range tg_lo. The box used to start
    at tg_lo, so every safe action left BLDs unsynced there (action (1, 1, 0): T 210 s, two
    BLDs unsynced); it now starts at the shortest upload that syncs them."""
    env = gym.make(
        "DTFL-TableII-v0",
        config={
            **SAFE,
            "action": {
                "mode": "safe",
                "jamming": "sync",
                "scale": "excess",
                "tg_range": tg_range,
                "y_range": tg_range,
            },
        },
    ).unwrapped
    env.reset(seed=3)
    for _ in range(78):
        env.step(np.zeros(3, dtype=np.float32))
    res = solve(env.cluster, "exact")
    assert res.feasible and res.T > 1000
    site = env.view.sites[env.view.cluster]
    assert res.tG > tg_range * site.tg_lo_s  # outside the old box
    y, tg, q = env.action_to_allocation(env.allocation_to_action(res.y, res.tG, res.q))
    out = round_outcome(site.true, y_s=y, tg_s=tg, jam_power_w=q)
    assert out.latency_s == pytest.approx(res.T, rel=1e-3)
    for a in ([1.0, 1.0, 0.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0], [1.0, -1.0, 1.0]):
        y, tg, q = env.action_to_allocation(np.array(a))
        out = round_outcome(site.true, y_s=y, tg_s=tg, jam_power_w=q)
        assert out.bld_synced.all() and not out.gld_dropped.any(), a
        assert out.latency_s >= res.T * (1 - 1e-6)


def test_hopeless_gld_has_no_affordable_upload_time():
    a = _arrays()
    e_max = a.g_e_max.copy()
    e_max[2] = 0.5 * a.g_nog[2] * a.x_scale
    tg = affordable_upload_time_s(a.g_nog, a.sic, e_max, a.x_scale)
    assert math.isinf(tg[2]) and np.isfinite(np.delete(tg, 2)).all()


def _left(a: ClusterRow, y: float, tg: float) -> np.ndarray:
    return np.clip(a.g_e_max - a.g_kcd * a.g_cd**2 / y**2 - a.upload_energy_j(tg), 0.0, None)


def _affordable(a: ClusterRow, left: np.ndarray, q_w: float) -> bool:
    """Brute force: can the GLDs pay Q (every BLD synced) from ``left``?"""
    eve = np.log2(1.0 + a.b_pe / (a.n_e_w + q_w))
    rate = a.w_hz * (a.b_legit - eve)
    if np.any(rate <= 0):
        return False
    u = float(np.max(a.b_data / rate))
    return float(a.g_gain_e @ np.minimum(a.g_q_max, left / u)) >= q_w


@pytest.mark.parametrize("seed", [None, 1, 2, 3, 6, 7])
def test_jamming_interval_ends_are_tight_and_affordable(seed):
    a = _arrays(seed)
    res = solve(
        table2_cluster()
        if seed is None
        else random_cluster(seed, n_gld=3 + seed % 6, n_bld=1 + seed % 4),
        "exact",
    )
    if not res.feasible:
        pytest.skip("infeasible cluster")
    for scale in (1.0, 1.3, 3.0):  # at the optimum and with more energy left
        y, tg = res.y * scale, res.tG * scale
        left = _left(a, y, tg)
        iv = jamming_interval(a, left)
        assert iv is not None
        q_low, q_high = iv
        assert 0.0 <= q_low <= q_high
        # every level of the interval is affordable, the split pays it and nobody overspends
        for q_w in np.linspace(q_low, q_high, 7)[1:]:
            q = jamming_split(a, q_w, left)
            assert float(q @ a.g_gain_e) == pytest.approx(q_w, rel=1e-9)
            out = _charged(a, y, tg, q)
            assert not out.gld_dropped.any() and out.bld_synced.all()
        assert not _affordable(a, left, q_high * (1 + 1e-6))  # the top is tight
        if q_low > 1e-6 * q_high:  # below that the search stops at u = 9e6 u_lo
            assert not _affordable(a, left, q_low * (1 - 1e-4))  # Q(u) is flat there
        if scale == 1.0:  # at the exact optimum the solver's Q is (about) the top
            assert q_high >= res.Q * (1 - 1e-6)


def test_jamming_interval_empty_and_trivial_cases():
    a = _arrays()
    assert jamming_interval(a, np.zeros(a.g_cd.size)) is None  # Table II needs jamming
    assert jamming_interval(a, np.full(a.g_cd.size, 1e-9)) is None  # far too little
    c = table2_cluster()
    no_bld = ClusterRow.from_cluster(type(c)(c.gld, c.bld.subset([]), c.constants))
    assert jamming_interval(no_bld, np.ones(6)) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("jamming", "scale"), [("interval", "ratio"), ("sync", "ratio"), ("sync", "excess")]
)
@pytest.mark.parametrize("env_id", ["DTFL-TableII-v0", "DTFL-Random-v0"])
def test_safe_mode_round_trip_reproduces_the_optimum(env_id, jamming, scale):
    env = gym.make(
        env_id, config={**SAFE, "action": {"mode": "safe", "jamming": jamming, "scale": scale}}
    ).unwrapped
    assert env.action_space.shape == (3,)
    env.reset(seed=3)
    checked = 0
    for _ in range(60):
        res = solve(env.cluster, "exact")
        action = (
            env.allocation_to_action(res.y, res.tG, res.q)
            if res.feasible
            else env.action_space.sample()
        )
        # float64: where the optimum has the affordable jamming interval shrunk to one point
        # (T_GLD binds), float32 rounding of y or tG can empty it (no jamming, BLDs unsynced)
        _, _, term, _, info = env.step(action)
        if res.feasible and np.all(np.abs(action[:2]) < 1):  # inside the action ranges
            assert info["T"] == pytest.approx(res.T, rel=1e-6)
            assert info["n_unsynced"] == 0
            checked += 1
        if term:
            env.reset()
    assert checked >= 15


def test_safe_actions_never_break_a_budget_without_fading():
    env = gym.make("DTFL-TableII-v0", config={**SAFE, "fading": False}).unwrapped
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    for k in range(600):
        a = rng.uniform(-1, 1, 3) if k % 3 else rng.choice([-1.0, 1.0], 3)
        _, _, term, _, info = env.step(a.astype(np.float32))
        assert info["n_dropouts"] == 0
        assert info["reward_violation"] <= 0
        if term:
            env.reset()


def test_safe_actions_drop_only_gld_that_cannot_upload():
    """Under deep fades a GLD may be unable to pay even an endless upload: it drops out
    whatever the action; every other GLD keeps its budget."""
    env = gym.make("DTFL-Random-v0", config=SAFE).unwrapped
    env.reset(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(500):
        arr = env.cluster_arrays
        hopeless = np.isinf(
            affordable_upload_time_s(arr.g_nog, arr.sic, arr.g_e_max, arr.x_scale, reserve=0.0)
        )
        _, _, term, _, info = env.step(rng.uniform(-1, 1, 3).astype(np.float32))
        m = info["n_gld"]
        assert not (info["dropped"][:m] & ~hopeless).any()
        if term:
            env.reset()


def test_safe_mapping_is_monotone_in_jamming():
    a = _arrays()
    tg_lo = float(np.max(affordable_upload_time_s(a.g_nog, a.sic, a.g_e_max, a.x_scale)))
    qs = [
        float(
            safe_allocation(a, tg_lo, np.array([-0.6, -0.4, f]), math.log(50), math.log(50))[2]
            @ a.g_gain_e
        )
        for f in np.linspace(-1, 1, 9)
    ]
    assert all(b >= c for b, c in zip(qs[1:], qs[:-1], strict=True))
    assert qs[-1] > qs[0]


def test_action_mode_config_and_errors():
    with pytest.raises(ValueError, match=r"action\.mode"):
        gym.make("DTFL-Fast-v0", config={"action": {"mode": "projected"}})
    env = gym.make("DTFL-Fast-v0", config={"action": {"mode": "safe"}}).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="expected 3 values"):
        env.step(np.zeros(18))
    with pytest.raises(ValueError, match=r"action\[1\]"):
        env.step(np.array([0.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="mode"):
        env.action_to_allocation(np.zeros(3), mode="bogus")
    # the other mode's actions can still be read explicitly
    y, tg, q = env.action_to_allocation(np.zeros(18), mode="direct")
    assert y > 0 and tg > 0 and q.shape == (env.view.sites[0].m,)


def test_sb3_adapter_translates_between_action_modes():
    class Fixed:  # an SB3-like model that always plays one safe action
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.array([-0.5, -0.3, 1.0], dtype=np.float32), state

    safe = gym.make("DTFL-TableII-v0", config={**SAFE, "clusters": 2}).unwrapped
    direct = gym.make("DTFL-TableII-v0", config={"clusters": 2}).unwrapped
    obs_s, _ = safe.reset(seed=5)
    obs_d, _ = direct.reset(seed=5)
    np.testing.assert_array_equal(obs_s, obs_d)  # one observation for both modes
    pol = SB3Policy(Fixed(), action_mode="safe")
    a_s, _ = pol.bind(safe).predict(obs_s)
    a_d, _ = pol.bind(direct).predict(obs_d)
    assert a_s.shape == (3,) and a_d.shape == (18,)
    _, _, _, _, i_s = safe.step(a_s)
    _, _, _, _, i_d = direct.step(a_d)
    assert i_d["T"] == pytest.approx(i_s["T"], rel=1e-5)
    assert i_d["Q"] == pytest.approx(i_s["Q"], rel=1e-5)


@pytest.mark.parametrize(
    ("jamming", "scale"), [("interval", "ratio"), ("sync", "ratio"), ("interval", "excess")]
)
@pytest.mark.parametrize("env_id", ["DTFL-TableII-v0", "DTFL-Random-v0"])
def test_safe_actions_are_feasible_wherever_the_cluster_is(env_id, jamming, scale):
    """On every cluster with a feasible allocation, every safe action keeps every budget and
    syncs every BLD (the box is inside the feasible set of problem P)."""
    env = gym.make(
        env_id,
        config={
            **SAFE,
            "clusters": 4,
            "action": {"mode": "safe", "jamming": jamming, "scale": scale},
        },
    ).unwrapped
    env.reset(seed=8)
    rng = np.random.default_rng(8)
    feasible = 0
    for k in range(160):
        ok = solve(env.cluster, "exact").feasible
        a = rng.uniform(-1, 1, 3) if k % 4 else rng.choice([-1.0, 1.0], 3)
        _, _, term, _, info = env.step(a.astype(np.float32))
        if ok:
            feasible += 1
            assert info["n_dropouts"] == 0 and info["n_unsynced"] == 0
            assert info["reward_violation"] == 0.0
        if term:
            env.reset()
    assert feasible >= 40


def test_sync_bounds_are_feasible_and_tight():
    """At y_sync(tG) the affordable jamming interval is non-empty; a little below it is
    empty wherever the jamming (not the CPU bound or a GLD's training energy) binds."""
    from dtfl_env.model.feasible import sync_training_time_s

    env = gym.make("DTFL-Random-v0", config=SAFE).unwrapped
    env.reset(seed=3)
    tight = checked = 0
    for _ in range(200):
        a, site = env.cluster_arrays, env.view.sites[env.view.cluster]
        tg_base = env.action_type.tg_base(site) if site.m and site.n else math.nan
        for f in (1.0, 1.5, 4.0) if math.isfinite(tg_base) else ():
            left_up = a.g_e_max - a.upload_energy_j(tg_base * f)
            y_sync = sync_training_time_s(a, left_up)
            if not math.isfinite(y_sync):
                continue

            def left(y, left_up=left_up, a=a):
                return np.clip(left_up - a.g_kcd * a.g_cd**2 / y**2, 0, None)

            assert jamming_interval(a, left(y_sync)) is not None
            checked += 1
            if y_sync > training_time_floor_s(a, left_up) * (1 + 1e-6):
                assert jamming_interval(a, left(y_sync * (1 - 3e-3))) is None  # ~0.1 % high
                tight += 1
        _, _, term, _, _ = env.step(np.zeros(3, dtype=np.float32))
        if term:
            env.reset()
    assert checked >= 300 and tight >= 3


def test_sb3_adapter_translates_action_ranges():
    class Fixed:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.array([-0.2, 0.1, 0.6], dtype=np.float32), state

    narrow = {**SAFE, "clusters": 2, "action": {"mode": "safe", "tg_range": 20.0, "y_range": 20.0}}
    trained = gym.make("DTFL-TableII-v0", config=narrow).unwrapped
    other = gym.make("DTFL-TableII-v0", config={**SAFE, "clusters": 2}).unwrapped
    obs, _ = trained.reset(seed=6)
    other.reset(seed=6)
    pol = SB3Policy(Fixed(), action_config=narrow["action"])
    a_t, _ = pol.bind(trained).predict(obs)
    a_o, _ = pol.bind(other).predict(obs)
    assert not np.allclose(a_t, a_o)  # the same allocation is another action there
    _, _, _, _, i_t = trained.step(a_t)
    _, _, _, _, i_o = other.step(a_o)
    assert i_o["T"] == pytest.approx(i_t["T"], rel=1e-5)


def test_sync_jamming_gives_the_best_jamming_for_every_a2_at_most_zero():
    """``action.jamming = "sync"``: a2 <= 0 asks the BLDs to finish no later than the GLDs,
    so the latency equals that at the fastest affordable sync (Q_high) for the same tG and
    y; a2 > 0 jams less (Q non-increasing in a2) and may cost latency, never a budget."""
    base = {**SAFE, "clusters": 4}
    sync = gym.make(
        "DTFL-Random-v0", config={**base, "action": {"mode": "safe", "jamming": "sync"}}
    ).unwrapped
    top = gym.make("DTFL-Random-v0", config={**base, "action": {"mode": "safe"}}).unwrapped
    sync.reset(seed=4)
    top.reset(seed=4)
    rng = np.random.default_rng(4)
    slower = checked = 0
    for _ in range(80):
        a01 = rng.uniform(-1, 1, 2)
        t_top = top.step(np.r_[a01, 1.0])[4]["T"]  # interval mode: a2 = 1 is Q_high
        qs, ts = [], []
        for a2 in (-1.0, -0.5, 0.0, 0.5, 1.0):
            y, tg, q = sync.action_to_allocation(np.r_[a01, a2])
            true = sync.view.sites[sync.view.cluster].true
            out = round_outcome(true, y_s=y, tg_s=tg, jam_power_w=q)
            qs.append(float(q @ sync.cluster_arrays.g_gain_e))
            ts.append(out.latency_s)
            assert not out.gld_dropped.any() or not solve(sync.cluster, "exact").feasible
        _, _, term, _, info = sync.step(np.r_[a01, 0.0])
        if info["n_bld"] and info["n_unsynced"] == 0:
            assert ts[:3] == pytest.approx([t_top] * 3, rel=1e-6)
            assert all(b <= c * (1 + 1e-9) for b, c in zip(qs[1:], qs[:-1], strict=True))
            slower += ts[-1] > t_top * (1 + 1e-6)
            checked += 1
        if term:
            sync.reset()
            top.reset()
    assert checked >= 40 and slower >= 1


@pytest.mark.parametrize("jamming", ["interval", "sync"])
def test_safe_mapping_without_blds_jams_nothing(jamming):
    c = table2_cluster()
    a = ClusterRow.from_cluster(type(c)(c.gld, c.bld.subset([]), c.constants))
    tg_lo = float(np.max(affordable_upload_time_s(a.g_nog, a.sic, a.g_e_max, a.x_scale)))
    for a2 in (-1.0, 0.0, 1.0):
        y, tg, q = safe_allocation(
            a, tg_lo, np.array([-0.5, -0.5, a2]), math.log(50), math.log(50), jamming
        )
        assert np.all(q == 0) and y > 0 and tg >= tg_lo
        assert not _charged(a, y, tg, q).gld_dropped.any()


def test_excess_scale_covers_the_range_and_inverts():
    from dtfl_env.model.feasible import EXCESS_FLOOR, _factor, _unfactor

    ln = math.log(20.0)
    assert _factor(-1.0, ln, "excess") == 1.0  # exactly the bound: an optimum on it round-trips
    assert _factor(-0.999, ln, "excess") < 1 + EXCESS_FLOOR  # finer than the floor just above
    assert _factor(1.0, ln, "excess") == pytest.approx(20.0)
    assert _factor(-1.0, ln, "ratio") == 1.0 and _factor(1.0, ln, "ratio") == pytest.approx(20)
    grid = np.linspace(-1, 1, 41)
    for scale in ("ratio", "excess"):
        f = [_factor(v, ln, scale) for v in grid]
        assert all(b > c for b, c in zip(f[1:], f[:-1], strict=True))  # increasing
        back = [_unfactor(x, ln, scale) for x in f]
        np.testing.assert_allclose(back, grid, atol=1e-12)
    assert _unfactor(1.0, ln, "excess") == -1.0  # at the bound: the lowest action
    assert _unfactor(0.5, ln, "excess") < -1.0 and _unfactor(40.0, ln, "excess") > 1.0
    # finer than the ratio scale just above the bound: 10 % above it is mid-box
    assert -0.2 < _unfactor(1.1, ln, "excess") < 0.1
    assert _unfactor(1.1, ln, "ratio") < -0.9


def test_safe_jamming_config_errors():
    with pytest.raises(ValueError, match=r"action\.jamming"):
        gym.make("DTFL-Fast-v0", config={"action": {"mode": "safe", "jamming": "max"}})
    with pytest.raises(ValueError, match=r"action\.scale"):
        gym.make("DTFL-Fast-v0", config={"action": {"mode": "safe", "scale": "linear"}})
    with pytest.raises(ValueError, match=r"action\.sync_range"):
        gym.make("DTFL-Fast-v0", config={"action": {"mode": "safe", "sync_range": 0.5}})
    env = gym.make("DTFL-Fast-v0", config={"action": {"mode": "safe"}}).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="jamming"):
        env.action_to_allocation(np.zeros(3), jamming="bogus")


def test_sb3_adapter_translates_jamming_parametrisations():
    class Fixed:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.array([-0.4, -0.2, 0.3], dtype=np.float32), state

    interval = {**SAFE, "clusters": 2}
    sync = {**SAFE, "clusters": 2, "action": {"mode": "safe", "jamming": "sync"}}
    trained = gym.make("DTFL-TableII-v0", config=interval).unwrapped
    other = gym.make("DTFL-TableII-v0", config=sync).unwrapped
    obs, _ = trained.reset(seed=2)
    other.reset(seed=2)
    pol = SB3Policy(
        Fixed(),
        action_config={"mode": "safe", "tg_range": 50.0, "y_range": 50.0, "jamming": "interval"},
    )
    a_t, _ = pol.bind(trained).predict(obs)
    a_o, _ = pol.bind(other).predict(obs)
    _, _, _, _, i_t = trained.step(a_t)
    _, _, _, _, i_o = other.step(a_o)
    assert i_o["T"] <= i_t["T"] * (1 + 1e-5)  # never slower: more jamming at most
    assert i_o["n_unsynced"] <= i_t["n_unsynced"]


@pytest.mark.parametrize("env_id", ["DTFL-TableII-v0", "DTFL-Random-v0"])
@pytest.mark.parametrize("mode", ["safe", "direct"])
def test_observation_safe_bounds_are_the_safe_box_bounds(env_id, mode):
    """``observation.safe_bounds`` appends log10 tg_base and log10 y_base(tG) at 1.01, 1.1
    and 2 tg_base; y_base falls (weakly) as the upload slows down; the rest is unchanged."""
    from dtfl_env.envs.dtfl import BOUND_FEATURES
    from dtfl_env.model.feasible import BOUND_EXCESS, training_base_s

    cfg = {"fl": {"backend": "none"}, "clusters": 3, "action": {"mode": mode}}
    plain = gym.make(env_id, config=cfg).unwrapped
    env = gym.make(env_id, config={**cfg, "observation": {"safe_bounds": True}}).unwrapped
    assert env.observation_space.shape[0] == plain.observation_space.shape[0] + 4
    assert len(BOUND_FEATURES) == 1 + len(BOUND_EXCESS) == 4
    obs_p, _ = plain.reset(seed=4)
    obs, _ = env.reset(seed=4)
    act = np.zeros(env.action_space.shape, dtype=np.float32)
    for _ in range(12):
        np.testing.assert_array_equal(obs[:-4], obs_p)
        np.testing.assert_array_equal(obs[-4:], env.bound_features())
        site, a = env.view.sites[env.view.cluster], env.cluster_arrays
        if site.m:
            tg_base = env.action_type.tg_base(site)
            assert obs[-4] == pytest.approx(math.log10(tg_base), abs=1e-6)
            y = [
                training_base_s(a, a.g_e_max - a.upload_energy_j(tg_base * (1 + e)))
                for e in BOUND_EXCESS
            ]
            np.testing.assert_allclose(obs[-3:], np.clip(np.log10(y), -5, 5), atol=1e-5)
            assert np.all(np.diff(obs[-3:]) <= 1e-6)
        else:
            np.testing.assert_array_equal(obs[-4:], 0.0)
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(act)
        obs_p, *_ = plain.step(act)
    with pytest.raises(ValueError, match=r"observation\.safe_bounds"):
        gym.make(env_id, config={"observation": {"safe_bounds": "yes"}})
    with pytest.raises(ValueError, match=r"observation\.safe_boundz"):
        gym.make(env_id, config={"observation": {"safe_boundz": True}})


def test_sb3_adapter_builds_or_cuts_the_bound_features():
    """An agent trained with ``observation.safe_bounds`` sees them in an env without (and
    one trained without does not see them in an env with them): same action either way."""
    seen = []

    class Fixed:
        def __init__(self, n):
            self.observation_space = gym.spaces.Box(-5, 5, (n,))

        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            seen.append(np.array(obs))
            return np.array([-0.2, 0.1, 0.6], dtype=np.float32), state

    with_b = {
        **SAFE,
        "clusters": 2,
        "observation": {"safe_bounds": True},
        "action": {"mode": "safe", "tg_range": 20.0},
    }
    without = {**SAFE, "clusters": 2}
    e_with = gym.make("DTFL-TableII-v0", config=with_b).unwrapped
    e_without = gym.make("DTFL-TableII-v0", config=without).unwrapped
    o_with, _ = e_with.reset(seed=3)
    o_without, _ = e_without.reset(seed=3)
    n_with, n_without = o_with.size, o_without.size
    act = {**e_with.config["action"]}
    pol = SB3Policy(Fixed(n_with), action_config=act, observation_config={"safe_bounds": True})
    pol.bind(e_without).predict(o_without)
    np.testing.assert_array_equal(seen[-1], o_with)  # built with the training tg_range
    pol = SB3Policy(
        Fixed(n_without),
        action_config={**e_without.config["action"]},
        observation_config={"safe_bounds": False},
    )
    pol.bind(e_with).predict(o_with)
    np.testing.assert_array_equal(seen[-1], o_without)
    pol = SB3Policy(Fixed(n_without + 1))
    with pytest.raises(ValueError, match="expects observations of shape"):
        pol.bind(e_without).predict(o_without)


def test_training_base_rows_equal_the_scalar_search():
    """training_base_rows_s (R energy vectors in one search) equals training_base_s row by
    row, including rows where some or every GLD has no energy left."""
    from dtfl_env.model.feasible import training_base_rows_s, training_base_s

    checked = 0
    for seed in range(12):
        a = _arrays(seed if seed else None)
        if a.g_cd.size == 0:
            continue
        rng = np.random.default_rng(seed)
        left = a.g_e_max[:, None] * rng.uniform(-0.2, 1.0, (a.g_cd.size, 5))
        left[:, 0] = -1.0  # nobody has energy left
        got = training_base_rows_s(a, left)
        want = np.array([training_base_s(a, left[:, k]) for k in range(5)])
        np.testing.assert_allclose(got, want, rtol=1e-9)
        checked += 1
    assert checked >= 10
