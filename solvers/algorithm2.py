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
    energy budget (docs/MODEL.md); such a result carries status ``primal_infeasible``.
``mode="corrected"`` (default)
    The corrections of docs/MODEL.md:

    * closed-form infeasibility detection, also of the Q beyond which the GLDs cannot pay
      for the jamming even with y, tG unbounded (not searched, reported infeasible);
    * a log-spaced grid in (Q - Q_lo), plus points log-spaced towards that feasibility
      limit (the optimum often sits beside the steep rise of T there), with local
      refinement: uniform points between the neighbours of the best Q and points around
      model predictions of the optimum (the crossing T_GLD = T_BLD by the secant and
      inverse quadratic interpolation, the vertex of a parabola through T), made in the
      sync time u = tB_up(Q) where T is convex and mapped back by Q(u); rounds stop when
      the secants of T (in u) around the best Q leave less than 1e-5 (relative) to gain;
    * a unit-free step size (the energy constraint normalised by E_max, steps scaled by
      the round time); a few iterations per Q (4 on the grid, 2 in refinement rounds,
      warm-started from the nearest Q searched);
    * primal recovery: starting from the dual tG (and, in refinement rounds, the recovered
      tG of the neighbouring Q), polish tG by the exact 1-D convex search of
      :meth:`solvers._core.Prepared.gld_time_bounds` (for fixed Q, y + tG is convex in tG
      with the smallest feasible y in closed form), then split the jamming feasibly.

    The answer is always primal feasible and T(Q) is exact (to 1e-10) at the Q searched
    near the optimum: what remains is the resolution of the Q search, within 1e-5 of the
    exact T* on seeded random clusters. The dual iterate itself only starts the polish.

Every call keeps the T(Q) curve (Fig. 4) in ``info["curve"]`` and the lambda trajectories
(Fig. 3) in ``info["lambda"]``; :func:`dual_at_q` runs the dual method at given Q values.
The dual steps run on G clusters at once (:class:`DualConsts`; one cluster here), so that
``solvers.solve_batch(clusters, "algorithm2")`` (:mod:`solvers.batch.algorithm2`) runs the
corrected mode on many clusters with the same routines.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.model.batch import ClusterBatch, upload_energy_j
from dtfl_env.model.system import evaluate_allocation
from solvers._core import (
    Prepared,
    crossing_roots,
    finalize,
    iqi_root,
    parabola_vertex,
    secant_root,
    upload_energy_slope,
)
from solvers.exact import convexity_lower_bound
from solvers.result import SolverResult

__all__ = ["DualConsts", "DualTrace", "dual_at_q", "solve_algorithm2"]

MODES = ("corrected", "paper")

# corrected mode's defaults (also those of the batched solver, solvers.batch.algorithm2)
_ALPHA0 = 0.5
"""Unit-free step size alpha_0 of the normalised step (36)."""
_THETA2 = 1e-4
"""Stop when the multipliers move by less than this (relative; s/J in paper mode)."""
_LAMBDA0 = 0.1
"""Initial multipliers, s/J."""
_MAX_ITER = 4
"""Dual iterations per Q on the grid (half that in refinement rounds)."""
_GRID_POINTS = 12
"""Points of the log grid in Q - Q_lo."""
_REFINE_ROUNDS = 5
"""Refinement rounds at most."""


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


@dataclass(frozen=True)
class DualConsts:
    """The constants of the dual method (eqs. (29)-(36)) for G clusters at once, shaped to
    broadcast against rows of Q values (G, K) and multipliers (G, K, M): per GLD (G, 1, M),
    per cluster (G, 1). Built from one cluster's :class:`~solvers._core.Prepared`
    (:meth:`of`, G = 1) or from a :class:`~dtfl_env.model.batch.ClusterBatch`
    (:meth:`from_batch`), where padded GLD slots carry no jamming capacity (``gq`` = 0), a
    SIC index of 0 (finite powers) and the multiplier 0 (:func:`_step`)."""

    k_loc: np.ndarray
    """K_i of eq. (18)."""
    e_max: np.ndarray
    g_e: np.ndarray
    gq: np.ndarray
    """g_iE Q_max,i."""
    n_over_g: np.ndarray
    sic: np.ndarray
    """i - 1 (0 in padded slots)."""
    dup_at_min: np.ndarray
    """dE_i^up/dtG at tG_min (eq. (31)); 0 in padded slots."""
    mask: np.ndarray | None
    """Real GLD slots (None: no padding)."""
    y_min: np.ndarray
    tg_min: np.ndarray
    x_scale: np.ndarray
    """L ln2 / W: r ln 2 = x_scale / tG."""
    sic_powers: np.ndarray
    """Rows 1, (i-1), (i-1)^2, shape (3, M): sums over GLDs of the terms of (31) in one
    product."""

    @classmethod
    def of(cls, p: Prepared) -> DualConsts:
        """One cluster's constants (G = 1)."""

        def g(a: np.ndarray) -> np.ndarray:
            return np.asarray(a, dtype=float).reshape(1, 1, -1)

        def c(a: float) -> np.ndarray:
            return np.full((1, 1), float(a))

        return cls(
            k_loc=g(p.k_loc),
            e_max=g(p.e_max),
            g_e=g(p.g_e),
            gq=g(p.g_e * p.q_max),
            n_over_g=g(p.n_over_g),
            sic=g(p.sic),
            dup_at_min=g(p.dup_at_min),
            mask=None,
            y_min=c(p.y_min),
            tg_min=c(p.tg_min),
            x_scale=c(p.x_scale),
            sic_powers=p.sic_powers,
        )

    @classmethod
    def from_batch(cls, cb: ClusterBatch, cols: np.ndarray) -> DualConsts:
        """The constants of clusters ``cols`` of ``cb`` (G = cols.size), padded to its M."""
        mask = cb.gld_mask[cols][:, None, :]

        def g(a: np.ndarray) -> np.ndarray:
            return a[cols][:, None, :]

        def c(a: np.ndarray) -> np.ndarray:
            return a[cols][:, None]

        sic = np.where(mask, g(cb.sic), 0.0)
        n_over_g = g(cb.noise_over_gain)
        x_scale, tg_min = c(cb.x_scale), c(cb.tg_min_s)
        with np.errstate(all="ignore"):
            dup = upload_energy_slope(n_over_g, sic, x_scale[..., None], tg_min[..., None])
        m = cb.gld_mask.shape[1]
        idx = np.arange(m, dtype=float)
        return cls(
            k_loc=g(cb.k_loc),
            e_max=g(cb.gld["energy_budget_j"]),
            g_e=g(cb.gld["gain_eavesdropper"]),
            gq=np.where(mask, g(cb.gld["gain_eavesdropper"] * cb.gld["max_jam_power_w"]), 0.0),
            n_over_g=n_over_g,
            sic=sic,
            dup_at_min=np.where(mask, dup, 0.0),
            mask=mask,
            y_min=c(cb.y_min_s),
            tg_min=tg_min,
            x_scale=x_scale,
            sic_powers=np.stack([np.ones(m), idx, idx**2]),
        )

    def take(self, idx: np.ndarray) -> DualConsts:
        """The constants of clusters ``idx`` (of the G)."""
        return DualConsts(
            **{
                f.name: (
                    getattr(self, f.name)
                    if f.name == "sic_powers" or getattr(self, f.name) is None
                    else getattr(self, f.name)[idx]
                )
                for f in fields(self)
            }
        )


def _sub_y(c: DualConsts, lam: np.ndarray) -> np.ndarray:
    """Sub-Y, eq. (29): y = max((2 sum_i lambda_i K_i)^(1/3), y_min)."""
    return np.maximum(np.cbrt(2.0 * np.sum(lam * c.k_loc, axis=-1)), c.y_min)


def _sub_t(
    c: DualConsts, lam: np.ndarray, t0: np.ndarray, iters: int = 30, tol: float = 1e-10
) -> np.ndarray:
    """Sub-T: argmin_t t + sum_i lambda_i E_i^up(t) over t >= tG_min, eqs. (30)-(32).

    ``lam`` has shape (G, K, M), ``t0`` (G, K): K rows for each of G clusters. The
    derivative (31) is increasing (f_T is convex, Appendix A), so its root is bracketed and
    found by Newton steps (safeguarded by bisection), warm-started at ``t0``: on
    log(-sum_i lambda_i dE_i/dt) = 0 against log t, nearly linear where E_i^up is
    exponential in 1/t. A cluster's rows stop together once none moved by ``tol`` (in
    log t). The paper prescribes plain bisection; both find the same root, Newton in fewer
    steps.
    """
    wm = c.sic_powers.T
    g, k = t0.shape
    lo_lim = np.log(c.tg_min)
    at_min = 1.0 + (lam * c.dup_at_min).sum(-1) >= -1e-12  # (32): (24c) binds
    out = np.maximum(np.log(t0), lo_lim)
    # the rows of the clusters still searching (all at first), flat: (R,), (R, M); one
    # cluster's constants broadcast (no repeat: its rows stop together)
    act = np.arange(g)
    s = out.reshape(-1)
    if g == 1:
        lo_at, x_scale, sic = lo_lim.reshape(-1), c.x_scale.reshape(-1), c.sic[0]
    else:
        lo_at, x_scale = np.repeat(lo_lim[:, 0], k), np.repeat(c.x_scale[:, 0], k)
        sic = np.repeat(c.sic[:, 0], k, axis=0)
    lo = np.full_like(s, 0.0) + lo_at
    hi = np.full_like(s, np.inf)
    at = at_min.reshape(-1)
    lam_ng = (lam * c.n_over_g).reshape(g * k, -1)
    for _ in range(iters):
        x = x_scale * np.exp(-s)  # r ln 2
        em1 = np.expm1(x)
        ep = em1 + 1.0
        l0, l1, l2 = ((lam_ng * np.exp(x[:, None] * sic)) @ wm).T
        gd = 1.0 - (x * ep * l0 + em1 * (x * l1 - l0))  # 1 + sum lambda_i dE_i/dt, (31)
        gp = x * x * (ep * (l0 + 2.0 * l1) + em1 * l2)  # t * sum lambda_i d2E_i/dt2
        lo = np.where(gd < 0, np.maximum(lo, s), lo)
        hi = np.where(gd > 0, np.minimum(hi, s), hi)
        step = s + np.log(1.0 - gd) * (1.0 - gd) / gp  # Newton on log(1 - f_T')
        # no right end yet: at most e^2 per step (f_T' tends to 1 as t grows)
        s_new = np.where(np.isfinite(hi), 0.5 * (lo + hi), np.minimum(s + 2.0, step))
        s_new = np.where((step >= lo) & (step <= hi) & np.isfinite(step), step, s_new)
        s_new = np.where(at, lo_at, s_new)
        done = np.abs(s_new - s).reshape(act.size, k).max(1) < tol
        s = s_new
        if np.count_nonzero(done):  # these clusters stop; search only the others now
            out[act[done]] = s.reshape(act.size, k)[done]
            keep = np.repeat(~done, k)
            act = act[~done]
            if act.size == 0:
                break
            s, lo, hi, at, lo_at, x_scale = (a[keep] for a in (s, lo, hi, at, lo_at, x_scale))
            lam_ng, sic = lam_ng[keep], sic[keep]
    if act.size:
        out[act] = s.reshape(act.size, k)
    return np.where(at_min, c.tg_min, np.exp(out))


def _sub_q(c: DualConsts, lam: np.ndarray, q_w: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Sub-Q, eqs. (34)-(35): fill Q_max from the cheapest lambda_i tB / g_iE until Q is met."""
    cost = lam * tb[..., None] / c.g_e
    order = np.argsort(cost, axis=-1, kind="stable")
    g, k, m = cost.shape
    flat = order + (np.arange(g) * m)[:, None, None]  # into the (G, M) constants
    cap = c.gq.reshape(-1)[flat]  # g_iE Q_max,i in cost order
    before = np.cumsum(cap, axis=-1) - cap
    fill = np.clip(q_w[..., None] - before, 0.0, cap)
    q = np.empty_like(fill)
    q.reshape(-1, m)[np.arange(g * k)[:, None], order.reshape(-1, m)] = (
        fill / c.g_e.reshape(-1)[flat]
    ).reshape(-1, m)
    return q


def _energy(
    c: DualConsts, y: np.ndarray, tg: np.ndarray, q: np.ndarray, tb: np.ndarray
) -> np.ndarray:
    """Left side of (24a): K_i / y^2 + E_i^up(tG) + q_i tB."""
    return (
        c.k_loc / y[..., None] ** 2
        + upload_energy_j(c.n_over_g, c.sic, c.x_scale[..., None], tg[..., None])
        + q * tb[..., None]
    )


def _step(
    c: DualConsts, lam: np.ndarray, energy: np.ndarray, alpha: float, scale: np.ndarray, paper: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The projected subgradient step (36) and the largest change of each row's multipliers
    (``paper``: in s/J; else on mu_i = lambda_i E_max,i, relative to ``scale``)."""
    if paper:
        new = np.maximum(lam + alpha * (energy - c.e_max), 0.0)  # eq. (36)
        diff = np.abs(new - lam)
    else:
        mu = lam * c.e_max  # unit-free: mu_i (s) multiplies (E_i / E_max,i - 1)
        mu_new = np.maximum(mu + alpha * scale[..., None] * (energy / c.e_max - 1.0), 0.0)
        new = mu_new / c.e_max
        diff = np.abs(mu_new - mu)
    if c.mask is not None:
        new = np.where(c.mask, new, 0.0)
        diff = np.where(c.mask, diff, 0.0)
    change = np.max(diff, axis=-1)
    return new, change if paper else change / scale


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
            "full jamming power"
        )
    if max_iter < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter}")
    paper = mode == "paper"
    alpha0 = (0.05 if paper else _ALPHA0) if alpha0 is None else float(alpha0)
    theta2 = _THETA2 if theta2 is None else float(theta2)
    if not (alpha0 > 0 and theta2 > 0):
        raise ValueError("alpha0, theta2: must be > 0")
    b = q_w.size
    with np.errstate(all="ignore"):
        tb = np.asarray(p.sync_time(q_w), dtype=float)  # eq. (23)
    lam = np.broadcast_to(
        np.asarray(_LAMBDA0 if lambda0 is None else lambda0, float), (b, p.m)
    ).copy()
    if np.any(lam < 0) or not np.all(np.isfinite(lam)):
        raise ValueError("lambda0: must be finite and >= 0")
    tr = _dual(
        DualConsts.of(p),
        q_w[None],
        tb[None],
        lam[None],
        np.full((1, b), p.tg_min * 1.5),
        paper,
        alpha0,
        theta2,
        max_iter,
    )
    return _one(tr)


def _one(tr: DualTrace) -> DualTrace:
    """A trace of one cluster (G = 1) without its cluster axis."""
    return DualTrace(
        q_w=tr.q_w[0],
        tb_up_s=tr.tb_up_s[0],
        lam=tr.lam[:, 0],
        y_s=tr.y_s[0],
        tg_s=tr.tg_s[0],
        q=tr.q[0],
        energy_j=tr.energy_j[0],
        iterations=tr.iterations[0],
        converged=tr.converged[0],
    )


def _dual(
    c: DualConsts,
    q_w: np.ndarray,
    tb: np.ndarray,
    lam: np.ndarray,
    tg: np.ndarray,
    paper: bool,
    alpha0: float,
    theta2: float,
    max_iter: int,
    final: bool = True,
    keep: bool = True,
) -> DualTrace:
    """The loop of :func:`dual_at_q` from multipliers ``lam`` (G, K, M) and Sub-T start
    ``tg`` (G, K) at Q values ``q_w`` (G, K) with sync times ``tb`` (G, K), for G clusters
    at once. A row stops once its multipliers move by less than ``theta2``; the Sub-T of a
    cluster's rows stops with its last row (as a loop over one cluster's rows would).

    With ``final`` the returned iterate (y, tG, q) is recomputed for the last multipliers;
    without, it is the one of the last step (for the previous multipliers: enough to start
    primal recovery). ``keep``: keep the trajectory (else ``lam`` holds the first and the
    last multipliers only). Returned arrays keep the cluster axis first (``lam``: second).
    """
    scale = np.where(np.isfinite(tb), np.maximum(tb, c.y_min + c.tg_min), 1.0)
    traj = [lam.copy()]
    active = np.isfinite(tb)
    its = np.zeros(tb.shape, dtype=int)
    converged = np.zeros(tb.shape, dtype=bool)
    tb_safe = np.where(np.isfinite(tb), tb, 0.0)
    with np.errstate(all="ignore"):
        for n in range(1, max_iter + 1):
            y = _sub_y(c, lam)  # eq. (29)
            going = active.any(-1) | (n == 1)  # clusters whose loop still runs
            if going.all():
                tg = _sub_t(c, lam, tg)  # eqs. (31)-(32)
            else:
                tg = tg.copy()
                tg[going] = _sub_t(c.take(going), lam[going], tg[going])
            q = _sub_q(c, lam, q_w, tb_safe)  # eq. (35)
            energy = _energy(c, y, tg, q, tb_safe)
            new, change = _step(c, lam, energy, alpha0 / math.sqrt(n), scale, paper)  # (36)
            lam = np.where(active[..., None], new, lam)
            its = np.where(active, n, its)
            done = active & (change < theta2)
            converged |= done
            active &= ~done
            if keep:
                traj.append(lam.copy())
            if not active.any():
                break
        if final:
            y = _sub_y(c, lam)
            tg = _sub_t(c, lam, tg)
            q = _sub_q(c, lam, q_w, tb_safe)
            energy = _energy(c, y, tg, q, tb_safe)
    if not keep:
        traj.append(lam)
    return DualTrace(
        q_w=q_w,
        tb_up_s=tb,
        lam=np.stack(traj),
        y_s=y,
        tg_s=tg,
        q=q,
        energy_j=energy,
        iterations=its,
        converged=converged,
    )


def _recover(
    p: Prepared,
    q_w: np.ndarray,
    tb: np.ndarray,
    tg_dual: np.ndarray,
    tg_near: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Primal recovery: from the dual tG, the best (y, tG) at each Q exactly.

    For fixed Q (so tB_up = tB_up(Q)) y + tG is convex in tG with the smallest feasible y
    in closed form (docs/MODEL.md, erratum 5), so the dual tG is polished by the exact 1-D
    search of :meth:`~solvers._core.Prepared.gld_time_bounds`, which starts from points
    around it and, in refinement rounds, around ``tg_near`` (the recovered tG interpolated
    from the neighbouring Q searched). Rows that cannot beat the best of the batch by 0.1 %
    stop early with a feasible, not fully polished, tG. Returns ``(T_GLD, y, tG)`` per
    row, ``inf`` where Q is infeasible.
    """
    t_gld = np.full(q_w.size, np.inf)
    y = np.full(q_w.size, np.inf)
    tg = tg_dual.copy()
    ok = np.isfinite(tb)
    if ok.any():
        u = tb[ok]
        pts = [tg_dual[ok] * (1.0 + _POLISH[:, None])]
        if tg_near is not None:
            near = tg_near[ok]
            pts.append(np.where(np.isfinite(near), near, tg_dual[ok]) * (1.0 + _NEAR[:, None]))
        guess = np.sort(np.maximum(np.concatenate(pts), p.tg_min), axis=0)
        v, y_ok, tg_ok, _ = p.gld_time_bounds(
            p.jam_demand(q_w[ok], u), u, guess=guess, floor=u + p.tb_loc, rtol=_POLISH_RTOL
        )
        t_gld[ok], y[ok], tg[ok] = v, y_ok, tg_ok
    return t_gld, y, tg


_POLISH_RTOL = 1e-10
"""Relative accuracy of the polished y + tG (certified by the inner search)."""
_POLISH = np.array([-0.5, -0.2, -0.05, 0.05, 0.2, 1.0])
"""Relative offsets around the dual tG that start the polish of primal recovery."""
_NEAR = np.array([-1e-2, -1e-3, -1e-4, 1e-4, 1e-3, 1e-2])
"""Relative offsets around the neighbours' recovered tG (refinement rounds)."""


def _t_total(p: Prepared, t_gld: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """max(T_GLD, T_BLD) of eq. (11), without the constant offsets (``inf`` if undefined)."""
    t = np.maximum(t_gld, tb + p.tb_loc)
    return np.where(np.isnan(t), np.inf, t)


def _predict(
    p: Prepared, qs: np.ndarray, t_gld: np.ndarray, tbs: np.ndarray, k: int
) -> list[float]:
    """Model predictions of the best Q near sample ``k`` (samples sorted by Q).

    They are made in the sync time u = tB_up(Q) (eq. (23)), where T = max(T_GLD, u +
    tB_loc) is convex (T_GLD(Q) is U-shaped and very curved in Q), and mapped back by Q(u)
    (eq. (23) inverted): the crossing T_GLD = T_BLD by the secant and inverse quadratic
    interpolation, and the vertex of a parabola through T. :func:`_predictions` makes the
    same predictions for many clusters at once.
    """
    lo, hi = max(k - 3, 0), min(k + 4, qs.size)
    u = tbs[lo:hi][::-1]  # ascending in u
    v = t_gld[lo:hi][::-1]
    g = v - u - p.tb_loc  # decreasing through 0 at the crossing
    fin = np.isfinite(g) & np.isfinite(u)
    with np.errstate(all="ignore"):
        out = crossing_roots(u, g, fin)
        kk = hi - 1 - k  # index of sample k in the reversed window
        tot = np.maximum(v, u + p.tb_loc)
        if (
            0 < kk < u.size - 1
            and np.all(np.isfinite(tot[kk - 1 : kk + 2]))
            and np.all(np.diff(u[kk - 1 : kk + 2]) > 0)
        ):
            r, curv = parabola_vertex(*u[kk - 1 : kk + 2], *tot[kk - 1 : kk + 2])
            if curv > 0:
                out.append(r)
    u_pred = np.array([r for r in out if math.isfinite(r) and r > p.u_lo])
    if u_pred.size == 0:
        return []
    with np.errstate(all="ignore"):
        q_pred = p.min_jamming(u_pred)
    return [float(q) for q in q_pred if math.isfinite(q)]


def _predictions(
    tbs: np.ndarray, t_gld: np.ndarray, k: np.ndarray, n: np.ndarray, tb_loc: np.ndarray
) -> np.ndarray:
    """Predicted sync times u of the best Q near sample ``k[g]`` of each of G clusters
    (samples sorted by Q, the first ``n[g]`` of each row valid): shape (G, 4), NaN where
    none.

    They are made in the sync time u = tB_up(Q) (eq. (23)), where T = max(T_GLD, u +
    tB_loc) is convex (T_GLD(Q) is U-shaped and very curved in Q), from the samples k-3..k+3
    in ascending u: the crossing T_GLD = T_BLD by the secant and inverse quadratic
    interpolation with the next sample on either side (the first crossing only), and the
    vertex of the parabola through T at k-1, k, k+1.
    """
    width = tbs.shape[1]
    idx = k[:, None] + np.arange(3, -4, -1)  # samples k+3 .. k-3: ascending in u
    ok = (idx >= 0) & (idx < n[:, None])
    ci = np.clip(idx, 0, max(width - 1, 0))
    u = np.where(ok, np.take_along_axis(tbs, ci, 1), np.nan)
    v = np.where(ok, np.take_along_axis(t_gld, ci, 1), np.nan)
    c = tb_loc[:, None]
    with np.errstate(all="ignore"):
        g = v - u - c  # decreasing through 0 at the crossing
        fin = np.isfinite(g) & np.isfinite(u)
        cross = fin[:, :-1] & fin[:, 1:] & (g[:, :-1] > 0) & (g[:, 1:] <= 0)
        has = cross.any(1)
        i = cross.argmax(1)

        def at(a: np.ndarray, j: np.ndarray) -> np.ndarray:
            return np.take_along_axis(a, np.clip(j, 0, 6)[:, None], 1)[:, 0]

        ua, ub, ga, gb = at(u, i), at(u, i + 1), at(g, i), at(g, i + 1)
        out = [np.where(has, secant_root(ua, ub, ga, gb), np.nan)]
        for j in (i - 1, i + 2):  # inverse quadratic interpolation
            uc, gc = at(u, j), at(g, j)
            use = has & (j >= 0) & (j < 7) & at(fin, j) & (ga != gb) & (gb != gc) & (ga != gc)
            out.append(np.where(use, iqi_root(ua, ub, uc, ga, gb, gc), np.nan))
        tot = np.maximum(v, u + c)  # the parabola through T at samples k+1, k, k-1
        r, curv = parabola_vertex(u[:, 2], u[:, 3], u[:, 4], tot[:, 2], tot[:, 3], tot[:, 4])
        use = (
            ok[:, 2]
            & ok[:, 4]
            & np.isfinite(tot[:, 2:5]).all(1)
            & (u[:, 3] - u[:, 2] > 0)
            & (u[:, 4] - u[:, 3] > 0)
            & (curv > 0)
        )
        out.append(np.where(use, r, np.nan))
    return np.stack(out, 1)


_TOWARDS_TOP = np.array([1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7])
"""Grid points below the feasibility limit q_top of Q, relative to (q_top - max(Q_lo, 0))."""
_REFINE_RTOL = 1e-5
"""Refinement stops once at most this much (relative) is left to gain around the best Q."""
_MIN_ROUNDS = 1
"""Refinement rounds run before that test."""


def _local_gain(tb_loc: float, tbs: np.ndarray, totals: np.ndarray, k: int) -> float:
    """How much lower than sample k T may be between its neighbours, by the secants of T
    through the samples around them: in u = tB_up(Q), where T is convex (the stopping rule
    of the refinement; T at the samples is exact near the optimum, an upper bound away)."""
    lo, hi = max(k - 6, 0), min(k + 7, tbs.size)
    u = tbs[lo:hi][::-1]
    f = totals[lo:hi][::-1]
    ok = np.isfinite(u) & np.isfinite(f)
    if ok.sum() < 3:
        return math.inf
    kk = hi - 1 - k
    u, f = u[ok], f[ok]
    kk = int(np.flatnonzero(np.flatnonzero(ok) == kk)[0]) if ok[kk] else int(np.argmin(f))
    x_left = u[max(kk - 1, 0)]
    x_right = u[min(kk + 1, u.size - 1)]
    return float(f[kk] - convexity_lower_bound(u, f, f, kk, x_left, x_right, tb_loc))


_LADDER = np.array([0.1, 1e-2, 1e-3, 1e-4])
"""Offsets (relative to the bracket) of the refinement points beside each prediction."""


def solve_algorithm2(
    cluster: Cluster,
    *,
    mode: str = "corrected",
    grid_points: int | None = None,
    theta1: float | None = None,
    refine_rounds: int = _REFINE_ROUNDS,
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
        Corrected mode: points of the log grid in (Q - Q_lo) (default 12; 12 more are placed
        at log-spaced distances below the feasibility limit of Q).
    theta1 : float, optional
        Paper mode: the linear search step over Q (W); default (Q_hi - Q_lo) / 100.
    refine_rounds : int
        Corrected mode: at most this many refinement rounds around the best Q (default 5;
        from the second on, they stop once the secants of T, in u = tB_up(Q), around the
        best Q leave less than 1e-5 relative to gain): 6 uniform points between its
        neighbours plus 9 around each model prediction of the optimum.
    alpha0, theta2, max_iter, lambda0
        Dual method settings, see :func:`dual_at_q`. ``max_iter`` defaults to 500 in paper
        mode and to 4 per Q on the grid in corrected mode (half that in refinement rounds,
        warm started from the nearest Q searched): primal recovery polishes the dual tG
        exactly, so the dual iterate only needs to start it close. On 60 seeded clusters
        15 iterations change T by < 1e-9 and cost time.
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
    if grid_points is not None and int(grid_points) < 3:
        raise ValueError(f"grid_points: must be >= 3, got {grid_points}")
    max_iter = (500 if paper else _MAX_ITER) if max_iter is None else int(max_iter)
    dual_opts: dict[str, Any] = {
        "mode": mode,
        "alpha0": alpha0,
        "theta2": theta2,
        "max_iter": max_iter,
        "lambda0": lambda0,
    }
    if p.m == 0 or p.n == 0:
        # no jamming decision to search over: Algorithm 2 degenerates; use the exact answer
        from solvers.exact import solve_exact

        res = solve_exact(cluster)
        res.solver = name
        res.message = f"degenerate cluster (M={p.m}, N={p.n}): {res.message}"
        return res
    if paper:
        return _solve_paper(cluster, p, theta1, dual_opts, keep_lambda, name, t0)
    return _solve_corrected(
        cluster, p, grid_points, refine_rounds, dual_opts, keep_lambda, name, t0
    )


def _solve_corrected(
    cluster: Cluster,
    p: Prepared,
    grid_points: int | None,
    refine_rounds: int,
    dual_opts: dict[str, Any],
    keep_lambda: bool,
    name: str,
    t0: float,
) -> SolverResult:
    reason, u_feas, _ = p.feasibility()  # closed-form infeasibility detection
    if reason:
        return SolverResult.infeasible(
            p.m, reason, solver=name, wall_time_s=time.perf_counter() - t0
        )
    npts = _GRID_POINTS if grid_points is None else int(grid_points)
    span = p.q_hi - p.q_lo
    grid = p.q_lo + span * np.geomspace(1e-8, 1.0, npts)
    # beyond q_top the GLDs cannot pay for the jamming (closed form: the surplus of
    # docs/MODEL.md's test is <= 0 at tB_up(Q) even with y, tG unbounded); T rises steeply
    # towards it, often right beside the optimum: log-spaced points towards it
    q_start = max(p.q_lo, 0.0)
    with np.errstate(all="ignore"):
        q_top = float(min(p.q_hi, p.min_jamming(np.array(p.domain_left(u_feas)))))
    if not q_top > q_start:
        q_top = p.q_hi
    grid = np.concatenate([grid, q_top - (q_top - q_start) * _TOWARDS_TOP])
    if p.q_lo < 0:
        grid = np.concatenate([[0.0], grid[grid > 0]])
    grid = np.unique(grid[(grid > p.q_lo) & (grid <= p.q_hi)])
    feas = grid <= q_top
    alpha0 = _ALPHA0 if dual_opts["alpha0"] is None else float(dual_opts["alpha0"])
    theta2 = _THETA2 if dual_opts["theta2"] is None else float(dual_opts["theta2"])
    if not (alpha0 > 0 and theta2 > 0):
        raise ValueError("alpha0, theta2: must be > 0")
    lam0 = _LAMBDA0 if dual_opts["lambda0"] is None else dual_opts["lambda0"]
    max_iter = int(dual_opts["max_iter"])
    if max_iter < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter}")

    qs = grid
    with np.errstate(all="ignore"):
        tbs = np.asarray(p.sync_time(qs), dtype=float)  # eq. (23)
    lams = np.zeros((qs.size, p.m))
    tg_dual = np.full(qs.size, p.tg_min * 1.5)
    t_gld = np.full(qs.size, np.inf)
    ys = np.full(qs.size, np.inf)
    tgs = np.full(qs.size, np.nan)
    lam_log: list[tuple[np.ndarray, np.ndarray]] = []
    nit = 0
    consts = DualConsts.of(p)

    def search(
        q_new: np.ndarray,
        tb_new: np.ndarray,
        lam_start: np.ndarray,
        tg_start: np.ndarray,
        iters: int,
        tg_near: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Dual subgradient method, then primal recovery, at each Q in ``q_new``."""
        nonlocal nit
        with np.errstate(all="ignore"):
            tr = _one(
                _dual(
                    consts,
                    q_new[None],
                    tb_new[None],
                    lam_start[None],
                    tg_start[None],
                    False,
                    alpha0,
                    theta2,
                    iters,
                    final=False,
                    keep=keep_lambda,
                )
            )
            nit += int(tr.iterations.max(initial=0))
            if keep_lambda:
                lam_log.append((tr.q_w, tr.lam))
            tg_n, y_n, t_n = _recover(p, q_new, tb_new, tr.tg_s, tg_near)
        return tg_n, y_n, t_n, tr.lam[-1], tr.tg_s

    if feas.any():
        lam_start = np.broadcast_to(np.asarray(lam0, float), (int(feas.sum()), p.m)).copy()
        if np.any(lam_start < 0) or not np.all(np.isfinite(lam_start)):
            raise ValueError("lambda0: must be finite and >= 0")
        t_gld[feas], ys[feas], tgs[feas], lams[feas], tg_dual[feas] = search(
            qs[feas], tbs[feas], lam_start, tg_dual[feas], max_iter
        )
    totals = _t_total(p, t_gld, tbs)

    for rnd in range(refine_rounds):
        if not np.isfinite(totals).any():
            break
        k = int(np.argmin(totals))
        lo = qs[k - 1] if k > 0 else q_start
        hi = qs[k + 1] if k + 1 < qs.size else q_top
        hi = min(hi, q_top)
        if not hi > lo:
            break
        if rnd >= _MIN_ROUNDS and _local_gain(p.tb_loc, tbs, totals, k) <= _REFINE_RTOL * totals[k]:
            break  # the secants of T around the best Q leave (almost) nothing to gain
        width = hi - lo
        preds = [r for r in _predict(p, qs, t_gld, tbs, k) if lo < r < hi]
        new = [np.linspace(lo, hi, 8)[1:-1]]
        for r in preds:
            off = width * _LADDER
            new.append(np.concatenate([[r], r - off, r + off]))
        q_new = np.unique(np.concatenate(new))
        q_new = q_new[(q_new > max(lo, p.q_lo)) & (q_new < hi) & (q_new <= q_top)]
        pos = np.clip(np.searchsorted(qs, q_new), 1, qs.size - 1)
        near = np.minimum(np.abs(q_new - qs[pos - 1]), np.abs(q_new - qs[pos]))
        q_new = q_new[near > 1e-12 * q_new]
        if q_new.size == 0:
            break
        pos = np.clip(np.searchsorted(qs, q_new), 1, qs.size - 1)
        with np.errstate(all="ignore"):
            tb_new = np.asarray(p.sync_time(q_new), dtype=float)
        # warm start: multipliers and Sub-T start of the nearest Q searched
        src = np.where(np.abs(q_new - qs[pos - 1]) < np.abs(q_new - qs[pos]), pos - 1, pos)
        fin = np.isfinite(tgs) & np.isfinite(t_gld)
        tg_near = np.interp(q_new, qs[fin], tgs[fin]) if fin.any() else np.full(q_new.size, np.nan)
        g_n, y_n, t_n, l_n, d_n = search(
            q_new, tb_new, lams[src], tg_dual[src], max(1, max_iter // 2), tg_near
        )
        qs = np.concatenate([qs, q_new])
        order = np.argsort(qs, kind="stable")
        qs = qs[order]
        tbs, t_gld, ys, tgs, tg_dual = (
            np.concatenate([a, b])[order]
            for a, b in ((tbs, tb_new), (t_gld, g_n), (ys, y_n), (tgs, t_n), (tg_dual, d_n))
        )
        lams = np.concatenate([lams, l_n])[order]
        totals = _t_total(p, t_gld, tbs)

    info: dict[str, Any] = {
        "curve": {"Q_w": qs, "T_s": totals + p.fixed_s},
        "lambda": lam_log,
        "mode": "corrected",
    }
    if not np.isfinite(totals).any():
        return SolverResult.infeasible(
            p.m,
            "no Q on the search grid admits a feasible allocation",
            solver=name,
            iterations=nit,
            wall_time_s=time.perf_counter() - t0,
            info=info,
        )
    k = int(np.argmin(totals))
    q_best, y_best, tg_best, tb_best = float(qs[k]), float(ys[k]), float(tgs[k]), float(tbs[k])
    q_alloc = p.jam_split(y_best, tg_best, q_best, tb_best)
    res = finalize(
        cluster,
        y=y_best,
        tg=tg_best,
        q=q_alloc,
        status="converged",
        message="",
        solver=name,
        iterations=nit,
        t0=t0,
        info=info,
    )
    res.message = (
        f"dual subgradient + primal recovery; best Q = {q_best:.4g} W of "
        f"{qs.size} searched (log grid and refinement)"
    )
    return res


def _solve_paper(
    cluster: Cluster,
    p: Prepared,
    theta1: float | None,
    dual_opts: dict[str, Any],
    keep_lambda: bool,
    name: str,
    t0: float,
) -> SolverResult:
    """Paper-faithful: linear Q grid, last dual iterate as the answer (may break (14a))."""
    if theta1 is not None and not (float(theta1) > 0 and math.isfinite(float(theta1))):
        raise ValueError(f"theta1: must be > 0, got {theta1}")
    if p.q_lo >= p.q_hi:  # the Q interval of eq. (22) is empty: nothing to search
        return SolverResult.infeasible(
            p.m,
            f"the Q interval of eq. (22) is empty: Q_lo = {p.q_lo:.4g} W >= "
            f"sum Q_max g_iE = {p.q_hi:.4g} W",
            solver=name,
            wall_time_s=time.perf_counter() - t0,
        )
    q_start = max(p.q_lo, 0.0)
    step = (p.q_hi - p.q_lo) / 100.0 if theta1 is None else float(theta1)
    grid = np.arange(q_start, p.q_hi + 0.5 * step, step)
    grid = grid[(grid > p.q_lo) & (grid <= p.q_hi)]
    if grid.size == 0:
        grid = np.array([p.q_hi])
    trace = dual_at_q(p, grid, **dual_opts)
    nit = int(trace.iterations.max(initial=0))
    lam_log = [(trace.q_w, trace.lam)] if keep_lambda else []
    totals = _t_total(p, trace.y_s + trace.tg_s, trace.tb_up_s)
    qs, ys, tgs, dual_q = trace.q_w, trace.y_s, trace.tg_s, trace.q
    info: dict[str, Any] = {
        "curve": {"Q_w": qs, "T_s": totals + p.fixed_s},
        "lambda": lam_log,
        "mode": "paper",
    }
    if not np.isfinite(totals).any():
        return SolverResult.infeasible(
            p.m,
            "no Q on the search grid admits a feasible allocation",
            solver=name,
            iterations=nit,
            wall_time_s=time.perf_counter() - t0,
            info=info,
        )
    k = int(np.argmin(totals))
    q_best, y_best, tg_best = float(qs[k]), float(ys[k]), float(tgs[k])
    q_alloc = dual_q[k]
    res = finalize(
        cluster,
        y=y_best,
        tg=tg_best,
        q=q_alloc,
        status="converged",
        message="",
        solver=name,
        iterations=nit,
        t0=t0,
        info=info,
    )
    ev = evaluate_allocation(cluster, tg_s=tg_best, y_s=y_best, jam_power_w=q_alloc)
    excess = float(np.max(ev.energy_total_j - cluster.gld.energy_budget_j))
    res.info["energy_excess_j"] = excess
    if ev.min_slack < -1e-9:
        res.status = "primal_infeasible"
        res.message = (
            f"paper-faithful last dual iterate at Q = {q_best:.4g} W breaks the "
            f"energy budget (14a) by up to {excess:.3g} J"
        )
    else:
        res.message = f"paper-faithful last dual iterate at Q = {q_best:.4g} W"
    return res
