"""Closed-form building blocks shared by the solvers (vectorised over a batch of rows).

Notation: w = 1/y^2, u = tB_up (BLD sync time), Q = sum_i q_i g_iE (eq. (20)),
a_i(tG) = E_max,i - E_i^up(tG) (energy left for compute and jamming), cap_i = Q_max,i u.

Feasibility test (docs/MODEL.md): for fixed Q, y, tG with s_i = a_i - K_i w, a jamming split
exists iff every s_i >= 0 and H(w) = sum_i g_iE min(cap_i, s_i) >= D = Q u, where
u = tB_up(Q). So the smallest feasible y is w(tG)^(-1/2) with

    w(tG) = min(w_max, min_i a_i / K_i, w_H),   w_H: the largest w with H(w) >= D.

H is concave, piecewise linear and decreasing in w, with a breakpoint beta_i = (a_i - cap_i)
/ K_i per GLD: H(w) = C + sum_i g_i K_i min(0, beta_i - w), C = sum_i g_i cap_i. Being
concave, H is the minimum of the affine extensions of its pieces, so its root is the
smallest root of a piece: with the breakpoints sorted, w_H = min_k (C - D + sum_{i<=k}
g_i K_i beta_i) / sum_{i<=k} g_i K_i (and w_H = -inf when C < D). Every piece of w(tG),
including w_max and a_j/K_j, is (const + sum_i c_i a_i(tG)) with c_i >= 0, so w(tG) is
concave (a_i is concave: E_i^up is convex) and its one-sided derivatives follow from the
active piece and the analytic dE_i^up/dtG, d^2E_i^up/dtG^2 (eqs. (30)-(31)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.model.batch import ClusterRow, upload_energy_j
from dtfl_env.model.system import (
    LN2,
    bld_twin_latency_s,
    jamming_lower_bound_w,
    jamming_upper_bound_w,
    sync_time_s,
)

_NUDGE = np.array([1e-3, 1e-7])[:, None]
"""Offsets (relative to the bracket) of the points placed beside the predicted kink."""
_TG_GRID = 4.0 ** np.arange(12)
"""Coarse grid of tG / tG_min that brackets the minimiser of y + tG (convex in tG)."""


class Prepared:
    """Per-cluster constants of problem P, computed once and reused by every solver call."""

    def __init__(self, cluster: Cluster) -> None:
        k = cluster.constants
        g = cluster.gld
        row = ClusterRow.from_cluster(cluster)  # the model's derived constants
        self.cluster = cluster
        self.m = m = cluster.n_gld
        self.n = cluster.n_bld
        self.c = k.cycles_per_round_bit
        self.k_loc = row.g_kloc  # eq. (18): E = K/y^2
        self.y_min = row.y_min_s  # (19)
        self.w_max = 1.0 / self.y_min**2 if m else np.inf
        self.tg_min = row.tg_min_s  # (24c)
        self.g_e = g.gain_eavesdropper
        self.q_max = g.max_jam_power_w
        self.e_max = g.energy_budget_j
        self.n_over_g = row.g_nog
        self.sic = row.sic  # i - 1
        self.x_scale = row.x_scale  # r ln 2 = x_scale / tG
        # upload energy as tG -> inf: n_C/g_iC * L ln2 / W
        self.e_up_inf = self.n_over_g * self.x_scale
        self.gk = self.g_e * self.k_loc
        self.tb_loc = bld_twin_latency_s(cluster)
        self.fixed_s = k.fixed_latency_s
        self.noise_e = k.noise_eavesdropper_w
        self.q_lo = jamming_lower_bound_w(cluster)
        self.q_hi = jamming_upper_bound_w(cluster)
        # (M, 1, 1)-shaped copies for the batched evaluation in _evaluate (GLD axis first)
        col = (m, 1, 1)
        with np.errstate(divide="ignore"):
            self._lng3 = np.log(self.n_over_g).reshape(col)
        self._sic3 = self.sic.reshape(col)
        self._g3 = self.g_e.reshape(col)
        self._emax3 = self.e_max.reshape(col)
        self._igk3 = 1j * self.gk.reshape(col)
        self._ikl3 = 1.0 / self.k_loc.reshape(col)
        self._qk3 = (self.q_max / self.k_loc).reshape(col)
        self._gq = float(np.sum(self.g_e * self.q_max))
        self._tril = np.tril(np.ones((m, m)))
        # rows 1, (i-1), (i-1)^2: sums over GLDs of the terms of dE_i^up/dt, d2E_i^up/dt2
        self.sic_powers = np.stack([np.ones(m), self.sic, self.sic**2])
        self._wmk = self.sic_powers / self.k_loc
        self.dup_at_min = self.upload_energy_slope(np.array(self.tg_min)) if m else self.sic
        if self.n:
            b = cluster.bld
            a = np.log2(1.0 + b.power_w * b.gain_coordinator / k.noise_bld_w)
            self.u_lo = float(np.max(b.data_bits / (k.bandwidth_hz * a)))  # infinite jamming
            self.u_free = float(sync_time_s(cluster, 0.0))  # sync time without jamming
            self._bld_a = (a * LN2)[:, None]
            self._bld_d = (b.data_bits / k.bandwidth_hz * LN2)[:, None]
            self._bld_ph = (b.power_w * b.gain_eavesdropper)[:, None]
        else:
            self.u_lo = 0.0
            self.u_free = 0.0

    # ------------------------------------------------------------------ closed forms
    def upload_energy(self, tg: np.ndarray) -> np.ndarray:
        """E_i^up(tG) = n_C/g_iC tG (2^r - 1) 2^((i-1) r), eqs. (7)-(8); shape tg.shape + (M,).

        Overflows to ``inf`` (never NaN) for tiny tG; call under ``np.errstate``.
        """
        return upload_energy_j(
            self.n_over_g, self.sic, self.x_scale, np.asarray(tg, dtype=float)[..., None]
        )

    def upload_energy_slope(self, tg: np.ndarray) -> np.ndarray:
        """dE_i^up/dtG (eq. (31)), shape tg.shape + (M,)."""
        return upload_energy_slope(
            self.n_over_g, self.sic, self.x_scale, np.asarray(tg, dtype=float)[..., None]
        )

    def min_jamming(self, u: np.ndarray) -> np.ndarray:
        """Q(u): smallest aggregate jamming that syncs every BLD within u (eq. (23) inverted).

        R_j(Q) >= D_j / u  <=>  Q >= p_j h_jE / (2^(a_j - D_j/(W u)) - 1) - n_E (the closed
        form of :func:`dtfl_env.model.system.min_jamming_for_sync_w`, with the per-BLD
        constants precomputed). ``inf`` where even infinite jamming is too slow, negative
        where no jamming is needed.
        """
        u = np.asarray(u, dtype=float)
        if self.n == 0:
            return np.full(u.shape, -self.noise_e)
        flat = u.reshape(-1)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            expo = self._bld_a - self._bld_d / flat
            need = self._bld_ph / np.expm1(expo) - self.noise_e
            need = np.where(expo > 0, need, np.inf)
        return need.max(0).reshape(u.shape)

    def sync_time(self, q: np.ndarray) -> np.ndarray:
        return sync_time_s(self.cluster, q)

    def jam_demand(self, q_req: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Jamming energy the GLDs must deliver, weighted by g_iE: max(Q, 0) * u."""
        return jam_demand(q_req, u, self.noise_e)

    # ------------------------------------------------------------------ w(tG) and y + tG
    def _evaluate(
        self, t: np.ndarray, cmd: np.ndarray, capk: np.ndarray, deriv: bool = True
    ) -> np.ndarray:
        """w(tG) and, with ``deriv``, h = y + tG and its derivatives, at a batch of points.

        ``t`` has shape (K, B) (K points for each of B rows); ``cmd`` = C - D, shape (B,);
        ``capk`` = cap_i / K_i, shape (M, 1, B). Returns w of shape (K, B), or with ``deriv``
        the stack (t, h, h', w, w', t_N) of shape (6, K, B): derivatives in tG, and t_N the
        Newton step on log(1 - h') = log(w'/(2 w^1.5)) (nearly linear where E^up is
        exponential in 1/tG). Infeasible points (w <= 0) get h = inf, h' = -inf
        (feasibility is monotone in tG: they lie left). The derivatives are those of the
        active piece of w: one-sided derivatives (so subgradients of the convex h) at ties.
        """
        m = self.m
        shape = t.shape
        x = self.x_scale / t  # r ln 2
        em1 = np.expm1(x)
        base = self._sic3 * x
        base += self._lng3
        np.exp(base, out=base)  # n_C/g_iC 2^((i-1) r)
        r = base * (em1 * t)  # E_i^up
        np.subtract(self._emax3, r, out=r)
        r *= self._ikl3  # a_i / K_i
        beta = r - capk  # breakpoints (a_i - cap_i) / K_i
        z = beta + self._igk3
        z.sort(axis=0)  # breakpoints sorted, g_i K_i carried along
        z = z.reshape(m, -1)
        zr, gks = z.real, z.imag
        n = z.shape[1]
        roots = (self._tril @ (gks * zr)).reshape(beta.shape)
        roots += cmd
        roots /= (self._tril @ gks).reshape(beta.shape)  # > 0: g_iE, K_i > 0 (validated)
        roots = roots.reshape(m, -1)
        kk = roots.argmin(0)
        ar = np.arange(n)
        w_h = roots[kk, ar].reshape(shape)
        w_h[:, cmd < 0] = -np.inf  # C < D: even full jamming power falls short
        w_s = r.min(0)
        w = np.minimum(w_h, w_s)
        np.minimum(w, self.w_max, out=w)
        if not deriv:
            return w
        # weights c_i of the active piece, normalised so that w' = -sum_i c_i dE_i/dt:
        # H piece: g_i / sum_S g_k K_k over the first kk + 1 GLDs in breakpoint order (their
        # energy limits their jamming); a_j / K_j piece: 1 / K_j; w_max: 0
        is_h = (w_h <= w_s) & (w_h <= self.w_max)
        is_b = (w_s < w_h) & (w_s <= self.w_max)
        gs = (beta <= zr[kk, ar].reshape(shape)) * self._g3
        cb = (gs * base).reshape(m, -1)
        a_h = self.sic_powers @ cb
        a_h /= self.k_loc @ gs.reshape(m, -1)
        jb = r.argmin(0).reshape(-1)
        a_b = self._wmk[:, jb] * base.reshape(m, -1)[jb, ar]
        a0, a1, a2 = np.where(is_h.reshape(-1), a_h, a_b * is_b.reshape(-1)).reshape((3, *shape))
        return tg_point_rows(t, w, x, em1, a0, a1, a2)

    def _row_consts(
        self, demand: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        demand = np.atleast_1d(np.asarray(demand, dtype=float))
        u = np.atleast_1d(np.asarray(u, dtype=float))
        b = max(demand.size, u.size)
        demand = np.broadcast_to(demand.reshape(-1), (b,))
        u = np.broadcast_to(u.reshape(-1), (b,))
        cmd = self._gq * u - demand
        capk = self._qk3 * u
        return demand, u, cmd, capk

    def min_y(self, tg: np.ndarray, demand: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Smallest feasible y for given tG, jamming demand Q*u and sync time u.

        Broadcasts ``tg`` of shape (B, K) against ``demand``/``u`` of shape (B, 1). Returns
        ``inf`` where no y works. Call under ``np.errstate(all="ignore")``.
        """
        tg = np.asarray(tg, dtype=float)
        dem = np.broadcast_to(np.asarray(demand, dtype=float), tg.shape)
        uu = np.broadcast_to(np.asarray(u, dtype=float), tg.shape)
        flat = tg.reshape(1, -1)
        w = self._evaluate(
            flat,
            self._gq * uu.reshape(-1) - dem.reshape(-1),
            self._qk3 * uu.reshape(-1),
            deriv=False,
        ).reshape(tg.shape)
        ok = w > 0
        return np.where(ok, 1.0 / np.sqrt(np.where(ok, w, 1.0)), np.inf)

    def gld_time(
        self,
        demand: np.ndarray,
        u: np.ndarray,
        *,
        iters: int = 40,
        guess: np.ndarray | None = None,
        rtol: float = 1e-13,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """min y + tG over tG for each row (convex in tG), to ``rtol`` (certified).

        Returns ``(y + tG, y, tG)``, each of shape (B,); ``inf`` rows are infeasible.
        See :meth:`gld_time_bounds` for the method.
        """
        v, y, tg, _ = self.gld_time_bounds(demand, u, iters=iters, guess=guess, rtol=rtol)
        return v, y, tg

    def gld_time_bounds(
        self,
        demand: np.ndarray,
        u: np.ndarray,
        *,
        iters: int = 40,
        guess: np.ndarray | None = None,
        rtol: float = 1e-13,
        floor: np.ndarray | None = None,
        slack: float = 1e-3,
        stop: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """V = min_tG y + tG per row with a lower bound: ``(V, y, tG, V_lower)``.

        h(tG) = tG + w(tG)^(-1/2) is convex. A coarse log grid brackets its minimiser by the
        sign of h' (or ``guess``, shape (K, B), ascending points to bracket it from first);
        then each step evaluates nine points inside the bracket at once (vectorised): the
        crossing of the tangents of w at both ends (where two pieces of w meet, e.g. the
        kink where y reaches y_min) nudged to either side by 1e-3 and 1e-7 of the bracket,
        the crossing of the tangents of h, the secant root of h', a Newton step on
        log(1 - h') from either end and the log-midpoint (which guarantees progress). The
        tangents of h at the bracket ends bound min h from below; a row stops when that
        bound is within ``rtol`` of its best point (typically after 2-5 steps from the
        grid, 1-2 from a close ``guess``). With ``floor`` (per row, e.g. u + tB_loc, T =
        max(V, floor)), a row also stops once max(V_lower, floor) exceeds the best
        max(V, floor) of all rows by the factor 1 + ``slack``: it cannot hold the minimum of
        T, only its bounds are needed (while other rows go on, it is refined to 1e-6).
        ``stop(V, V_lower)``, called before every step, ends the search early when true.
        The answer's y is the smallest feasible one for its tG (closed form, as min_y).
        """
        with np.errstate(all="ignore"):
            return self._gld_time(demand, u, iters, guess, rtol, floor, slack, stop)

    def _gld_time(
        self,
        demand: np.ndarray,
        u: np.ndarray,
        iters: int,
        guess: np.ndarray | None,
        rtol: float,
        floor: np.ndarray | None = None,
        slack: float = 1e-3,
        stop: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        _, _, cmd, capk = self._row_consts(demand, u)
        if guess is not None:
            guess = np.asarray(guess, dtype=float)  # (K, B), ascending in K
        return tg_search(
            _PointRows(self, cmd, capk),
            guess,
            floor,
            rtol=rtol,
            slack=slack,
            iters=iters,
            stop=stop,
        )

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
            return (
                (
                    f"GLD {int(poor[0]) + 1} cannot pay the upload energy even with an "
                    "unbounded upload time (E_max <= n_C L ln2 / (g_iC W))"
                ),
                0.0,
                0.0,
            )
        if self.n == 0:
            return None, 0.0, 0.0
        if self.q_lo >= self.q_hi:
            msg = (
                f"even full jamming (sum Q_max g_iE = {self.q_hi:.4g} W) does not make "
                f"every secrecy rate positive (needs Q > {self.q_lo:.4g} W, eq. (22))"
            )
            return msg, 0.0, 0.0
        if self.q_lo < 0:  # from tB_up(0) on no jamming is needed
            return None, self.u_free, self.u_free
        s_inf = self.e_max - self.e_up_inf  # energy left with y, tG -> inf
        psi = self._surplus
        # beyond u_bound even Q_lo * u exceeds all the energy the GLDs could ever jam with
        u_bound = float(np.sum(self.g_e * s_inf) / self.q_lo) if self.q_lo > 0 else self.u_lo * 1e9
        span = max(u_bound - self.u_lo, self.u_lo * 1e-9)
        s = np.log(span) + np.linspace(np.log(1e-12), 0.0, 400)
        vals = psi(self.u_lo + np.exp(s))
        k = int(np.argmax(vals))
        best_val, u_feas = float(vals[k]), float(self.u_lo + np.exp(s[k]))
        lo, hi = s[max(k - 1, 0)], s[min(k + 1, s.size - 1)]
        pos = vals > 0
        j = int(pos.argmax())
        root = (s[j - 1], s[j]) if pos.any() and j > 0 else None
        for _ in range(6):
            # zoom on the maximum of the concave surplus (unimodal in log u) and on its left
            # root (the left end of the feasible sync times) at once: 32x per round
            s = np.linspace(lo, hi, 33)
            sr = np.linspace(*root, 33) if root else s[:0]
            vals = psi(self.u_lo + np.exp(np.concatenate([s, sr])))
            vr, vals = vals[s.size :], vals[: s.size]
            k = int(np.argmax(vals))
            if vals[k] > best_val:
                best_val, u_feas = float(vals[k]), float(self.u_lo + np.exp(s[k]))
            lo, hi = s[max(k - 1, 0)], s[min(k + 1, s.size - 1)]
            if root:
                j = max(int((vr > 0).argmax()), 1)
                root = (sr[j - 1], sr[j])
        if best_val < 0:
            return (
                (
                    "the GLDs cannot pay for the jamming any sync time needs: for every tB_up "
                    "the energy left after upload cannot deliver Q(tB_up) * tB_up "
                    "(docs/MODEL.md, erratum 5)"
                ),
                u_feas,
                u_bound,
            )
        self._u_left = float(self.u_lo + math.exp(root[0])) if root else self.u_lo
        return None, u_feas, max(u_bound, u_feas)

    def _surplus(self, u: np.ndarray) -> np.ndarray:
        """psi(u) = sum_i g_iE min(Q_max,i u, s_i^inf) - u max(Q(u), 0): concave; a sync time
        u admits a feasible (y, tG) iff psi(u) > 0 (s_i^inf: the energy left as y, tG -> inf).
        """
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            expo = self._bld_a - self._bld_d / u
            need = (self._bld_ph / np.expm1(expo) - self.noise_e).max(0)
            need = np.where(expo.min(0) > 0, need, np.inf)
            dem = jam_demand(need, u, self.noise_e)
            return (
                self.g_e
                @ np.minimum(self.q_max[:, None] * u, (self.e_max - self.e_up_inf)[:, None])
                - dem
            )

    def domain_left(self, u_feas: float) -> float:
        """A sync time at or just below the smallest one with a feasible (y, tG).

        The left root of the concave surplus psi (:meth:`_surplus`) below ``u_feas`` (where
        psi > 0), located to ~1e-10 of u - u_lo by zooming on the sign change, from the
        infeasible side: below the returned value T(u) is infinite. It is u_cap = tB_up(sum_i
        Q_max,i g_iE) where the jamming power caps bind, and where the energy binds V(u) =
        min y + tG grows without bound towards it. :meth:`feasibility` computes it on the way.
        """
        if self.n == 0 or self.m == 0:
            return self.u_lo
        if getattr(self, "_u_left", None) is not None:
            return self._u_left
        span = u_feas - self.u_lo
        if not span > 0:
            return self.u_lo
        lo, hi = math.log(1e-14 * span), math.log(span)
        if self._surplus(np.array([self.u_lo + math.exp(lo)]))[0] > 0:
            return self.u_lo
        for _ in range(7):
            s = np.linspace(lo, hi, 33)
            pos = self._surplus(self.u_lo + np.exp(s)) > 0
            j = int(pos.argmax()) if pos.any() else s.size - 1
            if j == 0:
                break
            lo, hi = s[j - 1], s[j]
        self._u_left = float(self.u_lo + math.exp(lo))
        return self._u_left

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


class _PointRows:
    """One cluster's R tG searches (row r: jamming demand and sync time giving ``cmd[r]`` =
    C - D and ``capk[..., r]`` = cap_i / K_i) in the form :func:`tg_search` takes."""

    def __init__(self, p: Prepared, cmd: np.ndarray, capk: np.ndarray) -> None:
        self.p, self.cmd, self.capk = p, cmd, capk
        self.tg_min = p.tg_min

    @property
    def size(self) -> int:
        return int(self.cmd.size)

    def evaluate(self, t: np.ndarray) -> np.ndarray:
        return self.p._evaluate(t, self.cmd, self.capk)

    def take(self, keep: np.ndarray) -> None:
        self.cmd, self.capk = self.cmd[keep], self.capk[..., keep]

    def subset(self, sub: np.ndarray) -> _PointRows:
        return _PointRows(self.p, self.cmd[sub], self.capk[..., sub])


class SearchRows(Protocol):
    """R tG searches as :func:`tg_search` takes them: ``evaluate(t)`` gives the stack (t, h,
    h', w, w', t_N) of shape (6, K, R) at points ``t`` (K, R) (:func:`tg_point_rows`),
    ``take(keep)`` drops rows in place, ``subset(sub)`` copies rows, ``tg_min`` is
    tG_min (a scalar or per row) and ``size`` is R."""

    tg_min: np.ndarray | float

    @property
    def size(self) -> int: ...

    def evaluate(self, t: np.ndarray) -> np.ndarray: ...

    def take(self, keep: np.ndarray) -> None: ...

    def subset(self, sub: np.ndarray) -> SearchRows: ...


def tg_grid_bracket(rows: SearchRows) -> tuple[np.ndarray, np.ndarray]:
    """Ends (6, R) of a bracket of the minimiser of h from the coarse tG grid (h' < 0 at the
    left end, h' >= 0 at the right end; both at tG_min when h'(tG_min) >= 0)."""
    b = rows.size
    ar = np.arange(b)
    grid = rows.tg_min * _TG_GRID[:, None] * np.ones(b)
    pts = rows.evaluate(grid)
    pos = pts[2] >= 0
    kf = pos.argmax(0)
    lo = pts[:, np.maximum(kf - 1, 0), ar]
    hi = pts[:, kf, ar]
    none = ~pos.any(0) & (pts[1, -1] < np.inf)
    if none.any():  # minimiser beyond the grid: look further right (rare)
        sub = np.flatnonzero(none)
        far = grid[-1, sub] * 4.0 ** np.arange(1, 25)[:, None]
        pf = rows.subset(sub).evaluate(far)
        pos = pf[2] >= 0
        kf_f = np.where(pos.any(0), pos.argmax(0), far.shape[0] - 1)
        rs = np.arange(sub.size)
        hi[:, sub] = pf[:, kf_f, rs]
        lo[:, sub] = np.where(kf_f > 0, pf[:, np.maximum(kf_f - 1, 0), rs], pts[:, -1, sub])
    lo = np.where((kf == 0) & ~none, hi, lo)
    return lo, hi


def tg_bracket(rows: SearchRows, guess: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Ends (6, R) of a bracket of the minimiser of h: from ``guess`` (K, R, ascending)
    where it brackets it, else from the grid (:func:`tg_grid_bracket`)."""
    if guess is None:
        return tg_grid_bracket(rows)
    b = rows.size
    pts = rows.evaluate(guess)
    pos = pts[2] >= 0
    kf = pos.argmax(0)
    ar = np.arange(b)
    lo = pts[:, np.maximum(kf - 1, 0), ar]
    hi = pts[:, kf, ar]
    at_min = (kf == 0) & (guess[0] <= rows.tg_min) & pos[0]
    lo = np.where(at_min, hi, lo)
    need = ~(pos.any(0) & ((kf > 0) | at_min))
    if need.any():
        sub = np.flatnonzero(need)
        lo_g, hi_g = tg_grid_bracket(rows.subset(sub))
        lo[:, sub] = lo_g
        hi[:, sub] = hi_g
    return lo, hi


def tg_bounds(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min h at the bracket ends, lower bound of min h) per row (inf: infeasible)."""
    tl, hl, h1l = lo[:3]
    th, hh, h1h = hi[:3]
    best = np.minimum(hl, hh)
    with np.errstate(all="ignore"):
        tx = (hh - hl + h1l * tl - h1h * th) / (h1l - h1h)
        lb = np.where(th > tl, np.minimum(hl + h1l * (tx - tl), best), best)
    # hh = inf: infeasible even at the largest tG tried (E_i^up there is its limit)
    return best, np.where(np.isnan(lb), np.where(hh == np.inf, np.inf, -np.inf), lb)


def tg_search(
    rows: SearchRows,
    guess: np.ndarray | None = None,
    floor: np.ndarray | None = None,
    group: int | np.ndarray | None = None,
    known: np.ndarray | None = None,
    rtol: float = 1e-13,
    slack: float = 1e-3,
    iters: int = 40,
    group_stop: bool = False,
    stop: Callable[[np.ndarray, np.ndarray], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """V = min_tG y + tG per row with a lower bound: ``(V, y, tG, V_lower)``.

    The search of :meth:`Prepared.gld_time_bounds` (see there) on R rows of one cluster
    (:class:`_PointRows`) or of many (:class:`solvers.batch._core._Rows`). Rows come in
    groups of consecutive rows (one cluster's samples): ``group`` rows each, ``group[j]``
    rows in group j, or (None) one group. With ``floor`` (T = max(V, floor)), a row that
    cannot hold its group's minimum of T closes once refined to 1e-6; ``known`` (one per
    group) is the group's best T(u) - const known from earlier samples. With ``group_stop``
    a group's rows stop together once all of them are done, as one cluster's rows do (else
    a done row that cannot hold the minimum is refined to 1e-6 while any row goes on).
    ``stop(V, V_lower)``, called before every step, ends the search early when true.
    ``rows`` is consumed (its rows are dropped as they close).
    """
    with np.errstate(all="ignore"):
        lo_all, hi_all = tg_bracket(rows, guess)
        b = rows.size
        if group is None:
            counts = np.array([b])
        elif np.ndim(group) == 0:
            counts = np.full(b // group if b else 0, group)
        else:
            counts = np.asarray(group, dtype=int)
        starts = np.cumsum(counts) - counts
        gid = np.repeat(np.arange(counts.size), counts)
        lo, hi = lo_all, hi_all  # the rows still searched (all at first)
        act = np.arange(b)
        for it in range(iters + 1):
            tl, hl, h1l, wl, w1l, tnl = lo
            th, hh, h1h, wh, w1h, tnh = hi
            # lower bound of min h from the tangents at the bracket ends (nan when tl = th)
            dh = h1l - h1h
            tx = (hh - hl + h1l * tl - h1h * th) / dh
            best = np.minimum(hl, hh)
            lb = hl + h1l * (tx - tl)
            done = (best - lb <= rtol * best) | (th - tl <= 4e-16 * th) | (hh == np.inf)
            close = done
            if floor is not None and b:
                fv = np.maximum(np.minimum(lo_all[1], hi_all[1]), floor)
                gmin = np.minimum.reduceat(fv, starts)
                if known is not None:
                    gmin = np.minimum(gmin, known)
                cut = gmin[gid[act]] * (1 + slack)
                far = np.maximum(lb, floor[act]) > cut
                # rows that cannot hold the minimum of T are done; while others go on they
                # are still refined to 1e-6 (their values feed the caller's models)
                close = done | (far & (best - lb <= 1e-6 * best))
                done = done | far
            if it == iters or done.all():
                break
            if stop is not None and stop(*tg_bounds(lo_all, hi_all)):
                break
            if group_stop:  # groups whose rows are all done stop
                all_done = np.ones(b, dtype=bool)
                all_done[act] = done
                close = close | np.logical_and.reduceat(all_done, starts)[gid[act]]
            if close.any():  # search only the open rows from now on
                keep = ~close
                act, lo, hi = act[keep], lo[:, keep], hi[:, keep]
                rows.take(keep)
                tl, hl, h1l, wl, w1l, tnl = lo
                th, hh, h1h, wh, w1h, tnh = hi
                dh, tx = dh[keep], tx[keep]
            ar = np.arange(act.size)
            mid = np.sqrt(tl * th)
            r3 = (wh - wl + w1l * tl - w1h * th) / (w1l - w1h)  # tangents of w cross
            e = _NUDGE * (th - tl)
            cand = np.concatenate(
                (r3 - e, r3 + e, np.stack((tx, tl + h1l * (th - tl) / dh, tnl, tnh, mid)))
            )
            cand = np.where((cand > tl) & (cand < th), cand, mid)
            pts = rows.evaluate(cand)
            neg = pts[2] < 0
            key = np.where(neg, cand, 0.0)
            il = key.argmax(0)
            lo = np.where(key[il, ar] > tl, pts[:, il, ar], lo)
            key = np.where(neg, np.inf, cand)
            ih = key.argmin(0)
            hi = np.where(key[ih, ar] < th, pts[:, ih, ar], hi)
            if act.size == b:  # no row closed yet: the full arrays are these
                lo_all, hi_all = lo, hi
            else:
                lo_all[:, act] = lo
                hi_all[:, act] = hi
        v, v_lo = tg_bounds(lo_all, hi_all)
        use_lo = lo_all[1] < hi_all[1]
        tg = np.where(use_lo, lo_all[0], hi_all[0])
        w = np.where(use_lo, lo_all[3], hi_all[3])
        y = np.where(v < np.inf, 1.0 / np.sqrt(np.where(v < np.inf, w, 1.0)), np.inf)
    return v, y, tg, v_lo


# the closed forms of the solvers' model predictions of an optimum (scalars or arrays)
def secant_root(xa: Any, xb: Any, ga: Any, gb: Any) -> Any:
    """x where the line through (xa, ga) and (xb, gb) crosses g = 0."""
    return xa + ga * (xb - xa) / (ga - gb)


def iqi_root(xa: Any, xb: Any, xc: Any, ga: Any, gb: Any, gc: Any) -> Any:
    """Inverse quadratic interpolation: x where the parabola x(g) through (xa, ga),
    (xb, gb), (xc, gc) has g = 0 (the g distinct)."""
    return (
        xa * gb * gc / ((ga - gb) * (ga - gc))
        + xb * ga * gc / ((gb - ga) * (gb - gc))
        + xc * ga * gb / ((gc - ga) * (gc - gb))
    )


def crossing_roots(x: np.ndarray, g: np.ndarray, fin: np.ndarray) -> list[float]:
    """Where g (sampled at ascending ``x``, decreasing through 0) crosses 0 at its first
    sign change among the usable samples (``fin``): the secant root, then the inverse
    quadratic interpolation with the usable sample on either side. Call under
    ``np.errstate``."""
    out: list[float] = []
    for i in range(g.size - 1):
        if fin[i] and fin[i + 1] and g[i] > 0 >= g[i + 1]:
            out.append(secant_root(x[i], x[i + 1], g[i], g[i + 1]))
            for j in (i - 1, i + 2):
                if 0 <= j < g.size and fin[j]:
                    ga, gb, gc = g[i], g[i + 1], g[j]
                    if ga != gb and gb != gc and ga != gc:
                        out.append(iqi_root(x[i], x[i + 1], x[j], ga, gb, gc))
            break
    return out


def parabola_vertex(x0: Any, x1: Any, x2: Any, y0: Any, y1: Any, y2: Any) -> tuple[Any, Any]:
    """(abscissa of the vertex, curvature) of the parabola through (x0, y0), (x1, y1),
    (x2, y2), x ascending: a minimum where the curvature is > 0."""
    d1 = (y1 - y0) / (x1 - x0)
    d2 = (y2 - y1) / (x2 - x1)
    curv = (d2 - d1) / (x2 - x0)
    return 0.5 * (x0 + x1) - d1 / (2.0 * curv), curv


def upload_energy_slope(
    noise_over_gain: np.ndarray, sic: np.ndarray, x_scale: Any, tg_s: Any
) -> np.ndarray:
    """dE_i^up/dtG (eq. (31)) of :func:`dtfl_env.model.batch.upload_energy_j` (eqs. (7)-(8),
    same arguments, broadcast)."""
    x = x_scale / tg_s
    em1 = np.expm1(x)
    return -noise_over_gain * np.exp(sic * x) * (x * (em1 + 1.0 + sic * em1) - em1)


def jam_demand(q_req: np.ndarray, u: np.ndarray, noise_e: np.ndarray | float) -> np.ndarray:
    """D = max(Q, 0) u: the jamming energy the GLDs must deliver, weighted by g_iE (eq. (10)),
    at aggregate jamming ``q_req`` and sync time ``u`` (broadcast; ``noise_e`` = n_E). A
    requirement below 1e-12 n_E is rounding noise of eq. (23)'s inversion at the no-jamming
    sync time, not a physical demand."""
    q_req = np.asarray(q_req, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(q_req > 1e-12 * noise_e, q_req * u, 0.0)


def tg_point_rows(
    t: np.ndarray,
    w: np.ndarray,
    x: np.ndarray,
    em1: np.ndarray,
    a0: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
) -> np.ndarray:
    """The stack (t, h, h', w, w', t_N) of the tG search at points ``t`` (any shape), from
    w(tG), x = r ln 2, e^x - 1 and the active piece's weighted sums a0, a1, a2 of the
    upload-energy terms (see :meth:`Prepared._evaluate`; shared with
    :mod:`solvers.batch`). Infeasible points (w <= 0) get h = inf, h' = -inf."""
    ep = em1 + 1.0
    w1 = x * ep * a0 + em1 * (x * a1 - a0)  # -sum c_i dE_i/dt, eq. (31)
    w2 = (x * x / t) * (ep * (a0 + 2.0 * a1) + em1 * a2)  # +sum c_i d2E_i/dt2
    out = np.empty((6, *t.shape))
    out[0] = t
    out[3] = w
    out[4] = w1
    ok = w > 0
    y = 1.0 / np.sqrt(w)
    q = 0.5 * w1 * (y * y * y)  # 1 - h'
    out[1] = t + y
    out[2] = 1.0 - q
    out[1][~ok] = np.inf
    out[2][~ok] = -np.inf
    out[5] = t + np.log(q) / (w2 / w1 + 1.5 * w1 / w)
    return out


def finalize(
    cluster: Cluster,
    *,
    y: float,
    tg: float,
    q: np.ndarray,
    status: str,
    message: str,
    solver: str,
    iterations: int,
    t0: float,
    info: dict | None = None,
):  # type: ignore[type-arg]
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
        return SolverResult(
            T=T,
            Q=prep_q,
            y=0.0,
            v=np.zeros(0),
            tG=0.0,
            q=np.zeros(0),
            tB_up=tb,
            T_GLD=0.0,
            T_BLD=t_bld,
            status=status,
            message=message,
            iterations=iterations,
            wall_time_s=time.perf_counter() - t0,
            solver=solver,
            info=info or {},
        )
    return SolverResult(
        T=ev.latency_s,
        Q=ev.jamming_w,
        y=ev.y_s,
        v=ev.cpu_hz,
        tG=ev.tg_s,
        q=ev.jam_power_w,
        tB_up=ev.tb_up_s,
        T_GLD=ev.t_gld_s,
        T_BLD=ev.t_bld_s,
        status=status,
        message=message,
        iterations=iterations,
        wall_time_s=time.perf_counter() - t0,
        solver=solver,
        info={**(info or {}), "min_slack": ev.min_slack},
    )
