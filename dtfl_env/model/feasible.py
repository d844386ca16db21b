"""The energy-feasible set of one cluster's allocation, and the ``safe`` action mapping.

Pure numpy on :class:`~dtfl_env.model.batch.ClusterRow` (one cluster of a batch).
Problem P's only coupling constraint is the energy budget (14a),

    K_i / y^2 + E_i^up(tG) + q_i tB_up(Q) <= E_max,i,   K_i = kappa (eta iota D_i)^3,

with Q = sum_i q_i g_iE (eq. (20)) and tB_up(Q) the sync time (eq. (23)). For fixed y and tG
each GLD has ``left_i = E_max,i - K_i / y^2 - E_i^up(tG)`` joules for jamming, and an
aggregate jamming Q can be paid iff (docs/MODEL.md's feasibility test)

    psi(u) = sum_i g_iE min(Q_max,i u, left_i) - u max(Q(u), 0) >= 0,   u = tB_up(Q),

where Q(u) inverts eq. (23). psi is concave in u (a concave minimum of linear functions
minus the convex perspective u Q(u)), so the affordable Q form an interval
[Q_low, Q_high]; :func:`jamming_interval` locates its ends by zooming on the sign changes of
psi (relative precision ~1e-9 in u).

The ``safe`` action mapping (:func:`safe_allocation`) parametrises problem P so that, on a
cluster with a feasible allocation, every action is feasible: the upload time starts where
the BLDs can still be synced (:func:`sync_upload_time_s`), the training time where the
jamming that syncs them is still affordable (:func:`sync_training_time_s`, from the
closed-form largest 1/y^2 per sync time of solvers._core), and the jamming is a fraction
of the affordable interval, split in proportion to what each GLD can give. What the agent
still trades off is the upload time against the training time against the sync time.
"""

from __future__ import annotations

import math

import numpy as np

from dtfl_env.model.system import LN2

__all__ = ["BOUND_EXCESS", "PEAK_TOLERANCE", "UPLOAD_RESERVE", "affordable_upload_time_s",
           "jamming_interval", "jamming_split", "safe_action", "safe_allocation",
           "safe_bound_features", "sync_training_time_s", "sync_upload_time_s",
           "training_base_rows_s", "training_base_s", "training_energy_j",
           "training_time_floor_s"]

#: share of every GLD's budget that the ``safe`` mapping keeps back from the upload at the
#: shortest upload time tg_lo, so that the training time y_lo(tg_lo) stays finite
UPLOAD_RESERVE = 1e-6

#: relative shortfall of the jamming budget tolerated at a one-point affordable interval
#: (far below the environment's ENERGY_TOLERANCE of 1e-5)
PEAK_TOLERANCE = 1e-7

_S_MIN, _S_MAX = -27.0, 16.0  # log((u - u_lo) / u_lo) searched by jamming_interval
_COARSE, _FINE, _ROUNDS = 40, 24, 4


def affordable_upload_time_s(g_nog: np.ndarray, sic: np.ndarray, e_max_j: np.ndarray,
                             x_scale: float, reserve: float = UPLOAD_RESERVE) -> np.ndarray:
    """Per GLD, the smallest tG with E_i^up(tG) <= (1 - reserve) E_max,i (eqs. (7)-(8)).

    With x = r ln 2 = x_scale / tG, E^up = n_C/g_iC x_scale (e^x - 1)/x e^((i-1) x) grows
    with x; h(x) = log((e^x - 1)/x) + (i - 1) x is convex and increasing, so Newton's method
    from the right of the root decreases monotonically onto it. ``inf`` where even an
    infinitely slow upload (E^up -> n_C/g_iC L ln2 / W) costs more than the budget.
    """
    c = np.log((1.0 - reserve) * e_max_j / (g_nog * x_scale))
    ok = c > 0
    cc = np.where(ok, c, 1.0)
    x = np.maximum(cc, 1.0) + np.log(np.maximum(cc, 1.0)) + 3.0  # right of the root
    shape = np.broadcast_shapes(x.shape, np.shape(sic))
    x, sic, cc = (np.broadcast_to(v, shape).ravel().copy()
                  for v in (x, np.asarray(sic, dtype=float), cc))
    todo = np.arange(x.size)  # the entries still moving
    for _ in range(60):
        xa, sa = x[todo], sic[todo]
        em1 = np.expm1(xa)
        h = np.log(em1 / xa) + sa * xa - cc[todo]
        step = h / ((em1 + 1.0) / em1 - 1.0 / xa + sa)
        x[todo] = xa - step
        todo = todo[np.abs(step) > 1e-13 * xa]
        if not todo.size:
            break
    x = x.reshape(shape) * (1.0 - 1e-12)  # the feasible side despite rounding
    return np.where(ok, x_scale / x, np.inf)


def training_energy_j(a, y_s: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """E_i^loc = K_i / y^2 at the common training time y, eqs. (5) and (17)."""
    return a.g_kloc / y_s**2


def training_time_floor_s(a, left_up_j: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """y_lo: the smallest common training time every GLD can pay from the energy left after
    its upload, max(y_min, max_i sqrt(K_i / left_i)) (eqs. (5), (17), (19)); GLDs with no
    energy left (they cannot even upload) are left out: they drop out whatever y is."""
    ok = left_up_j > 0
    if not ok.any():
        return a.y_min_s
    k = a.g_kloc[ok]
    return max(a.y_min_s, float(np.sqrt(np.max(k / left_up_j[ok]))))


def _need_w(a, u: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Q(u): the least aggregate jamming that syncs every BLD within u (eq. (23) inverted);
    ``inf`` where even infinite jamming is too slow, negative where none is needed."""
    expo = (a.b_legit[:, None] - a.b_data[:, None] / (a.w_hz * u)) * LN2
    need = a.b_pe[:, None] / np.expm1(expo) - a.n_e_w
    return np.where(expo > 0, need, np.inf).max(0)


def _psi(a, left_j: np.ndarray, u: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    pay = a.g_gain_e @ np.minimum(a.g_q_max[:, None] * u, left_j[:, None])
    return pay - u * np.maximum(_need_w(a, u), 0.0)


def _zoom(a, left_j: np.ndarray, u_lo: float, brackets: np.ndarray  # type: ignore[no-untyped-def]
          ) -> np.ndarray:
    """Shrink brackets of s = log((u - u_lo)/u_lo) around sign changes of psi, all at once.

    ``brackets`` is (k, 2): row r holds (s at psi < 0, s at psi >= 0) in either order. Each
    round evaluates psi on a grid across every bracket and keeps the cell with the sign
    change; a final secant step in u, where psi is concave, lands on the feasible side (the
    chord between a negative and a non-negative point lies below a concave function; the
    point is checked, and the bracket's feasible end kept otherwise). Returns the u values.
    """
    neg, pos = brackets[:, 0].copy(), brackets[:, 1].copy()
    for _ in range(_ROUNDS):
        s = neg[:, None] + (pos - neg)[:, None] * _UNIT_FINE  # infeasible to feasible end
        ok = (_psi(a, left_j, u_lo * (1.0 + np.exp(s.ravel()))) >= 0).reshape(s.shape)
        j = np.where(ok.any(1), ok.argmax(1), _FINE - 1)  # first feasible point of each row
        rows = np.arange(s.shape[0])
        neg, pos = s[rows, np.maximum(j - 1, 0)], s[rows, j]
    u_neg, u_pos = u_lo * (1.0 + np.exp(neg)), u_lo * (1.0 + np.exp(pos))
    both = _psi(a, left_j, np.concatenate([u_neg, u_pos]))
    p_neg, p_pos = both[:neg.size], both[neg.size:]
    u_sec = u_pos - p_pos * (u_pos - u_neg) / (p_pos - p_neg)
    u_sec = np.where(np.isfinite(u_sec) & (p_neg < 0), u_sec, u_pos)
    return np.where(_psi(a, left_j, u_sec) >= 0, u_sec, u_pos)


def jamming_interval(a, left_j: np.ndarray) -> tuple[float, float] | None:  # type: ignore[no-untyped-def]
    """The aggregate jamming levels [Q_low, Q_high] that sync every BLD and that every GLD
    can pay from ``left_j`` joules over the sync time tB_up(Q) they buy (q_i <= Q_max,i,
    q_i tB_up(Q) <= left_i). ``None`` when no level is affordable.

    Q_high (the fastest affordable sync) is found from the feasible side, so jamming at it
    never overspends; Q_low is 0 when the BLDs sync without jamming (eq. (22)'s lower bound
    is negative). A cluster without BLDs needs no jamming: (0, 0).
    """
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return _jamming_interval(a, left_j)


def _jamming_interval(a, left_j: np.ndarray) -> tuple[float, float] | None:  # type: ignore[no-untyped-def]
    if a.b_data.size == 0:
        return 0.0, 0.0
    u_lo, s_hi, free = _u_grid(a)
    if a.g_cd.size == 0 or not np.any(left_j > 0):
        return (0.0, 0.0) if free else None
    if s_hi <= _S_MIN + 1.0:  # jamming cannot shorten the sync time measurably
        return 0.0, 0.0
    s = np.linspace(_S_MIN, s_hi, _COARSE)  # psi(u_free) >= 0: no jamming needed there
    psi = _psi(a, left_j, u_lo * (1.0 + np.exp(s)))
    pos = psi >= 0
    if not pos.any():  # the feasible interval may be narrower than the grid: zoom on the peak
        for _ in range(_ROUNDS + 2):
            k = int(np.argmax(np.where(np.isfinite(psi), psi, -np.inf)))
            s = np.linspace(s[max(k - 1, 0)], s[min(k + 1, s.size - 1)], _FINE)
            psi = _psi(a, left_j, u_lo * (1.0 + np.exp(s)))
            pos = psi >= 0
            if pos.any():
                break
        else:
            # a peak that misses by rounding only is the one-point interval (where an optimum
            # with T_GLD binding sits): the split then overspends by ~PEAK_TOLERANCE at most
            k = int(np.argmax(np.where(np.isfinite(psi), psi, -np.inf)))
            if not psi[k] >= -PEAK_TOLERANCE * float(a.g_gain_e @ left_j):
                return None
            q = max(float(_need_w(a, np.array([u_lo * (1.0 + math.exp(s[k]))]))[0]), 0.0)
            return q, q
    j0 = int(pos.argmax())
    j1 = int(s.size - 1 - pos[::-1].argmax())
    brackets = [(s[j0 - 1], s[j0])] if j0 > 0 else []
    right = not free and j1 < s.size - 1
    if right:
        brackets.append((s[j1 + 1], s[j1]))
    u = _zoom(a, left_j, u_lo, np.array(brackets)) if brackets else np.zeros(0)
    u_left = u[0] if j0 > 0 else u_lo * (1.0 + math.exp(s[j0]))
    u_right = u[-1] if right else u_lo * (1.0 + math.exp(s[j1]))
    q_high, q_low = np.maximum(_need_w(a, np.array([u_left, u_right])), 0.0)
    if free:
        return 0.0, float(q_high)
    return float(min(q_low, q_high)), float(q_high)


def _sync_time_s(a, q_w: float) -> float:  # type: ignore[no-untyped-def]
    eve = np.log2(1.0 + a.b_pe / (a.n_e_w + q_w))
    rate = a.w_hz * np.maximum(a.b_legit - eve, 0.0)  # eq. (21)
    with np.errstate(divide="ignore"):
        return float(np.max(a.b_data / rate))  # eq. (23)


def jamming_split(a, q_w: float, left_j: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Powers q_i with sum_i q_i g_iE = Q (eq. (20)), each within min(Q_max,i, left_i / u),
    u = tB_up(Q): every GLD's cap scaled by one factor (no GLD pushed to its limit unless
    the demand needs all of them there). Zeros when Q <= 0 or there is no BLD."""
    m = a.g_cd.size
    if q_w <= 0 or a.b_data.size == 0 or m == 0:
        return np.zeros(m)
    u = _sync_time_s(a, q_w)
    cap = np.clip(np.minimum(a.g_q_max, left_j / u), 0.0, None)
    total = float(a.g_gain_e @ cap)
    if total <= 0:
        return np.zeros(m)
    return cap * min(1.0, q_w / total)


def _u_grid(a) -> tuple[float, float, bool]:  # type: ignore[no-untyped-def]
    """(u_lo, s_hi, free): the sync-time search range of s = log((u - u_lo)/u_lo), from
    u_lo (infinite jamming) to the sync time without jamming u_free (s_hi = log(u_free /
    u_lo - 1)) when every BLD syncs without jamming (``free``), else to u = e^16 u_lo."""
    u_lo = float(np.max(a.b_data / (a.w_hz * a.b_legit)))  # eq. (23) as Q -> infinity
    rate0 = a.b_legit - np.log2(1.0 + a.b_pe / a.n_e_w)  # eq. (21) at Q = 0, per W
    if np.all(rate0 > 0):
        u_free = float(np.max(a.b_data / (a.w_hz * rate0)))
        with np.errstate(divide="ignore"):
            return u_lo, math.log(max(u_free / u_lo - 1.0, 0.0)), True
    return u_lo, _S_MAX, False


_UNIT = np.linspace(0.0, 1.0, _COARSE)
_UNIT_FINE = np.linspace(0.0, 1.0, _FINE)
_ZOOM = np.linspace(-1.0, 1.0, _FINE)


def _take0(x: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``np.take_along_axis(x, order, 0)`` for 3-D arrays, by plain fancy indexing (the
    same gather without its per-call index building, which the searches pay thousands of
    times per second)."""
    _, r, k = x.shape
    return x[order, np.arange(r)[:, None], np.arange(k)]


def _peak(f, u_lo: float, s_hi: float, rows: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Row-wise maximum over s in [_S_MIN, s_hi] of ``f(u)`` ((rows, k) values for k sync
    times u), for functions unimodal in u: a coarse grid, then zooms on each row's argmax.
    The maximum is approached from below (a grid value), never overstated."""
    s = np.broadcast_to(_S_MIN + (s_hi - _S_MIN) * _UNIT, (rows, _COARSE))
    best = np.full(rows, -np.inf)
    r = np.arange(rows)
    width = np.full(rows, (s_hi - _S_MIN) / (_COARSE - 1))
    for _ in range(_ROUNDS + 2):
        val = f(u_lo * (1.0 + np.exp(s)))
        val = np.where(val == val, val, -np.inf)  # NaN (inf - inf) counts as infeasible
        k = val.argmax(1)
        best = np.maximum(best, val[r, k])
        s = np.minimum(np.maximum(s[r, k][:, None] + width[:, None] * _ZOOM, _S_MIN), s_hi)
        width = width * (2.0 / (_FINE - 1))
    return best


def _sync_w_factory(a, left_up: np.ndarray):  # type: ignore[no-untyped-def]
    """w(u) = the largest 1/y^2 at which the GLDs can pay training plus the jamming that
    syncs every BLD within u, for R energy vectors ``left_up`` (M, R) and each u of ``u``
    (R, k); -inf where none.

    With cap_i = Q_max,i u, D = u Q(u)^+ and beta_i = (A_i - cap_i) / K_i (A_i: energy left
    after the upload), H(w) = sum_i g_iE min(cap_i, A_i - K_i w) is concave, piecewise
    linear and decreasing: the minimum of its pieces' extensions C - sum_{i<=k} g_i K_i
    (w - beta_(i)) over the breakpoints in ascending order (C = sum_i g_i cap_i). So the
    largest w with H(w) >= D is min_k (C - D + sum_{i<=k} g K beta) / sum_{i<=k} g K
    (none when C < D), capped by every GLD's training energy (w <= A_i / K_i) and the CPU
    bound (19). GLDs with no energy left after the upload are left out (they drop out).
    In a row, a GLD with no energy left has zero weight and its breakpoint is sorted last;
    rows where no GLD has energy left are the caller's.
    """
    ok = left_up > 0
    full = bool(ok.all())  # the usual case: no masking needed
    k_loc = a.g_kloc
    g, gk_all = a.g_gain_e, a.g_gain_e * k_loc
    gk = np.where(ok, gk_all[:, None], 0.0)
    a_j = np.where(ok, left_up, 0.0)
    w_cap = np.minimum(np.where(ok, a_j / k_loc[:, None], np.inf).min(0), 1.0 / a.y_min_s**2)
    qm, a3, k3 = a.g_q_max[:, None, None], a_j[:, :, None], k_loc[:, None, None]

    def w_of_u(u: np.ndarray) -> np.ndarray:
        cap = qm * u[None]  # (M, R, k)
        dem = u * np.maximum(_need_w(a, u.ravel()).reshape(u.shape), 0.0)
        beta = (a3 - cap) / k3
        if full:
            order = beta.argsort(axis=0)
            sb, gks = _take0(beta, order), gk_all[order]
            c_tot = (g @ cap.reshape(g.size, -1)).reshape(u.shape)
            w_h = ((c_tot - dem)[None] + (gks * sb).cumsum(0)) / gks.cumsum(0)
        else:
            beta = np.where(ok[:, :, None], beta, np.inf)
            order = beta.argsort(axis=0)
            sb = _take0(beta, order)
            gks = _take0(np.broadcast_to(gk[:, :, None], beta.shape), order)
            c_tot = np.einsum("mr,mrk->rk", np.where(ok, g[:, None], 0.0), cap)
            num = (gks * np.where(np.isfinite(sb), sb, 0.0)).cumsum(0)
            den = gks.cumsum(0)
            w_h = np.where(den > 0, ((c_tot - dem)[None] + num) / np.where(den > 0, den, 1.0),
                           np.inf)
        return np.where(c_tot >= dem, np.minimum(w_h.min(0), w_cap[:, None]), -np.inf)

    return w_of_u


def sync_training_time_s(a, left_up_j: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """y_sync: the shortest common training time at which the GLDs can still pay jamming
    that syncs every BLD, given the energy ``left_up_j`` left after the upload (``inf``
    where no training time is slow enough). ``w(u)`` (:func:`_sync_w_factory`) is concave in u (the
    upper boundary of the convex set psi(u, w) >= 0), so its maximum is found on a grid
    with zooms, from below: y_sync is never understated. Without BLDs: the energy floor."""
    if a.b_data.size == 0:
        return training_time_floor_s(a, left_up_j)
    if a.g_cd.size == 0 or not np.any(left_up_j > 0):
        return math.inf
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        u_lo, s_hi, _ = _u_grid(a)
        w = float(_peak(_sync_w_factory(a, left_up_j[:, None]), u_lo, max(s_hi, _S_MIN + 1.0),
                        1)[0])
    return max(a.y_min_s, w ** -0.5) if w > 0 else math.inf


#: how far beyond tg_range tg_lo :func:`sync_upload_time_s` looks for the shortest upload
#: that lets the BLDs sync (a multiple of tg_lo): a deep-fade GLD may need one that slow
SYNC_UPLOAD_MAX_FACTOR = 1e6


def sync_upload_time_s(a, tg_lo_s: float, ln_tg_range: float) -> float:  # type: ignore[no-untyped-def]
    """The shortest upload time (to ~0.2 %, from above) at which some training time and
    jamming sync every BLD within the budgets: the energy left after the upload must pay,
    with endless training (w = 0), the jamming of some sync time u, max_u psi(u) >= 0.
    Searched in [tg_lo, tg_range tg_lo], then, where none there allows it, in
    [tg_range tg_lo, SYNC_UPLOAD_MAX_FACTOR tg_lo] (the energy left grows with the upload
    time, so the first upload time that allows it bounds the feasible ones from below).
    ``nan`` where none up to SYNC_UPLOAD_MAX_FACTOR tg_lo allows it."""
    if a.g_cd.size == 0 or a.b_data.size == 0:
        return tg_lo_s
    ln_far = math.log(SYNC_UPLOAD_MAX_FACTOR)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        u_lo, s_hi, _ = _u_grid(a)
        s_hi = max(s_hi, _S_MIN + 1.0)
        lo, hi = 0.0, ln_tg_range
        it = 0
        while it < 3:
            x = np.linspace(lo, hi, _FINE)
            tg = tg_lo_s * np.exp(x)
            left = np.clip(a.g_e_max[:, None] - a.upload_energy_j(tg), 0.0, None)

            def psi0(u: np.ndarray, left: np.ndarray = left) -> np.ndarray:
                pay = np.einsum("i,irk->rk", a.g_gain_e,
                                np.minimum(a.g_q_max[:, None, None] * u, left[:, :, None]))
                need = _need_w(a, u.ravel()).reshape(u.shape)
                return pay - u * np.maximum(need, 0.0)

            ok = _peak(psi0, u_lo, s_hi, x.size) >= 0
            if not ok.any():
                if it > 0:
                    return float(tg_lo_s * math.exp(hi))
                if lo > 0.0 or ln_tg_range >= ln_far:
                    return math.nan
                lo, hi = ln_tg_range, ln_far  # beyond the range: a deep-fade GLD
                continue
            j = int(ok.argmax())
            if j == 0:
                return float(tg[0])
            lo, hi = x[j - 1], x[j]
            it += 1
    return float(tg_lo_s * math.exp(hi))


def training_base_s(a, left_up_j: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """y_base: the ``safe`` mode's lower end of the training time for the energy
    ``left_up_j`` left after the upload, :func:`sync_training_time_s`, or where no training
    time lets the BLDs be synced, :func:`training_time_floor_s`."""
    y = sync_training_time_s(a, left_up_j)
    return y if math.isfinite(y) else training_time_floor_s(a, left_up_j)


#: the upload-time excesses e of :func:`safe_bound_features`: y_base at tG = tg_base (1 + e)
BOUND_EXCESS = (0.01, 0.1, 1.0)


def training_base_rows_s(a, left_up_j: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """:func:`training_base_s` for R energy vectors ``left_up_j`` (M, R) at once (one
    vectorised search instead of R)."""
    r = left_up_j.shape[1]
    y = np.full(r, math.inf)
    ok = (left_up_j > 0).any(0)
    if a.b_data.size and a.g_cd.size and ok.any():
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            u_lo, s_hi, _ = _u_grid(a)
            w = _peak(_sync_w_factory(a, left_up_j[:, ok]), u_lo, max(s_hi, _S_MIN + 1.0),
                      int(ok.sum()))
            y[ok] = np.where(w > 0, np.maximum(a.y_min_s, w ** -0.5), math.inf)
    for k in np.flatnonzero(~np.isfinite(y)):
        y[k] = training_time_floor_s(a, left_up_j[:, k])
    return y


def safe_bound_features(a, tg_base_s: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The ``safe`` box's lower bounds as observation features, in log10 seconds:
    tg_base, then y_base(tG) (:func:`training_base_s`) at tG = tg_base (1 + e) for each e
    of :data:`BOUND_EXCESS` (how steeply the training time falls as the upload slows down:
    the trade-off the optimum balances). Zeros for a cluster without GLDs."""
    out = np.zeros(1 + len(BOUND_EXCESS))
    if a.g_cd.size == 0 or not tg_base_s > 0:
        return out
    out[0] = math.log10(tg_base_s)
    tg = tg_base_s * (1.0 + np.asarray(BOUND_EXCESS))
    y = training_base_rows_s(a, a.g_e_max[:, None] - a.upload_energy_j(tg))
    with np.errstate(divide="ignore"):
        out[1:] = np.where((y > 0) & np.isfinite(y), np.log10(y), 5.0)
    return out


#: the ``excess`` scale's smallest step above a bound: factor 1 + EXCESS_FLOOR at a = -1
EXCESS_FLOOR = 1e-3


def _factor(a_k: float, ln_range: float, scale: str) -> float:
    """The multiple of its lower bound that action value ``a_k`` in [-1, 1] sets (a0: tG,
    a1: y). ``"ratio"``: range^((a + 1) / 2), log-uniform in [1, range]. ``"excess"``:
    1 + EXCESS_FLOOR (rho^u - 1), u = (a + 1) / 2, rho = 1 + (range - 1) / EXCESS_FLOOR:
    exactly the bound at a = -1, the range at a = 1, and in between log-uniform in the
    excess over the bound (from about EXCESS_FLOOR up): finer just above the bound, where
    y_sync(tG) and the sync time are steep and most optima lie."""
    u = 0.5 * (min(max(a_k, -1.0), 1.0) + 1.0)
    if scale == "ratio":
        return math.exp(u * ln_range)
    return 1.0 + EXCESS_FLOOR * math.expm1(u * _excess_log_rho(ln_range))


def _excess_log_rho(ln_range: float) -> float:
    """log rho of the ``excess`` scale: EXCESS_FLOOR (rho - 1) = range - 1."""
    return math.log1p(max(math.expm1(ln_range), EXCESS_FLOOR) / EXCESS_FLOOR)


def _unfactor(f: float, ln_range: float, scale: str) -> float:
    """The action value whose :func:`_factor` is ``f`` (not clipped: outside [-1, 1] where
    ``f`` lies outside [1, range])."""
    if scale == "ratio":
        return 2.0 * math.log(f) / ln_range - 1.0
    e = (f - 1.0) / EXCESS_FLOOR
    if e <= -1.0:
        return -math.inf
    return 2.0 * math.log1p(e) / _excess_log_rho(ln_range) - 1.0


def _sync_target_jamming(a, q_low: float, q_high: float, t_gld_s: float,  # type: ignore[no-untyped-def]
                         ratio: float) -> float:
    """The least Q in [Q_low, Q_high] at which the BLDs finish (sync plus twin training,
    eq. (13)) within ``ratio`` times the GLDs' time T_GLD = y + tG (eq. (12)); Q_high where
    even that is too slow (eq. (23) inverted by :func:`_need_w`)."""
    if a.b_data.size == 0:
        return q_low
    u = ratio * t_gld_s - a.tb_loc_s
    if not u > 0:
        return q_high
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        need = float(_need_w(a, np.array([u]))[0])
    if not math.isfinite(need):
        return q_high
    return min(max(need, q_low), q_high)


def safe_allocation(a, tg_base_s: float, action: np.ndarray, ln_tg_range: float,  # type: ignore[no-untyped-def]
                    ln_y_range: float, jamming: str = "interval",
                    ln_sync_range: float = math.log(2.0), scale: str = "ratio"
                    ) -> tuple[float, float, np.ndarray]:
    """Map a ``safe`` action (3 values in [-1, 1]) to (y, tG, q) on a cluster.

    - tG = tg_base * tg_range^((a0 + 1) / 2) (``scale="ratio"``; ``"excess"``: tg_base
      (1 + e^s), s uniform in [log 1e-3, log(tg_range - 1)], see :func:`_factor`),
      tg_base: the shortest upload time at which the BLDs can still be synced
      (:func:`sync_upload_time_s`), or where none exists the shortest every GLD can pay
      (:func:`affordable_upload_time_s`);
    - y = y_base(tG) * y_range^((a1 + 1) / 2) (or the ``excess`` scale), y_base: the
      shortest training time at which the jamming that syncs every BLD is still
      affordable (:func:`sync_training_time_s`), or where none exists the shortest every
      GLD can pay (:func:`training_time_floor_s`);
    - the jamming Q lies in the affordable interval [Q_low, Q_high]
      (:func:`jamming_interval`) and is split by :func:`jamming_split`; no jamming when the
      interval is empty (only on clusters where no allocation syncs every BLD):

      - ``jamming="interval"``: Q = Q_low + (a2 + 1) / 2 (Q_high - Q_low);
      - ``jamming="sync"``: the least affordable Q at which the BLDs finish (sync plus
        twin training) within rho T_GLD, rho = sync_range^a2, T_GLD = y + tG; Q_high where
        none does. Every a2 with rho <= 1 then gives the least latency for the chosen
        (tG, y): jamming more cannot finish the round sooner.
    """
    m = a.g_cd.size
    if m == 0:
        return 0.0, 0.0, np.zeros(0)
    a0, a1, a2 = (min(max(float(v), -1.0), 1.0) for v in action[:3])
    tg = tg_base_s * _factor(a0, ln_tg_range, scale)
    left_up = a.g_e_max - a.upload_energy_j(tg)
    y = training_base_s(a, left_up) * _factor(a1, ln_y_range, scale)
    left = np.clip(left_up - training_energy_j(a, y), 0.0, None)
    iv = jamming_interval(a, left)
    if iv is None:
        return y, tg, np.zeros(m)
    q_low, q_high = iv
    if jamming == "sync":
        q_w = _sync_target_jamming(a, q_low, q_high, y + tg, math.exp(a2 * ln_sync_range))
    else:
        q_w = q_low + 0.5 * (a2 + 1.0) * (q_high - q_low)
    return y, tg, jamming_split(a, q_w, left)


def safe_action(a, tg_base_s: float, y_s: float, tg_s: float, jam_power_w: np.ndarray,  # type: ignore[no-untyped-def]
                ln_tg_range: float, ln_y_range: float, jamming: str = "interval",
                ln_sync_range: float = math.log(2.0), scale: str = "ratio") -> np.ndarray:
    """The ``safe`` action whose mapping is closest to (y, tG, q): the inverse of
    :func:`safe_allocation`. a0 and a1 are not clipped: a value outside [-1, 1] says that
    tG or y lies outside the box (the caller decides; the environment's
    ``allocation_to_action`` raises); a2 is clipped. The jamming enters through Q only (the
    sync time, hence the latency, depends on Q alone); a Q above the affordable interval
    maps to its top. With ``jamming="sync"`` a2 encodes the BLDs' finishing time at Q (at
    most Q_high) relative to y + tG: the action's latency is never above the allocation's."""
    out = np.zeros(3)
    if a.g_cd.size == 0:
        return out
    out[0] = _unfactor(tg_s / tg_base_s, ln_tg_range, scale)
    tg = tg_base_s * _factor(out[0], ln_tg_range, scale)
    left_up = a.g_e_max - a.upload_energy_j(tg)
    y_base = training_base_s(a, left_up)
    out[1] = _unfactor(y_s / y_base, ln_y_range, scale)
    y = y_base * _factor(out[1], ln_y_range, scale)
    left = np.clip(left_up - training_energy_j(a, y), 0.0, None)
    iv = jamming_interval(a, left)
    q_w = float(np.asarray(jam_power_w) @ a.g_gain_e)
    if jamming == "sync":
        if iv is None or a.b_data.size == 0:
            out[2] = 0.0
        else:
            q = min(max(q_w, iv[0]), iv[1])
            ratio = (_sync_time_s(a, q) + a.tb_loc_s) / (y + tg)
            out[2] = math.log(ratio) / ln_sync_range if ratio > 0 and math.isfinite(ratio) \
                else 1.0
    elif iv is None or iv[1] <= iv[0]:
        out[2] = 1.0 if iv is not None else -1.0
    else:
        out[2] = 2.0 * (q_w - iv[0]) / (iv[1] - iv[0]) - 1.0
    out[2] = min(max(out[2], -1.0), 1.0)
    return out
