"""The paper's Algorithm 2 (corrected mode) for a batch of clusters at once.

``solve_batch(clusters, "algorithm2")`` runs :func:`solvers.algorithm2.solve_algorithm2`
(``mode="corrected"``, default settings) on B clusters in lockstep, step for step:

* the closed-form cases and the feasibility test (no GLDs or no BLDs: the exact answer, as
  the per-cluster solver's fallback; infeasible clusters) are those of the batched exact
  solver (:class:`solvers.batch._core.Chunk`);
* the Q grid of every cluster (12 log-spaced points in Q - Q_lo, 12 towards the
  feasibility limit q_top) is one (G, 25) array, padded with NaN;
* the dual subgradient method (Sub-Y eq. (29), Sub-T eqs. (31)-(32), Sub-Q eqs.
  (34)-(35), the step (36)) runs for all clusters and all their Q values at once
  (:func:`solvers.algorithm2._dual`, the very routine the per-cluster solver calls with one
  cluster): multipliers (G, K, M), Q values (G, K);
* primal recovery polishes every row's tG by the tG search (:func:`solvers._core.tg_search`,
  the per-cluster solver's, on :class:`solvers.batch._core._Rows`: rows grouped by
  cluster, a cluster's rows stopping together as one cluster's do);
* the refinement rounds run in lockstep, each cluster with its own stop (no feasible Q,
  an empty bracket, the secant test, no new point): the bracket around each cluster's best
  Q, the model predictions (:func:`solvers.algorithm2._predictions`: the per-cluster
  ``_predict``'s, on the same closed forms of :mod:`solvers._core`), the new
  points, their de-duplication against the samples, the warm starts (multipliers and
  Sub-T start of the nearest Q searched, the recovered tG interpolated as ``np.interp``
  would) are array expressions over the clusters still refining. Clusters with fewer new
  points than the widest repeat their first point (same arithmetic, same answer): every
  row set stays rectangular without changing what a cluster computes.

What does not batch: the stopping test of the refinement rounds from the second on (the
secants of T in u around the best Q, :func:`solvers.algorithm2._local_gain` with
:func:`solvers.exact.convexity_lower_bound`) is called per cluster still refining, a Python
loop over windows of at most 13 samples (data-dependent control flow: which secants bound
which interval; about 3 % of the batch's time, docs/PERFORMANCE.md). The rest is arrays,
but the work per cluster is the per-cluster solver's: the same Q values, dual iterations and
tG points (the batch removes the per-call overhead of numpy, not arithmetic).

What differs from the per-cluster solver, none of it in the algorithm: (1) the tG search
of primal recovery evaluates w(tG) with the batched routine (:meth:`_Rows.evaluate
<solvers.batch._core._Rows.evaluate>`: cumulative sums where
:meth:`~solvers._core.Prepared._evaluate` uses a triangular product), the
feasibility test and Sub-Y sum over padded GLD axes, so values differ in the last bits. The
recovery is certified to 1e-10 either way, but a different last bit can steer a
data-dependent choice (a bracket end, the best Q among near-equal ones, whether a
refinement round runs), after which the two searches sample different Q. On 10,300 varied
clusters (tests/test_solvers_batch.py) the statuses and dual iterations agree everywhere and
T to 1e-13 (tested to 1e-9 on 600). A choice did flip in 77 of the first 1,500 (5 %), all
of them clusters whose optimum the jamming does not bind (T = min y + tG without the
jamming constraint, the exact solver's shortcut certificate), where T is flat over a range
of Q: the batch then searched other Q values and reports another, equally optimal, Q and
jamming split. Were T not flat there, a flip could cost up to the resolution of the Q
search (both stay within 1e-5 of the exact T*, tested). (2) The answer carries no
``info["curve"]`` nor ``info["lambda"]`` (Figs. 3, 4: use the per-cluster solver), and
``lower_bound_s`` is NaN for the clusters searched (Algorithm 2 certifies no bound; a
degenerate cluster's exact answer keeps its bound).
"""

from __future__ import annotations

import numpy as np

from dtfl_env.model.batch import ClusterBatch
from solvers._core import jam_demand, tg_search
from solvers.algorithm2 import (
    _ALPHA0,
    _GRID_POINTS,
    _LADDER,
    _LAMBDA0,
    _MAX_ITER,
    _MIN_ROUNDS,
    _NEAR,
    _POLISH,
    _POLISH_RTOL,
    _REFINE_ROUNDS,
    _REFINE_RTOL,
    _THETA2,
    _TOWARDS_TOP,
    DualConsts,
    _dual,
    _local_gain,
    _predictions,
)
from solvers.batch._core import Chunk, _Rows
from solvers.batch.result import CONVERGED, INFEASIBLE

__all__ = ["solve_chunk"]


def solve_chunk(cb: ClusterBatch) -> dict[str, np.ndarray]:
    """``solve_batch(..., "algorithm2")`` on one chunk (padded to its own M, N)."""
    ch = Chunk(cb)
    p = ch.p
    cols, u_left, _, _ = ch.screen()
    # no jamming decision to search over: Algorithm 2 degenerates to the exact answer
    degen = np.flatnonzero((p.m == 0) | (p.n == 0))
    ch.message[degen] = [
        f"degenerate cluster (M={p.m[i]}, N={p.n[i]}): {ch.message[i]}" for i in degen
    ]
    if cols.size:
        _Search(ch, cols, u_left).run()
    return ch.answers()


class _Search:
    """The Q search of corrected Algorithm 2 for clusters ``cols`` of a chunk (G of them, all
    with M, N > 0 and feasible), their samples as (G, S) arrays sorted by Q, NaN-padded."""

    def __init__(self, ch: Chunk, cols: np.ndarray, u_left: np.ndarray) -> None:
        self.ch, self.cols = ch, cols
        p = ch.p
        self.dc = DualConsts.from_batch(ch.cb, cols)
        self.tb_loc = p.tb_loc[cols]
        self.q_lo, q_hi = p.q_lo[cols], p.q_hi[cols]
        self.q_start = np.maximum(self.q_lo, 0.0)
        # beyond q_top the GLDs cannot pay for the jamming (closed form, as solve_algorithm2)
        with np.errstate(all="ignore"):
            q_top = np.minimum(q_hi, p.min_jamming(u_left[None], cols)[0])
        self.q_top = np.where(q_top > self.q_start, q_top, q_hi)
        span = q_hi - self.q_lo
        grid = self.q_lo[:, None] + span[:, None] * np.geomspace(1e-8, 1.0, _GRID_POINTS)
        grid = np.concatenate(
            [grid, self.q_top[:, None] - (self.q_top - self.q_start)[:, None] * _TOWARDS_TOP], 1
        )
        neg = self.q_lo < 0
        grid = np.where(neg[:, None] & ~(grid > 0), np.nan, grid)
        grid = np.concatenate([np.where(neg, 0.0, np.nan)[:, None], grid], 1)
        grid = np.where((grid > self.q_lo[:, None]) & (grid <= q_hi[:, None]), grid, np.nan)
        self.qs = _compact(_unique(grid))
        g, s = self.qs.shape
        self.tbs = self._sync_time(self.qs, np.arange(g))  # eq. (23)
        self.t_gld = np.full((g, s), np.inf)
        self.ys = np.full((g, s), np.inf)
        self.tgs = np.full((g, s), np.nan)
        self.tg_dual = np.broadcast_to(self.dc.tg_min * 1.5, (g, s)).copy()
        self.lams = np.zeros((g, s, self.dc.k_loc.shape[-1]))
        self.nit = np.zeros(g, dtype=int)

    # ------------------------------------------------------------------ pieces
    def _sync_time(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.ch.p.sync_time(q, self.cols[rows])

    def _totals(self) -> np.ndarray:
        """max(T_GLD, T_BLD) of eq. (11) per sample, without the constant offsets."""
        t = np.maximum(self.t_gld, self.tbs + self.tb_loc[:, None])
        return np.where(np.isnan(t), np.inf, t)

    def _search(
        self,
        gi: np.ndarray,
        q_new: np.ndarray,
        n_new: np.ndarray,
        lam: np.ndarray,
        tg_start: np.ndarray,
        iters: int,
        tg_near: np.ndarray | None,
    ) -> tuple[np.ndarray, ...]:
        """The dual method, then primal recovery, at Q values ``q_new`` (G', K) of clusters
        ``gi`` (the first ``n_new`` of each row are new, the rest repeat the first).
        Returns (tB_up, T_GLD, y, tG, multipliers, dual tG) of the rows (T_GLD, y, tG of
        the repeats are not computed)."""
        tb = self._sync_time(q_new, gi)  # eq. (23)
        with np.errstate(all="ignore"):
            tr = _dual(
                self.dc.take(gi),
                q_new,
                tb,
                lam,
                tg_start,
                False,
                _ALPHA0,
                _THETA2,
                iters,
                final=False,
                keep=False,
            )
        self.nit[gi] += tr.iterations.max(1, initial=0)
        # primal recovery: the tG search of each row, started around the dual tG (and the
        # neighbours' recovered tG), rows grouped by cluster
        real = np.arange(q_new.shape[1]) < n_new[:, None]
        ok = real & np.isfinite(tb)
        t_gld = np.full(tb.shape, np.inf)
        y = np.full(tb.shape, np.inf)
        tg = tr.tg_s.copy()
        r, c = np.nonzero(ok)
        if r.size:
            cols = self.cols[gi[r]]
            d = tr.tg_s[r, c]
            pts = [d * (1.0 + _POLISH[:, None])]
            if tg_near is not None:
                near = tg_near[r, c]
                pts.append(np.where(np.isfinite(near), near, d) * (1.0 + _NEAR[:, None]))
            guess = np.sort(np.maximum(np.concatenate(pts), self.dc.tg_min[gi[r], 0]), axis=0)
            u = tb[r, c]
            p = self.ch.p
            rows = _Rows(p, cols, jam_demand(q_new[r, c], u, p.noise_e[cols]), u)
            v, yy, tt, _ = tg_search(
                rows,
                guess,
                u + p.tb_loc[cols],
                np.bincount(r)[np.unique(r)],
                rtol=_POLISH_RTOL,
                group_stop=True,
            )
            t_gld[r, c], y[r, c], tg[r, c] = v, yy, tt
        return tb, t_gld, y, tg, tr.lam[-1], tr.tg_s

    def _merge(
        self, gi: np.ndarray, q_new: np.ndarray, n_new: np.ndarray, new: tuple[np.ndarray, ...]
    ) -> None:
        """Add the new samples of clusters ``gi`` and sort each row by Q (NaN last)."""
        k = q_new.shape[1]
        real = np.arange(k) < n_new[:, None]
        pad = [
            np.full((self.qs.shape[0], k), f)
            for f in (np.nan, np.nan, np.inf, np.inf, np.nan, np.nan)
        ]
        old = (self.qs, self.tbs, self.t_gld, self.ys, self.tgs, self.tg_dual)
        vals = [q_new, *new[:4], new[5]]
        merged = []
        for o, pd, nv in zip(old, pad, vals, strict=True):
            pd[gi] = np.where(real, nv, pd[gi])
            merged.append(np.concatenate([o, pd], 1))
        lam_pad = np.zeros((self.qs.shape[0], k, self.lams.shape[2]))
        lam_pad[gi] = np.where(real[..., None], new[4], 0.0)
        lams = np.concatenate([self.lams, lam_pad], 1)
        order = np.argsort(merged[0], axis=1, kind="stable")
        merged = [np.take_along_axis(a, order, 1) for a in merged]
        lams = np.take_along_axis(lams, order[..., None], 1)
        last = int(np.isfinite(merged[0]).sum(1).max(initial=0))
        (self.qs, self.tbs, self.t_gld, self.ys, self.tgs, self.tg_dual) = (
            a[:, :last] for a in merged
        )
        self.lams = lams[:, :last]

    # ------------------------------------------------------------------ the search
    def run(self) -> None:
        """Grid, refinement rounds (each cluster until its own stop), answer."""
        self._search_grid()
        open_ = np.ones(self.cols.size, dtype=bool)
        for rnd in range(_REFINE_ROUNDS):
            a, k, nv, lo, hi = self._brackets(np.flatnonzero(open_), rnd >= _MIN_ROUNDS)
            open_[:] = False
            open_[a] = True
            if a.size == 0:
                break
            new = self._new_points(a, k, nv, lo, hi)
            n_new = np.isfinite(new).sum(1)
            keep = n_new > 0  # no new point: the cluster's search ends
            open_[a[~keep]] = False
            a, nv, new, n_new = a[keep], nv[keep], new[keep], n_new[keep]
            if a.size == 0:
                break
            new = _repeat_first(new[:, : int(n_new.max())], n_new)
            qa = self.qs[a]
            pos, left, right = _neighbours(qa, nv, new)
            # warm start: multipliers and Sub-T start of the nearest Q searched
            src = np.where(np.abs(new - left) < np.abs(new - right), pos - 1, pos)
            src = np.where(src < 0, nv[:, None] - 1, src)  # as qs[-1] for a single sample
            rr = np.arange(a.size)[:, None]
            fin = np.isfinite(self.tgs[a]) & np.isfinite(self.t_gld[a])
            tg_near = _interp(new, qa, self.tgs[a], fin)
            res = self._search(
                a,
                new,
                n_new,
                self.lams[a][rr, src],
                self.tg_dual[a][rr, src],
                max(1, _MAX_ITER // 2),
                tg_near,
            )
            self._merge(a, new, n_new, res)
        self._finish()

    def _search_grid(self) -> None:
        """The dual method and primal recovery at every grid point up to q_top (those above
        stay infeasible), from lambda_0 and tG = 1.5 tG_min."""
        n_f = (self.qs <= self.q_top[:, None]).sum(1)  # the grid is sorted: a prefix
        gi = np.flatnonzero(n_f > 0)
        if gi.size == 0:
            return
        kf = int(n_f[gi].max())
        q0 = _repeat_first(self.qs[gi, :kf], n_f[gi])
        lam0 = np.where(self.dc.mask[gi], _LAMBDA0, 0.0)  # padded GLDs: no multiplier
        lam0 = np.broadcast_to(lam0, (*q0.shape, lam0.shape[-1])).copy()
        _, *vals = self._search(
            gi,
            q0,
            n_f[gi],
            lam0,
            np.broadcast_to(self.dc.tg_min[gi] * 1.5, q0.shape),
            _MAX_ITER,
            None,
        )
        put = np.arange(kf) < n_f[gi][:, None]
        r, c = gi[np.nonzero(put)[0]], np.nonzero(put)[1]
        for dst, src in zip(
            (self.t_gld, self.ys, self.tgs, self.lams, self.tg_dual), vals, strict=True
        ):
            dst[r, c] = src[put]

    def _brackets(self, a: np.ndarray, secants: bool) -> tuple[np.ndarray, ...]:
        """For clusters ``a``: the best sample k, the neighbours' Q (lo, hi) and the sample
        count. Drops the clusters whose search stops: no feasible Q, an empty bracket, or
        (with ``secants``) the secants of T in u around the best Q leave at most 1e-5
        (relative) to gain (:func:`solvers.algorithm2._local_gain`, per cluster: the one
        step that does not batch). Returns ``(a, k, n, lo, hi)`` of the clusters going on."""
        tot = self._totals()[a]
        nv = np.isfinite(self.qs[a]).sum(1)
        stop = ~np.isfinite(tot).any(1)
        k = tot.argmin(1)
        ar = np.arange(a.size)
        qa = self.qs[a]
        lo = np.where(k > 0, qa[ar, np.maximum(k - 1, 0)], self.q_start[a])
        hi = np.where(k + 1 < nv, qa[ar, np.minimum(k + 1, qa.shape[1] - 1)], self.q_top[a])
        hi = np.minimum(hi, self.q_top[a])
        stop |= ~(hi > lo)
        if secants:
            for j in np.flatnonzero(~stop):
                i, kk, n = a[j], int(k[j]), int(nv[j])
                gain = _local_gain(float(self.tb_loc[i]), self.tbs[i, :n], tot[j, :n], kk)
                stop[j] = gain <= _REFINE_RTOL * tot[j, kk]
        go = ~stop
        return a[go], k[go], nv[go], lo[go], hi[go]

    def _new_points(
        self, a: np.ndarray, k: np.ndarray, nv: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> np.ndarray:
        """A refinement round's new Q of clusters ``a`` (rows sorted, NaN-padded): 6 uniform
        points in (lo, hi) and ladders around the model predictions inside, without those
        within 1e-12 (relative) of a sample."""
        p, cols = self.ch.p, self.cols
        u_pred = _predictions(self.tbs[a], self.t_gld[a], k, nv, self.tb_loc[a])
        u_pred = np.where(np.isfinite(u_pred) & (u_pred > p.u_lo[cols[a], None]), u_pred, np.nan)
        with np.errstate(all="ignore"):
            preds = p.min_jamming(u_pred.T, cols[a]).T  # eq. (23) inverted
        preds = np.where(
            np.isfinite(preds) & (preds > lo[:, None]) & (preds < hi[:, None]), preds, np.nan
        )
        off = (hi - lo)[:, None, None] * _LADDER
        ladders = np.concatenate(
            [preds[..., None], preds[..., None] - off, preds[..., None] + off], 2
        ).reshape(a.size, -1)
        new = _unique(np.concatenate([np.linspace(lo, hi, 8, axis=1)[:, 1:-1], ladders], 1))
        ok = (
            (new > np.maximum(lo, self.q_lo[a])[:, None])
            & (new < hi[:, None])
            & (new <= self.q_top[a, None])
        )
        new = np.where(ok, new, np.nan)
        _, left, right = _neighbours(self.qs[a], nv, new)
        near = np.minimum(np.abs(new - left), np.abs(new - right))
        return _compact(np.where(near > 1e-12 * new, new, np.nan))

    def _finish(self) -> None:
        """The answer: the best Q searched, its recovered (y, tG) and sync time; the chunk
        splits the jamming feasibly (:meth:`Chunk.answers`)."""
        ch, cols = self.ch, self.cols
        tot = self._totals()
        ar = np.arange(cols.size)
        k = tot.argmin(1)
        found = np.isfinite(tot[ar, k])
        q_best = self.qs[ar, k]
        n_s = np.isfinite(self.qs).sum(1)
        ch.code[cols] = np.where(found, CONVERGED, INFEASIBLE)
        ch.y[cols] = np.where(found, self.ys[ar, k], 0.0)
        ch.tg[cols] = np.where(found, self.tgs[ar, k], 0.0)
        ch.u[cols] = np.where(found, self.tbs[ar, k], 0.0)
        ch.q_req[cols] = np.where(found, q_best, np.nan)
        ch.nit[cols] = self.nit
        ch.message[cols] = [
            (
                f"dual subgradient + primal recovery; best Q = {q:.4g} W of {n} searched (log "
                "grid and refinement)"
            )
            if f
            else "no Q on the search grid admits a feasible allocation"
            for q, n, f in zip(q_best, n_s, found, strict=True)
        ]


# ---------------------------------------------------------------------------- row helpers
def _unique(a: np.ndarray) -> np.ndarray:
    """Each row sorted (NaN last) with exact repeats set to NaN (``np.unique`` per row)."""
    a = np.sort(a, axis=1)
    dup = np.zeros(a.shape, dtype=bool)
    dup[:, 1:] = a[:, 1:] == a[:, :-1]
    return np.where(dup, np.nan, a)


def _compact(a: np.ndarray) -> np.ndarray:
    """The finite values of each row first, in order (rows sorted, NaN last), trimmed to
    the widest row."""
    a = np.sort(a, axis=1)
    return a[:, : int(np.isfinite(a).sum(1).max(initial=0))]


def _repeat_first(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Row r's first ``n[r]`` values, then its first value repeated (rectangular rows that
    compute the same per cluster)."""
    return np.where(np.arange(a.shape[1]) < n[:, None], a, a[:, :1])


def _neighbours(
    qs: np.ndarray, nv: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each x[r, j], pos = clip(searchsorted(qs[r, :nv[r]], x), 1, nv - 1) and the
    samples at pos - 1 and pos (``qs[pos - 1]`` wraps to the last one, as numpy's
    indexing does, when a row holds one sample)."""
    with np.errstate(invalid="ignore"):
        cnt = (qs[:, None, :] < x[:, :, None]).sum(-1)
    pos = np.minimum(np.maximum(cnt, 1), nv[:, None] - 1)
    rr = np.arange(qs.shape[0])[:, None]
    return pos, qs[rr, np.where(pos - 1 < 0, nv[:, None] - 1, pos - 1)], qs[rr, pos]


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, use: np.ndarray) -> np.ndarray:
    """``np.interp(x[r], xp[r][use[r]], fp[r][use[r]])`` per row (same arithmetic; NaN for a
    row without a point used). ``xp`` rows ascending."""
    order = np.argsort(~use, axis=1, kind="stable")  # used points first, in order
    xs = np.take_along_axis(np.where(use, xp, np.inf), order, 1)
    fs = np.take_along_axis(fp, order, 1)
    n = use.sum(1)[:, None]
    with np.errstate(invalid="ignore"):
        j = (xs[:, None, :] <= x[:, :, None]).sum(-1) - 1  # xs[j] <= x < xs[j + 1]
    rr = np.arange(x.shape[0])[:, None]
    last = np.maximum(n - 1, 0)
    j0 = np.clip(j, 0, last)
    j1 = np.clip(j + 1, 0, last)
    xa, xb, fa, fb = xs[rr, j0], xs[rr, j1], fs[rr, j0], fs[rr, j1]
    with np.errstate(all="ignore"):
        slope = (fb - fa) / (xb - xa)
        mid = slope * (x - xa) + fa
    out = np.where(j < 0, fs[:, :1], np.where(j >= last, fs[rr, last], np.where(xa == x, fa, mid)))
    return np.where(n > 0, out, np.nan)
