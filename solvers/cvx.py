"""A generic cvxpy cross-check of problem P (the paper's Fig. 5 compares Algorithm 2 against
Gurobi/LINGO; we compare against a conic solver driven by cvxpy).

Method: the paper's decomposition, nothing of the exact solver's reformulation. An outer
1-D search over the aggregate jamming Q in (Q_lo, Q_hi] (eq. (22)) fixes the BLD sync time
tB_up(Q) (eq. (23)), hence T_BLD = tB_up + tB_loc (eq. (13)). For that Q the GLD part is the
convex problem P-GLD

    minimize    y + tG
    subject to  K_i y^-2 + E_i^up(tG) + q_i tB_up <= E_max,i   (14a)
                y >= y_min = max_i eta iota D_iG / V_max,i       (14b), eq. (19)
                tG >= tG_min                                     (14c): p_i <= P_max,i
                0 <= q_i <= Q_max,i,  sum_i g_iE q_i = Q         (14d), eq. (20)

with K_i = kappa (eta iota D_iG)^3 (eq. (18)) and
E_i^up(t) = n_C/g_iC t (2^{c/t} - 1) 2^{(i-1) c/t}, c = L/W (eqs. (7)-(8) with the SIC
factor of the docs/MODEL.md erratum). E_i^up is convex but not DCP as written; it has an exact
conic form. With w = 2^{c/t} - 1 >= 0, (1 + w)^{i-1} w = sum_{k=0}^{i-1} C(i-1, k) w^{k+1}, so

    t (2^{c/t} - 1) 2^{(i-1) c/t} = sum_{k=0}^{i-1} C(i-1, k) t w^{k+1}.

Introduce W >= t w through the exponential cone t exp(c ln2 / t) <= W + t, and
S_m >= W^m / t^{m-1} = t w^m (m = 2..M) through the power cones S_m^{1/m} t^{1-1/m} >= W;
S_1 = W. Then E_i^up <= n_C/g_iC sum_k C(i-1, k) S_{k+1}, tight at the optimum. The inner
problem is compiled once per cluster with cvxpy Parameters for Q and tB_up (DPP) and
re-solved for each Q; T(Q) = max(y + tG, tB_up + tB_loc) + T_agg + T_up + T_MC (eq. (11)).

The outer search is a log-spaced grid in Q - Q_lo (Q* sits beside the steep energy limit,
docs/MODEL.md) and a bounded golden-section refinement between the neighbours of the best point.
If no grid point is feasible, a phase-1 problem (the smallest relative energy overrun at Q,
quasi-convex in Q) is minimised by golden section to look for a feasible Q between grid
points before the cluster is declared infeasible. P-GLD keeps a 1e-8 relative energy margin
so that the solver's points, feasible to its tolerance, are feasible for the true budgets.

Limitations: a grid method. Clusters closer than ~1e-4 (relative, e.g. in the BLDs'
eavesdropper gains) to the feasibility boundary, whose T runs to hours, are reported
infeasible. Near it, where tG >> L/W, the exponential cone's W + t form loses digits and the
accuracy drops (2e-4 relative at T ~ 170 s, 4e-3 at T ~ 1300 s); at T ~ 5 s it is ~1e-8.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import Counter
from typing import Any

import numpy as np
from scipy.special import comb

from dtfl_env.config import Cluster
from dtfl_env.model.system import (
    LN2,
    bld_twin_latency_s,
    evaluate_allocation,
    jamming_lower_bound_w,
    jamming_upper_bound_w,
    min_upload_time_s,
    sync_time_s,
)
from solvers._core import finalize
from solvers.result import SolverResult

__all__ = ["solve_cvxpy"]

_GOLD = (math.sqrt(5.0) - 1.0) / 2.0
_NAME = "cvxpy"
_OK = ("optimal", "optimal_inaccurate")
_REL_GRID_START = 1e-6
"""Smallest grid point of Q - Q_lo relative to the span Q_hi - Q_lo when Q_lo >= 0."""
_FEAS_TOL = 1e-9
"""Relative constraint slack the returned allocation must meet (finalize's min_slack)."""
_NUDGE_MARGIN = 1e-12
"""Relative energy margin left when y is nudged up to absorb solver tolerance."""
_INNER_MARGIN = 1e-8
"""Relative energy margin kept inside P-GLD, so that the solver's points (feasible to its
tolerance) are feasible for the true budgets; costs ~1e-8 relative in T."""
_PHASE1_CAP = 1e3
"""Upper bound on y / tau and tG / tau in the phase-1 problem (an attained minimum)."""
_PHASE1_TOL = 1e-7
"""Phase-1 overrun below which a Q is tried in P-GLD proper."""


#: what a missing cvxpy says (tests/test_cvx_missing.py)
MISSING_CVXPY = (
    "the cvxpy solver (solve_cvxpy, --solver cvxpy) needs cvxpy, an optional dependency: "
    "pip install 'dtfl-gym[cvx]'"
)


def _import_cvxpy() -> Any:
    try:
        import cvxpy as cp
    except ImportError as exc:
        raise ImportError(MISSING_CVXPY) from exc
    return cp


def _pick_solver(cp: Any, solver: str | None) -> str:
    installed = set(cp.installed_solvers())
    if solver is None:
        for name in ("CLARABEL", "SCS"):
            if name in installed:
                return name
        raise ValueError(
            "solver: neither CLARABEL nor SCS is installed (exp and power cones are needed)"
        )
    name = str(solver).upper()
    if name not in installed:
        raise ValueError(
            f"solver: {solver!r} is not installed (installed: {', '.join(sorted(installed))})"
        )
    return name


def _solver_options(name: str) -> dict[str, Any]:
    if name == "CLARABEL":
        # 1e-9: tighter tolerances make Clarabel stall at "almost solved" near the kinks
        return {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9, "max_iter": 200}
    if name == "SCS":
        return {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000}
    return {}


class _GLDProblem:
    """The inner problem P-GLD of one cluster, compiled once with Q and tB_up as Parameters.

    Variables are scaled to O(1): times by ``tau`` (s), jamming powers by Q_max,i, energy
    constraints by E_max,i, the jamming equality by Q_hi. ``phase1`` shares the variables
    and parameters and minimises the relative energy overrun sigma instead.
    """

    def __init__(self, cp: Any, cluster: Cluster, solver: str) -> None:
        k = cluster.constants
        g = cluster.gld
        m = cluster.n_gld
        self.cp = cp
        self.solver = solver
        self.options = _solver_options(solver)
        ipb = k.cycles_per_round_bit
        self.y_min = float(np.max(ipb * g.data_bits / g.max_cpu_hz))  # eq. (19), (14b)
        self.tg_min = float(min_upload_time_s(cluster))  # (14c)
        self.tau = max(self.y_min, self.tg_min, 1e-12)  # time unit of the scaled variables
        tau = self.tau
        self.q_max = np.asarray(g.max_jam_power_w, dtype=float)
        self.q_hi = float(jamming_upper_bound_w(cluster))
        c_s = k.model_bits / k.bandwidth_hz  # c = L / W (s)
        k_loc = k.switched_capacitance * (ipb * g.data_bits) ** 3  # K_i, eq. (18)
        e_max = np.asarray(g.energy_budget_j, dtype=float)
        n_over_g = k.noise_coordinator_w / g.gain_coordinator

        self.y = cp.Variable(nonneg=True, name="y")  # y / tau
        self.t = cp.Variable(nonneg=True, name="tG")  # tG / tau
        self.w = cp.Variable(nonneg=True, name="W")  # >= (tG/tau) (2^{c/tG} - 1)
        self.x = cp.Variable(m, nonneg=True, name="q")  # q_i / Q_max,i
        self.q_param = cp.Parameter(nonneg=True, name="Q")  # Q / Q_hi
        self.tb_param = cp.Parameter(nonneg=True, name="tB_up")  # tB_up (s)

        cons = [
            self.y >= self.y_min / tau,  # (14b)
            self.t >= self.tg_min / tau,  # (14c)
            self.x <= 1.0,  # (14d)
            # t exp(c ln2 / t) <= W + t  <=>  W >= t (2^{c/t} - 1), in units of tau
            cp.constraints.ExpCone(cp.Constant(c_s * LN2 / tau), self.t, self.w + self.t),
            # sum_i g_iE q_i = Q, eq. (20), scaled by Q_hi
            (g.gain_eavesdropper * self.q_max / self.q_hi) @ self.x == self.q_param,
        ]
        powers = [self.w]  # S_1 = W
        if m >= 2:
            s = cp.Variable(m - 1, nonneg=True, name="S")  # S_m >= W^m / t^{m-1}, m = 2..M
            alpha = 1.0 / np.arange(2, m + 1, dtype=float)
            ones = np.ones(m - 1)
            cons.append(cp.constraints.PowCone3D(s, ones * self.t, ones * self.w, alpha))
            powers.append(s)
        s_all = cp.hstack(powers)
        # binom[i-1, k] = C(i-1, k): E_i^up <= n_C/g_iC tau sum_k C(i-1, k) S_{k+1}, eq. (8)
        idx = np.arange(m)
        binom = comb(idx[:, None], idx[None, :])
        e_up = (binom * (n_over_g * tau / e_max)[:, None]) @ s_all
        e_loc = (k_loc / (tau**2 * e_max)) * cp.power(self.y, -2)  # eq. (18): K_i / y^2
        e_jam = cp.multiply(self.q_max / e_max, self.x) * self.tb_param  # eq. (10): q_i tB_up
        energy = e_loc + e_up + e_jam  # (E_loc + E_up + E_jam) / E_max,i
        budget = 1.0 - _INNER_MARGIN
        self.problem = cp.Problem(cp.Minimize(self.y + self.t), [*cons, energy <= budget])  # (14a)
        # phase 1: the smallest relative energy overrun sigma at this Q (0 where feasible);
        # y and tG are capped so that an infeasible Q has an attained minimum
        self.sigma = cp.Variable(nonneg=True, name="sigma")
        self.phase1 = cp.Problem(
            cp.Minimize(self.sigma),
            [*cons, energy <= 1.0 + self.sigma, self.y <= _PHASE1_CAP, self.t <= _PHASE1_CAP],
        )
        if not (self.problem.is_dpp() and self.phase1.is_dpp()):  # pragma: no cover
            raise RuntimeError("the inner problem is not DPP")
        self.solves = 0
        self.solve_time_s = 0.0
        self.statuses: Counter[str] = Counter()

    def _run(self, problem: Any, q_w: float, tb_s: float) -> bool:
        self.q_param.value = max(q_w, 0.0) / self.q_hi
        self.tb_param.value = tb_s
        t0 = time.perf_counter()
        self.solves += 1
        try:
            with warnings.catch_warnings():  # "inaccurate" statuses are counted in info
                warnings.simplefilter("ignore", UserWarning)
                problem.solve(solver=self.solver, **self.options)
        except self.cp.error.SolverError:
            self.statuses["solver_error"] += 1
            return False
        finally:
            self.solve_time_s += time.perf_counter() - t0
        self.statuses[str(problem.status)] += 1
        return problem.status in _OK and self.y.value is not None

    def solve(self, q_w: float, tb_s: float) -> tuple[float, float, float, np.ndarray] | None:
        """min y + tG at aggregate jamming ``q_w`` and sync time ``tb_s``.

        Returns ``(y + tG, y, tG, q)`` in SI units, or ``None`` when infeasible.
        """
        if not self._run(self.problem, q_w, tb_s):
            return None
        y = float(self.y.value) * self.tau
        tg = float(self.t.value) * self.tau
        q = np.asarray(self.x.value, dtype=float) * self.q_max
        return y + tg, y, tg, q

    def overrun(self, q_w: float, tb_s: float) -> float:
        """Phase 1: min_i-max relative energy overrun sigma at ``q_w`` (0 if feasible)."""
        if not self._run(self.phase1, q_w, tb_s) or self.sigma.value is None:
            return math.inf
        return max(float(self.sigma.value), 0.0)


def _golden(key: Any, lo: float, hi: float, iters: int, stop: Any = None) -> None:
    """Golden-section search of a unimodal ``key`` on [lo, hi], ``iters`` evaluations.

    ``stop()`` (optional) ends the search early when it returns True.
    """
    if iters <= 0 or hi <= lo:
        return
    c, d = hi - _GOLD * (hi - lo), lo + _GOLD * (hi - lo)
    fc = key(c)
    if iters == 1 or (stop and stop()):
        return
    fd = key(d)
    for _ in range(iters - 2):
        if stop and stop():
            return
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - _GOLD * (hi - lo)
            fc = key(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + _GOLD * (hi - lo)
            fd = key(d)


def _repair(
    cluster: Cluster, y: float, tg: float, q: np.ndarray, y_min: float, tg_min: float
) -> tuple[float, float, np.ndarray, float]:
    """Map a solver point onto a feasible allocation: clip q into [0, Q_max], y >= y_min,
    tG >= tG_min, then raise y just enough that every energy budget (14a) holds.

    Returns ``(y, tG, q, nudge)`` with ``nudge`` the increase of y (s) beyond the clipping.
    """
    g = cluster.gld
    q = np.clip(q, 0.0, g.max_jam_power_w)
    y0 = max(y, y_min)
    tg = max(tg, tg_min)
    ev = evaluate_allocation(cluster, tg_s=tg, y_s=y0, jam_power_w=q)
    excess = ev.energy_total_j - g.energy_budget_j * (1.0 - _NUDGE_MARGIN)
    k = cluster.constants
    k_loc = k.switched_capacitance * (k.cycles_per_round_bit * g.data_bits) ** 3
    y_new = y0
    if np.any(excess > 0):
        left = k_loc / y0**2 - np.where(excess > 0, excess, 0.0)  # K_i / y'^2 allowed
        if np.any(left <= 0):
            return y0, tg, q, math.inf  # compute energy cannot absorb the violation
        y_new = max(y0, float(np.max(np.sqrt(k_loc / left))))
    return y_new, tg, q, y_new - y0


def solve_cvxpy(
    cluster: Cluster, *, grid_points: int = 40, refine_iters: int = 30, solver: str | None = None
) -> SolverResult:
    """Solve problem P on ``cluster`` with an outer search in Q and cvxpy for P-GLD.

    Parameters
    ----------
    cluster : Cluster
        The cluster instance.
    grid_points : int, default 40
        Points of the log-spaced grid in Q - Q_lo (at least 3).
    refine_iters : int, default 30
        Golden-section steps between the neighbours of the best grid point (>= 0).
    solver : str, optional
        cvxpy solver name; it must support exponential and power cones. Default CLARABEL,
        or SCS when Clarabel is not installed.

    Returns
    -------
    SolverResult
        Status ``converged`` with the best allocation found (re-evaluated in the system
        model by :func:`solvers._core.finalize`; feasible to 1e-9 relative), ``infeasible``
        (``T = inf``) when no sampled Q admits a feasible P-GLD, or ``not_converged``
        (``T = inf``) when the solver's best points cannot be made feasible. ``iterations``
        counts cvxpy solves (P-GLD and phase 1). ``info`` holds the sampled curve
        (``q_grid``, ``t_curve``; ``inf`` where infeasible), ``y_nudge_s`` (the increase of
        y applied to absorb solver tolerance), ``phase1`` (whether the phase-1 search ran)
        and ``phase1_min_overrun``, ``cvxpy_statuses`` (a count per solver status), the
        solver name and timings.

    Raises
    ------
    ImportError
        Without cvxpy (an optional dependency), saying ``pip install 'dtfl-gym[cvx]'``.
    """
    if not isinstance(cluster, Cluster):
        raise ValueError("cluster: expected a dtfl_env.Cluster")
    if (
        isinstance(grid_points, bool)
        or not isinstance(grid_points, (int, np.integer))
        or grid_points < 3
    ):
        raise ValueError(f"grid_points: must be an integer >= 3, got {grid_points!r}")
    if (
        isinstance(refine_iters, bool)
        or not isinstance(refine_iters, (int, np.integer))
        or refine_iters < 0
    ):
        raise ValueError(f"refine_iters: must be an integer >= 0, got {refine_iters!r}")
    t0 = time.perf_counter()
    cp = _import_cvxpy()
    solver_name = _pick_solver(cp, solver)
    m = cluster.n_gld
    fixed = cluster.constants.fixed_latency_s
    tb_loc = bld_twin_latency_s(cluster)  # eq. (6)

    if m == 0:  # no jamming possible: Q = 0
        tb0 = float(sync_time_s(cluster, 0.0))
        if not math.isfinite(tb0):
            return SolverResult.infeasible(
                0, "no GLD can jam and some BLD has R_j = 0 at Q = 0 (eq. (22))", solver=_NAME
            )
        return finalize(
            cluster,
            y=0.0,
            tg=0.0,
            q=np.zeros(0),
            status="converged",
            message="no GLDs: T = tB_up(0) + tB_loc",
            solver=_NAME,
            iterations=0,
            t0=t0,
            info={"cvxpy_solver": solver_name},
        )

    q_lo = jamming_lower_bound_w(cluster)  # eq. (22)
    q_hi = jamming_upper_bound_w(cluster)
    if cluster.n_bld and q_lo >= q_hi:
        return SolverResult.infeasible(
            m,
            f"even full jamming (sum Q_max g_iE = {q_hi:.4g} W) does not make every "
            f"secrecy rate positive (needs Q > {q_lo:.4g} W, eq. (22))",
            solver=_NAME,
            wall_time_s=time.perf_counter() - t0,
        )

    t_build = time.perf_counter()
    inner = _GLDProblem(cp, cluster, solver_name)
    build_s = time.perf_counter() - t_build
    samples: dict[float, tuple[float, float, float, np.ndarray | None]] = {}

    def curve(s: float) -> float:
        """T at Q = Q_lo + exp(s) (eq. (11)); ``inf`` where infeasible."""
        q_w = min(q_lo + math.exp(s), q_hi) if cluster.n_bld else 0.0
        q_w = max(q_w, 0.0)
        if q_w in samples:
            return samples[q_w][0]
        tb = float(sync_time_s(cluster, q_w))  # eq. (23)
        val: tuple[float, float, float, np.ndarray | None] = (math.inf, math.nan, math.nan, None)
        if math.isfinite(tb):
            res = inner.solve(q_w, tb)
            if res is not None:
                v, y, tg, q = res
                if q_w == 0.0:
                    q = np.zeros(m)  # sum g_iE q_i = 0 with q >= 0: exactly zero
                t_bld = tb + tb_loc if cluster.n_bld else 0.0  # eq. (13)
                val = (max(v, t_bld) + fixed, y, tg, q)  # eq. (11)
        samples[q_w] = val
        return val[0]

    probed: list[float] = []  # every s = ln(Q - Q_lo) tried, by either search
    overruns: dict[float, float] = {}
    phase1_used = False

    def overrun(s: float) -> float:
        """Phase-1 relative energy overrun at Q = Q_lo + exp(s); then T if it is ~0."""
        q_w = max(min(q_lo + math.exp(s), q_hi), 0.0)
        if q_w not in overruns:
            probed.append(s)
            tb = float(sync_time_s(cluster, q_w))  # eq. (23)
            overruns[q_w] = inner.overrun(q_w, tb) if math.isfinite(tb) else math.inf
            if overruns[q_w] <= _PHASE1_TOL:
                curve(s)
        return overruns[q_w]

    def feasible_found() -> bool:
        return any(math.isfinite(v[0]) for v in samples.values())

    if cluster.n_bld == 0:  # no secrecy to buy: tB_up = 0 and Q = 0 is optimal
        curve(0.0)
    else:
        d_hi = q_hi - q_lo
        d_lo = -q_lo if q_lo < 0 else d_hi * _REL_GRID_START  # start at Q = 0 if allowed
        grid = np.linspace(math.log(d_lo), math.log(d_hi), int(grid_points))
        vals = np.array([curve(float(s)) for s in grid])
        probed.extend(float(s) for s in grid)
        k = int(np.argmin(vals))
        if not np.isfinite(vals[k]) and refine_iters > 0:
            # no grid point is feasible: the feasible Q (an interval, if any) may sit between
            # two grid points. Minimise the phase-1 overrun (unimodal in Q) until it hits 0.
            phase1_used = True
            ovr = np.array([overrun(float(s)) for s in grid])
            k = int(np.argmin(ovr))
            _golden(
                overrun,
                float(grid[max(k - 1, 0)]),
                float(grid[min(k + 1, grid.size - 1)]),
                2 * int(refine_iters),
                stop=feasible_found,
            )
        if feasible_found() and refine_iters > 0:
            s_of = {max(min(q_lo + math.exp(x), q_hi), 0.0): x for x in probed}
            q_best = min(samples, key=lambda q: samples[q][0])
            s_best = s_of.get(q_best, math.log(max(q_best - q_lo, d_lo)))
            ss = np.array(sorted(set(probed)))
            lower, upper = ss[ss < s_best], ss[ss > s_best]
            lo = float(lower[-1]) if lower.size else s_best
            hi = float(upper[0]) if upper.size else s_best

            def key(s: float) -> tuple[float, float]:
                # infeasible points sort by distance to the best sample: the feasible Q form
                # an interval around it, so golden section moves towards it
                probed.append(s)
                f = curve(s)
                return (f, abs(s - s_best) if math.isinf(f) else 0.0)

            _golden(key, lo, hi, int(refine_iters))

    q_grid = np.array(sorted(samples))
    t_curve = np.array([samples[q][0] for q in q_grid])
    info: dict[str, Any] = {
        "q_grid": q_grid,
        "t_curve": t_curve,
        "cvxpy_solver": solver_name,
        "build_time_s": build_s,
        "solve_time_s": inner.solve_time_s,
        "q_lower_w": q_lo,
        "q_upper_w": q_hi,
        "cvxpy_statuses": dict(inner.statuses),
        "phase1": phase1_used,
    }
    if phase1_used:
        info["phase1_min_overrun"] = min(overruns.values())
    order = np.argsort(t_curve, kind="stable")
    if not np.isfinite(t_curve[order[0]]):
        extra = (
            f"; the smallest energy overrun over Q is {info['phase1_min_overrun']:.3g} of E_max"
            if phase1_used
            else ""
        )
        return SolverResult.infeasible(
            m,
            f"no sampled Q in ({q_lo:.4g}, {q_hi:.4g}] W admits a feasible (y, tG, q): the "
            f"energy budgets cannot cover compute, upload and jamming together{extra}",
            solver=_NAME,
            iterations=inner.solves,
            wall_time_s=time.perf_counter() - t0,
            info=info,
        )
    if cluster.n_bld == 0:
        message = f"no BLDs: Q = 0 and tB_up = 0; P-GLD solved once by {solver_name}"
    else:
        message = (
            f"log grid of {grid_points} points in Q - Q_lo"
            f"{', phase-1 search for a feasible Q' if phase1_used else ''}, "
            f"{refine_iters} golden-section steps; P-GLD by {solver_name}"
        )
    # the best sample whose allocation is feasible to _FEAS_TOL after clipping and nudging
    for j in order[: min(5, order.size)]:
        t_val, y, tg, q = samples[float(q_grid[j])]
        if not math.isfinite(t_val) or q is None:
            break
        y2, tg2, q2, nudge = _repair(cluster, y, tg, q, inner.y_min, inner.tg_min)
        if not math.isfinite(nudge):
            continue
        info.update(
            q_star_sampled_w=float(q_grid[j]), t_star_sampled_s=float(t_val), y_nudge_s=float(nudge)
        )
        res = finalize(
            cluster,
            y=y2,
            tg=tg2,
            q=q2,
            status="converged",
            message=message,
            solver=_NAME,
            iterations=inner.solves,
            t0=t0,
            info=info,
        )
        if res.info["min_slack"] >= -_FEAS_TOL and math.isfinite(res.T):
            return res
    failed = SolverResult.infeasible(
        m,
        "the solver's best points could not be made feasible to 1e-9 (solver tolerance); "
        "try another solver",
        solver=_NAME,
        iterations=inner.solves,
        wall_time_s=time.perf_counter() - t0,
        info=info,
    )
    return dataclasses.replace(failed, status="not_converged")
