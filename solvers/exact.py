"""An exact, certified solver of problem P for one cluster.

Key fact (ours, not stated in the paper): with the BLD sync time u = tB_up as the variable
instead of Q, problem P is jointly convex in (y, tG, u). The jamming needed to sync within u
is Q(u) (eq. (23) inverted in closed form), and the jamming energy the GLDs must deliver,
phi(u) = u max(Q(u), 0), is convex in u (a perspective of a convex function). The feasibility
test of MODEL.md then reads

    s_i(y, tG) = E_max,i - K_i / y^2 - E_i^up(tG) >= 0,
    sum_i g_iE min(Q_max,i u, s_i(y, tG)) >= phi(u),

a concave function >= a convex one: a convex set. So V(u) = min{y + tG} is convex in u and
T(u) = max(V(u), u + tB_loc) + const is convex: a 1-D convex search finds the global
optimum, and convexity gives a lower bound from the samples (secant lines), which
certifies T* to ``rtol``. Each V(u) is itself a 1-D convex search over tG with the
smallest feasible y in closed form.
"""

from __future__ import annotations

import math
import time

import numpy as np

from dtfl_env.config import Cluster
from solvers._core import Prepared, finalize
from solvers.result import SolverResult

__all__ = ["solve_exact"]


def _lower_bound(x: np.ndarray, f: np.ndarray, k: int) -> float:
    """Convexity lower bound of min f on the two intervals beside the sampled minimum ``k``."""

    def line(i: int, j: int) -> tuple[float, float] | None:
        if (i < 0 or j >= x.size or x[j] - x[i] <= 1e-12 * max(abs(x[i]), abs(x[j]))
                or not (np.isfinite(f[i]) and np.isfinite(f[j]))):
            return None
        s = (f[j] - f[i]) / (x[j] - x[i])
        return s, f[i] - s * x[i]

    def interval_lb(a: int, b: int) -> float:
        if a < 0 or b >= x.size:
            return f[k]
        left = line(a - 1, a)  # valid to the right of x[a]
        right = line(b, b + 1)  # valid to the left of x[b]
        cands = [x[a], x[b]]
        if left and right and left[0] != right[0]:
            xi = (right[1] - left[1]) / (left[0] - right[0])
            if x[a] < xi < x[b]:
                cands.append(xi)

        def bound(z: float) -> float:
            vals = [ln[0] * z + ln[1] for ln in (left, right) if ln]
            return max(vals) if vals else -math.inf

        return min(bound(z) for z in cands)

    return float(min(f[k], interval_lb(k - 1, k), interval_lb(k, k + 1)))


def solve_exact(cluster: Cluster, *, rtol: float = 1e-7, max_rounds: int = 80,
                points: int = 31) -> SolverResult:
    """Solve problem P exactly on ``cluster``; certify T* to ``rtol`` relative.

    Returns a :class:`SolverResult` with status ``optimal`` (certified: the convexity lower
    bound is within ``rtol`` of T), ``converged`` (the search interval collapsed to machine
    precision first) or ``infeasible`` (with the reason).
    """
    if not isinstance(cluster, Cluster):
        raise ValueError("cluster: expected a dtfl_env.Cluster")
    if not (0 < rtol < 1):
        raise ValueError(f"rtol: must be in (0, 1), got {rtol}")
    t0 = time.perf_counter()
    p = Prepared(cluster)
    m = p.m
    name = "exact"

    def infeasible(msg: str, nit: int = 0) -> SolverResult:
        return SolverResult.infeasible(m, msg, solver=name, iterations=nit,
                                       wall_time_s=time.perf_counter() - t0)

    reason, u_feas, u_hi = p.feasibility()
    if reason:
        return infeasible(reason)
    if m == 0:
        return finalize(cluster, y=0.0, tg=0.0, q=np.zeros(0), status="optimal",
                        message="no GLDs: T = tB_up(0) + tB_loc", solver=name, iterations=0,
                        t0=t0)
    if p.n == 0:
        v, y, tg = p.gld_time(np.zeros(1), np.zeros(1))
        if not np.isfinite(v[0]):
            return infeasible("no feasible (y, tG) within the energy budgets")
        return finalize(cluster, y=float(y[0]), tg=float(tg[0]), q=np.zeros(m),
                        status="optimal", message="no BLDs: Q = 0, 1-D convex search in tG",
                        solver=name, iterations=1, t0=t0)
    nit = 0

    def total(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dem = p.jam_demand(p.min_jamming(u), u)
        v, y, tg = p.gld_time(dem, u)
        return np.maximum(v, u + p.tb_loc), y, tg

    span = u_hi - p.u_lo
    xs = np.concatenate([p.u_lo + span * np.geomspace(1e-10, 1.0, 40)[:-1], [u_hi, u_feas]])
    xs = np.unique(xs)
    fs, ys, tgs = total(xs)
    nit += 1
    status, msg = "not_converged", f"no certificate after {max_rounds} rounds"
    for _ in range(max_rounds):
        finite = np.isfinite(fs)
        if not finite.any():
            break
        k = int(np.argmin(fs))
        lb = _lower_bound(xs, fs, k)
        if fs[k] - lb <= rtol * fs[k]:
            status = "optimal"
            msg = (f"certified to rtol={rtol:g}: T - lower bound = {fs[k] - lb:.3g} s "
                   "(convexity in tB_up)")
            break
        lo_x = xs[max(k - 1, 0)]
        hi_x = xs[min(k + 1, xs.size - 1)]
        if hi_x - lo_x <= 4 * np.finfo(float).eps * max(abs(xs[k]), 1.0):
            status, msg = "converged", "search interval collapsed to machine precision"
            break
        new = np.linspace(lo_x, hi_x, points + 2)[1:-1]
        # skip points that duplicate a sample (to 1e-13): a secant through two such points
        # has a slope of pure rounding noise and would corrupt the lower bound
        pos = np.clip(np.searchsorted(xs, new), 1, xs.size - 1)
        gap = np.minimum(np.abs(new - xs[pos - 1]), np.abs(new - xs[pos]))
        new = new[gap > 1e-13 * np.abs(new)]
        if new.size == 0:
            status, msg = "converged", "search interval collapsed to machine precision"
            break
        fn, yn, tn = total(new)
        nit += 1
        xs = np.concatenate([xs, new])
        fs = np.concatenate([fs, fn])
        ys = np.concatenate([ys, yn])
        tgs = np.concatenate([tgs, tn])
        order = np.argsort(xs, kind="stable")
        xs, fs, ys, tgs = xs[order], fs[order], ys[order], tgs[order]
    if not np.isfinite(fs).any():
        return infeasible("no sync time tB_up admits a feasible (y, tG, q): the energy budgets "
                          "cannot cover compute, upload and jamming together", nit)
    k = int(np.argmin(fs))
    u_star, y_star, tg_star = float(xs[k]), float(ys[k]), float(tgs[k])
    q_req = float(p.min_jamming(np.array(u_star)))
    q = p.jam_split(y_star, tg_star, q_req, u_star)
    return finalize(cluster, y=y_star, tg=tg_star, q=q, status=status, message=msg,
                    solver=name, iterations=nit, t0=t0,
                    info={"lower_bound_s": float(_lower_bound(xs, fs, k) + p.fixed_s),
                          "samples": int(xs.size)})
