"""The exact solver of problem P for a batch of clusters at once (numpy, vectorised).

:func:`solve_batch` runs the algorithm of :mod:`solvers.exact` on B clusters in lockstep:
per cluster a 1-D convex search over the BLD sync time u = tB_up, whose T(u) = max(V(u),
u + tB_loc) + const is certified by the convexity lower bound (secant lines through the
samples), and inside it, per sampled u, a 1-D convex search over tG of h(tG) = tG + y(tG)
with the smallest feasible y in closed form (:class:`solvers._core.Prepared`'s method,
certified to 1e-13 by the tangents at the ends of the bracket). Every step is one numpy
expression over all clusters still searching (and over all of their sampled u and candidate
tG); clusters that are certified drop out of the arrays. The device axes are padded to the
batch's largest M and N, with boolean masks: a padded GLD has no gain, no jamming power and
an infinite breakpoint, a padded BLD needs no jamming.

Two things differ from the loop, neither in what is certified: the 41 starting samples of u
are searched in waves (every 8th from the coarse tG grid, the others from their solved
neighbours' optimal tG), and before the search over u each cluster tries a shortcut
certificate: V_free = min y + tG without the jamming constraint is a lower bound of T* - const,
and where V(u) reaches it at a sync time u with u + tB_loc <= V_free (the jamming does not
bind, about half of the random clusters) T* is certified at once (:func:`_flat`). The loop
then sometimes ends ``converged`` at a tight ``rtol`` where the batch ends ``optimal``.

Notation as in :mod:`solvers._core`: w = 1/y^2, a_i(tG) = E_max,i - E_i^up(tG), cap_i = Q_max,i
u, Q(u) the jamming that syncs every BLD within u (eq. (23) inverted), D = Q(u) u the jamming
energy (eq. (10)), and the feasibility test of docs/MODEL.md (erratum 5).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.model.batch import LN2, ClusterBatch
from solvers._core import finalize, tg_point_rows
from solvers.result import SolverResult

__all__ = ["STATUS_CODES", "BatchResult", "ClusterBatch", "solve_batch"]

STATUS_CODES = ("optimal", "converged", "not_converged", "infeasible")
"""``BatchResult.status_code`` indexes this tuple (the statuses of :class:`SolverResult`
that the exact solver returns)."""
OPTIMAL, CONVERGED, NOT_CONVERGED, INFEASIBLE = range(4)

_TG_GRID = 4.0 ** np.arange(12)
"""Coarse grid of tG / tG_min that brackets the minimiser of h (as in solvers._core)."""
_NUDGE = np.array([1e-3, 1e-7])[:, None]
"""Offsets (relative to the bracket) of the points placed beside the predicted kink of w."""
_GUESS = np.array([-0.1, -1e-2, -1e-3, 1e-3, 1e-2, 0.1])
"""Relative offsets of the starting points of a tG search from the interpolated optimum."""
_LADDER = np.array([1e-2, 1e-4, 1e-6])
"""Offsets (relative to the bracket width) of the samples placed on either side of each
predicted optimum u."""
_UNIFORM = 5
"""Uniform samples of u per refinement round (besides the predictions)."""
_N_INIT = 40
"""Initial samples of u - u_left, log-spaced from 1e-12 of the span to the span (as
solvers.exact), plus u_feas."""
_WAVES = (8, 4, 2, 1)
"""The initial samples are searched in waves: every 8th from the coarse tG grid, then those
halfway between solved ones from their neighbours' optimal tG."""
_BIG = 1e300
"""Breakpoint of a padded GLD: finite (0 * _BIG = 0 in the sums), above every real one."""


# ---------------------------------------------------------------------------- the result
@dataclass
class BatchResult:
    """Solutions of problem P on B clusters (SI units), arrays indexed by cluster.

    Attributes mirror :class:`solvers.result.SolverResult`, one entry per cluster: ``T``
    (round latency, eq. (11); ``inf`` when infeasible), ``Q`` (aggregate jamming, eq. (20)),
    ``y`` (common local-training time), ``tG`` (NOMA upload time), ``q`` (jamming powers,
    shape (B, M_max), NaN in padded slots and for infeasible clusters), ``tB_up`` (BLD sync
    time, eq. (23)), ``T_GLD`` and ``T_BLD`` (eqs. (12), (13)); ``status`` (strings) and
    ``status_code`` (indices into :data:`STATUS_CODES`), ``message`` (strings),
    ``lower_bound_s`` (the certified lower bound on T*), ``iterations`` (outer rounds) and
    ``wall_time_s`` (the whole batch). ``T``, ``Q``, ``tB_up`` are the model's evaluation of
    (y, tG, q) (eqs. (11), (20), (23)), as :func:`solvers._core.finalize` reports them.
    """

    T: np.ndarray
    Q: np.ndarray
    y: np.ndarray
    tG: np.ndarray
    q: np.ndarray
    tB_up: np.ndarray
    T_GLD: np.ndarray
    T_BLD: np.ndarray
    status_code: np.ndarray
    message: np.ndarray
    lower_bound_s: np.ndarray
    iterations: np.ndarray
    wall_time_s: float = 0.0
    solver: str = "exact-batch"
    n_gld: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    @property
    def status(self) -> np.ndarray:
        return np.array(STATUS_CODES, dtype=object)[self.status_code]

    @property
    def success(self) -> np.ndarray:
        return self.status_code <= CONVERGED

    @property
    def feasible(self) -> np.ndarray:
        return (self.status_code != INFEASIBLE) & np.isfinite(self.T)

    @property
    def fun(self) -> np.ndarray:
        return self.T

    @property
    def nit(self) -> np.ndarray:
        return self.iterations

    def __len__(self) -> int:
        return int(self.T.size)

    def jam_power_w(self, i: int) -> np.ndarray:
        """Cluster ``i``'s jamming powers without the padding, shape (M_i,)."""
        return self.q[i, : int(self.n_gld[i])]

    def result(self, i: int, cluster: Cluster) -> SolverResult:
        """Cluster ``i``'s answer as the per-cluster :class:`SolverResult` (``cluster``: the
        ``i``-th cluster of the batch), re-evaluated in the model like :func:`solve_exact`'s.
        ``wall_time_s`` is the batch's share per cluster."""
        if not 0 <= i < len(self):
            raise ValueError(f"i: must be in [0, {len(self)}), got {i}")
        if cluster.n_gld != int(self.n_gld[i]):
            raise ValueError(f"cluster: has {cluster.n_gld} GLDs, batch entry {i} has "
                             f"{int(self.n_gld[i])}")
        share = self.wall_time_s / max(len(self), 1)
        status, msg, nit = str(self.status[i]), str(self.message[i]), int(self.iterations[i])
        if status == "infeasible":
            return SolverResult.infeasible(cluster.n_gld, msg, solver=self.solver,
                                           iterations=nit, wall_time_s=share)
        res = finalize(cluster, y=float(self.y[i]), tg=float(self.tG[i]),
                       q=self.jam_power_w(i), status=status, message=msg, solver=self.solver,
                       iterations=nit, t0=time.perf_counter(),
                       info={"lower_bound_s": float(self.lower_bound_s[i])})
        return dataclasses.replace(res, wall_time_s=share)

    def __repr__(self) -> str:
        counts = {s: int(np.sum(self.status_code == k)) for k, s in enumerate(STATUS_CODES)}
        return (f"BatchResult(B={len(self)}, status={counts}, "
                f"wall_time_s={self.wall_time_s:.3g})")


# ---------------------------------------------------------------------------- constants
class _Prep:
    """Per-cluster constants of problem P for a :class:`ClusterBatch` (the batched
    counterpart of :class:`solvers._core.Prepared`). GLD arrays are (M, B): GLD axis first.
    """

    def __init__(self, cb: ClusterBatch) -> None:
        k = cb.constants
        g = {name: v.T for name, v in cb.gld.items()}
        bd = {name: v.T for name, v in cb.bld.items()}
        self.mask = gm = cb.gld_mask.T
        self.bmask = bm = cb.bld_mask.T
        self.m = gm.sum(0)
        self.n = bm.sum(0)
        m = gm.shape[0]
        self.k_loc = cb.k_loc.T  # eq. (18)
        self.y_min = cb.y_min_s  # eq. (19)
        with np.errstate(divide="ignore"):
            self.w_max = np.where(self.m > 0, 1.0 / self.y_min**2, np.inf)
        self.g_e = np.where(gm, g["gain_eavesdropper"], 0.0)
        self.q_max = np.where(gm, g["max_jam_power_w"], 0.0)
        self.e_max = g["energy_budget_j"]
        n_over_g = cb.noise_over_gain.T
        self.x_scale = cb.x_scale  # r ln 2 = x_scale / tG
        self.e_up_inf = n_over_g * self.x_scale  # E_i^up as tG -> inf
        self.sic = np.arange(m, dtype=float)[:, None]  # i - 1
        self.tg_min = cb.tg_min_s  # (24c)
        with np.errstate(divide="ignore"):
            self.lng = np.where(gm, np.log(n_over_g), -np.inf)
        self.gk = self.g_e * self.k_loc
        self.ikl = 1.0 / self.k_loc
        self.qk = self.q_max / self.k_loc
        self.gq = (self.g_e * self.q_max).sum(0)  # sum_i Q_max,i g_iE, eq. (22)
        self.tb_loc = cb.tb_loc_s  # eq. (6)
        self.fixed_s = cb.fixed_s
        self.noise_e = k["noise_eavesdropper_w"]
        # BLD constants: a padded BLD needs no jamming (exponent +inf, power 0)
        self.legit = legit = cb.bld_legit.T
        self.bld_a = np.where(bm, legit * LN2, np.inf)
        self.bld_d = np.where(bm, bd["data_bits"] / k["bandwidth_hz"] * LN2, 0.0)
        self.bld_ph = np.where(bm, bd["power_w"] * bd["gain_eavesdropper"], 0.0)
        self.u_lo = np.where(bm, bd["data_bits"] / (k["bandwidth_hz"] * legit), 0.0).max(
            0, initial=0.0)  # infinite jamming
        self.q_lo = np.where(  # eq. (22)
            self.n > 0, np.where(bm, k["noise_bld_w"] * bd["gain_eavesdropper"]
                                 / bd["gain_coordinator"], -np.inf).max(0, initial=-np.inf)
            - self.noise_e, -self.noise_e)
        self.q_hi = self.gq
        self.bld = bd
        self.k = k
        self.u_free = self.sync_time(np.zeros(self.m.size))

    def sync_time(self, jam_w: np.ndarray) -> np.ndarray:
        """tB_up(Q) = max_j D_jB / R_j(Q), eqs. (21), (23); 0 without BLDs, ``inf`` where
        some R_j = 0. ``jam_w`` has shape (B,)."""
        bd, k = self.bld, self.k
        legit = self.legit
        with np.errstate(divide="ignore", invalid="ignore"):
            eve = np.log2(1.0 + bd["power_w"] * bd["gain_eavesdropper"]
                          / (k["noise_eavesdropper_w"] + jam_w))
            rate = k["bandwidth_hz"] * np.maximum(legit - eve, 0.0)  # eq. (21)
            t = np.where(self.bmask, bd["data_bits"] / rate, 0.0)
        return t.max(0, initial=0.0)  # eq. (23)

    def min_jamming(self, u: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Q(u) for clusters ``cols`` (shape (R,)) at sync times ``u`` (shape (..., R)):
        eq. (23) inverted, ``inf`` where even infinite jamming is too slow."""
        a, d, ph = (x[:, cols] for x in (self.bld_a, self.bld_d, self.bld_ph))
        shp = (a.shape[0],) + (1,) * (u.ndim - 1) + (u.shape[-1],)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            expo = a.reshape(shp) - d.reshape(shp) / u
            need = ph.reshape(shp) / np.expm1(expo) - self.noise_e[cols]
            need = np.where(expo > 0, need, np.inf)
        return need.max(0)

    def jam_demand(self, u: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """D = max(Q(u), 0) u (as :meth:`solvers._core.Prepared.jam_demand`)."""
        q = self.min_jamming(u, cols)
        with np.errstate(invalid="ignore"):
            return np.where(q > 1e-12 * self.noise_e[cols], q * u, 0.0)

    def surplus(self, u: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """psi(u) = sum_i g_iE min(Q_max,i u, s_i^inf) - D(u), concave; u admits a feasible
        (y, tG) iff psi(u) > 0. ``u`` has shape (K, R) for clusters ``cols``."""
        s_inf = np.where(self.mask, self.e_max - self.e_up_inf, 0.0)[:, cols][:, None, :]
        cap = self.q_max[:, cols][:, None, :] * u
        return (self.g_e[:, cols][:, None, :] * np.minimum(cap, s_inf)).sum(0) - \
            self.jam_demand(u, cols)


# ---------------------------------------------------------------------------- inner search
class _Rows:
    """Constants of R inner searches (row r: cluster ``cols[r]`` at sync time ``u[r]`` with
    jamming demand ``dem[r]``), GLD axis last: (R, M), so that the sort and the cumulative
    sums over GLDs run on contiguous memory."""

    def __init__(self, p: _Prep, cols: np.ndarray, dem: np.ndarray, u: np.ndarray) -> None:
        def g2(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a.T[cols])

        self.m = p.mask.shape[0]
        self.x_scale = p.x_scale[cols]
        self.w_max = p.w_max[cols]
        self.tg_min = p.tg_min[cols]
        self.lng = g2(p.lng)
        self.g = g2(p.g_e)
        self.emax = g2(p.e_max)
        self.gk = g2(p.gk)
        self.ikl = np.where(g2(p.mask), g2(p.ikl), 0.0)
        self.mask = g2(p.mask)
        self.kl = g2(p.k_loc)
        self.capk = g2(p.qk) * u[:, None]  # cap_i / K_i
        self.cmd = p.gq[cols] * u - dem  # C - D
        self.sic = p.sic[:, 0]
        self.powers = np.stack([np.ones(self.m), self.sic, self.sic**2], 1)  # (M, 3)

    def take(self, keep: np.ndarray) -> None:
        for name in ("x_scale", "w_max", "tg_min", "cmd", "lng", "g", "emax", "gk", "ikl",
                     "mask", "kl", "capk"):
            setattr(self, name, getattr(self, name)[keep])

    def evaluate(self, t: np.ndarray) -> np.ndarray:
        """(t, h, h', w, w', t_N) of shape (6, K, R) at tG = ``t`` (K, R): the batched
        :meth:`solvers._core.Prepared._evaluate` (same pieces, same one-sided derivatives).
        """
        x = self.x_scale / t  # r ln 2
        em1 = np.expm1(x)
        base = x[..., None] * self.sic
        base += self.lng
        np.exp(base, out=base)  # n_C/g_iC 2^((i-1) r), eq. (7) with erratum 1
        r = base * (em1 * t)[..., None]  # E_i^up, eq. (8)
        np.subtract(self.emax, r, out=r)
        r *= self.ikl  # a_i / K_i
        np.copyto(r, _BIG, where=~self.mask)
        beta = r - self.capk  # breakpoints (a_i - cap_i) / K_i
        z = beta + 1j * self.gk
        z.sort(axis=-1)  # breakpoints sorted, g_i K_i carried along
        zr, gks = z.real, z.imag
        num = np.cumsum(gks * zr, axis=-1)
        num += self.cmd[:, None]
        num /= np.cumsum(gks, axis=-1)  # the roots of the pieces of H
        kk = num.argmin(-1)[..., None]
        w_h = np.take_along_axis(num, kk, -1)[..., 0]
        w_h[:, self.cmd < 0] = -np.inf  # C < D: even full jamming power falls short
        jb = r.argmin(-1)[..., None]
        w_s = np.take_along_axis(r, jb, -1)[..., 0]
        w = np.minimum(np.minimum(w_h, w_s), self.w_max)
        # weights of the active piece (see solvers._core.Prepared._evaluate)
        is_h = (w_h <= w_s) & (w_h <= self.w_max)
        is_b = (w_s < w_h) & (w_s <= self.w_max)
        gs = beta <= np.take_along_axis(zr, kk, -1)
        gs = gs * self.g
        den = (gs * self.kl).sum(-1)
        gs *= base
        sums = gs @ self.powers  # (K, R, 3): sums of g_i (i-1)^p 2^((i-1) r) n_C/g_iC
        b0 = (np.take_along_axis(base, jb, -1)[..., 0]
              * np.take_along_axis(np.broadcast_to(self.ikl, base.shape), jb, -1)[..., 0]
              * is_b)
        j = jb[..., 0].astype(float)
        a0 = np.where(is_h, sums[..., 0] / den, b0)
        a1 = np.where(is_h, sums[..., 1] / den, b0 * j)
        a2 = np.where(is_h, sums[..., 2] / den, b0 * j * j)
        return tg_point_rows(t, w, x, em1, a0, a1, a2)


def _grid_bracket(rows: _Rows) -> tuple[np.ndarray, np.ndarray]:
    """Ends (6, R) of a bracket of the minimiser of h from the coarse tG grid."""
    b = rows.cmd.size
    ar = np.arange(b)
    grid = rows.tg_min * _TG_GRID[:, None]
    pts = rows.evaluate(grid)
    pos = pts[2] >= 0
    kf = pos.argmax(0)
    lo = pts[:, np.maximum(kf - 1, 0), ar]
    hi = pts[:, kf, ar]
    none = ~pos.any(0) & (pts[1, -1] < np.inf)
    if none.any():  # minimiser beyond the grid: look further right (rare)
        sub = np.flatnonzero(none)
        far = grid[-1, sub] * 4.0 ** np.arange(1, 25)[:, None]
        saved = _subrows(rows, sub)
        pf = saved.evaluate(far)
        pos_f = pf[2] >= 0
        kf_f = np.where(pos_f.any(0), pos_f.argmax(0), far.shape[0] - 1)
        rs = np.arange(sub.size)
        hi[:, sub] = pf[:, kf_f, rs]
        lo[:, sub] = np.where(kf_f > 0, pf[:, np.maximum(kf_f - 1, 0), rs], pts[:, -1, sub])
    lo = np.where((kf == 0) & ~none, hi, lo)
    return lo, hi


def _subrows(rows: _Rows, sub: np.ndarray) -> _Rows:
    out = object.__new__(_Rows)
    out.__dict__.update(rows.__dict__)
    out.take(sub)
    return out


def _bracket(rows: _Rows, guess: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """As :meth:`solvers._core.Prepared._bracket`: from ``guess`` (K, R) where it brackets
    the minimiser, else from the grid."""
    if guess is None:
        return _grid_bracket(rows)
    b = rows.cmd.size
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
        lo_g, hi_g = _grid_bracket(_subrows(rows, sub))
        lo[:, sub] = lo_g
        hi[:, sub] = hi_g
    return lo, hi


def _bounds(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(min h at the bracket ends, lower bound of min h) per row (inf: infeasible)."""
    tl, hl, h1l = lo[:3]
    th, hh, h1h = hi[:3]
    best = np.minimum(hl, hh)
    with np.errstate(all="ignore"):
        tx = (hh - hl + h1l * tl - h1h * th) / (h1l - h1h)
        lb = np.where(th > tl, np.minimum(hl + h1l * (tx - tl), best), best)
    return best, np.where(np.isnan(lb), np.where(hh == np.inf, np.inf, -np.inf), lb)


def _gld_time(rows: _Rows, guess: np.ndarray | None, floor: np.ndarray | None,
              group: int, known: np.ndarray | None = None, rtol: float = 1e-13,
              slack: float = 1e-3, iters: int = 40
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """V = min_tG y + tG per row with a lower bound: ``(V, y, tG, V_lower)``.

    The batched :meth:`solvers._core.Prepared.gld_time_bounds`: h(tG) = tG + w(tG)^(-1/2)
    is convex; each step evaluates nine candidates inside the bracket of every open row;
    a row closes when the tangents at its bracket ends certify min h to ``rtol``. With
    ``floor`` (T = max(V, floor)), rows come in groups of ``group`` consecutive rows (one
    cluster's samples), and a row that cannot hold its group's minimum of T closes once
    refined to 1e-6; ``known`` (one per group) is the group's best T(u) - const known from
    earlier samples. ``rows`` is consumed (its rows are dropped as they close).
    """
    with np.errstate(all="ignore"):
        lo_all, hi_all = _bracket(rows, guess)
        b = rows.cmd.size
        lo, hi = lo_all, hi_all
        act = np.arange(b)
        for it in range(iters + 1):
            tl, hl, h1l, wl, w1l, tnl = lo
            th, hh, h1h, wh, w1h, tnh = hi
            dh = h1l - h1h
            tx = (hh - hl + h1l * tl - h1h * th) / dh
            best = np.minimum(hl, hh)
            lb = hl + h1l * (tx - tl)
            done = (best - lb <= rtol * best) | (th - tl <= 4e-16 * th) | (hh == np.inf)
            close = done
            if floor is not None:
                fv = np.maximum(np.minimum(lo_all[1], hi_all[1]), floor)
                gmin = fv.reshape(-1, group).min(1)
                if known is not None:
                    gmin = np.minimum(gmin, known)
                cut = np.repeat(gmin, group)[act] * (1 + slack)
                far = np.maximum(lb, floor[act]) > cut
                close = done | (far & (best - lb <= 1e-6 * best))
                done = done | far
            if it == iters or done.all():
                break
            if close.any():
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
            cand = np.concatenate((r3 - e, r3 + e, np.stack((tx, tl + h1l * (th - tl) / dh,
                                                              tnl, tnh, mid))))
            cand = np.where((cand > tl) & (cand < th), cand, mid)
            pts = rows.evaluate(cand)
            neg = pts[2] < 0
            key = np.where(neg, cand, 0.0)
            il = key.argmax(0)
            lo = np.where(key[il, ar] > tl, pts[:, il, ar], lo)
            key = np.where(neg, np.inf, cand)
            ih = key.argmin(0)
            hi = np.where(key[ih, ar] < th, pts[:, ih, ar], hi)
            if act.size == b:
                lo_all, hi_all = lo, hi
            else:
                lo_all[:, act] = lo
                hi_all[:, act] = hi
        v, v_lo = _bounds(lo_all, hi_all)
        use_lo = lo_all[1] < hi_all[1]
        tg = np.where(use_lo, lo_all[0], hi_all[0])
        w = np.where(use_lo, lo_all[3], hi_all[3])
        y = np.where(v < np.inf, 1.0 / np.sqrt(np.where(v < np.inf, w, 1.0)), np.inf)
    return v, y, tg, v_lo


# ---------------------------------------------------------------------------- feasibility
def _feasibility(p: _Prep, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       np.ndarray]:
    """:meth:`solvers._core.Prepared.feasibility` and ``domain_left`` for clusters ``cols``
    (every one with M, N > 0, no GLD short of upload energy and Q_lo < Q_hi, eq. (22)).

    Returns ``(feasible, u_left, u_feas, u_hi)``: the concave surplus psi (docs/MODEL.md,
    erratum 5) maximised on a log grid in u - u_lo and zoomed 32x per round, its left root
    located from the infeasible side.
    """
    r = cols.size
    u_lo, q_lo = p.u_lo[cols], p.q_lo[cols]
    feasible = np.ones(r, dtype=bool)
    u_left = u_lo.copy()
    u_feas = p.u_free[cols].copy()
    u_hi = u_feas.copy()
    with np.errstate(all="ignore"):
        grid = q_lo >= 0  # else from tB_up(0) on no jamming is needed
        if grid.any():
            gi = np.flatnonzero(grid)
            cg = cols[gi]
            ul, ql = u_lo[gi], q_lo[gi]
            s_inf = np.where(p.mask[:, cg], p.e_max[:, cg] - p.e_up_inf[:, cg], 0.0)
            u_bound = np.where(ql > 0, (p.g_e[:, cg] * s_inf).sum(0) / ql, ul * 1e9)
            span = np.maximum(u_bound - ul, ul * 1e-9)
            s = np.log(span) + np.linspace(np.log(1e-12), 0.0, 400)[:, None]
            vals = p.surplus(ul + np.exp(s), cg)
            n_g = gi.size
            a = np.arange(n_g)
            k = vals.argmax(0)
            best, uf = vals[k, a], ul + np.exp(s[k, a])
            lo, hi = s[np.maximum(k - 1, 0), a], s[np.minimum(k + 1, s.shape[0] - 1), a]
            pos = vals > 0
            j = pos.argmax(0)
            has_root = pos.any(0) & (j > 0)
            r0, r1 = s[np.maximum(j - 1, 0), a], s[j, a]
            t33 = np.linspace(0.0, 1.0, 33)[:, None]
            for _ in range(6):
                s = lo + (hi - lo) * t33
                sr = r0 + (r1 - r0) * t33
                v = p.surplus(ul + np.exp(np.concatenate([s, sr])), cg)
                vr, v = v[33:], v[:33]
                k = v.argmax(0)
                better = v[k, a] > best
                best = np.where(better, v[k, a], best)
                uf = np.where(better, ul + np.exp(s[k, a]), uf)
                lo, hi = s[np.maximum(k - 1, 0), a], s[np.minimum(k + 1, 32), a]
                j = np.maximum((vr > 0).argmax(0), 1)
                r0, r1 = np.where(has_root, sr[j - 1, a], r0), np.where(has_root, sr[j, a], r1)
            feasible[gi] = best >= 0
            u_feas[gi] = uf
            u_hi[gi] = np.maximum(u_bound, uf)
            u_left[gi] = np.where(has_root, ul + np.exp(r0), ul)
        free = ~grid  # domain_left: the left root of psi below u_feas = tB_up(0)
        if free.any():
            fi = np.flatnonzero(free)
            cf = cols[fi]
            ul = u_lo[fi]
            span = u_feas[fi] - ul
            ok = span > 0
            lo, hi = np.log(1e-14 * span), np.log(span)
            first = p.surplus((ul + np.exp(lo))[None], cf)[0] > 0
            run = ok & ~first
            t33 = np.linspace(0.0, 1.0, 33)[:, None]
            a = np.arange(fi.size)
            for _ in range(7):
                s = lo + (hi - lo) * t33
                pos = p.surplus(ul + np.exp(s), cf) > 0
                j = np.where(pos.any(0), pos.argmax(0), 32)
                run &= j > 0
                lo = np.where(run, s[np.maximum(j - 1, 0), a], lo)
                hi = np.where(run, s[j, a], hi)
            u_left[fi] = np.where(ok & ~first, ul + np.exp(lo), ul)
    return feasible, u_left, u_feas, u_hi


# ---------------------------------------------------------------------------- outer search
def _gather(a: np.ndarray, idx: np.ndarray, nv: np.ndarray, fill: float) -> np.ndarray:
    """a[g, idx[g]] per row, ``fill`` where idx is outside 0..nv-1."""
    ok = (idx >= 0) & (idx < nv)
    v = np.take_along_axis(a, np.clip(idx, 0, a.shape[1] - 1)[:, None], 1)[:, 0]
    return np.where(ok, v, fill)


def _secant(xa: np.ndarray, fa: np.ndarray, xi: np.ndarray, fi: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Line through (xa, fa) and (xi, fi) as (slope, intercept); (0, -inf) where either
    value is infinite or the points are closer than 1e-12 (relative): rounding noise."""
    ok = np.isfinite(fa) & np.isfinite(fi) & (np.abs(xa - xi) > 1e-12 * np.abs(xa))
    with np.errstate(all="ignore"):
        s = np.where(ok, (fa - fi) / np.where(ok, xa - xi, 1.0), 0.0)
    return s, np.where(ok, fa - s * xa, -np.inf)


def _lowest(lines: list[tuple[np.ndarray, np.ndarray]], z0: np.ndarray, z1: np.ndarray,
            c: np.ndarray, exists: np.ndarray) -> np.ndarray:
    """min over [z0, z1] of max(lines, u + c) per row; -inf where no line is valid, +inf
    where the interval does not exist (it then bounds nothing)."""
    s = np.stack([ln[0] for ln in lines] + [np.ones_like(c)], 1)  # (G, L)
    b = np.stack([ln[1] for ln in lines] + [c], 1)
    any_line = np.isfinite(b[:, :-1]).any(1)
    with np.errstate(all="ignore"):
        zx = (b[:, None, :] - b[:, :, None]) / (s[:, :, None] - s[:, None, :])  # (G, L, L)
    zx = zx.reshape(zx.shape[0], -1)
    cand = np.concatenate([z0[:, None], z1[:, None], zx], 1)
    cand = np.where(np.isfinite(cand), np.clip(cand, z0[:, None], z1[:, None]), z0[:, None])
    val = (s[:, :, None] * cand[:, None, :] + b[:, :, None]).max(1).min(1)
    return np.where(exists, np.where(any_line, val, -np.inf), np.inf)


def _lower_bound(x: np.ndarray, fl: np.ndarray, fh: np.ndarray, k: np.ndarray,
                 nv: np.ndarray, left: np.ndarray, right: np.ndarray, c: np.ndarray
                 ) -> np.ndarray:
    """Convexity lower bound of min f over [left, right] per row (the batched
    ``solvers.exact.convexity_lower_bound``): f = max(V(u), u + c) + const is convex, f_lo <= f <=
    f_hi at the sorted samples ``x`` (``nv`` valid per row, NaN after), ``k`` the incumbent.
    A secant through a sample a (its lower value) and a partner i (its upper value) bounds f
    beyond a, away from i; an infeasible sample means an infeasible side (the domain is an
    interval)."""
    def X(i: np.ndarray) -> np.ndarray:
        return _gather(x, i, nv, np.nan)

    def FL(i: np.ndarray) -> np.ndarray:
        return _gather(fl, i, nv, np.inf)

    def FH(i: np.ndarray) -> np.ndarray:
        return _gather(fh, i, nv, np.inf)

    def line(a: np.ndarray, i: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _secant(X(a), FL(a), X(i), FH(i))

    last = nv - 1
    xk, xm, xp = X(k), X(k - 1), X(k + 1)
    flm, flp = FL(k - 1), FL(k + 1)
    out = [FL(k)]
    has_m = k > 0
    fin_m = np.isfinite(flm)
    # left of x[k-1] (or of x[0] when k = 0)
    a = np.where(has_m, k - 1, k)
    za = np.where(has_m, xm, xk)
    out.append(_lowest([line(a, a + 1), line(a, a + 2), line(a, a + 4), line(a, last)],
                       np.minimum(left, za), za, c,
                       np.where(has_m, fin_m, True) & (left < za)))
    # [x[k-1], x[k]]
    both = has_m & fin_m
    lm = line(k - 1, k - 2)
    lines = [line(k, k + 1), line(k, k + 2),
             (np.where(both, lm[0], 0.0), np.where(both, lm[1], -np.inf))]
    out.append(_lowest(lines, np.where(has_m, xm, xk), xk, c, has_m))
    # right of x[k+1] (or of x[last] when k = last)
    has_p = k < last
    fin_p = np.isfinite(flp)
    a = np.where(has_p, k + 1, k)
    za = np.where(has_p, xp, xk)
    out.append(_lowest([line(a, a - 1), line(a, a - 2), line(a, a - 4), line(a, 0 * a)],
                       za, np.maximum(right, za), c,
                       np.where(has_p, fin_p, True) & (right > za)))
    # [x[k], x[k+1]]
    bothp = has_p & fin_p
    lp = line(k + 1, k + 2)
    lines = [line(k, k - 1), line(k, k - 2),
             (np.where(bothp, lp[0], 0.0), np.where(bothp, lp[1], -np.inf))]
    out.append(_lowest(lines, xk, np.where(has_p, xp, xk), c, has_p))
    return np.min(np.stack(out), 0)


def _predictions(x: np.ndarray, v: np.ndarray, k: np.ndarray, nv: np.ndarray,
                 c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted minimisers of T(u) = max(V(u), u + c) near sample ``k`` per row (NaN where
    none): the secant root of V(u) - u - c where it changes sign, and the vertex of the
    parabola through V at k-1, k, k+1."""
    offs = np.arange(-3, 4)
    idx = k[:, None] + offs
    ok = (idx >= 0) & (idx < nv[:, None])
    ci = np.clip(idx, 0, x.shape[1] - 1)
    xw = np.where(ok, np.take_along_axis(x, ci, 1), np.nan)
    g = np.where(ok, np.take_along_axis(v, ci, 1), np.inf) - (xw + c[:, None])
    with np.errstate(all="ignore"):
        cross = np.isfinite(g[:, :-1]) & np.isfinite(g[:, 1:]) & (g[:, :-1] > 0) & \
            (g[:, 1:] <= 0)
        i = cross.argmax(1)[:, None]
        ga, gb = np.take_along_axis(g, i, 1)[:, 0], np.take_along_axis(g, i + 1, 1)[:, 0]
        xa, xb = np.take_along_axis(xw, i, 1)[:, 0], np.take_along_axis(xw, i + 1, 1)[:, 0]
        r1 = np.where(cross.any(1), xa + ga * (xb - xa) / (ga - gb), np.nan)
        x0, x1, x2 = xw[:, 2], xw[:, 3], xw[:, 4]
        y0, y1, y2 = (np.where(ok[:, j], np.take_along_axis(v, ci[:, j:j + 1], 1)[:, 0],
                               np.inf) for j in (2, 3, 4))
        d1 = (y1 - y0) / (x1 - x0)
        d2 = (y2 - y1) / (x2 - x1)
        curv = (d2 - d1) / (x2 - x0)
        fin = np.isfinite(y0) & np.isfinite(y1) & np.isfinite(y2) & (curv > 0)
        r2 = np.where(fin, 0.5 * (x0 + x1) - d1 / (2.0 * curv), np.nan)
    return r1, r2


def _sort_samples(x: np.ndarray, *vals: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort each row's samples by u (NaN last); drop samples within 2e-12 (relative) of the
    previous one (a secant through such a pair has a slope of rounding noise)."""
    for _ in range(2):
        order = np.argsort(x, axis=1)
        x = np.take_along_axis(x, order, 1)
        vals = tuple(np.take_along_axis(v, order, 1) for v in vals)
        with np.errstate(invalid="ignore"):
            dup = np.zeros(x.shape, dtype=bool)
            dup[:, 1:] = (x[:, 1:] - x[:, :-1]) <= 2e-12 * np.abs(x[:, 1:])
        if not dup.any():
            break
        x = np.where(dup, np.nan, x)
        vals = tuple(np.where(dup, f, v) for v, f in zip(vals, _FILL, strict=True))
    return (x, *vals)


_FILL = (np.inf, np.inf, np.inf, np.nan, np.nan)
"""Values of a dropped sample: fh, fl, V (infinite), y, tG (NaN)."""


def _sample(p: _Prep, cols: np.ndarray, u: np.ndarray, c: np.ndarray,
            guess: np.ndarray | None, best: np.ndarray | None = None
            ) -> tuple[np.ndarray, ...]:
    """T(u) - const bracketed at the samples ``u`` (G, K) of clusters ``cols`` (G,): returns
    (f_hi, f_lo, V, y, tG), each (G, K)."""
    g, kk = u.shape
    cr = np.repeat(cols, kk)
    uf = u.reshape(-1)
    dem = p.jam_demand(uf, cr)
    floor = uf + np.repeat(c, kk)
    rows = _Rows(p, cr, dem, uf)
    v, y, tg, v_lo = _gld_time(rows, guess, floor, kk, best)
    shape = (g, kk)
    return (np.maximum(v, floor).reshape(shape), np.maximum(v_lo, floor).reshape(shape),
            v.reshape(shape), y.reshape(shape), tg.reshape(shape))


def _guesses(x: np.ndarray, tg: np.ndarray, k: np.ndarray, nv: np.ndarray, new: np.ndarray,
             tg_min: np.ndarray) -> np.ndarray:
    """Starting points (8, G*K) of the tG searches at ``new`` (G, K): the optimal tG of the
    incumbent's neighbours interpolated, +-0.1 %..10 % and just outside their range."""
    xk, tk = _gather(x, k, nv, np.nan), _gather(tg, k, nv, np.nan)
    xm, tm = _gather(x, k - 1, nv, np.nan), _gather(tg, k - 1, nv, np.nan)
    xp, tp = _gather(x, k + 1, nv, np.nan), _gather(tg, k + 1, nv, np.nan)
    tm = np.where(np.isfinite(tm), tm, tk)
    tp = np.where(np.isfinite(tp), tp, tk)
    left = new < xk[:, None]
    xa = np.where(left, xm[:, None], xk[:, None])
    xb = np.where(left, xk[:, None], xp[:, None])
    ta = np.where(left, tm[:, None], tk[:, None])
    tb = np.where(left, tk[:, None], tp[:, None])
    with np.errstate(all="ignore"):
        frac = np.clip((new - xa) / (xb - xa), 0.0, 1.0)
    frac = np.where(np.isfinite(frac), frac, 0.0)
    interp = (ta + frac * (tb - ta)).reshape(-1)
    lo = np.minimum(ta, tb).reshape(-1)
    hi = np.maximum(ta, tb).reshape(-1)
    gs = np.concatenate([interp * (1.0 + _GUESS[:, None]), [lo * 0.999, hi * 1.001]])
    return np.sort(np.maximum(gs, np.repeat(tg_min, new.shape[1])), axis=0)


def _outer(p: _Prep, cols: np.ndarray, u_left: np.ndarray, u_feas: np.ndarray,
           u_hi: np.ndarray, rtol: float, max_rounds: int
           ) -> tuple[np.ndarray, ...]:
    """The certified 1-D convex search over u of :func:`solvers.exact.solve_exact`, for the
    clusters ``cols`` in lockstep. Returns (u*, y*, tG*, status code, lower bound, rounds).
    """
    g = cols.size
    c = p.tb_loc[cols]
    span = u_hi - u_left
    first = np.maximum(1e-12 * span, 1e-12 * u_left)  # as solvers.exact
    with np.errstate(all="ignore"):
        xs = u_left[:, None] + np.exp(np.log(first)[:, None] + np.log(span / first)[:, None]
                                      * np.linspace(0.0, 1.0, _N_INIT))
    xs = np.concatenate([xs, u_feas[:, None]], 1)
    xs = np.where((xs > u_left[:, None]) & (xs <= u_hi[:, None]), xs, np.nan)
    xs = np.sort(xs, axis=1)
    valid = np.isfinite(xs)
    # the searches run on the valid samples only; the rest stay NaN (infinite T). In waves:
    # every 8th sample from the coarse tG grid, then the samples halfway between solved
    # ones, their tG search started from their neighbours' optimal tG
    xq = np.where(valid, xs, u_hi[:, None])
    vals = tuple(np.full(xs.shape, f) for f in _FILL)
    n0 = xs.shape[1]
    best = np.full(g, np.inf)
    for step in _WAVES:
        idx = np.arange(0, n0, step)
        if step < _WAVES[0]:
            idx = idx[(idx // step) % 2 == 1]
        sub = xq[:, idx]
        if step == _WAVES[0]:
            guess = None
        else:
            il, ir = idx - step, np.minimum(idx + step, (n0 - 1) // (2 * step) * 2 * step)
            ta, tb = vals[4][:, il], vals[4][:, ir]
            ta = np.where(np.isfinite(ta), ta, tb)
            tb = np.where(np.isfinite(tb), tb, ta)
            with np.errstate(all="ignore"):
                frac = np.clip((sub - xq[:, il]) / (xq[:, ir] - xq[:, il]), 0.0, 1.0)
            frac = np.where(np.isfinite(frac), frac, 0.5)
            interp = (ta + frac * (tb - ta)).reshape(-1)
            lo = np.minimum(ta, tb).reshape(-1)
            hi = np.maximum(ta, tb).reshape(-1)
            guess = np.concatenate([interp * (1.0 + _GUESS[:, None]),
                                    [lo * 0.999, hi * 1.001]])
            guess = np.sort(np.maximum(guess, np.repeat(p.tg_min[cols], idx.size)), axis=0)
        out = _sample(p, cols, sub, c, guess, best)
        for v, o in zip(vals, out, strict=True):
            v[:, idx] = o
        best = np.minimum(best, np.where(valid[:, idx], out[0], np.inf).min(1))
    vals = tuple(np.where(valid, v, f) for v, f in zip(vals, _FILL, strict=True))
    xs, fh, fl, vv, ys, tgs = _sort_samples(xs, *vals)
    status = np.full(g, NOT_CONVERGED)
    lower = np.full(g, -np.inf)
    rounds = np.ones(g, dtype=int)
    open_ = np.ones(g, dtype=bool)
    ladder = _LADDER
    t_uni = np.arange(1, _UNIFORM + 1) / (_UNIFORM + 1)
    t_alt = (np.arange(2 * len(ladder) + 1) + 0.5) / (2 * len(ladder) + 1)
    for _ in range(max_rounds):
        a = np.flatnonzero(open_)
        if a.size == 0:
            break
        x, fha, fla = xs[a], fh[a], fl[a]
        nv = np.isfinite(x).sum(1)
        k = fha.argmin(1)
        fk = fha[np.arange(a.size), k]
        none = ~np.isfinite(fk)
        lb = _lower_bound(x, fla, fha, k, nv, u_left[a], u_hi[a], c[a])
        lower[a] = lb
        cert = ~none & (fk - lb <= rtol * fk)
        lo_x = np.where(k > 0, _gather(x, k - 1, nv, np.nan), u_left[a])
        hi_x = _gather(x, np.minimum(k + 1, nv - 1), nv, np.nan)
        xk = _gather(x, k, nv, np.nan)
        collapsed = ~cert & (hi_x - lo_x <= 4 * np.finfo(float).eps
                             * np.maximum(np.abs(xk), 1.0))
        status[a[cert]] = OPTIMAL
        status[a[collapsed]] = CONVERGED
        stop = cert | collapsed | none
        open_[a[stop]] = False
        go = ~stop
        if not go.any():
            break
        a, x, k, nv = a[go], x[go], k[go], nv[go]
        lo_x, hi_x = lo_x[go], hi_x[go]
        width = hi_x - lo_x
        r1, r2 = _predictions(x, vv[a], k, nv, c[a])
        parts = [lo_x[:, None] + width[:, None] * t_uni]
        for r, phase in ((r1, 0.0), (r2, 0.5)):
            off = np.maximum(width[:, None] * ladder, 1e-11 * np.abs(r)[:, None])
            pts = np.concatenate([r[:, None], r[:, None] - off, r[:, None] + off], 1)
            inside = (r > lo_x) & (r < hi_x)
            alt = lo_x[:, None] + width[:, None] * ((t_alt + phase / len(t_alt)) % 1.0)
            parts.append(np.where(inside[:, None], pts, alt))
        new = np.concatenate(parts, 1)
        new = np.clip(new, lo_x[:, None], hi_x[:, None])
        new = np.where((new > lo_x[:, None]) & (new < hi_x[:, None]), new,
                       0.5 * (lo_x + hi_x)[:, None])
        guess = _guesses(x, tgs[a], k, nv, new, p.tg_min[cols[a]])
        nvals = _sample(p, cols[a], new, c[a], guess, fk[go])
        rounds[a] += 1
        width_new = new.shape[1]
        pad = np.full((g, width_new), np.nan)
        cat = [np.concatenate([xs, pad], 1)]
        cat[0][a, -width_new:] = new
        merged = []
        for old, nw, f in zip((fh, fl, vv, ys, tgs), nvals, _FILL, strict=True):
            full = np.concatenate([old, np.full((g, width_new), f)], 1)
            full[a, -width_new:] = nw
            merged.append(full)
        nv_before = np.isfinite(xs[a]).sum(1)
        xs, fh, fl, vv, ys, tgs = _sort_samples(cat[0], *merged)
        # every new sample duplicated one (to 2e-12): the search cannot resolve u further
        stuck = np.isfinite(xs[a]).sum(1) == nv_before
        status[a[stuck]] = CONVERGED
        open_[a[stuck]] = False
        # drop the all-NaN columns at the end
        keep = np.isfinite(xs).any(0)
        if not keep.all():
            last = int(np.flatnonzero(keep).max()) + 1 if keep.any() else 0
            xs, fh, fl, vv, ys, tgs = (v[:, :last] for v in (xs, fh, fl, vv, ys, tgs))
    nv = np.isfinite(xs).sum(1)
    k = fh.argmin(1)
    ar = np.arange(g)
    feasible = np.isfinite(fh[ar, k])
    status = np.where(feasible, status, INFEASIBLE)
    # the final lower bound (also for clusters that ran out of rounds)
    lower = _lower_bound(xs, fl, fh, k, nv, u_left, u_hi, c)
    return xs[ar, k], ys[ar, k], tgs[ar, k], status, lower, rounds


def _flat(p: _Prep, cols: np.ndarray, u_left: np.ndarray, u_feas: np.ndarray,
          u_hi: np.ndarray, rtol: float) -> tuple[np.ndarray, ...]:
    """A shortcut certificate for clusters whose optimum does not depend on the jamming.

    V_free = min_tG y + tG without the jamming constraint (H >= D dropped, so w = min(w_max,
    min_i a_i / K_i)) bounds V(u) from below for every u, hence T* >= V_free + const. Where
    V(u) reaches V_free at a sync time u with u + tB_loc <= V_free (the jamming does not
    bind), T* is V_free, certified. Tried at u_feas (largest surplus) and at V_free - tB_loc.
    Returns (flat, u, y, tG, lower bound) with the last four only for the flat clusters.
    """
    g = cols.size
    c = p.tb_loc[cols]
    rows = _Rows(p, cols, np.full(g, -_BIG), np.zeros(g))
    v0, _, t0, v0_lo = _gld_time(rows, None, None, 1)
    cand = np.stack([u_feas, np.clip(v0 - c, u_left, u_hi)], 1)
    cand = np.where(cand > u_left[:, None], cand, u_hi[:, None])
    with np.errstate(all="ignore"):
        tg0 = np.where(np.isfinite(t0), t0, p.tg_min[cols])
    gs = np.concatenate([tg0 * (1.0 + _GUESS[:, None]), [tg0 * 0.999, tg0 * 1.001]])
    guess = np.repeat(np.sort(np.maximum(gs, p.tg_min[cols]), axis=0), 2, axis=1)
    fh, _, _, ys, tgs = _sample(p, cols, cand, c, guess)
    j = fh.argmin(1)
    ar = np.arange(g)
    f = fh[ar, j]
    flat = np.isfinite(f) & np.isfinite(v0_lo) & (f - v0_lo <= rtol * f)
    return (flat, cand[ar, j][flat], ys[ar, j][flat], tgs[ar, j][flat], v0_lo[flat])


# ---------------------------------------------------------------------------- entry point
def _jam_split(p: _Prep, y: np.ndarray, tg: np.ndarray, q_req: np.ndarray, u: np.ndarray
               ) -> np.ndarray:
    """As :meth:`solvers._core.Prepared.jam_split`, per cluster: every GLD's cap
    min(Q_max,i, s_i/u) scaled by the same factor so that sum_i q_i g_iE = Q (eq. (20)).
    Shape (M, B); zero where no jamming is needed."""
    with np.errstate(all="ignore"):
        x = p.x_scale / tg
        e_up = np.exp(p.sic * x + p.lng) * (tg * np.expm1(x))  # eq. (8)
        s = p.e_max - p.k_loc / y**2 - e_up  # energy left for jamming, (14a)
        cap = np.clip(np.minimum(p.q_max, s / u), 0.0, None)
        cap = np.where(p.mask, cap, 0.0)
        total = (p.g_e * cap).sum(0)
        need = (p.m > 0) & (q_req > 0) & (u != 0) & (total > 0)
        q = cap * np.minimum(1.0, q_req / total)
    return np.where(need, q, 0.0)


def solve_batch(clusters: Sequence[Cluster] | ClusterBatch, method: str = "exact", *,
                rtol: float = 1e-7, max_rounds: int = 80, chunk: int = 512) -> BatchResult:
    """Solve problem P exactly on B clusters at once; certify each T* to ``rtol`` relative.

    The batched :func:`solvers.exact.solve_exact` (same algorithm, numpy over the batch):
    per cluster the closed-form feasibility test of docs/MODEL.md (erratum 5), then the
    1-D convex search over the sync time u = tB_up with T(u) = max(V(u), u + tB_loc) + const
    (eqs. (11)-(13)), V(u) = min_tG y + tG each a 1-D convex search with the smallest
    feasible y in closed form (eqs. (14a), (18), (19), (24c)), all clusters in lockstep.

    Parameters
    ----------
    clusters : sequence of Cluster or ClusterBatch
        The B clusters (B = 0 allowed). A sequence is padded once
        (:meth:`ClusterBatch.from_clusters`).
    method : str
        ``"exact"`` (the only batched solver).
    rtol : float
        Relative certificate: a cluster is ``optimal`` once the convexity lower bound is
        within ``rtol`` of T. Other statuses: ``converged`` (the search interval collapsed
        to machine precision first), ``not_converged`` (``max_rounds`` refinement rounds),
        ``infeasible`` (T = inf, as :func:`solvers.exact.solve_exact`).
    max_rounds : int
        Refinement rounds of the search over u.
    chunk : int
        Clusters solved together (memory: about chunk x 20 x 12 x M_max floats per
        temporary); clusters are grouped by M so that little padding is computed.

    Returns
    -------
    BatchResult
        Arrays of shape (B,) (``q``: (B, M_max)).
    """
    t0 = time.perf_counter()
    if method != "exact":
        raise ValueError(f"method: solve_batch supports only 'exact', got {method!r}")
    if not (0 < rtol < 1):
        raise ValueError(f"rtol: must be in (0, 1), got {rtol}")
    if not (isinstance(max_rounds, int | np.integer) and max_rounds >= 1):
        raise ValueError(f"max_rounds: must be an int >= 1, got {max_rounds!r}")
    if not (isinstance(chunk, int | np.integer) and chunk >= 1):
        raise ValueError(f"chunk: must be an int >= 1, got {chunk!r}")
    if isinstance(clusters, ClusterBatch):
        cb = clusters
    elif isinstance(clusters, Cluster) or not isinstance(clusters, Sequence):
        raise ValueError("clusters: expected a sequence of dtfl_env.Cluster or a ClusterBatch")
    else:
        cb = ClusterBatch.from_clusters(clusters)
    b = cb.size
    m_all = cb.n_gld
    out = {name: np.full(b, np.nan) for name in ("T", "Q", "y", "tG", "tB_up", "T_GLD",
                                                 "T_BLD", "lower_bound_s")}
    q_all = np.full((b, cb.gld_mask.shape[1]), np.nan)
    code = np.full(b, INFEASIBLE)
    msg = np.full(b, "", dtype=object)
    nit = np.zeros(b, dtype=int)
    order = np.argsort(m_all, kind="stable")  # similar M together: little padding
    for s0 in range(0, b, chunk):
        idx = order[s0:s0 + chunk]
        sub = cb.subset(idx)
        res = _solve_chunk(sub, rtol, max_rounds)
        for name in out:
            out[name][idx] = res[name]
        q_all[idx, : res["q"].shape[1]] = res["q"]
        code[idx] = res["code"]
        msg[idx] = res["message"]
        nit[idx] = res["nit"]
    out["T"] = np.where(code == INFEASIBLE, np.inf, out["T"])
    return BatchResult(T=out["T"], Q=out["Q"], y=out["y"], tG=out["tG"], q=q_all,
                       tB_up=out["tB_up"], T_GLD=out["T_GLD"], T_BLD=out["T_BLD"],
                       status_code=code, message=msg, lower_bound_s=out["lower_bound_s"],
                       iterations=nit, wall_time_s=time.perf_counter() - t0,
                       n_gld=m_all)


def _solve_chunk(cb: ClusterBatch, rtol: float, max_rounds: int) -> dict[str, np.ndarray]:
    """:func:`solve_batch` on one chunk (padded to its own M, N)."""
    p = _Prep(cb)
    b = cb.size
    m, n = p.m, p.n
    code = np.full(b, INFEASIBLE)
    msg = np.full(b, "", dtype=object)
    nit = np.zeros(b, dtype=int)
    y = np.zeros(b)
    tg = np.zeros(b)
    u = np.zeros(b)
    lower = np.full(b, np.nan)
    with np.errstate(all="ignore"):
        poor = ((p.e_max <= p.e_up_inf) & p.mask).any(0)
    todo = np.ones(b, dtype=bool)
    # no GLDs: T = tB_up(0) + tB_loc
    nog = m == 0
    ok = nog & np.isfinite(p.u_free)
    code[ok] = OPTIMAL
    msg[ok] = "no GLDs: T = tB_up(0) + tB_loc"
    msg[nog & ~ok] = "no GLD can jam and some BLD has R_j = 0 at Q = 0 (eq. (22))"
    todo &= ~nog
    msg[todo & poor] = ("a GLD cannot pay the upload energy even with an unbounded upload "
                        "time (E_max <= n_C L ln2 / (g_iC W))")
    todo &= ~poor
    # no BLDs: Q = 0, one search in tG
    nob = np.flatnonzero(todo & (n == 0))
    if nob.size:
        rows = _Rows(p, nob, np.zeros(nob.size), np.zeros(nob.size))
        v, yy, tt, v_lo = _gld_time(rows, None, None, 1)
        fin = np.isfinite(v)
        code[nob] = np.where(fin, OPTIMAL, INFEASIBLE)
        msg[nob] = np.where(fin, "no BLDs: Q = 0, 1-D convex search in tG",
                            "no feasible (y, tG) within the energy budgets")
        y[nob], tg[nob], lower[nob], nit[nob] = yy, tt, v_lo + p.fixed_s[nob], 1
    todo[nob] = False
    bad = todo & (p.q_lo >= p.q_hi)
    msg[bad] = "even full jamming does not make every secrecy rate positive (eq. (22))"
    todo &= ~bad
    cols = np.flatnonzero(todo)
    if cols.size:
        feas, u_left, u_feas, u_hi = _feasibility(p, cols)
        msg[cols[~feas]] = ("the GLDs cannot pay for the jamming any sync time needs "
                            "(docs/MODEL.md, erratum 5)")
        cols, u_left, u_feas, u_hi = cols[feas], u_left[feas], u_feas[feas], u_hi[feas]
        if cols.size:
            flat, uf, yf, tf, lbf = _flat(p, cols, u_left, u_feas, u_hi, rtol)
            fc = cols[flat]
            code[fc], u[fc], y[fc], tg[fc], nit[fc] = OPTIMAL, uf, yf, tf, 1
            lower[fc] = lbf + p.fixed_s[fc]
            msg[fc] = (f"certified to rtol={rtol:g}: T(tB_up) reaches the lower bound "
                       "min y + tG without the jamming constraint")
            cols, u_left, u_feas, u_hi = (a[~flat] for a in (cols, u_left, u_feas, u_hi))
        if cols.size:
            us, ys, ts, st, lb, rounds = _outer(p, cols, u_left, u_feas, u_hi, rtol,
                                                max_rounds)
            code[cols], u[cols], y[cols], tg[cols], nit[cols] = st, us, ys, ts, rounds
            lower[cols] = lb + p.fixed_s[cols]
            msg[cols] = np.array(
                [f"certified to rtol={rtol:g} (convexity in tB_up)", "search interval "
                 "collapsed to machine precision", f"no certificate after {max_rounds} "
                 "rounds", "no sync time tB_up admits a feasible (y, tG, q)"],
                dtype=object)[st]
    # the allocation and its evaluation in the model (as solvers._core.finalize)
    feas = code != INFEASIBLE
    has_g = m > 0
    all_c = np.arange(b)
    q_req = np.where(n > 0, p.min_jamming(u[None], all_c)[0], 0.0)
    q = _jam_split(p, np.where(has_g, y, 1.0), np.where(has_g, tg, 1.0), q_req, u)
    jam = (q * p.g_e).sum(0)  # eq. (20)
    tb = p.sync_time(jam)  # eq. (23)
    with np.errstate(all="ignore"):
        cpu = cb.cycles.T / y  # eq. (17)
        y_eval = np.where(p.mask, cb.cycles.T / cpu, 0.0).max(0, initial=0.0)
    t_gld = np.where(has_g, y_eval + tg, 0.0)  # eq. (12)
    t_bld = np.where(n > 0, tb + p.tb_loc, 0.0)  # eq. (13)
    T = np.maximum(t_gld, t_bld) + p.fixed_s  # eq. (11)
    lower = np.where(nog, T, lower)
    nan = np.nan
    qo = np.where(p.mask, q, nan).T
    return {"T": np.where(feas, T, np.inf), "Q": np.where(feas, jam, nan),
            "y": np.where(feas, np.where(has_g, y_eval, 0.0), nan),
            "tG": np.where(feas, tg, nan), "tB_up": np.where(feas, tb, nan),
            "T_GLD": np.where(feas, t_gld, nan), "T_BLD": np.where(feas, t_bld, nan),
            "lower_bound_s": np.where(feas, lower, nan),
            "q": np.where(feas[:, None], qo, nan), "code": code, "message": msg, "nit": nit}
