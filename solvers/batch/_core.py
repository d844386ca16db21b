"""The batched counterpart of :mod:`solvers._core`: constants and searches for B clusters.

Shared by the batched solvers (:mod:`solvers.batch.exact`, :mod:`solvers.batch.algorithm2`):
:class:`_Prep` (a :class:`~dtfl_env.model.batch.ClusterBatch`'s constants of problem P, GLD
axis first), :class:`_Rows` (R tG searches of many clusters at once in the form
:func:`solvers._core.tg_search` takes, the one search of min y + tG with the smallest
feasible y in closed form), :func:`_feasibility` (the closed-form test of docs/MODEL.md,
erratum 5), and :class:`Chunk`, one chunk of a batch being solved: the cases every solver
settles in closed form (no GLDs, no BLDs, an empty Q interval, no feasible sync time) and
the evaluation of the answers in the model.

The device axes are padded to the batch's largest M and N, with boolean masks: a padded GLD
has no gain, no jamming power and an infinite breakpoint, a padded BLD needs no jamming.
Notation as in :mod:`solvers._core`: w = 1/y^2, a_i(tG) = E_max,i - E_i^up(tG), cap_i =
Q_max,i u, Q(u) the jamming that syncs every BLD within u (eq. (23) inverted), D = Q(u) u the
jamming energy (eq. (10)).
"""

from __future__ import annotations

import numpy as np

from dtfl_env.model.batch import LN2, ClusterBatch
from solvers._core import jam_demand, tg_point_rows, tg_search
from solvers.batch.result import INFEASIBLE, OPTIMAL

_BIG = 1e300
"""Breakpoint of a padded GLD: finite (0 * _BIG = 0 in the sums), above every real one."""


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
            0, initial=0.0
        )  # infinite jamming
        self.q_lo = np.where(  # eq. (22)
            self.n > 0,
            np.where(
                bm, k["noise_bld_w"] * bd["gain_eavesdropper"] / bd["gain_coordinator"], -np.inf
            ).max(0, initial=-np.inf)
            - self.noise_e,
            -self.noise_e,
        )
        self.q_hi = self.gq
        self.bld = bd
        self.k = k
        self.u_free = self.sync_time(np.zeros(self.m.size))

    def sync_time(self, jam_w: np.ndarray, cols: np.ndarray | None = None) -> np.ndarray:
        """tB_up(Q) = max_j D_jB / R_j(Q), eqs. (21), (23); 0 without BLDs, ``inf`` where
        some R_j = 0. ``jam_w`` has shape (B,), or (R, ...) for the clusters ``cols`` (R,)."""
        bd, k = self.bld, self.k
        jam_w = np.asarray(jam_w, dtype=float)
        sel = slice(None) if cols is None else cols
        r = self.n.size if cols is None else len(cols)
        shp = (self.bmask.shape[0], r) + (1,) * (jam_w.ndim - 1)

        def col(a: np.ndarray) -> np.ndarray:
            return a[..., sel].reshape(shp) if a.ndim == 2 else a[sel].reshape(shp[1:])

        with np.errstate(divide="ignore", invalid="ignore"):
            eve = np.log2(
                1.0
                + col(bd["power_w"])
                * col(bd["gain_eavesdropper"])
                / (col(k["noise_eavesdropper_w"]) + jam_w)
            )
            rate = col(k["bandwidth_hz"]) * np.maximum(col(self.legit) - eve, 0.0)  # eq. (21)
            t = np.where(col(self.bmask), col(bd["data_bits"]) / rate, 0.0)
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
        """D = max(Q(u), 0) u (:func:`solvers._core.jam_demand`) at sync times ``u``."""
        return jam_demand(self.min_jamming(u, cols), u, self.noise_e[cols])

    def surplus(self, u: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """psi(u) = sum_i g_iE min(Q_max,i u, s_i^inf) - D(u), concave; u admits a feasible
        (y, tG) iff psi(u) > 0. ``u`` has shape (K, R) for clusters ``cols``."""
        s_inf = np.where(self.mask, self.e_max - self.e_up_inf, 0.0)[:, cols][:, None, :]
        cap = self.q_max[:, cols][:, None, :] * u
        return (self.g_e[:, cols][:, None, :] * np.minimum(cap, s_inf)).sum(0) - self.jam_demand(
            u, cols
        )


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

    @property
    def size(self) -> int:
        return int(self.cmd.size)

    def subset(self, sub: np.ndarray) -> _Rows:
        """A copy holding rows ``sub``."""
        out = object.__new__(_Rows)
        out.__dict__.update(self.__dict__)
        out.take(sub)
        return out

    def take(self, keep: np.ndarray) -> None:
        for name in (
            "x_scale",
            "w_max",
            "tg_min",
            "cmd",
            "lng",
            "g",
            "emax",
            "gk",
            "ikl",
            "mask",
            "kl",
            "capk",
        ):
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
        b0 = (
            np.take_along_axis(base, jb, -1)[..., 0]
            * np.take_along_axis(np.broadcast_to(self.ikl, base.shape), jb, -1)[..., 0]
            * is_b
        )
        j = jb[..., 0].astype(float)
        a0 = np.where(is_h, sums[..., 0] / den, b0)
        a1 = np.where(is_h, sums[..., 1] / den, b0 * j)
        a2 = np.where(is_h, sums[..., 2] / den, b0 * j * j)
        return tg_point_rows(t, w, x, em1, a0, a1, a2)


# ---------------------------------------------------------------------------- feasibility
def _feasibility(
    p: _Prep, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def _jam_split(
    p: _Prep, y: np.ndarray, tg: np.ndarray, q_req: np.ndarray, u: np.ndarray
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


# ---------------------------------------------------------------------------- a chunk
class Chunk:
    """One chunk of a batch being solved (padded to its own M, N): its constants ``p`` and
    the answer per cluster, filled by :meth:`screen` and a solver's search, evaluated in
    the model by :meth:`answers`.

    Per cluster: ``code`` (index into :data:`~solvers.batch.result.STATUS_CODES`),
    ``message``, ``nit``, the allocation's ``y``, ``tg``, sync time ``u`` and required
    aggregate jamming ``q_req`` (NaN: Q(u), eq. (23) inverted), ``lower`` (a lower bound of
    T*, NaN where none is known).
    """

    def __init__(self, cb: ClusterBatch) -> None:
        self.cb = cb
        self.p = _Prep(cb)
        b = cb.size
        self.code = np.full(b, INFEASIBLE)
        self.message = np.full(b, "", dtype=object)
        self.nit = np.zeros(b, dtype=int)
        self.y = np.zeros(b)
        self.tg = np.zeros(b)
        self.u = np.zeros(b)
        self.q_req = np.full(b, np.nan)
        self.lower = np.full(b, np.nan)

    def screen(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Settle the clusters whose answer needs no search over the jamming, as
        :func:`solvers.exact.solve_exact` does: no GLDs (T = tB_up(0) + tB_loc), a GLD short
        of upload energy, no BLDs (Q = 0: one tG search), an empty Q interval (eq. (22)),
        no sync time with a feasible (y, tG) (docs/MODEL.md, erratum 5).

        Returns ``(cols, u_left, u_feas, u_hi)`` of the clusters left to search (M, N > 0,
        feasible): the smallest feasible sync time, the one with the largest jamming-energy
        surplus and an upper bound of the optimal one (:func:`_feasibility`).
        """
        p, code, msg = self.p, self.code, self.message
        m, n = p.m, p.n
        with np.errstate(all="ignore"):
            poor = ((p.e_max <= p.e_up_inf) & p.mask).any(0)
        todo = np.ones(m.size, dtype=bool)
        # no GLDs: T = tB_up(0) + tB_loc
        nog = m == 0
        ok = nog & np.isfinite(p.u_free)
        code[ok] = OPTIMAL
        msg[ok] = "no GLDs: T = tB_up(0) + tB_loc"
        msg[nog & ~ok] = "no GLD can jam and some BLD has R_j = 0 at Q = 0 (eq. (22))"
        todo &= ~nog
        msg[todo & poor] = (
            "a GLD cannot pay the upload energy even with an unbounded upload "
            "time (E_max <= n_C L ln2 / (g_iC W))"
        )
        todo &= ~poor
        # no BLDs: Q = 0, one search in tG
        nob = np.flatnonzero(todo & (n == 0))
        if nob.size:
            rows = _Rows(p, nob, np.zeros(nob.size), np.zeros(nob.size))
            v, yy, tt, v_lo = tg_search(rows, group=1)
            fin = np.isfinite(v)
            code[nob] = np.where(fin, OPTIMAL, INFEASIBLE)
            msg[nob] = np.where(
                fin,
                "no BLDs: Q = 0, 1-D convex search in tG",
                "no feasible (y, tG) within the energy budgets",
            )
            self.y[nob], self.tg[nob], self.nit[nob] = yy, tt, 1
            self.lower[nob] = v_lo + p.fixed_s[nob]
        todo[nob] = False
        bad = todo & (p.q_lo >= p.q_hi)
        msg[bad] = "even full jamming does not make every secrecy rate positive (eq. (22))"
        todo &= ~bad
        cols = np.flatnonzero(todo)
        if not cols.size:
            return cols, np.zeros(0), np.zeros(0), np.zeros(0)
        feas, u_left, u_feas, u_hi = _feasibility(p, cols)
        msg[cols[~feas]] = (
            "the GLDs cannot pay for the jamming any sync time needs (docs/MODEL.md, erratum 5)"
        )
        return cols[feas], u_left[feas], u_feas[feas], u_hi[feas]

    def answers(self) -> dict[str, np.ndarray]:
        """The allocations and their evaluation in the model (as
        :func:`solvers._core.finalize`): T, Q, y, tG, tB_up, T_GLD, T_BLD (eqs. (11)-(13),
        (17), (20), (23)), the jamming powers q (B, M) and the lower bounds; NaN (T: inf)
        for infeasible clusters."""
        p, cb, code = self.p, self.cb, self.code
        y, tg, u = self.y, self.tg, self.u
        m, n = p.m, p.n
        b = cb.size
        feas = code != INFEASIBLE
        has_g = m > 0
        q_req = np.where(n > 0, p.min_jamming(u[None], np.arange(b))[0], 0.0)
        q_req = np.where(np.isnan(self.q_req), q_req, self.q_req)
        q = _jam_split(p, np.where(has_g, y, 1.0), np.where(has_g, tg, 1.0), q_req, u)
        jam = (q * p.g_e).sum(0)  # eq. (20)
        tb = p.sync_time(jam)  # eq. (23)
        with np.errstate(all="ignore"):
            cpu = cb.cycles.T / y  # eq. (17)
            y_eval = np.where(p.mask, cb.cycles.T / cpu, 0.0).max(0, initial=0.0)
        t_gld = np.where(has_g, y_eval + tg, 0.0)  # eq. (12)
        t_bld = np.where(n > 0, tb + p.tb_loc, 0.0)  # eq. (13)
        T = np.maximum(t_gld, t_bld) + p.fixed_s  # eq. (11)
        lower = np.where(m == 0, T, self.lower)
        nan = np.nan
        qo = np.where(p.mask, q, nan).T
        return {
            "T": np.where(feas, T, np.inf),
            "Q": np.where(feas, jam, nan),
            "y": np.where(feas, np.where(has_g, y_eval, 0.0), nan),
            "tG": np.where(feas, tg, nan),
            "tB_up": np.where(feas, tb, nan),
            "T_GLD": np.where(feas, t_gld, nan),
            "T_BLD": np.where(feas, t_bld, nan),
            "lower_bound_s": np.where(feas, lower, nan),
            "q": np.where(feas[:, None], qo, nan),
            "code": code,
            "message": self.message,
            "nit": self.nit,
        }
