"""The exact solver of problem P for a batch of clusters at once (numpy, vectorised).

``solve_batch(clusters, "exact")`` runs the algorithm of :mod:`solvers.exact` on B clusters
in lockstep: per cluster a 1-D convex search over the BLD sync time u = tB_up, whose T(u) =
max(V(u), u + tB_loc) + const is certified by the convexity lower bound (secant lines
through the samples), and inside it, per sampled u, a 1-D convex search over tG of h(tG) =
tG + y(tG) with the smallest feasible y in closed form (:class:`solvers._core.Prepared`'s
method, certified to 1e-13 by the tangents at the ends of the bracket). Every step is one numpy
expression over all clusters still searching (and over all of their sampled u and candidate
tG); clusters that are certified drop out of the arrays (the padding and the tG search:
:mod:`solvers.batch._core`).

Two things differ from the loop, neither in what is certified: the 41 starting samples of u
are searched in waves (every 8th from the coarse tG grid, the others from their solved
neighbours' optimal tG), and before the search over u each cluster tries a shortcut
certificate: V_free = min y + tG without the jamming constraint is a lower bound of T* - const,
and where V(u) reaches it at a sync time u with u + tB_loc <= V_free (the jamming does not
bind, about half of the random clusters) T* is certified at once (:func:`_flat`). The loop
then sometimes ends ``converged`` at a tight ``rtol`` where the batch ends ``optimal``.
"""

from __future__ import annotations

import numpy as np

from dtfl_env.model.batch import ClusterBatch
from solvers._core import parabola_vertex, secant_root, tg_search
from solvers.batch._core import _BIG, Chunk, _Prep, _Rows
from solvers.batch.result import CONVERGED, INFEASIBLE, NOT_CONVERGED, OPTIMAL

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


# ---------------------------------------------------------------------------- outer search
def _gather(a: np.ndarray, idx: np.ndarray, nv: np.ndarray, fill: float) -> np.ndarray:
    """a[g, idx[g]] per row, ``fill`` where idx is outside 0..nv-1."""
    ok = (idx >= 0) & (idx < nv)
    v = np.take_along_axis(a, np.clip(idx, 0, a.shape[1] - 1)[:, None], 1)[:, 0]
    return np.where(ok, v, fill)


def _secant(
    xa: np.ndarray, fa: np.ndarray, xi: np.ndarray, fi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Line through (xa, fa) and (xi, fi) as (slope, intercept); (0, -inf) where either
    value is infinite or the points are closer than 1e-12 (relative): rounding noise."""
    ok = np.isfinite(fa) & np.isfinite(fi) & (np.abs(xa - xi) > 1e-12 * np.abs(xa))
    with np.errstate(all="ignore"):
        s = np.where(ok, (fa - fi) / np.where(ok, xa - xi, 1.0), 0.0)
    return s, np.where(ok, fa - s * xa, -np.inf)


def _lowest(
    lines: list[tuple[np.ndarray, np.ndarray]],
    z0: np.ndarray,
    z1: np.ndarray,
    c: np.ndarray,
    exists: np.ndarray,
) -> np.ndarray:
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


def _lower_bound(
    x: np.ndarray,
    fl: np.ndarray,
    fh: np.ndarray,
    k: np.ndarray,
    nv: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    c: np.ndarray,
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
    out.append(
        _lowest(
            [line(a, a + 1), line(a, a + 2), line(a, a + 4), line(a, last)],
            np.minimum(left, za),
            za,
            c,
            np.where(has_m, fin_m, True) & (left < za),
        )
    )
    # [x[k-1], x[k]]
    both = has_m & fin_m
    lm = line(k - 1, k - 2)
    lines = [
        line(k, k + 1),
        line(k, k + 2),
        (np.where(both, lm[0], 0.0), np.where(both, lm[1], -np.inf)),
    ]
    out.append(_lowest(lines, np.where(has_m, xm, xk), xk, c, has_m))
    # right of x[k+1] (or of x[last] when k = last)
    has_p = k < last
    fin_p = np.isfinite(flp)
    a = np.where(has_p, k + 1, k)
    za = np.where(has_p, xp, xk)
    out.append(
        _lowest(
            [line(a, a - 1), line(a, a - 2), line(a, a - 4), line(a, 0 * a)],
            za,
            np.maximum(right, za),
            c,
            np.where(has_p, fin_p, True) & (right > za),
        )
    )
    # [x[k], x[k+1]]
    bothp = has_p & fin_p
    lp = line(k + 1, k + 2)
    lines = [
        line(k, k - 1),
        line(k, k - 2),
        (np.where(bothp, lp[0], 0.0), np.where(bothp, lp[1], -np.inf)),
    ]
    out.append(_lowest(lines, xk, np.where(has_p, xp, xk), c, has_p))
    return np.min(np.stack(out), 0)


def _predictions(
    x: np.ndarray, v: np.ndarray, k: np.ndarray, nv: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
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
        cross = np.isfinite(g[:, :-1]) & np.isfinite(g[:, 1:]) & (g[:, :-1] > 0) & (g[:, 1:] <= 0)
        i = cross.argmax(1)[:, None]
        ga, gb = np.take_along_axis(g, i, 1)[:, 0], np.take_along_axis(g, i + 1, 1)[:, 0]
        xa, xb = np.take_along_axis(xw, i, 1)[:, 0], np.take_along_axis(xw, i + 1, 1)[:, 0]
        r1 = np.where(cross.any(1), secant_root(xa, xb, ga, gb), np.nan)
        y0, y1, y2 = (
            np.where(ok[:, j], np.take_along_axis(v, ci[:, j : j + 1], 1)[:, 0], np.inf)
            for j in (2, 3, 4)
        )
        r, curv = parabola_vertex(xw[:, 2], xw[:, 3], xw[:, 4], y0, y1, y2)
        fin = np.isfinite(y0) & np.isfinite(y1) & np.isfinite(y2) & (curv > 0)
        r2 = np.where(fin, r, np.nan)
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


def _sample(
    p: _Prep,
    cols: np.ndarray,
    u: np.ndarray,
    c: np.ndarray,
    guess: np.ndarray | None,
    best: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """T(u) - const bracketed at the samples ``u`` (G, K) of clusters ``cols`` (G,): returns
    (f_hi, f_lo, V, y, tG), each (G, K)."""
    g, kk = u.shape
    cr = np.repeat(cols, kk)
    uf = u.reshape(-1)
    dem = p.jam_demand(uf, cr)
    floor = uf + np.repeat(c, kk)
    rows = _Rows(p, cr, dem, uf)
    v, y, tg, v_lo = tg_search(rows, guess, floor, kk, best)
    shape = (g, kk)
    return (
        np.maximum(v, floor).reshape(shape),
        np.maximum(v_lo, floor).reshape(shape),
        v.reshape(shape),
        y.reshape(shape),
        tg.reshape(shape),
    )


def _guesses(
    x: np.ndarray,
    tg: np.ndarray,
    k: np.ndarray,
    nv: np.ndarray,
    new: np.ndarray,
    tg_min: np.ndarray,
) -> np.ndarray:
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


def _outer(
    p: _Prep,
    cols: np.ndarray,
    u_left: np.ndarray,
    u_feas: np.ndarray,
    u_hi: np.ndarray,
    rtol: float,
    max_rounds: int,
) -> tuple[np.ndarray, ...]:
    """The certified 1-D convex search over u of :func:`solvers.exact.solve_exact`, for the
    clusters ``cols`` in lockstep. Returns (u*, y*, tG*, status code, lower bound, rounds).
    """
    g = cols.size
    c = p.tb_loc[cols]
    span = u_hi - u_left
    first = np.maximum(1e-12 * span, 1e-12 * u_left)  # as solvers.exact
    with np.errstate(all="ignore"):
        xs = u_left[:, None] + np.exp(
            np.log(first)[:, None] + np.log(span / first)[:, None] * np.linspace(0.0, 1.0, _N_INIT)
        )
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
            guess = np.concatenate([interp * (1.0 + _GUESS[:, None]), [lo * 0.999, hi * 1.001]])
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
        collapsed = ~cert & (hi_x - lo_x <= 4 * np.finfo(float).eps * np.maximum(np.abs(xk), 1.0))
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
        new = np.where(
            (new > lo_x[:, None]) & (new < hi_x[:, None]), new, 0.5 * (lo_x + hi_x)[:, None]
        )
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


def _flat(
    p: _Prep,
    cols: np.ndarray,
    u_left: np.ndarray,
    u_feas: np.ndarray,
    u_hi: np.ndarray,
    rtol: float,
) -> tuple[np.ndarray, ...]:
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
    v0, _, t0, v0_lo = tg_search(rows, group=1)
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
def solve_chunk(cb: ClusterBatch, rtol: float, max_rounds: int) -> dict[str, np.ndarray]:
    """``solve_batch(..., "exact")`` on one chunk (padded to its own M, N)."""
    ch = Chunk(cb)
    p = ch.p
    cols, u_left, u_feas, u_hi = ch.screen()
    if cols.size:
        flat, uf, yf, tf, lbf = _flat(p, cols, u_left, u_feas, u_hi, rtol)
        fc = cols[flat]
        ch.code[fc], ch.u[fc], ch.y[fc], ch.tg[fc], ch.nit[fc] = OPTIMAL, uf, yf, tf, 1
        ch.lower[fc] = lbf + p.fixed_s[fc]
        ch.message[fc] = (
            f"certified to rtol={rtol:g}: T(tB_up) reaches the lower bound "
            "min y + tG without the jamming constraint"
        )
        cols, u_left, u_feas, u_hi = (a[~flat] for a in (cols, u_left, u_feas, u_hi))
    if cols.size:
        us, ys, ts, st, lb, rounds = _outer(p, cols, u_left, u_feas, u_hi, rtol, max_rounds)
        ch.code[cols], ch.u[cols], ch.y[cols], ch.tg[cols], ch.nit[cols] = st, us, ys, ts, rounds
        ch.lower[cols] = lb + p.fixed_s[cols]
        ch.message[cols] = np.array(
            [
                f"certified to rtol={rtol:g} (convexity in tB_up)",
                "search interval collapsed to machine precision",
                f"no certificate after {max_rounds} rounds",
                "no sync time tB_up admits a feasible (y, tG, q)",
            ],
            dtype=object,
        )[st]
    return ch.answers()
