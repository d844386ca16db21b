"""Closed-form building blocks shared by the solvers (vectorised over a batch of rows).

Notation: w = 1/y^2, u = tB_up (BLD sync time), Q = sum_i q_i g_iE (eq. (20)).

Feasibility test (MODEL.md): for fixed Q, y, tG with s_i = E_max,i - K_i/y^2 - E_i^up(tG),
a jamming split exists iff every s_i >= 0 and sum_i g_iE min(Q_max,i, s_i/u) >= Q, where
u = tB_up(Q). For fixed (tG, Q, u) the smallest feasible y is found in closed form: the left
side is a concave piecewise-linear decreasing function of w, so the largest feasible w sits
on one of its segments.
"""

from __future__ import annotations

import math

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.model.system import (
    LN2,
    bld_twin_latency_s,
    jamming_lower_bound_w,
    jamming_upper_bound_w,
    min_jamming_for_sync_w,
    min_upload_time_s,
    sync_time_s,
)

_GOLD = (np.sqrt(5.0) - 1.0) / 2.0


class Prepared:
    """Per-cluster constants of problem P, computed once and reused by every solver call."""

    def __init__(self, cluster: Cluster) -> None:
        k = cluster.constants
        g = cluster.gld
        self.cluster = cluster
        self.m = cluster.n_gld
        self.n = cluster.n_bld
        self.c = k.cycles_per_round_bit
        self.k_loc = k.switched_capacitance * (self.c * g.data_bits) ** 3  # eq. (18): E = K/y^2
        self.y_min = float(np.max(self.c * g.data_bits / g.max_cpu_hz)) if self.m else 0.0  # (19)
        self.w_max = 1.0 / self.y_min**2 if self.m else np.inf
        self.tg_min = min_upload_time_s(cluster)  # (24c)
        self.g_e = g.gain_eavesdropper
        self.q_max = g.max_jam_power_w
        self.e_max = g.energy_budget_j
        self.n_over_g = k.noise_coordinator_w / g.gain_coordinator
        self.sic = np.arange(self.m, dtype=float)  # i - 1
        self.x_scale = k.model_bits * LN2 / k.bandwidth_hz  # r ln 2 = x_scale / tG
        # upload energy as tG -> inf: n_C/g_iC * L ln2 / W
        self.e_up_inf = self.n_over_g * self.x_scale
        self.gk = self.g_e * self.k_loc
        self.tb_loc = bld_twin_latency_s(cluster)
        self.fixed_s = k.fixed_latency_s
        self.noise_e = k.noise_eavesdropper_w
        self.q_lo = jamming_lower_bound_w(cluster)
        self.q_hi = jamming_upper_bound_w(cluster)
        if self.n:
            b = cluster.bld
            a = np.log2(1.0 + b.power_w * b.gain_coordinator / k.noise_bld_w)
            self.u_lo = float(np.max(b.data_bits / (k.bandwidth_hz * a)))  # infinite jamming
            self.u_free = float(sync_time_s(cluster, 0.0))  # sync time without jamming
        else:
            self.u_lo = 0.0
            self.u_free = 0.0

    # ------------------------------------------------------------------ closed forms
    def upload_energy(self, tg: np.ndarray) -> np.ndarray:
        """E_i^up(tG) = n_C/g_iC tG (2^r - 1) 2^((i-1) r), eqs. (7)-(8); shape tg.shape + (M,).

        Overflows to ``inf`` (never NaN) for tiny tG; call under ``np.errstate``.
        """
        t = np.asarray(tg, dtype=float)[..., None]
        x = self.x_scale / t  # r ln 2
        return self.n_over_g * t * np.expm1(x) * np.exp(self.sic * x)

    def min_jamming(self, u: np.ndarray) -> np.ndarray:
        """Q(u): smallest aggregate jamming that syncs every BLD within u (eq. (23) inverted)."""
        return min_jamming_for_sync_w(self.cluster, u)

    def sync_time(self, q: np.ndarray) -> np.ndarray:
        return sync_time_s(self.cluster, q)

    def jam_demand(self, q_req: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Jamming energy the GLDs must deliver, weighted by g_iE: max(Q, 0) * u."""
        q_req = np.asarray(q_req, dtype=float)
        with np.errstate(invalid="ignore"):
            # a requirement below 1e-12 n_E is rounding noise of eq. (23)'s inversion at the
            # no-jamming sync time, not a physical demand
            return np.where(q_req > 1e-12 * self.noise_e, q_req * u, 0.0)

    def min_y(self, tg: np.ndarray, demand: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Smallest feasible y for given tG, jamming demand Q*u and sync time u.

        Broadcasts ``tg`` of shape (B, K) against ``demand``/``u`` of shape (B, 1). Returns
        ``inf`` where no y works. Call under ``np.errstate(all="ignore")``.
        """
        a = self.e_max - self.upload_energy(tg)  # energy left for compute + jamming
        caps = self.q_max * np.asarray(u, dtype=float)[..., None]  # Q_max,i * u
        dem = np.asarray(demand, dtype=float)
        g, kl = self.g_e, self.k_loc
        w_cap = np.minimum(self.w_max, np.min(a / kl, axis=-1))  # every s_i >= 0
        h_cap = np.sum(g * np.minimum(caps, a - kl * w_cap[..., None]), -1)
        h_zero = np.sum(g * np.minimum(caps, a), axis=-1)
        # H(w) = sum_i g_i min(cap_i, a_i - K_i w) is concave, piecewise linear and
        # decreasing, with breakpoints beta_k. Its right tangent at beta_k over-estimates
        # H to the right, so the root is min_k beta_k + (H(beta_k) - D) / S_k over the
        # breakpoints with H(beta_k) >= D (S_k: slope right of beta_k).
        beta = (a - caps) / kl
        bk = beta[..., :, None]  # k along axis -2, i along axis -1
        h_at = np.sum(g * np.minimum(caps[..., None, :], a[..., None, :] - kl * bk), axis=-1)
        slope = np.sum(np.where(beta[..., None, :] <= bk, self.gk, 0.0), axis=-1)
        d = dem[..., None]
        w_k = np.where(h_at >= d, beta + (h_at - d) / slope, np.inf)
        w = np.where(h_cap >= dem, w_cap, np.minimum(np.min(w_k, axis=-1), w_cap))
        ok = (w_cap > 0) & (h_zero >= dem) & (w > 0) & (w < np.inf)
        return np.where(ok, 1.0 / np.sqrt(np.where(ok, w, 1.0)), np.inf)

    def gld_time(self, demand: np.ndarray, u: np.ndarray, *, iters: int = 40
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """min y + tG over tG for each row (convex in tG): coarse log grid, then golden section.

        Returns ``(y + tG, y, tG)``, each of shape (B,); ``inf`` rows are infeasible.
        """
        with np.errstate(all="ignore"):
            return self._gld_time(demand, u, iters)

    def _gld_time(self, demand: np.ndarray, u: np.ndarray, iters: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        demand = np.atleast_1d(np.asarray(demand, dtype=float))
        u = np.atleast_1d(np.asarray(u, dtype=float))
        b = max(demand.size, u.size)
        demand = np.broadcast_to(demand, (b,))[:, None]
        u = np.broadcast_to(u, (b,))[:, None]
        # coarse grid: tG_min * 4^k, k = 0..11 (h is convex in tG, so unimodal in log tG)
        ks = np.arange(12, dtype=float)
        grid = np.log(self.tg_min) + ks * 2.0 * LN2
        tgs = np.exp(grid)[None, :].repeat(b, 0)
        h = self.min_y(tgs, demand, u) + tgs
        best = np.argmin(h, axis=-1)
        lo = np.take(grid, np.maximum(best - 1, 0))
        hi = np.take(grid, np.minimum(best + 1, ks.size - 1))
        c = hi - _GOLD * (hi - lo)
        d = lo + _GOLD * (hi - lo)

        def f(s: np.ndarray) -> np.ndarray:
            t = np.exp(s)[:, None]
            return self.min_y(t, demand, u)[:, 0] + t[:, 0]

        fc, fd = f(c), f(d)
        for _ in range(iters):
            left = fc < fd
            hi = np.where(left, d, hi)
            lo = np.where(left, lo, c)
            new = np.where(left, hi - _GOLD * (hi - lo), lo + _GOLD * (hi - lo))
            fn = f(new)
            d, fd, c, fc = (np.where(left, c, new), np.where(left, fc, fn),
                            np.where(left, new, d), np.where(left, fn, fd))
        # keep the best point seen among the final pair and the grid minimum
        s_best = np.where(fc < fd, c, d)
        val = np.minimum(fc, fd)
        grid_best = np.take_along_axis(h, best[:, None], -1)[:, 0]
        use_grid = grid_best < val
        s_best = np.where(use_grid, np.take(grid, best), s_best)
        tg = np.exp(s_best)
        y = self.min_y(tg[:, None], demand, u)[:, 0]
        return y + tg, y, tg

    def feasibility(self) -> tuple[str | None, float, float]:
        """Decide in closed form whether problem P has a solution on this cluster.

        Returns ``(reason, u_feas, u_hi)``: ``reason`` is ``None`` when feasible, else the
        explanation; ``u_feas`` is a sync time at which the jamming energy surplus (with y,
        tG unbounded) is largest, and ``u_hi`` bounds the optimal sync time from above.
        The surplus psi(u) = sum_i g_iE min(Q_max,i u, s_i^inf) - u max(Q(u), 0) is concave
        in u, so its maximum decides feasibility.
        """
        if self.m == 0:
            if not math.isfinite(self.u_free):
                return "no GLD can jam and some BLD has R_j = 0 at Q = 0 (eq. (22))", 0.0, 0.0
            return None, self.u_free, self.u_free
        poor = np.flatnonzero(self.e_max <= self.e_up_inf)
        if poor.size:
            return (f"GLD {int(poor[0]) + 1} cannot pay the upload energy even with an "
                    "unbounded upload time (E_max <= n_C L ln2 / (g_iC W))"), 0.0, 0.0
        if self.n == 0:
            return None, 0.0, 0.0
        if self.q_lo >= self.q_hi:
            msg = (f"even full jamming (sum Q_max g_iE = {self.q_hi:.4g} W) does not make "
                   f"every secrecy rate positive (needs Q > {self.q_lo:.4g} W, eq. (22))")
            return msg, 0.0, 0.0
        if self.q_lo < 0:  # from tB_up(0) on no jamming is needed
            return None, self.u_free, self.u_free
        s_inf = self.e_max - self.e_up_inf  # energy left with y, tG -> inf

        def psi(u: np.ndarray) -> np.ndarray:
            dem = self.jam_demand(self.min_jamming(u), u)
            return np.sum(self.g_e * np.minimum(self.q_max * u[..., None], s_inf), -1) - dem

        # beyond u_bound even Q_lo * u exceeds all the energy the GLDs could ever jam with
        u_bound = float(np.sum(self.g_e * s_inf) / self.q_lo) if self.q_lo > 0 else self.u_lo * 1e9
        span = max(u_bound - self.u_lo, self.u_lo * 1e-9)
        s = np.log(span) + np.linspace(np.log(1e-12), 0.0, 400)
        vals = psi(self.u_lo + np.exp(s))
        k = int(np.argmax(vals))
        lo, hi = s[max(k - 1, 0)], s[min(k + 1, s.size - 1)]
        for _ in range(60):  # golden section on the concave surplus (unimodal in log)
            c, d = hi - _GOLD * (hi - lo), lo + _GOLD * (hi - lo)
            pc, pd = psi(self.u_lo + np.exp(np.array([c, d])))
            if pc > pd:
                hi = d
            else:
                lo = c
        u_mid = self.u_lo + math.exp(0.5 * (lo + hi))
        best_val, u_feas = max((float(psi(np.array([u_mid]))[0]), u_mid),
                               (float(vals[k]), float(self.u_lo + np.exp(s[k]))))
        if best_val < 0:
            return ("the GLDs cannot pay for the jamming any sync time needs: for every tB_up "
                    "the energy left after upload cannot deliver Q(tB_up) * tB_up "
                    "(MODEL.md feasibility test)"), u_feas, u_bound
        return None, u_feas, max(u_bound, u_feas)

    def jam_split(self, y: float, tg: float, q_req: float, u: float) -> np.ndarray:
        """A jamming split with sum q_i g_iE = Q, 0 <= q_i <= min(Q_max,i, s_i/u).

        Scales every GLD's cap by the same factor, so no GLD is pushed to its limit unless the
        demand needs all of them there.
        """
        if self.m == 0 or q_req <= 0 or u == 0:
            return np.zeros(self.m)
        with np.errstate(all="ignore"):
            s = self.e_max - self.k_loc / y**2 - self.upload_energy(np.array(tg))
        cap = np.clip(np.minimum(self.q_max, s / u), 0.0, None)
        total = float(np.sum(self.g_e * cap))
        if total <= 0:
            return np.zeros(self.m)
        return cap * min(1.0, q_req / total)


def finalize(cluster: Cluster, *, y: float, tg: float, q: np.ndarray, status: str,
             message: str, solver: str, iterations: int, t0: float,
             info: dict | None = None):  # type: ignore[type-arg]
    """Evaluate an allocation in the system model and wrap it as a :class:`SolverResult`.

    The reported T, T_GLD, T_BLD, Q and tB_up are the model's re-evaluation of (y, tG, q),
    so a result always agrees with :func:`dtfl_env.model.evaluate_allocation`.
    """
    import time

    from dtfl_env.model.system import evaluate_allocation
    from solvers.result import SolverResult

    if cluster.n_gld == 0:
        y, tg = 0.0, 0.0
        q = np.zeros(0)
        ev = None
    else:
        ev = evaluate_allocation(cluster, tg_s=tg, y_s=y, jam_power_w=q)
    if ev is None:
        prep_q = 0.0
        tb = float(sync_time_s(cluster, 0.0))
        tbl = bld_twin_latency_s(cluster)
        t_bld = tb + tbl
        T = t_bld + cluster.constants.fixed_latency_s
        return SolverResult(T=T, Q=prep_q, y=0.0, v=np.zeros(0), tG=0.0, q=np.zeros(0),
                            tB_up=tb, T_GLD=0.0, T_BLD=t_bld, status=status, message=message,
                            iterations=iterations, wall_time_s=time.perf_counter() - t0,
                            solver=solver, info=info or {})
    return SolverResult(T=ev.latency_s, Q=ev.jamming_w, y=ev.y_s, v=ev.cpu_hz, tG=ev.tg_s,
                        q=ev.jam_power_w, tB_up=ev.tb_up_s, T_GLD=ev.t_gld_s, T_BLD=ev.t_bld_s,
                        status=status, message=message, iterations=iterations,
                        wall_time_s=time.perf_counter() - t0, solver=solver,
                        info={**(info or {}), "min_slack": ev.min_slack})
