"""Exact solver and Algorithm 2 against docs/MODEL.md's reference values and each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtfl_env.config import BLDParams, Cluster, GLDParams
from dtfl_env.model import evaluate_allocation
from solvers import SOLVERS, solve
from solvers.algorithm2 import dual_at_q, solve_algorithm2
from solvers.exact import solve_exact

from _clusters import perturbed_cluster

# 24 seeded clusters, M in 2..10 and N in 1..6
SIZES = [(2 + (k * 7) % 9, 1 + (k * 5) % 6) for k in range(24)]


def _reevaluate(cluster, res):
    return evaluate_allocation(cluster, tg_s=res.tG, y_s=res.y, jam_power_w=res.q)


def test_table2_reference_values(table2):
    res = solve_exact(table2)
    assert res.status == "optimal"
    assert res.T == pytest.approx(3.5315, rel=1e-4)
    assert res.Q == pytest.approx(6.318e-8, rel=1e-3)
    assert res.y == pytest.approx(1.1253, rel=1e-4)
    assert res.tG == pytest.approx(2.2062, rel=1e-4)
    assert res.tB_up == pytest.approx(3.3095, rel=1e-4)
    ev = _reevaluate(table2, res)
    energy_binds = np.isclose(ev.energy_total_j, table2.gld.energy_budget_j, rtol=1e-6)
    assert energy_binds.tolist() == [True, False, True, True, True, True]
    assert res.q[1] == pytest.approx(table2.gld.max_jam_power_w[1])  # GLD 2 at Q_max
    assert np.all(ev.upload_power_w < table2.gld.max_power_w)  # nobody at P_max
    assert np.all(ev.cpu_hz < table2.gld.max_cpu_hz)  # nor at V_max
    assert res.info["lower_bound_s"] <= res.T
    assert res.T - res.info["lower_bound_s"] <= 1e-6 * res.T


@pytest.mark.parametrize("bits, t_ref", [(1e6, 3.516), (2e6, 3.532), (3e6, 4.254), (4e6, 5.751)])
def test_model_size_sweep(table2, bits, t_ref):
    res = solve_exact(table2.with_constants(model_bits=bits))
    assert res.T == pytest.approx(t_ref, abs=6e-4)


def test_t_of_q_is_u_shaped_and_infeasible_beyond_limit(table2):
    res = solve_algorithm2(table2)
    q, t = res.info["curve"]["Q_w"], res.info["curve"]["T_s"]
    finite = np.isfinite(t)
    assert t[finite][0] > 50  # near the lower bound the sync takes ages
    assert np.nanmin(t) == pytest.approx(3.5315, rel=1e-3)
    assert not finite[q > 8.2e-8].any()  # the GLDs cannot pay for that much jamming
    k = int(np.argmin(np.where(finite, t, np.inf)))
    idx = np.flatnonzero(finite)
    assert idx[0] < k < idx[-1]  # interior optimum


@pytest.mark.parametrize("k", range(len(SIZES)))
def test_algorithm2_corrected_close_to_exact(k):
    m, n = SIZES[k]
    cluster = perturbed_cluster(1000 + k, m, n)
    ex = solve_exact(cluster)
    a2 = solve_algorithm2(cluster)
    if ex.status == "infeasible":
        assert a2.status == "infeasible" and math.isinf(a2.T)
        return
    assert ex.status == "optimal"
    assert a2.status == "converged"
    assert a2.T >= ex.T * (1 - 1e-7)
    assert a2.T <= ex.T * 1.005, (a2.T, ex.T)
    for res in (ex, a2):
        ev = _reevaluate(cluster, res)
        assert ev.min_slack >= -1e-9
        assert ev.latency_s == pytest.approx(res.T, rel=1e-9)


def test_enough_feasible_instances_in_the_comparison():
    feasible = sum(
        solve_exact(perturbed_cluster(1000 + k, *SIZES[k])).feasible for k in range(len(SIZES))
    )
    assert feasible >= 20


def test_paper_faithful_iterate_breaks_the_budget(table2):
    res = solve_algorithm2(table2, mode="paper")
    assert res.status == "primal_infeasible"
    assert res.info["energy_excess_j"] > 1e-3
    assert not res.success
    assert "breaks the energy budget" in res.message


def test_fig3_lambda_trajectories(table2):
    tr = dual_at_q(table2, 3e-8, mode="paper", max_iter=200)
    assert tr.lam.shape[1:] == (1, 6)
    assert tr.lam.shape[0] == tr.iterations[0] + 1
    assert np.all(tr.lam >= 0)
    with pytest.raises(ValueError, match="q_w"):
        dual_at_q(table2, 3e-7)  # Fig. 3(b): beyond sum Q_max g_iE = 8.35e-8 W


def test_infeasible_budget_detected(table2):
    poor = perturbed_cluster(5, 4, 3, budget_scale=0.05)
    for method in ("exact", "algorithm2"):
        res = solve(poor, method)
        assert res.status == "infeasible" and math.isinf(res.T)
        assert res.to_json_dict()["T"] is None
        assert "upload energy" in res.message or "energy" in res.message


def test_infeasible_eavesdropper_detected(table2):
    strong_eve = BLDParams(
        data_bits=[2e6], gain_coordinator=[1e-9], gain_eavesdropper=[1e-6], power_w=[1.5]
    )
    cluster = Cluster(table2.gld, strong_eve, table2.constants)
    for method in ("exact", "algorithm2"):
        res = solve(cluster, method)
        assert res.status == "infeasible"
        assert "secrecy" in res.message


def test_jamming_unaffordable_detected(table2):
    # secrecy is reachable in principle but the GLDs cannot pay for the jamming it needs
    gld = table2.gld.subset(np.array([5])).to_dict()
    gld["energy_budget_j"] = [0.5]  # > upload energy limit (0.05 J), < the jamming needed
    cluster = Cluster(GLDParams(**gld), table2.bld, table2.constants)
    res = solve_exact(cluster)
    assert res.status == "infeasible" and "jamming" in res.message
    assert solve_algorithm2(cluster).status == "infeasible"
    gld["energy_budget_j"] = [1.0]
    assert solve_exact(Cluster(GLDParams(**gld), table2.bld, table2.constants)).feasible


def test_degenerate_clusters(table2):
    no_bld = Cluster(table2.gld, table2.bld.subset(np.array([], dtype=int)), table2.constants)
    res = solve_exact(no_bld)
    assert res.status == "optimal" and res.Q == 0 and res.tB_up == 0
    assert res.T == pytest.approx(res.T_GLD + 0.2)
    easy_bld = BLDParams(
        data_bits=[2e6], gain_coordinator=[1e-9], gain_eavesdropper=[1e-10], power_w=[1.5]
    )
    no_gld = Cluster(table2.gld.subset(np.array([], dtype=int)), easy_bld, table2.constants)
    res = solve_exact(no_gld)
    assert res.status == "optimal" and res.T_GLD == 0
    assert solve_algorithm2(no_gld).T == pytest.approx(res.T)


def test_solve_dispatch_rejects_unknown(table2):
    assert "exact" in SOLVERS
    with pytest.raises(ValueError, match="method"):
        solve(table2, "gurobi")
    with pytest.raises(ValueError, match="mode"):
        solve_algorithm2(table2, mode="fast")
    with pytest.raises(ValueError, match="rtol"):
        solve_exact(table2, rtol=0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    m=st.integers(1, 8),
    n=st.integers(0, 5),
    budget=st.floats(0.6, 2.0),
)
def test_property_solutions_satisfy_constraints(seed, m, n, budget):
    cluster = perturbed_cluster(seed, m, n, budget_scale=budget)
    ex = solve_exact(cluster)
    a2 = solve_algorithm2(cluster)
    assert ex.feasible == a2.feasible
    for res in (ex, a2):
        if not res.feasible:
            assert math.isinf(res.T)
            continue
        ev = _reevaluate(cluster, res)
        assert ev.min_slack >= -1e-9  # (14a)-(14d) and R_j > 0
        assert ev.latency_s == pytest.approx(res.T, rel=1e-9)
    if ex.feasible:
        assert a2.T >= ex.T * (1 - 1e-7)


def test_exact_certificate_ignores_duplicate_samples(table2):
    # regression: a refinement point coinciding with the incumbent (to 4e-16) once gave a
    # secant of pure rounding noise and a false certificate 5.4e-5 above the optimum
    gld = table2.gld.to_dict()
    gld["energy_budget_j"] = [
        2.611337470805333,
        2.1617028254446833,
        3.3854877385909563,
        2.0032147200094164,
        2.2318394005252187,
        3.124469827366616,
    ]
    bld = table2.bld.to_dict()
    bld["gain_eavesdropper"] = [
        5.628375353160601e-09,
        4.275625006577319e-09,
        4.646608221155617e-09,
        6.47228084171505e-09,
    ]
    res = solve_exact(Cluster(GLDParams(**gld), BLDParams(**bld), table2.constants))
    assert res.status == "optimal"
    assert res.T == pytest.approx(4.130769, rel=2e-7)  # cvxpy: 4.130769111


def test_no_jamming_needed_and_none_possible(table2):
    # the GLDs cannot reach the eavesdropper at all, but no BLD needs jamming either:
    # the only feasible sync time is tB_up(0), which the search must keep
    gld = table2.gld.to_dict()
    gld["gain_eavesdropper"] = [1e-30] * 6
    bld = table2.bld.to_dict()
    bld["gain_eavesdropper"] = [1e-10] * 4
    res = solve_exact(Cluster(GLDParams(**gld), BLDParams(**bld), table2.constants))
    assert res.feasible and res.Q == pytest.approx(0.0, abs=1e-20)


# ------------------------------------------------------------------ fast inner search, Sub-T
def test_inner_search_bounds_and_brute_force(table2):
    """gld_time_bounds: V_lower <= V, V attained by (y, tG), and a dense grid finds no better."""
    from solvers._core import Prepared

    for cluster in (table2, perturbed_cluster(7, 5, 3), perturbed_cluster(8, 9, 2)):
        p = Prepared(cluster)
        _, u_feas, u_hi = p.feasibility()
        u = p.domain_left(u_feas) + (u_hi - p.u_lo) * np.geomspace(1e-6, 1e-1, 12)
        dem = p.jam_demand(p.min_jamming(u), u)
        with np.errstate(all="ignore"):
            v, y, tg, v_lo = p.gld_time_bounds(dem, u)
            grid = p.tg_min * np.geomspace(1.0, 1e3, 20001)
            brute = np.min(
                p.min_y(np.broadcast_to(grid, (u.size, grid.size)), dem[:, None], u[:, None])
                + grid,
                axis=1,
            )
            y_at = p.min_y(tg[:, None], dem[:, None], u[:, None])[:, 0]
        fin = np.isfinite(v)
        assert fin.sum() >= 6
        assert np.array_equal(fin, np.isfinite(brute))
        assert np.all(v_lo[fin] <= v[fin]) and np.all(v[fin] - v_lo[fin] <= 1e-12 * v[fin])
        assert np.all(v[fin] <= brute[fin] * (1 + 1e-12))  # no grid point is better
        assert np.all(brute[fin] <= v[fin] * (1 + 1e-3))  # and the grid gets close
        np.testing.assert_allclose(y_at[fin], y[fin], rtol=1e-12)
        np.testing.assert_allclose(v[fin], y[fin] + tg[fin], rtol=1e-12)


def test_min_upload_time_is_tight(table2):
    """tG_min (24c), from the model's one routine (Newton), against the power bound itself:
    every GLD within P_max at tG_min, some GLD above it 1e-9 earlier (the log-domain
    powers of eq. (7), an independent evaluation)."""
    from dtfl_env.model.system import min_upload_time_s, upload_power_w
    from solvers._core import Prepared

    for cluster in (
        table2,
        perturbed_cluster(3, 8, 2),
        perturbed_cluster(4, 1, 1),
        perturbed_cluster(5, 20, 0),
    ):
        tg_min = Prepared(cluster).tg_min
        assert tg_min == min_upload_time_s(cluster)
        assert np.all(upload_power_w(cluster, tg_min) <= cluster.gld.max_power_w)
        assert np.any(upload_power_w(cluster, tg_min * (1 - 1e-9)) > cluster.gld.max_power_w)


def test_sub_t_solves_the_stationarity_condition(table2):
    """Sub-T (31)-(32): f_T'(tG) = 0, or tG = tG_min where f_T' >= 0 there."""
    from solvers._core import Prepared
    from solvers.algorithm2 import DualConsts, _sub_t

    p = Prepared(table2)
    rng = np.random.default_rng(1)
    lam = rng.exponential(0.3, (40, p.m)) * rng.choice([0.0, 1.0, 1e3], (40, 1))
    with np.errstate(all="ignore"):
        tg = _sub_t(DualConsts.of(p), lam[None], p.tg_min * rng.uniform(1.0, 50.0, (1, 40)))[0]
    slope = 1.0 + np.sum(lam * p.upload_energy_slope(tg), axis=-1)
    at_min = tg == p.tg_min
    assert np.all(slope[at_min] >= -1e-9)
    assert np.all(np.abs(slope[~at_min]) <= 1e-8)


@pytest.mark.parametrize("k", range(0, 50, 7))
def test_algorithm2_and_exact_on_random_clusters(k):
    """The benchmark's random clusters: exact certified, corrected Algorithm 2 within 0.1 %."""
    from dtfl_env.scenarios import random_cluster

    cluster = random_cluster(k, n_gld=2 + (k * 7) % 9, n_bld=1 + (k * 5) % 6)
    ex = solve_exact(cluster)
    a2 = solve_algorithm2(cluster)
    assert ex.feasible == a2.feasible
    if not ex.feasible:
        return
    assert ex.status == "optimal"
    assert ex.info["lower_bound_s"] <= ex.T
    assert ex.T - ex.info["lower_bound_s"] <= 1e-7 * ex.T
    assert ex.T * (1 - 1e-7) <= a2.T <= ex.T * (1 + 1e-3)
    for res in (ex, a2):
        assert _reevaluate(cluster, res).min_slack >= -1e-9


def test_paper_mode_reports_an_empty_q_interval(table2):
    strong_eve = BLDParams(
        data_bits=[2e6], gain_coordinator=[1e-9], gain_eavesdropper=[1e-6], power_w=[1.5]
    )
    res = solve(Cluster(table2.gld, strong_eve, table2.constants), "algorithm2-paper")
    assert res.status == "infeasible" and "eq. (22)" in res.message
    with pytest.raises(ValueError, match="theta1"):
        solve(table2, "algorithm2-paper", theta1=-1.0)
