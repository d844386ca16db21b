"""The paper's Algorithm 2: a search over Q with a dual subgradient method per Q.

For each aggregate jamming Q the dual method relaxes the energy constraint (24a) with
multipliers lambda and alternates Sub-Y (eq. (29)), Sub-T (eqs. (31)-(32), bisection on the
derivative) and Sub-Q (eqs. (34)-(35), greedy by lambda_i tB / g_iE), then updates lambda by
the projected subgradient step (36) with alpha_n = alpha_0 / sqrt(n).

Two modes:

``mode="paper"``
    As written: a linear grid over Q with step theta_1, the raw step size alpha_0 (units
    s/J^2), and the *last dual iterate* as the answer. The Lagrangian is linear in q, so the
    greedy q of (35) flips all-or-nothing, lambda oscillates and the iterate breaks the
    energy budget (MODEL.md); such a result carries status ``primal_infeasible``.
``mode="corrected"`` (default)
    The MODEL.md corrections: closed-form infeasibility detection, a log-spaced grid in
    (Q - Q_lo) with local refinement, a unit-free step size (the energy constraint
    normalised by E_max, steps scaled by the round time), and primal recovery: keep the dual
    tG, then compute the smallest feasible y and a feasible jamming split exactly. The
    answer is always primal feasible.

Every call keeps the T(Q) curve (Fig. 4) in ``info["curve"]`` and the lambda trajectories
(Fig. 3) in ``info["lambda"]``; :func:`dual_at_q` runs the dual method at given Q values.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.model.system import evaluate_allocation
from solvers._core import Prepared, finalize
from solvers.result import SolverResult

__all__ = ["DualTrace", "dual_at_q", "solve_algorithm2"]

MODES = ("corrected", "paper")


@dataclass
class DualTrace:
    """The dual subgradient method run at a batch of Q values (rows)."""

    q_w: np.ndarray
    """Aggregate jamming Q of each row (W)."""
    tb_up_s: np.ndarray
    """tB_up(Q) of each row, eq. (23)."""
    lam: np.ndarray
    """lambda trajectories, shape (iterations + 1, rows, M), in s/J (paper units)."""
    y_s: np.ndarray
    tg_s: np.ndarray
    q: np.ndarray
    """Last dual iterate of each row: y (29), tG (32), q (35)."""
    energy_j: np.ndarray
    """Energy of the last iterate, shape (rows, M)."""
    iterations: np.ndarray
    """Iterations each row ran before max |lambda_n - lambda_{n-1}| < theta_2."""
    converged: np.ndarray


def _sub_t(p: Prepared, lam: np.ndarray, t0: np.ndarray, iters: int = 30) -> np.ndarray:
    """Sub-T: argmin_t t + sum_i lambda_i E_i^up(t) over t >= tG_min, eqs. (30)-(32).

    The derivative (31) is increasing (f_T is convex, Appendix A), so its root is bracketed
    and found by Newton steps on log t (safeguarded by bisection), warm-started at ``t0``.
    The paper prescribes plain bisection; both find the same root, Newton in fewer steps.
    """
    x_scale, sic, ng = p.x_scale, p.sic, p.n_over_g

    def derivs(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.exp(s)
        x = x_scale / t[:, None]  # r ln 2
        em1 = np.expm1(x)
        esx = np.exp(sic * x)
        d1 = -ng * esx * (x * (em1 + 1.0 + sic * em1) - em1)  # dE_i^up/dt, eq. (31)
        d2 = ng * esx * x**3 * ((1.0 + 2.0 * sic) * (em1 + 1.0) + sic**2 * em1) / x_scale
        return 1.0 + np.sum(lam * d1, axis=-1), t * np.sum(lam * d2, axis=-1)

    lo_lim = math.log(p.tg_min)
    g_min, _ = derivs(np.full(lam.shape[0], lo_lim))
    at_min = g_min >= -1e-12  # (32): the power bound (24c) binds
    s = np.where(at_min, lo_lim, np.maximum(np.log(t0), lo_lim))
    lo = np.full_like(s, lo_lim)
    hi = s + 1.0
    for _ in range(64):  # make sure f_T'(hi) > 0 (it tends to 1 as t grows)
        g_hi, _ = derivs(hi)
        low = (g_hi <= 0) & ~at_min
        if not low.any():
            break
        hi = np.where(low, hi + 1.0, hi)
    for _ in range(iters):
        g, gp = derivs(s)
        lo = np.where(g < 0, np.maximum(lo, s), lo)
        hi = np.where(g > 0, np.minimum(hi, s), hi)
        step = s - g / gp
        s_new = np.where((step >= lo) & (step <= hi) & np.isfinite(step), step, 0.5 * (lo + hi))
        s_new = np.where(at_min, lo_lim, s_new)
        moved = np.max(np.abs(s_new - s))
        s = s_new
        if moved < 1e-13:
            break
    return np.where(at_min, p.tg_min, np.exp(s))


def _sub_q(p: Prepared, lam: np.ndarray, q_w: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Sub-Q, eqs. (34)-(35): fill Q_max from the cheapest lambda_i tB / g_iE until Q is met."""
    cost = lam * tb[:, None] / p.g_e
    order = np.argsort(cost, axis=-1, kind="stable")
    cap = (p.g_e * p.q_max)[order]  # g_iE Q_max,i in cost order
    before = np.cumsum(cap, axis=-1) - cap
    fill = np.clip(q_w[:, None] - before, 0.0, cap)
    q = np.empty_like(fill)
    np.put_along_axis(q, order, fill / p.g_e[order], axis=-1)
    return q


def _energy(p: Prepared, y: np.ndarray, tg: np.ndarray, q: np.ndarray,
            tb: np.ndarray) -> np.ndarray:
    """Left side of (24a): K_i / y^2 + E_i^up(tG) + q_i tB."""
    return p.k_loc / y[:, None] ** 2 + p.upload_energy(tg) + q * tb[:, None]


def dual_at_q(
    cluster: Cluster | Prepared,
    q_w: np.ndarray | float,
    *,
    mode: str = "corrected",
    alpha0: float | None = None,
    theta2: float | None = None,
    max_iter: int = 300,
    lambda0: float | np.ndarray | None = None,
) -> DualTrace:
    """Run the dual subgradient loop of Algorithm 2 (lines 2-6) at each Q in ``q_w``.

    Parameters
    ----------
    cluster : Cluster or Prepared
    q_w : float or array
        Aggregate jamming values Q (W); each must lie in (Q_lo, Q_hi] of eq. (22).
    mode : {"corrected", "paper"}
        ``paper``: lambda in s/J, step alpha_n = alpha0 / sqrt(n) with alpha0 in s/J^2
        (default 0.05), stop when max |dlambda| < theta2 (default 1e-4 s/J).
        ``corrected``: the same iteration on mu_i = lambda_i E_max,i (s), with the constraint
        normalised by E_max and the step scaled by the round time tB_up(Q), so alpha0 is
        unit-free (default 0.5) and theta2 relative (default 1e-4).
    max_iter : int
        Cap on the iterations per row.
    lambda0 : float or array, optional
        Initial multipliers in s/J (default 0.1 s/J for every GLD).
    """
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
    p = cluster if isinstance(cluster, Prepared) else Prepared(cluster)
    if p.m == 0:
        raise ValueError("cluster: the dual method needs at least one GLD")
    q_w = np.atleast_1d(np.asarray(q_w, dtype=float))
    if not np.all(np.isfinite(q_w)):
        raise ValueError("q_w: must be finite")
    if np.any(q_w > p.q_hi * (1 + 1e-12)) or np.any(q_w <= max(p.q_lo, 0.0) - 1e-300):
        raise ValueError(
            f"q_w: every Q must lie in ({max(p.q_lo, 0.0):.4g}, {p.q_hi:.4g}] W (eq. (22)): "
            "below, some secrecy rate is zero; above, the GLDs cannot reach it even at "
            "full jamming power")
    if max_iter < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter}")
    paper = mode == "paper"
    alpha0 = (0.05 if paper else 0.5) if alpha0 is None else float(alpha0)
    theta2 = 1e-4 if theta2 is None else float(theta2)
    if not (alpha0 > 0 and theta2 > 0):
        raise ValueError("alpha0, theta2: must be > 0")
    b = q_w.size
    with np.errstate(all="ignore"):
        tb = np.asarray(p.sync_time(q_w), dtype=float)  # eq. (23)
    lam = np.broadcast_to(np.asarray(0.1 if lambda0 is None else lambda0, float),
                          (b, p.m)).copy()
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("lambda0: must be finite and >= 0")
    scale = np.where(np.isfinite(tb), np.maximum(tb, p.y_min + p.tg_min), 1.0)
    traj = [lam.copy()]
    active = np.isfinite(tb)
    its = np.zeros(b, dtype=int)
    converged = np.zeros(b, dtype=bool)
    tg = np.full(b, p.tg_min * 1.5)
    tb_safe = np.where(np.isfinite(tb), tb, 0.0)
    with np.errstate(all="ignore"):
        for n in range(1, max_iter + 1):
            y = np.maximum(np.cbrt(2.0 * np.sum(lam * p.k_loc, axis=-1)), p.y_min)  # eq. (29)
            tg = _sub_t(p, lam, tg)  # eqs. (31)-(32)
            q = _sub_q(p, lam, q_w, tb_safe)  # eq. (35)
            energy = _energy(p, y, tg, q, tb_safe)
            alpha = alpha0 / math.sqrt(n)
            if paper:
                new = np.maximum(lam + alpha * (energy - p.e_max), 0.0)  # eq. (36)
                change = np.max(np.abs(new - lam), axis=-1)
            else:
                mu = lam * p.e_max  # unit-free: mu_i (s) multiplies (E_i / E_max,i - 1)
                mu_new = np.maximum(mu + alpha * scale[:, None] * (energy / p.e_max - 1.0), 0.0)
                new = mu_new / p.e_max
                change = np.max(np.abs(mu_new - mu), axis=-1) / scale
            lam = np.where(active[:, None], new, lam)
            its = np.where(active, n, its)
            done = active & (change < theta2)
            converged |= done
            active &= ~done
            traj.append(lam.copy())
            if not active.any():
                break
        y = np.maximum(np.cbrt(2.0 * np.sum(lam * p.k_loc, axis=-1)), p.y_min)
        tg = _sub_t(p, lam, tg)
        q = _sub_q(p, lam, q_w, tb_safe)
        energy = _energy(p, y, tg, q, tb_safe)
    return DualTrace(q_w=q_w, tb_up_s=tb, lam=np.stack(traj), y_s=y, tg_s=tg, q=q,
                     energy_j=energy, iterations=its, converged=converged)


def _recover(p: Prepared, trace: DualTrace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Primal recovery: keep the dual tG, take the smallest feasible y at (tG, Q) exactly.

    If the dual tG leaves no feasible y (the upload costs too much energy), tG is raised to
    the smallest value that admits one (bisection on the closed-form test). Returns
    ``(T_GLD, y, tG)`` per row, ``inf`` where Q is infeasible.
    """
    q_w, tb = trace.q_w, trace.tb_up_s
    dem = p.jam_demand(q_w, tb)
    with np.errstate(all="ignore"):
        tg = trace.tg_s.copy()
        y = p.min_y(tg[:, None], dem[:, None], tb[:, None])[:, 0]
        bad = ~np.isfinite(y) & np.isfinite(tb)
        if bad.any():
            # feasibility is monotone in tG: find the threshold, then step just above it
            lo = np.log(tg[bad])
            hi = lo + 30.0 * np.log(2.0)
            d_b, u_b = dem[bad][:, None], tb[bad][:, None]
            ok_hi = np.isfinite(p.min_y(np.exp(hi)[:, None], d_b, u_b)[:, 0])
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                ok = np.isfinite(p.min_y(np.exp(mid)[:, None], d_b, u_b)[:, 0])
                hi = np.where(ok, mid, hi)
                lo = np.where(ok, lo, mid)
            t_new = np.where(ok_hi, np.exp(hi), np.nan)
            tg[bad] = t_new
            y[bad] = np.where(ok_hi, p.min_y(t_new[:, None], d_b, u_b)[:, 0], np.inf)
        y = np.where(np.isfinite(tb), y, np.inf)
        t_gld = np.where(np.isfinite(y) & np.isfinite(tg), y + tg, np.inf)
    return t_gld, y, tg


def _t_total(p: Prepared, t_gld: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """max(T_GLD, T_BLD) of eq. (11), without the constant offsets (``inf`` if undefined)."""
    t = np.maximum(t_gld, tb + p.tb_loc)
    return np.where(np.isnan(t), np.inf, t)


def solve_algorithm2(
    cluster: Cluster,
    *,
    mode: str = "corrected",
    grid_points: int | None = None,
    theta1: float | None = None,
    refine_rounds: int = 3,
    alpha0: float | None = None,
    theta2: float | None = None,
    max_iter: int | None = None,
    lambda0: float | None = None,
    keep_lambda: bool = True,
) -> SolverResult:
    """Algorithm 2 of the paper on one cluster (see the module docstring for the modes).

    Parameters
    ----------
    mode : {"corrected", "paper"}
    grid_points : int, optional
        Corrected mode: points of the log grid in (Q - Q_lo) (default 24).
    theta1 : float, optional
        Paper mode: the linear search step over Q (W); default (Q_hi - Q_lo) / 100.
    refine_rounds : int
        Corrected mode: zoom rounds (8 points each) around the best grid point.
    alpha0, theta2, max_iter, lambda0
        Dual method settings, see :func:`dual_at_q`. ``max_iter`` defaults to 500 in paper
        mode and 15 per Q in corrected mode: primal recovery makes any dual iterate usable,
        and on 24 seeded clusters 15 iterations stay within 4e-4 of the exact T* while 30
        gain little (median gap 5e-7 either way) at twice the cost.
    keep_lambda : bool
        Keep every lambda trajectory in ``info["lambda"]`` (for Fig. 3).
    """
    if not isinstance(cluster, Cluster):
        raise ValueError("cluster: expected a dtfl_env.Cluster")
    if mode not in MODES:
        raise ValueError(f"mode: must be one of {MODES}, got {mode!r}")
    t0 = time.perf_counter()
    p = Prepared(cluster)
    name = "algorithm2" if mode == "corrected" else "algorithm2-paper"
    paper = mode == "paper"
    max_iter = (500 if paper else 15) if max_iter is None else int(max_iter)
    dual_opts: dict[str, Any] = {"mode": mode, "alpha0": alpha0, "theta2": theta2,
                                 "max_iter": max_iter, "lambda0": lambda0}
    if p.m == 0 or p.n == 0:
        # no jamming decision to search over: Algorithm 2 degenerates; use the exact answer
        from solvers.exact import solve_exact

        res = solve_exact(cluster)
        res.solver = name
        res.message = f"degenerate cluster (M={p.m}, N={p.n}): {res.message}"
        return res

    q_start = max(p.q_lo, 0.0)
    if paper:
        step = (p.q_hi - p.q_lo) / 100.0 if theta1 is None else float(theta1)
        if not (step > 0 and math.isfinite(step)):
            raise ValueError(f"theta1: must be > 0, got {theta1}")
        grid = np.arange(q_start, p.q_hi + 0.5 * step, step)
        grid = grid[(grid > p.q_lo) & (grid <= p.q_hi)]
        if grid.size == 0:
            grid = np.array([p.q_hi])
    else:
        reason, _, _ = p.feasibility()  # closed-form infeasibility detection
        if reason:
            return SolverResult.infeasible(p.m, reason, solver=name,
                                           wall_time_s=time.perf_counter() - t0)
        npts = 24 if grid_points is None else int(grid_points)
        if npts < 3:
            raise ValueError(f"grid_points: must be >= 3, got {grid_points}")
        span = p.q_hi - p.q_lo
        grid = p.q_lo + span * np.geomspace(1e-8, 1.0, npts)
        if p.q_lo < 0:
            grid = np.unique(np.concatenate([[0.0], grid[grid > 0]]))

    trace = dual_at_q(p, grid, **dual_opts)
    nit = int(trace.iterations.max(initial=0))
    lam_log = [(trace.q_w, trace.lam)] if keep_lambda else []
    if paper:
        t_gld = trace.y_s + trace.tg_s
        ys, tgs = trace.y_s, trace.tg_s
    else:
        t_gld, ys, tgs = _recover(p, trace)
    totals = _t_total(p, t_gld, trace.tb_up_s)
    qs, lams, dual_q = trace.q_w, trace.lam[-1], trace.q

    if not paper:
        # local refinement: zoom between the neighbours of the best Q, warm-started duals
        for _ in range(refine_rounds):
            if not np.isfinite(totals).any():
                break
            order = np.argsort(qs)
            qs, totals, ys, tgs, lams = (qs[order], totals[order], ys[order], tgs[order],
                                         lams[order])
            dual_q = dual_q[order]
            k = int(np.argmin(totals))
            lo, hi = qs[max(k - 1, 0)], qs[min(k + 1, qs.size - 1)]
            new_q = np.linspace(lo, hi, 10)[1:-1]
            new_q = new_q[(new_q > p.q_lo) & (new_q <= p.q_hi)]
            if new_q.size == 0:
                break
            tr = dual_at_q(p, new_q, **{**dual_opts, "lambda0": lams[k]})
            nit += int(tr.iterations.max(initial=0))
            if keep_lambda:
                lam_log.append((tr.q_w, tr.lam))
            tg_new, y_new, t_new = _recover(p, tr)
            qs = np.concatenate([qs, new_q])
            totals = np.concatenate([totals, _t_total(p, tg_new, tr.tb_up_s)])
            ys = np.concatenate([ys, y_new])
            tgs = np.concatenate([tgs, t_new])
            lams = np.concatenate([lams, tr.lam[-1]])
            dual_q = np.concatenate([dual_q, tr.q])

    order = np.argsort(qs)
    qs, totals, ys, tgs = qs[order], totals[order], ys[order], tgs[order]
    dual_q = dual_q[order]
    info: dict[str, Any] = {
        "curve": {"Q_w": qs, "T_s": totals + p.fixed_s},
        "lambda": lam_log,
        "mode": mode,
    }
    if not np.isfinite(totals).any():
        return SolverResult.infeasible(
            p.m, "no Q on the search grid admits a feasible allocation", solver=name,
            iterations=nit, wall_time_s=time.perf_counter() - t0, info=info)
    k = int(np.argmin(totals))
    q_best, y_best, tg_best = float(qs[k]), float(ys[k]), float(tgs[k])
    with np.errstate(all="ignore"):
        tb_best = float(p.sync_time(np.array(q_best)))
    if paper:
        q_alloc = dual_q[k]
    else:
        q_alloc = p.jam_split(y_best, tg_best, q_best, tb_best)
    res = finalize(cluster, y=y_best, tg=tg_best, q=q_alloc, status="converged",
                   message="", solver=name, iterations=nit, t0=t0, info=info)
    if paper:
        ev = evaluate_allocation(cluster, tg_s=tg_best, y_s=y_best, jam_power_w=q_alloc)
        excess = float(np.max(ev.energy_total_j - cluster.gld.energy_budget_j))
        res.info["energy_excess_j"] = excess
        if ev.min_slack < -1e-9:
            res.status = "primal_infeasible"
            res.message = (f"paper-faithful last dual iterate at Q = {q_best:.4g} W breaks the "
                           f"energy budget (14a) by up to {excess:.3g} J")
        else:
            res.message = f"paper-faithful last dual iterate at Q = {q_best:.4g} W"
    else:
        res.message = (f"dual subgradient + primal recovery; best Q = {q_best:.4g} W on a "
                       f"{qs.size}-point log grid with refinement")
    return res
