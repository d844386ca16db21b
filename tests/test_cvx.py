"""The generic cvxpy cross-check (solvers/cvx.py) against the exact solver."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("cvxpy")

from dtfl_env.config import Cluster
from dtfl_env.model.system import evaluate_allocation
from dtfl_env.scenarios import table2_cluster
from solvers import solve
from solvers.cvx import solve_cvxpy
from solvers.exact import solve_exact

RTOL = 1e-4
"""Required agreement with the exact solver (relative); we observe ~1e-8."""
FEAS_TOL = 1e-9

# exact T* (s) on Table II for L = 1, 2, 3, 4 Mbit (docs/MODEL.md, solvers.exact)
TABLE2_T = {1e6: 3.516422, 2e6: 3.531505, 3e6: 4.254236, 4e6: 5.751093}


def _check_feasible(cluster: Cluster, res) -> None:  # type: ignore[no-untyped-def]
    """The returned allocation satisfies every constraint in the system model."""
    assert res.info["min_slack"] >= -FEAS_TOL
    ev = evaluate_allocation(cluster, tg_s=res.tG, y_s=res.y, jam_power_w=res.q)
    assert ev.is_feasible(FEAS_TOL)
    assert ev.latency_s == pytest.approx(res.T, rel=1e-12)


def _perturbed(seed: int) -> Cluster:
    """Table II with its arrays scaled at random; seeds 1, 4 drop a GLD, 2, 5 a BLD."""
    rng = np.random.default_rng(seed)
    base = table2_cluster()
    g, b = base.gld, base.bld
    gld = dataclasses.replace(
        g,
        energy_budget_j=g.energy_budget_j * rng.uniform(0.9, 1.3, len(g)),
        gain_coordinator=g.gain_coordinator * rng.uniform(0.7, 1.3, len(g)),
        gain_eavesdropper=g.gain_eavesdropper * rng.uniform(0.7, 1.3, len(g)),
        max_jam_power_w=g.max_jam_power_w * rng.uniform(0.7, 1.3, len(g)),
    )
    bld = dataclasses.replace(
        b,
        gain_coordinator=b.gain_coordinator * rng.uniform(0.8, 1.2, len(b)),
        gain_eavesdropper=b.gain_eavesdropper * rng.uniform(0.7, 1.3, len(b)),
    )
    if seed % 3 == 1:
        gld = gld.subset(np.delete(np.arange(len(gld)), rng.integers(len(gld))))
    elif seed % 3 == 2:
        bld = bld.subset(np.delete(np.arange(len(bld)), rng.integers(len(bld))))
    constants = base.constants.replace(model_bits=float(rng.choice([1e6, 2e6, 3e6])))
    return Cluster(gld, bld, constants)


def _stressed(energy_scale: float, eve_scale: float) -> Cluster:
    """Table II with smaller budgets and eavesdroppers closer to the BLDs (more jamming)."""
    base = table2_cluster()
    g, b = base.gld, base.bld
    return Cluster(
        dataclasses.replace(g, energy_budget_j=g.energy_budget_j * energy_scale),
        dataclasses.replace(b, gain_eavesdropper=b.gain_eavesdropper * eve_scale),
        base.constants,
    )


def _agree(cluster: Cluster) -> None:
    res = solve_cvxpy(cluster)
    ref = solve_exact(cluster)
    assert res.solver == "cvxpy"
    if ref.status == "infeasible":
        assert res.status == "infeasible", res
        assert res.T == math.inf
        return
    assert res.status == "converged", res
    assert abs(res.T - ref.T) <= RTOL * ref.T, (res.T, ref.T)
    _check_feasible(cluster, res)


# ------------------------------------------------------------------ Table II
def test_table2_matches_exact_and_reference() -> None:
    cluster = table2_cluster()
    res = solve_cvxpy(cluster)
    ref = solve_exact(cluster)
    assert res.status == "converged"
    assert abs(res.T - ref.T) <= RTOL * ref.T
    assert res.T == pytest.approx(3.5315, abs=1e-4)  # docs/MODEL.md reference
    assert res.Q == pytest.approx(6.318e-8, rel=1e-3)
    _check_feasible(cluster, res)
    # the T(Q) curve: sorted Q, U-shaped, infeasible beyond ~8.11e-8 W (docs/MODEL.md)
    q, t = res.info["q_grid"], res.info["t_curve"]
    assert q.shape == t.shape and np.all(np.diff(q) > 0)
    assert np.nanmin(t) <= res.T * (1 + 1e-6)
    assert t[0] > 100.0  # near the lower bound of eq. (22) the sync time explodes
    assert np.all(np.isinf(t[q > 8.2e-8]))
    assert res.iterations == q.size  # one cvxpy solve per sampled Q


@pytest.mark.parametrize("bits", sorted(TABLE2_T))
def test_model_size_sweep(bits: float) -> None:
    cluster = table2_cluster().with_constants(model_bits=bits)
    res = solve_cvxpy(cluster)
    ref = solve_exact(cluster)
    assert abs(res.T - ref.T) <= RTOL * ref.T
    assert res.T == pytest.approx(TABLE2_T[bits], rel=RTOL)
    _check_feasible(cluster, res)


def test_dispatch_and_scs() -> None:
    cluster = table2_cluster()
    res = solve(cluster, "cvxpy", solver="SCS", grid_points=20, refine_iters=20)
    assert res.solver == "cvxpy" and res.info["cvxpy_solver"] == "SCS"
    assert res.T == pytest.approx(solve_exact(cluster).T, rel=RTOL)
    _check_feasible(cluster, res)


# ------------------------------------------------------------------ perturbed clusters
@pytest.mark.parametrize("seed", range(6))
def test_perturbed_agree_with_exact(seed: int) -> None:
    _agree(_perturbed(seed))


@pytest.mark.parametrize(
    ("energy_scale", "eve_scale"), [(0.5, 8.0), (0.6, 10.0), (0.5, 10.0), (0.6, 12.0)]
)
def test_stressed_agree_with_exact(energy_scale: float, eve_scale: float) -> None:
    """Expensive jamming: two feasible (T up to 6.6 s) and two infeasible clusters."""
    _agree(_stressed(energy_scale, eve_scale))


def test_no_bld_and_no_gld() -> None:
    base = table2_cluster()
    no_bld = Cluster(base.gld, base.bld.subset(np.array([], dtype=int)), base.constants)
    _agree(no_bld)
    res = solve_cvxpy(no_bld)
    assert res.Q == 0.0 and res.iterations == 1
    no_gld = Cluster(base.gld.subset(np.array([], dtype=int)), base.bld, base.constants)
    _agree(no_gld)  # infeasible: nobody can jam and R_j = 0 at Q = 0


# ------------------------------------------------------------------ infeasible
def test_infeasible_upload_energy() -> None:
    base = table2_cluster()
    g = base.gld
    cluster = Cluster(
        dataclasses.replace(g, energy_budget_j=np.full(len(g), 1e-3)), base.bld, base.constants
    )
    res = solve_cvxpy(cluster)
    assert res.status == "infeasible" and res.T == math.inf and not res.feasible
    assert res.info["phase1"] and res.info["phase1_min_overrun"] > 1.0
    assert solve_exact(cluster).status == "infeasible"


def test_infeasible_secrecy_bound() -> None:
    """Q_lo >= Q_hi: no reachable jamming makes every secrecy rate positive (eq. (22))."""
    cluster = _stressed(1.0, 100.0)
    res = solve_cvxpy(cluster)
    assert res.status == "infeasible" and res.T == math.inf
    assert "secrecy" in res.message
    assert res.iterations == 0


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"grid_points": 2}, "grid_points"),
        ({"grid_points": 10.5}, "grid_points"),
        ({"refine_iters": -1}, "refine_iters"),
        ({"solver": "NO_SUCH_SOLVER"}, "solver"),
    ],
)
def test_bad_arguments(kwargs: dict, name: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=name):
        solve_cvxpy(table2_cluster(), **kwargs)


def test_bad_cluster() -> None:
    with pytest.raises(ValueError, match="cluster"):
        solve_cvxpy({"gld": {}})  # type: ignore[arg-type]
