"""An exact, certified solver of problem P for one cluster.

Key fact (ours, not stated in the paper): with the BLD sync time u = tB_up as the variable
instead of Q, problem P is jointly convex in (y, tG, u). The jamming needed to sync within u
is Q(u) (eq. (23) inverted in closed form), and the jamming energy the GLDs must deliver,
phi(u) = u max(Q(u), 0), is convex in u (a perspective of a convex function). The feasibility
test of docs/MODEL.md then reads

    s_i(y, tG) = E_max,i - K_i / y^2 - E_i^up(tG) >= 0,
    sum_i g_iE min(Q_max,i u, s_i(y, tG)) >= phi(u),

a concave function >= a convex one: a convex set. So V(u) = min{y + tG} is convex in u and
T(u) = max(V(u), u + tB_loc) + const is convex: a 1-D convex search finds the global
optimum, and convexity gives a lower bound from the samples (secant lines), which
certifies T* to ``rtol``. Each V(u) is itself a 1-D convex search over tG with the
smallest feasible y in closed form (:meth:`solvers._core.Prepared.gld_time_bounds`,
certified to 1e-13).

The search over u runs on [u_left, u_hi]: below u_left no (y, tG) is feasible (the closed-
form surplus of docs/MODEL.md's test, with y, tG unbounded, is <= 0 there: too little jamming
power or energy; :meth:`~solvers._core.Prepared.domain_left`), above u_hi nothing better
exists (:meth:`~solvers._core.Prepared.feasibility`). A log grid in u - u_left starts it;
each further round samples the bracket around the best point uniformly and, densely, around
model predictions of the optimum (the crossing V(u) = u + tB_loc by the secant and inverse
quadratic interpolation, the vertex of a parabola through V), so that a kinked optimum is
bracketed closely on both sides within a few rounds. New samples start their tG search
from the optimal tG of their neighbours. The inner searches return V bracketed (upper and
lower bounds); the certificate uses both, so rows that cannot hold the optimum are left
unconverged, and they stop as soon as the samples certify T*.
"""

from __future__ import annotations

import math
import time

import numpy as np

from dtfl_env.config import Cluster
from solvers._core import Prepared, crossing_roots, finalize, parabola_vertex
from solvers.result import SolverResult

__all__ = ["convexity_lower_bound", "solve_exact"]

_GUESS = np.array([-0.1, -1e-2, -1e-3, 1e-3, 1e-2, 0.1])
"""Relative offsets of the starting points of a tG search from the interpolated optimum."""
_LADDER = np.array([3e-2, 1e-2, 3e-3, 1e-3, 1e-4, 1e-5, 1e-6])
"""Offsets (relative to the bracket width) of the samples placed on either side of each
predicted optimum."""


def convexity_lower_bound(
    x: np.ndarray,
    f_lo: np.ndarray,
    f_hi: np.ndarray,
    k: int,
    x_left: float,
    x_right: float,
    c: float,
) -> float:
    """Convexity lower bound of min f over [x_left, x_right] from bracketed samples.

    f (here max(V(u), u + c)) is convex, f(u) >= u + c, and f_lo <= f(x) <= f_hi at the
    (sorted) samples; ``k`` is the incumbent. A secant through a sample a and a partner i
    bounds f from below beyond a (away from i): with the lower value at a and the upper one
    at i it stays a valid bound. Left of x[k-1] (right of x[k+1]) the secants through k-1
    (k+1) and the samples on the other side bound f: the flattest is used, which is robust
    to the width of the brackets. On the two intervals beside x[k] the larger of the
    secants through the nearest samples on either side does. Partners closer than 1e-12
    (relative) are skipped: their secants are rounding noise.
    """
    # the nearest partners are searched in a window around k (wide enough in practice;
    # beyond it a secant only gets looser, so cutting the search there stays valid)
    w0 = max(k - 16, 0)
    sl = slice(w0, k + 17)
    n = x.size
    xs, fl, fh = x[sl].tolist(), f_lo[sl].tolist(), f_hi[sl].tolist()
    fin = [a < math.inf and b < math.inf for a, b in zip(fl, fh, strict=True)]
    m = len(xs)
    k0, k = k, k - w0
    floor = (1.0, c)  # f(u) >= u + c everywhere

    def rightward(a: int) -> tuple[float, float] | None:  # valid for z >= x[a]
        if fin[a]:
            for i in range(a - 1, -1, -1):
                if fin[i] and xs[a] - xs[i] > 1e-12 * abs(xs[a]):
                    s = (fl[a] - fh[i]) / (xs[a] - xs[i])
                    return s, fl[a] - s * xs[a]
        return None

    def leftward(b: int) -> tuple[float, float] | None:  # valid for z <= x[b]
        if fin[b]:
            for j in range(b + 1, m):
                if fin[j] and xs[j] - xs[b] > 1e-12 * abs(xs[j]):
                    s = (fh[j] - fl[b]) / (xs[j] - xs[b])
                    return s, fl[b] - s * xs[b]
        return None

    def beyond(a: int, right: bool) -> tuple[float, float] | None:
        """The flattest of a few secants through a and samples on the other side."""
        if not fin[a]:
            return None
        a0 = a + w0
        xa, fa = xs[a], fl[a]
        best = None
        cands = (
            (a0 - 1, a0 - 4, a0 - 16, a0 - 64, 0)
            if right
            else (a0 + 1, a0 + 4, a0 + 16, a0 + 64, n - 1)
        )
        for i in cands:
            if not 0 <= i < n or i == a0:
                continue
            xi, fi = float(x[i]), float(f_hi[i])
            if fi < math.inf and abs(xa - xi) > 1e-12 * abs(xa):
                s = (fa - fi) / (xa - xi)
                if best is None or (s > best if right else s < best):
                    best = s
        return None if best is None else (best, fa - best * xa)

    def lowest(lines: list[tuple[float, float] | None], z0: float, z1: float) -> float:
        """min over [z0, z1] of the max of the lines and u + c (-inf without a line)."""
        ls = [ln for ln in lines if ln is not None]
        if not ls:
            return -math.inf
        ls.append(floor)
        cands = [z0, z1]
        for i, (s1, c1) in enumerate(ls):
            for s2, c2 in ls[i + 1 :]:
                if s1 != s2:
                    xi = (c2 - c1) / (s1 - s2)
                    if z0 < xi < z1:
                        cands.append(xi)
        return min(max(s * z + cc for s, cc in ls) for z in cands)

    out = [fl[k]]
    # left of x[k]
    if k > 0:
        if fl[k - 1] < math.inf:
            out.append(lowest([beyond(k - 1, False)], x_left, xs[k - 1]))
            out.append(lowest([rightward(k - 1), leftward(k)], xs[k - 1], xs[k]))
        else:  # infeasible at x[k-1]: so is everything left of it (the domain is an interval)
            out.append(lowest([leftward(k)], xs[k - 1], xs[k]))
    elif x_left < xs[0]:
        out.append(lowest([beyond(0, False)], x_left, xs[0]))
    # right of x[k]
    if k0 < n - 1:
        if fl[k + 1] < math.inf:
            out.append(lowest([beyond(k + 1, True)], xs[k + 1], max(x_right, xs[k + 1])))
            out.append(lowest([rightward(k), leftward(k + 1)], xs[k], xs[k + 1]))
        else:
            out.append(lowest([rightward(k)], xs[k], xs[k + 1]))
    elif x_right > xs[k]:
        out.append(lowest([beyond(k, True)], xs[k], x_right))
    return float(min(out))


def _predictions(xs: np.ndarray, vs: np.ndarray, fs: np.ndarray, k: int, c: float) -> list[float]:
    """Model predictions of the minimiser of T(u) = max(V(u), u + c) near sample ``k``."""
    n = xs.size
    lo, hi = max(k - 3, 0), min(k + 4, n)
    g = vs[lo:hi] - (xs[lo:hi] + c)  # V - (u + c): decreasing through 0 at a crossing
    u = xs[lo:hi]
    fin = np.isfinite(g)
    with np.errstate(all="ignore"):
        # secant root, then inverse quadratic interpolation with a third point
        out = crossing_roots(u, g, fin)
        if 0 < k < n - 1 and np.all(np.isfinite(vs[k - 1 : k + 2])):
            # vertex of the parabola through V at k-1, k, k+1
            r, curv = parabola_vertex(*xs[k - 1 : k + 2], *vs[k - 1 : k + 2])
            if curv > 0:
                out.append(float(r))
    return [float(r) for r in out if math.isfinite(r)]


def solve_exact(
    cluster: Cluster, *, rtol: float = 1e-7, max_rounds: int = 80, points: int = 15
) -> SolverResult:
    """Solve problem P exactly on ``cluster``; certify T* to ``rtol`` relative.

    Returns a :class:`SolverResult` with status ``optimal`` (certified: the convexity lower
    bound is within ``rtol`` of T), ``converged`` (the search interval collapsed to machine
    precision first) or ``infeasible`` (with the reason). ``points`` is the number of
    uniform samples per refinement round (besides those placed around predictions).
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
        return SolverResult.infeasible(
            m, msg, solver=name, iterations=nit, wall_time_s=time.perf_counter() - t0
        )

    reason, u_feas, u_hi = p.feasibility()
    if reason:
        return infeasible(reason)
    if m == 0:
        return finalize(
            cluster,
            y=0.0,
            tg=0.0,
            q=np.zeros(0),
            status="optimal",
            message="no GLDs: T = tB_up(0) + tB_loc",
            solver=name,
            iterations=0,
            t0=t0,
        )
    if p.n == 0:
        v, y, tg = p.gld_time(np.zeros(1), np.zeros(1))
        if not np.isfinite(v[0]):
            return infeasible("no feasible (y, tG) within the energy budgets")
        return finalize(
            cluster,
            y=float(y[0]),
            tg=float(tg[0]),
            q=np.zeros(m),
            status="optimal",
            message="no BLDs: Q = 0, 1-D convex search in tG",
            solver=name,
            iterations=1,
            t0=t0,
        )
    nit = 0
    c = p.tb_loc

    def total(
        u: np.ndarray,
        guess: np.ndarray | None,
        x_old: np.ndarray,
        fh_old: np.ndarray,
        fl_old: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """T(u) - const bracketed: (upper, lower), and V(u), y, tG at the upper.

        The inner searches stop early once the samples so far (``x_old``...) and these
        certify the optimum: rows away from it need not converge.
        """
        dem = p.jam_demand(p.min_jamming(u), u)
        floor = u + c
        order = np.argsort(np.concatenate([x_old, u]), kind="stable")
        x_all = np.concatenate([x_old, u])[order]

        state = {"checked": False}

        def certified(v: np.ndarray, v_lo: np.ndarray) -> bool:
            fh = np.concatenate([fh_old, np.maximum(v, floor)])[order]
            k = int(np.argmin(fh))
            if not fh[k] < np.inf:
                return False
            if not state["checked"]:
                # too coarse samples for a certificate even with exact values: no need to
                # check again this round
                state["checked"] = True
                bound = convexity_lower_bound(x_all, fh, fh, k, u_left, u_hi, c)
                if fh[k] - bound > 2 * rtol * fh[k]:
                    state["hopeless"] = True
            if state.get("hopeless"):
                return False
            fl = np.concatenate([fl_old, np.maximum(v_lo, floor)])[order]
            if fl[k] < fh[k] * (1.0 - rtol):
                return False
            return fh[k] - convexity_lower_bound(x_all, fl, fh, k, u_left, u_hi, c) <= rtol * fh[k]

        v, y, tg, v_lo = p.gld_time_bounds(dem, u, guess=guess, floor=floor, stop=certified)
        return np.maximum(v, floor), np.maximum(v_lo, floor), v, y, tg

    u_left = p.domain_left(u_feas)  # below: infeasible (too little jamming energy or power)
    span = u_hi - u_left
    xs = np.concatenate(
        [u_left + np.geomspace(max(1e-12 * span, 1e-12 * u_left), span, 40), [u_feas]]
    )
    xs = np.unique(xs[(xs > u_left) & (xs <= u_hi)])
    xs = xs[np.concatenate([[True], np.diff(xs) > 2e-12 * np.abs(xs[1:])])]
    empty = np.zeros(0)
    fs, fl, vs, ys, tgs = total(xs, None, empty, empty, empty)
    nit += 1
    status, msg = "not_converged", f"no certificate after {max_rounds} rounds"
    for _ in range(max_rounds):
        finite = np.isfinite(fs)
        if not finite.any():
            break
        k = int(np.argmin(fs))
        lb = convexity_lower_bound(xs, fl, fs, k, u_left, u_hi, c)
        if fs[k] - lb <= rtol * fs[k]:
            status = "optimal"
            msg = (
                f"certified to rtol={rtol:g}: T - lower bound = {fs[k] - lb:.3g} s "
                "(convexity in tB_up)"
            )
            break
        lo_x = xs[k - 1] if k > 0 else u_left
        hi_x = xs[min(k + 1, xs.size - 1)]
        if hi_x - lo_x <= 4 * np.finfo(float).eps * max(abs(xs[k]), 1.0):
            status, msg = "converged", "search interval collapsed to machine precision"
            break
        width = hi_x - lo_x
        new = [np.linspace(lo_x, hi_x, points + 2)[1:-1]]
        for r in _predictions(xs, vs, fs, k, c):
            if lo_x < r < hi_x:
                off = np.maximum(width * _LADDER, 1e-11 * abs(r))
                new.append(np.concatenate([[r], r - off, r + off]))
        new = np.unique(np.concatenate(new))
        new = new[(new > lo_x) & (new < hi_x)]
        # skip points that duplicate a sample (to 2e-12): a secant through two such points
        # has a slope of rounding noise (convexity_lower_bound ignores it)
        pos = np.clip(np.searchsorted(xs, new), 1, xs.size - 1)
        gap = np.minimum(np.abs(new - xs[pos - 1]), np.abs(new - xs[pos]))
        new = new[gap > 2e-12 * np.abs(new)]
        if new.size > 1:
            keep = np.concatenate([[True], np.diff(new) > 2e-12 * np.abs(new[1:])])
            new = new[keep]
        if new.size == 0:
            status, msg = "converged", "search interval collapsed to machine precision"
            break
        fn, fln, vn, yn, tn = total(new, _guess(xs, tgs, new, p.tg_min), xs, fs, fl)
        nit += 1
        xs = np.concatenate([xs, new])
        order = np.argsort(xs, kind="stable")
        xs = xs[order]
        fs, fl, vs, ys, tgs = (
            np.concatenate([a, b])[order]
            for a, b in ((fs, fn), (fl, fln), (vs, vn), (ys, yn), (tgs, tn))
        )
    if not np.isfinite(fs).any():
        return infeasible(
            "no sync time tB_up admits a feasible (y, tG, q): the energy budgets "
            "cannot cover compute, upload and jamming together",
            nit,
        )
    k = int(np.argmin(fs))
    u_star, y_star, tg_star = float(xs[k]), float(ys[k]), float(tgs[k])
    q_req = float(p.min_jamming(np.array(u_star)))
    q = p.jam_split(y_star, tg_star, q_req, u_star)
    return finalize(
        cluster,
        y=y_star,
        tg=tg_star,
        q=q,
        status=status,
        message=msg,
        solver=name,
        iterations=nit,
        t0=t0,
        info={
            "lower_bound_s": float(
                convexity_lower_bound(xs, fl, fs, k, u_left, u_hi, c) + p.fixed_s
            ),
            "samples": int(xs.size),
        },
    )


def _guess(xs: np.ndarray, tgs: np.ndarray, new: np.ndarray, tg_min: float) -> np.ndarray | None:
    """Starting points (8, B) for the tG search at ``new``, from the neighbours' optimal tG
    (t*(u) need not be monotone: it kinks where the active constraints change): points up
    to 10 % around their linear interpolation and just outside their range."""
    fin = np.isfinite(tgs)
    if fin.sum() < 1:
        return None
    xf, tf = xs[fin], tgs[fin]
    i = np.clip(np.searchsorted(xf, new), 1, max(xf.size - 1, 1))
    if xf.size == 1:
        ta = tb = np.full(new.size, tf[0])
        interp = ta
    else:
        ta, tb = tf[i - 1], tf[i]
        frac = np.clip((new - xf[i - 1]) / (xf[i] - xf[i - 1]), 0.0, 1.0)
        interp = ta + frac * (tb - ta)
    lo = np.minimum(ta, tb)
    hi = np.maximum(ta, tb)
    g = np.concatenate([interp * (1.0 + _GUESS[:, None]), [lo * 0.999, hi * 1.001]])
    return np.sort(np.maximum(g, tg_min), axis=0)
