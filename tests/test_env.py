"""DTFL-v0: spaces, episode logic, rules, determinism and the solver round trip."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import dtfl_env  # noqa: F401  (registers the ids)
from dtfl_env.model import evaluate_allocation, min_upload_time_s
from dtfl_env.model.batch import ClusterRow
from dtfl_env.model.round import round_outcome
from dtfl_env.scenarios import random_cluster
from solvers import solve


def make(env_id: str = "DTFL-v0", **config):
    """The env without real training (FL in the env: tests/test_env_fl.py)."""
    return gym.make(env_id, config={"fl": {"backend": "none"}, **config}).unwrapped


def _feasible_random_clusters(count):
    out, seed = [], 0
    while len(out) < count:
        cluster = random_cluster(seed, n_gld=2 + seed % 9, n_bld=1 + seed % 6)
        res = solve(cluster, "exact")
        if res.feasible:
            out.append((cluster, res))
        seed += 1
    return out


@pytest.mark.parametrize("cluster, res", _feasible_random_clusters(8))
def test_round_outcome_matches_system_model(cluster, res):
    arr = ClusterRow.from_cluster(cluster)
    assert arr.tg_min_s == pytest.approx(min_upload_time_s(cluster), rel=1e-12)
    out = round_outcome(arr, y_s=res.y, tg_s=res.tG, jam_power_w=res.q)
    ev = evaluate_allocation(cluster, tg_s=res.tG, y_s=res.y, jam_power_w=res.q)
    assert out.latency_s == pytest.approx(ev.latency_s, rel=1e-12)
    np.testing.assert_allclose(out.energy_j, ev.energy_total_j, rtol=1e-12)
    np.testing.assert_allclose(out.secrecy_rate_bps, ev.secrecy_rate_bps, rtol=1e-12)
    assert not out.gld_dropped.any() and out.bld_synced.all()


@pytest.mark.parametrize("method", ["exact", "algorithm2"])
@pytest.mark.parametrize("env_id", ["DTFL-v0", "DTFL-TableII-v0"])
def test_solver_round_trip(env_id, method):
    env = make(env_id, clusters=5, rounds=8)
    env.reset(seed=7)
    checked = 0
    for _ in range(40):
        res = solve(env.cluster, method)
        in_range = False
        if res.feasible:
            action = env.allocation_to_action(res.y, res.tG, res.q)
            y, tg, _ = env.action_to_allocation(action)
            in_range = np.isclose(y, res.y, rtol=1e-9) and np.isclose(tg, res.tG, rtol=1e-9)
        else:
            action = env.action_space.sample()
        _, _, term, _, info = env.step(action)
        if in_range:
            assert info["T"] == pytest.approx(res.T, rel=1e-6)
            assert info["n_dropouts"] == 0 and info["n_unsynced"] == 0
            assert info["reward_violation"] == 0.0
            checked += 1
        if term:
            break
    assert checked >= 10


def test_readme_step_works():
    e = gym.make("DTFL-v0")
    e.reset(seed=0)
    obs, reward, _term, _trunc, info = e.step(e.action_space.sample())
    assert e.observation_space.contains(obs)
    terms = {k: v for k, v in info.items() if k.startswith("reward_")}
    assert np.isfinite(reward) and set(terms) == {
        "reward_latency",
        "reward_accuracy",
        "reward_violation",
    }
    assert reward == pytest.approx(sum(terms.values()))


def test_episode_length_and_termination():
    env = make(clusters=3, rounds=2)
    env.reset(seed=1)
    steps = 0
    term = False
    while not term:
        _, _, term, trunc, info = env.step(env.action_space.sample())
        assert not trunc
        steps += 1
    assert steps == 6 and info["round"] == 1 and info["cluster_index"] == 2
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


def test_determinism_and_seeds():
    def rollout(seed):
        env = make("DTFL-Fast-v0", clusters=4, rounds=2)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        trace = [obs]
        for _ in range(8):
            o, r, *_ = env.step(env.action_space.sample())
            trace += [o, np.array([r])]
        return np.concatenate(trace)

    np.testing.assert_array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_new_episodes_differ_without_reseeding():
    env = make(clusters=2, rounds=1)
    o1, _ = env.reset(seed=0)
    o2, _ = env.reset()
    assert not np.array_equal(o1, o2)


def test_bad_actions():
    env = make()
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape)
    a[3] = np.nan
    with pytest.raises(ValueError, match=r"action\[3\]"):
        env.step(a)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(3))
    # out of range is clipped: same result as the clipped action
    env2 = make()
    env.reset(seed=5)
    env2.reset(seed=5)
    big = np.full(env.action_space.shape, 7.0)
    _, r1, *_ = env.step(big)
    _, r2, *_ = env2.step(np.ones(env.action_space.shape))
    assert r1 == r2


def test_energy_violation_drops_gld_and_is_charged():
    env = make("DTFL-TableII-v0", fading=False)
    env.reset(seed=0)
    a = np.ones(env.action_space.shape)
    a[0] = a[1] = -1.0  # fastest compute and upload, full jamming: budgets break
    _, _reward, _, _, info = env.step(a)
    assert info["n_dropouts"] > 0 and info["dropped"].any()
    assert info["reward_violation"] < 0
    assert not (info["participant"] & info["dropped"]).any()
    assert info["q_w"].shape == (env.config["max_devices"],)


def test_zero_secrecy_bld_does_not_sync():
    env = make("DTFL-TableII-v0", fading=False)
    env.reset(seed=0)
    a = np.zeros(env.action_space.shape)
    a[2:] = -1.0  # no jamming: BLDs 2-4 have h_jE > h_jC, so R_j(0) = 0 (eq. (22))
    _, _, _, _, info = env.step(a)
    assert np.flatnonzero(info["unsynced"]).tolist() == [7, 8, 9]  # BLD slots 6..9
    assert info["participant"][6:10].tolist() == [True, False, False, False]
    assert np.isfinite(info["T"]) and info["reward_violation"] < 0


def test_deadline_makes_stragglers():
    env = make("DTFL-TableII-v0", fading=False, round_deadline_s=2.0)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(env.action_space.shape))
    assert info["T"] == pytest.approx(2.0 + 0.2)
    assert info["n_stragglers"] > 0 and info["straggler"].sum() == info["n_stragglers"]


def test_optimality_gap_reported():
    env = make("DTFL-TableII-v0", compute_optimal=True, fading=False)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["optimal_latency_s"] == pytest.approx(3.5315, rel=1e-4)
    assert info["optimality_gap"] >= -1e-9


def test_optimal_latency_is_the_charged_clusters_also_at_a_rounds_end():
    """compute_optimal solves the cluster the step charged, also on the last cluster of a
    round, whose fading the end of the round redraws (it used to solve the next round's)."""
    from solvers.exact import solve_exact

    env = make("DTFL-TableII-v0", compute_optimal=True, clusters=3, rounds=3)
    env.reset(seed=1)
    for _ in range(9):
        ref = solve_exact(env.true_cluster).T
        _, _, _, _, info = env.step(np.zeros(env.action_space.shape, np.float32))
        assert info["optimal_latency_s"] == ref  # inf where the cluster is infeasible


def test_random_and_extreme_actions_stay_finite():
    env = make("DTFL-Fast-v0", clusters=10, rounds=10)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    shape = env.action_space.shape
    extremes = [
        np.full(shape, -1.0),
        np.full(shape, 1.0),
        np.full(shape, 1e9),
        np.full(shape, -1e9),
    ]
    for i in range(10_000):
        if i % 4 == 0:
            a = extremes[(i // 4) % len(extremes)]
        elif i % 4 == 1:
            a = rng.choice([-1.0, 1.0], size=shape)
        else:
            a = rng.uniform(-1, 1, shape)
        obs, r, term, _, _ = env.step(a)
        assert np.all(np.isfinite(obs)) and np.isfinite(r)
        assert env.observation_space.contains(obs)
        if term:
            env.reset()


def test_config_overrides_are_strict():
    with pytest.raises(ValueError, match=r"reward\.latncy"):
        gym.make("DTFL-v0", config={"reward": {"latncy": 1.0}})
    with pytest.raises(ValueError, match=r"random\.path_loss_exponent"):
        gym.make("DTFL-v0", config={"random": {"path_loss_exponent": -1}})
    with pytest.raises(ValueError, match=r"constants\.bandwith_hz"):
        gym.make("DTFL-v0", config={"constants": {"bandwith_hz": 1}})
    with pytest.raises(ValueError, match="clusters"):
        gym.make("DTFL-v0", config={"clusters": 0})
    env = make()
    env.reset(seed=0, options={"config": {"clusters": 2, "rounds": 1}})
    assert len(env.view.sites) == 2
    with pytest.raises(ValueError, match="unknown config key: rounds_"):
        env.reset(options={"config": {"rounds_": 1}})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"seed": 1})


def test_twin_deviation_observed_but_true_values_charged():
    env = make("DTFL-TableII-v0", twin_deviation=0.3, fading=False)
    env.reset(seed=0)
    seen = env.cluster
    assert not np.allclose(seen.bld.data_bits, [2.0e6, 3.5e6, 3.0e6, 2.5e6])
    res = solve(seen, "exact")
    _, _, _, _, info = env.step(env.allocation_to_action(res.y, res.tG, res.q))
    assert info["T"] != pytest.approx(res.T, rel=1e-9)  # charged on the true BLDs


@pytest.mark.parametrize("mode", ["safe", "direct"])
def test_center_latency_baseline_keeps_the_optimum(mode):
    """reward.latency_baseline = "center": the reference is the latency of action 0 on the
    same cluster; reward differences between actions on a cluster are unchanged."""
    cfg = {"action": {"mode": mode}, "reward": {"latency_form": "log"}}
    fixed = make("DTFL-TableII-v0", **cfg)
    center = make(
        "DTFL-TableII-v0",
        **{**cfg, "reward": {"latency_form": "log", "latency_baseline": "center"}},
    )
    n = fixed.action_space.shape[0]
    rng = np.random.default_rng(3)
    for step in range(4):
        actions = [np.zeros(n, np.float32)] + [
            rng.uniform(-1, 1, n).astype(np.float32) for _ in range(2)
        ]
        out = {}
        for name, env in (("fixed", fixed), ("center", center)):
            rows = []
            for a in actions:  # replay the same cluster for every action
                env.reset(seed=11)
                for _ in range(step):
                    env.step(np.zeros(n, np.float32))
                _, _, _, _, info = env.step(a)
                rows.append((info["reward_latency"], info["latency_baseline_s"], info["T"]))
            out[name] = rows
        assert all(r[1] == 10.0 for r in out["fixed"])  # latency_reference_s
        t0 = out["center"][0][2]  # action 0's latency is the reference
        assert all(r[1] == pytest.approx(t0, rel=1e-12) for r in out["center"])
        assert out["center"][0][0] == pytest.approx(0.0, abs=1e-12)
        for (rf, _, tf), (rc, _, tc) in zip(out["fixed"], out["center"], strict=True):
            assert tf == tc
            assert rf - rc == pytest.approx(out["fixed"][0][0], rel=1e-9, abs=1e-12)


def test_latency_baseline_is_validated():
    with pytest.raises(ValueError, match=r"reward\.latency_baseline"):
        gym.make("DTFL-v0", config={"reward": {"latency_baseline": "mean"}})


@pytest.mark.parametrize("mode", ["safe", "direct"])
def test_optimum_latency_baseline_is_the_exact_optimum(mode):
    """reward.latency_baseline = "optimum": the reference is the exact T* of the true
    cluster (the centre's latency where the cluster is infeasible); playing the optimum
    scores about 0, and reward differences between actions match the fixed reference."""
    from solvers.exact import solve_exact

    cfg = {"action": {"mode": mode}, "reward": {"latency_form": "log"}}
    fixed = make("DTFL-TableII-v0", **cfg)
    opt = make(
        "DTFL-TableII-v0",
        **{**cfg, "reward": {"latency_form": "log", "latency_baseline": "optimum"}},
    )
    center = make(
        "DTFL-TableII-v0",
        **{**cfg, "reward": {"latency_form": "log", "latency_baseline": "center"}},
    )
    n = fixed.action_space.shape[0]
    rng = np.random.default_rng(5)
    seen_feasible = seen_infeasible = 0
    for step in range(10):
        opt.reset(seed=13)
        for _ in range(step):
            opt.step(np.zeros(n, np.float32))
        ref = solve_exact(opt.unwrapped.true_cluster)
        actions = [rng.uniform(-1, 1, n).astype(np.float32)]
        if ref.feasible:
            actions.append(opt.unwrapped.allocation_to_action(ref.y, ref.tG, ref.q))
        rows = {}
        for name, env in (("fixed", fixed), ("optimum", opt), ("center", center)):
            rows[name] = []
            for a in actions:
                env.reset(seed=13)
                for _ in range(step):
                    env.step(np.zeros(n, np.float32))
                _, _, _, _, info = env.step(a)
                rows[name].append((info["reward_latency"], info["latency_baseline_s"], info["T"]))
        if ref.feasible:
            seen_feasible += 1
            assert all(r[1] == pytest.approx(ref.T, rel=1e-12) for r in rows["optimum"])
            assert rows["optimum"][1][0] == pytest.approx(0.0, abs=1e-4)  # float32 action
        else:
            seen_infeasible += 1  # falls back to the centre's latency
            assert rows["optimum"][0][1] == rows["center"][0][1]
        for (rf, _, tf), (ro, bo, to) in zip(rows["fixed"], rows["optimum"], strict=True):
            assert tf == to
            assert rf - ro == pytest.approx(math.log(10.0 / bo), rel=1e-9, abs=1e-12)
    assert seen_feasible and seen_infeasible


def test_log_weighted_latency_weighs_clusters_by_their_latency():
    """reward.latency_form = "log_weighted": the log term times the cluster's reference over
    latency_reference_s, capped at latency_weight_max; with the fixed reference it is
    "log"."""
    n = 3
    rng = np.random.default_rng(2)
    actions = [rng.uniform(-1, 1, n).astype(np.float32) for _ in range(12)]
    base = {"action": {"mode": "safe"}}

    def run(reward: dict) -> list[tuple[float, float]]:
        env = make("DTFL-TableII-v0", **base, reward=reward)
        env.reset(seed=21)
        out = []
        for a in actions:
            _, _, _, _, info = env.step(a)
            out.append((info["reward_latency"], info["latency_baseline_s"]))
        return out

    log_fixed = run({"latency_form": "log"})
    assert run({"latency_form": "log_weighted"}) == log_fixed
    log_c = run({"latency_form": "log", "latency_baseline": "center"})
    mid = float(np.median([b / 10.0 for _, b in log_c]))
    assert max(b for _, b in log_c) > 1.01 * min(b for _, b in log_c)
    for cap in (10.0, mid):
        weighted = run(
            {
                "latency_form": "log_weighted",
                "latency_baseline": "center",
                "latency_weight_max": cap,
            }
        )
        for (rl, b), (rw, bw) in zip(log_c, weighted, strict=True):
            assert b == bw
            assert rw == pytest.approx(rl * min(b / 10.0, cap), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "10"])
def test_latency_weight_max_is_validated(bad):
    with pytest.raises(ValueError, match=r"reward\.latency_weight_max"):
        gym.make("DTFL-v0", config={"reward": {"latency_weight_max": bad}})


def test_model_bits_follows_the_trained_model():
    from dtfl_env.fl.config import model_size_bits

    assert gym.make("DTFL-v0").unwrapped.constants.model_bits == 32 * 21_840  # the CNN
    mlp = gym.make("DTFL-v0", config={"fl": {"model": "mlp"}}).unwrapped
    assert mlp.constants.model_bits == model_size_bits("mlp")
    pinned = gym.make("DTFL-v0", config={"constants": {"model_bits": 2e6}}).unwrapped
    assert pinned.constants.model_bits == 2e6
    # latency-only presets keep Table II's L = 2 Mbit (T* = 3.5315 s stays the reference)
    assert make("DTFL-TableII-v0").constants.model_bits == 2e6
    assert make("DTFL-Random-v0").constants.model_bits == 2e6


@pytest.mark.parametrize("env_id", ["DTFL-TableII-v0", "DTFL-Random-v0"])
def test_bld_sync_energy_is_reported_against_the_battery(env_id):
    env = make(env_id)
    env.reset(seed=4)
    zero = np.zeros(env.action_space.shape[0])
    seen_short = 0
    for _ in range(20):
        c = env.true_cluster
        m, n = c.n_gld, c.n_bld
        *_, info = env.step(zero)
        synced = ~info["unsynced"][m : m + n]
        rate = info["secrecy_rate_bps"][m : m + n]
        expect = np.where(synced, c.bld.power_w * c.bld.data_bits / np.where(synced, rate, 1), 0)
        np.testing.assert_allclose(info["bld_sync_energy_j"][m : m + n], expect, rtol=1e-12)
        battery = info["bld_battery_j"][m : m + n]
        assert np.all(battery > 0) and np.all(info["bld_battery_j"][:m] == 0)
        if env_id == "DTFL-TableII-v0":
            assert np.all(battery == 1.75)
        else:  # the battery the device drew when eq. (3) classified it
            assert np.all((battery >= 1.0) & (battery <= 2.5))
        assert info["n_bld_energy_short"] == int(info["bld_energy_short"].sum())
        np.testing.assert_array_equal(
            info["bld_energy_short"][m : m + n][synced],
            expect[synced] > battery[synced] * (1 + 1e-5),
        )
        seen_short += info["n_bld_energy_short"]
    assert seen_short > 0  # Table II's BLDs spend 2-5 J on a 2-3.5 Mbit sync


def test_enforced_bld_energy_stops_the_sync():
    free = make("DTFL-TableII-v0", fading=False)
    strict = make("DTFL-TableII-v0", fading=False, bld_energy={"enforce": True})
    rich = make(
        "DTFL-TableII-v0", fading=False, bld_energy={"enforce": True, "table2_battery_j": 100.0}
    )
    for env in (free, strict, rich):
        env.reset(seed=0)
    res = solve(free.cluster, "exact")
    infos = [
        env.step(env.allocation_to_action(res.y, res.tG, res.q))[-1] for env in (free, strict, rich)
    ]
    assert infos[0]["n_unsynced"] == 0 and infos[0]["n_bld_energy_short"] == 4
    assert infos[0]["latency_s"] == pytest.approx(res.T, rel=1e-6)
    assert infos[1]["n_unsynced"] == 4  # none can pay for its sync: none syncs
    assert infos[2]["n_unsynced"] == 0 and infos[2]["latency_s"] == pytest.approx(res.T, rel=1e-6)
    with pytest.raises(ValueError, match=r"bld_energy\.enforce"):
        make("DTFL-TableII-v0", bld_energy={"enforce": 1})
    with pytest.raises(ValueError, match=r"bld_energy\.table2_battery_j"):
        make("DTFL-TableII-v0", bld_energy={"table2_battery_j": 0.0})
