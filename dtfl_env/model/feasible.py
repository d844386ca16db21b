"""The energy-feasible set of a cluster's allocation, and the ``safe`` action mapping.

Pure numpy, batched: every search runs on R rows at once (:class:`FeasibleRows`: one cluster
of a :class:`~dtfl_env.model.batch.ClusterBatch` per row, padded device slots masked), with
the grid points on a further axis, so that a vector environment maps N actions, and builds
the bound features of N x S clusters, with a fixed number of numpy calls per chunk of rows.
The per-cluster functions (on a :class:`~dtfl_env.model.batch.ClusterRow`) are the batch of
one of their ``*_batch`` counterparts. A row's numbers do not depend on the rows beside it
or on its padding (sums over devices run in slot order, see :func:`_slot_sum`), so a cluster
gets the same results, to the last bit, alone or in a batch.

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

The data-dependent branches (a narrow peak of psi, an upload beyond tg_range, rows that
need no search) run on the subset of rows that take them (index arrays), never one cluster
at a time. Large batches run in chunks of rows of similar size (:func:`_chunks`), each
padded to its own widest row and small enough for the searches' arrays to stay in cache.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from dtfl_env.model.batch import ClusterBatch, upload_energy_j
from dtfl_env.model.system import LN2

__all__ = [
    "BOUND_EXCESS",
    "PEAK_TOLERANCE",
    "UPLOAD_RESERVE",
    "FeasibleRows",
    "affordable_upload_time_s",
    "jamming_interval",
    "jamming_interval_batch",
    "jamming_split",
    "jamming_split_batch",
    "safe_action",
    "safe_allocation",
    "safe_allocation_batch",
    "safe_bound_features",
    "safe_bound_features_batch",
    "sync_training_time_batch_s",
    "sync_training_time_s",
    "sync_upload_time_batch_s",
    "sync_upload_time_s",
    "tg_base_batch_s",
    "training_base_batch_s",
    "training_base_rows_s",
    "training_base_s",
    "training_energy_j",
    "training_time_floor_batch_s",
    "training_time_floor_s",
]

#: share of every GLD's budget that the ``safe`` mapping keeps back from the upload at the
#: shortest upload time tg_lo, so that the training time y_lo(tg_lo) stays finite
UPLOAD_RESERVE = 1e-6

#: relative shortfall of the jamming budget tolerated at a one-point affordable interval
#: (far below the environment's ENERGY_TOLERANCE of 1e-5)
PEAK_TOLERANCE = 1e-7

_S_MIN, _S_MAX = -27.0, 16.0  # log((u - u_lo) / u_lo) searched by jamming_interval
_COARSE, _FINE, _ROUNDS = 40, 24, 4
_UNIT = np.linspace(0.0, 1.0, _COARSE)
_UNIT_FINE = np.linspace(0.0, 1.0, _FINE)
_ZOOM = np.linspace(-1.0, 1.0, _FINE)

#: sync times per window of :func:`_sync_w`'s one-sort path on the coarse grid (a zoom's
#: grid is one window: narrow, it rarely sees the breakpoints' order change)
_WINDOW = 8

#: elements of the searches' arrays (rows x device slots x grid points) per chunk of rows:
#: small enough to stay in the CPU's cache, large enough that numpy's cost per call is
#: spread over many rows (about 500 clusters of 12 devices; measured best on an EPYC core)
_CHUNK_ELEMENTS = 1 << 18


def affordable_upload_time_s(
    g_nog: np.ndarray,
    sic: np.ndarray,
    e_max_j: np.ndarray,
    x_scale: float,
    reserve: float = UPLOAD_RESERVE,
) -> np.ndarray:
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
    x, sic, cc = (
        np.broadcast_to(v, shape).ravel().copy() for v in (x, np.asarray(sic, dtype=float), cc)
    )
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


# ----------------------------------------------------------------------------- rows
_ROW_FIELDS = ("n_gld", "n_bld", "x_scale", "y_min_s", "w_hz", "n_e_w", "tb_loc_s")
_GLD_FIELDS = ("g_mask", "g_gain_e", "g_q_max", "g_gq", "g_kloc", "g_e_max", "g_nog", "sic")
_BLD_FIELDS = ("b_mask", "b_data", "b_legit", "b_pe", "b_a", "b_b")
_FIELDS = _ROW_FIELDS + _GLD_FIELDS + _BLD_FIELDS
_PSI_FIELDS = ("n_gld", "g_gq", "b_mask", "b_pe", "b_a", "b_b", "n_e_w")  # what _psi reads


class FeasibleRows:
    """R rows, each one cluster (a cluster may fill several rows, e.g. one per energy
    vector), as the arrays the searches take: per GLD slot (R, M), per BLD slot (R, N), per
    row (R,), with the names of :class:`~dtfl_env.model.batch.ClusterRow` and a few
    products the searches use: ``g_gq`` = g_iE Q_max,i, ``b_a`` = ln2 log2(1 + p_j h_jC /
    n_j), ``b_b`` = ln2 D_j / W (eq. (21)-(23): Q(u) = max_j p_j h_jE / (e^(b_a - b_b / u)
    - 1) - n_E).

    Padded GLD slots (``g_mask`` False) have no jamming gain or power (``g_gain_e``,
    ``g_q_max``, ``g_gq`` 0); Q(u) is computed on the real BLDs only (:meth:`blds`); every
    maximum, minimum and search masks the padded slots out. Build it with
    :meth:`from_batch` (rows of a ClusterBatch) or :meth:`from_row` (one ClusterRow);
    :meth:`take` gathers rows.
    """

    __slots__ = (*_FIELDS, "_bld", "_grid")

    n_gld: np.ndarray
    n_bld: np.ndarray
    x_scale: np.ndarray
    y_min_s: np.ndarray
    w_hz: np.ndarray
    n_e_w: np.ndarray
    tb_loc_s: np.ndarray
    g_mask: np.ndarray
    g_gain_e: np.ndarray
    g_q_max: np.ndarray
    g_gq: np.ndarray
    g_kloc: np.ndarray
    g_e_max: np.ndarray
    g_nog: np.ndarray
    sic: np.ndarray
    b_mask: np.ndarray
    b_data: np.ndarray
    b_legit: np.ndarray
    b_pe: np.ndarray
    b_a: np.ndarray
    b_b: np.ndarray

    def __init__(self, **arrays: np.ndarray) -> None:
        for name in _FIELDS:
            setattr(self, name, arrays[name])
        self._bld: tuple[np.ndarray, ...] | None = None  # blds(), on first use
        self._grid: tuple[np.ndarray, ...] | None = None  # _u_grid(), on first use

    @classmethod
    def _build(
        cls,
        *,
        g_mask: np.ndarray,
        b_mask: np.ndarray,
        g_gain_e: np.ndarray,
        g_q_max: np.ndarray,
        b_pe: np.ndarray,
        b_legit: np.ndarray,
        b_data: np.ndarray,
        w_hz: np.ndarray,
        **rest: np.ndarray,
    ) -> FeasibleRows:
        if not g_mask.all():
            g_gain_e, g_q_max = np.where(g_mask, g_gain_e, 0.0), np.where(g_mask, g_q_max, 0.0)
        return cls(
            g_mask=g_mask,
            b_mask=b_mask,
            n_gld=g_mask.sum(1),
            n_bld=b_mask.sum(1),
            g_gain_e=g_gain_e,
            g_q_max=g_q_max,
            g_gq=g_gain_e * g_q_max,
            b_pe=b_pe,
            b_legit=b_legit,
            b_data=b_data,
            w_hz=w_hz,
            b_a=b_legit * LN2,
            b_b=b_data * LN2 / w_hz[:, None],
            **rest,
        )

    @classmethod
    def from_batch(
        cls, batch: ClusterBatch, index: slice | np.ndarray | None = None
    ) -> FeasibleRows:
        """The clusters of ``batch`` at ``index`` (default: all), padding kept."""
        ix = slice(None) if index is None else index
        g, b, k = batch.gld, batch.bld, batch.constants
        return cls._build(
            g_mask=batch.gld_mask[ix],
            b_mask=batch.bld_mask[ix],
            g_gain_e=g["gain_eavesdropper"][ix],
            g_q_max=g["max_jam_power_w"][ix],
            g_kloc=batch.k_loc[ix],
            g_e_max=g["energy_budget_j"][ix],
            g_nog=batch.noise_over_gain[ix],
            sic=batch.sic[ix],
            x_scale=batch.x_scale[ix],
            y_min_s=batch.y_min_s[ix],
            b_data=b["data_bits"][ix],
            b_legit=batch.bld_legit[ix],
            b_pe=batch.bld_pe[ix],
            w_hz=k["bandwidth_hz"][ix],
            n_e_w=k["noise_eavesdropper_w"][ix],
            tb_loc_s=batch.tb_loc_s[ix],
        )

    @classmethod
    def from_row(cls, a: Any) -> FeasibleRows:
        """One cluster (a :class:`~dtfl_env.model.batch.ClusterRow`) as one row."""
        m, n = a.g_gain_e.size, a.b_data.size
        return cls._build(
            g_mask=np.ones((1, m), dtype=bool),
            b_mask=np.ones((1, n), dtype=bool),
            g_gain_e=a.g_gain_e[None],
            g_q_max=a.g_q_max[None],
            g_kloc=a.g_kloc[None],
            g_e_max=a.g_e_max[None],
            g_nog=a.g_nog[None],
            sic=a.sic[None],
            x_scale=np.array([a.x_scale]),
            y_min_s=np.array([a.y_min_s]),
            b_data=a.b_data[None],
            b_legit=a.b_legit[None],
            b_pe=a.b_pe[None],
            w_hz=np.array([a.w_hz]),
            n_e_w=np.array([a.n_e_w]),
            tb_loc_s=np.array([a.tb_loc_s]),
        )

    @property
    def size(self) -> int:
        return int(self.n_gld.size)

    @property
    def width(self) -> int:
        """M, the number of GLD slots."""
        return int(self.g_mask.shape[1])

    def take(
        self,
        index: np.ndarray,
        m: int | None = None,
        n: int | None = None,
        *,
        fields: tuple[str, ...] | None = None,
    ) -> FeasibleRows:
        """The rows at ``index`` (an integer array; repeats allowed), their GLD slots cut
        to the first ``m`` and BLD slots to the first ``n`` (default: all); ``fields``: only
        those (the others are left unset; ``n_gld`` gives the size)."""
        out = object.__new__(FeasibleRows)
        out._bld = out._grid = None
        for name in _FIELDS if fields is None else fields:
            x = getattr(self, name)
            if x.ndim == 1 or (m is None and n is None):
                setattr(out, name, x[index])
            else:
                setattr(out, name, x[index, : (m if name in _GLD_FIELDS else n)])
        return out

    def blds(self) -> tuple[np.ndarray, ...]:
        """The real BLDs back to back, without padding: (the row of each, its slot, its
        b_a, b_b and b_pe as columns); built on first use."""
        if self._bld is None:
            rows, cols = np.nonzero(self.b_mask)
            self._bld = (
                rows,
                cols,
                self.b_a[rows, cols][:, None],
                self.b_b[rows, cols][:, None],
                self.b_pe[rows, cols][:, None],
            )
        return self._bld

    def upload_energy_j(self, tg_s: np.ndarray) -> np.ndarray:
        """E_i^up (eqs. (7)-(8)): shape (R, M) for one upload time per row (``tg_s`` (R,)),
        (R, M, T) for T per row (``tg_s`` (R, T)); 0 in padded slots."""
        tg = np.asarray(tg_s, dtype=float)
        if tg.ndim == 1:
            e = upload_energy_j(self.g_nog, self.sic, self.x_scale[:, None], tg[:, None])
            return np.where(self.g_mask, e, 0.0)
        e = upload_energy_j(
            self.g_nog[:, :, None],
            self.sic[:, :, None],
            self.x_scale[:, None, None],
            tg[:, None, :],
        )
        return np.where(self.g_mask[:, :, None], e, 0.0)


def _chunks(r: FeasibleRows, grid: int) -> Iterator[tuple[np.ndarray, FeasibleRows]]:
    """The rows of ``r`` in chunks: (row indices, those rows), ordered by (M, N) so that
    each chunk is padded only to its own widest rows, each with at most _CHUNK_ELEMENTS
    elements in the searches' arrays ((M + N) x ``grid`` per row); one chunk, ``r``
    itself, when it is that small and has no padding to cut."""
    n_rows = r.size
    m, nb = r.n_gld, r.n_bld
    wm, wn = r.g_mask.shape[1], r.b_mask.shape[1]
    if n_rows * (wm + wn) * grid <= _CHUNK_ELEMENTS and (
        not n_rows or (m.max() == wm and nb.max() == wn)
    ):
        yield np.arange(n_rows), r
        return
    order = np.lexsort((nb, m))
    ms, ns = m[order], nb[order]
    per = (ms + wn) * grid  # a bound per row, nondecreasing along ``order``
    start = 0
    while start < n_rows:
        cost = np.arange(1, n_rows - start + 1) * per[start:]
        end = start + max(1, int(np.searchsorted(cost, _CHUNK_ELEMENTS, side="right")))
        idx = order[start:end]
        yield idx, r.take(idx, int(ms[end - 1]), int(ns[start:end].max()))
        start = end


def _sub(r: FeasibleRows, index: np.ndarray, fields: tuple[str, ...] | None = None) -> FeasibleRows:
    """The rows at ``index``, increasing indices without repeats (``np.flatnonzero``'s):
    ``r`` itself where that is all of them."""
    return r if index.size == r.size else r.take(index, fields=fields)


def _slot_sum(x: np.ndarray, axis: int) -> np.ndarray:
    """The sum over a device axis in slot order, ((x_0 + x_1) + x_2) + ..., so that a row's
    sum does not depend on its padding (zeros after its last slot) or on the rows beside
    it. numpy reduces an axis slot by slot when more than one element follows it in memory
    (its inner loop runs along those); along the last axis it sums pairwise in blocks of 8,
    an order that depends on the width: there a running sum is taken instead (tested)."""
    shape = x.shape
    if shape[axis] == 0:
        return np.zeros(shape[:axis] + shape[axis + 1 :])
    if x.ndim > axis + 1 and math.prod(shape[axis + 1 :]) > 1:
        return x.sum(axis)
    return np.take(np.cumsum(x, axis=axis), -1, axis=axis)


def _lin(lo: np.ndarray, hi: np.ndarray, num: int) -> np.ndarray:
    """``np.linspace(lo[r], hi[r], num)`` for every row r, shape (R, num) (its arithmetic)."""
    out = np.arange(num) * ((hi - lo) / (num - 1))[:, None] + lo[:, None]
    out[:, -1] = hi
    return out


def _pick(x: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``x[r, cols[r]]`` for every row r."""
    return x[np.arange(x.shape[0]), cols]


def _quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with numpy's divide/overflow/invalid warnings off (the searches meet inf
    and NaN by design: a BLD that cannot sync, an empty grid, an infeasible row)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            return fn(*args, **kwargs)

    return run


def training_energy_j(a, y_s: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """E_i^loc = K_i / y^2 at the common training time y, eqs. (5) and (17)."""
    return a.g_kloc / y_s**2


# ----------------------------------------------------------------------------- psi
def _need_w(r: FeasibleRows, u: np.ndarray) -> np.ndarray:
    """max(Q(u), 0): the least aggregate jamming that syncs every BLD of each row within
    the sync times u (R, K) (eq. (23) inverted), 0 where none is needed, ``inf`` where even
    infinite jamming is too slow (e^(b_a - b_b / u) <= 1: the legitimate rate alone is too
    slow); 0 for a row without BLDs."""
    rows, slots, b_a, b_b, b_pe = r.blds()  # the real BLDs only (no padding)
    x = b_b / u[rows]  # (BLDs, K), worked in place
    np.subtract(b_a, x, out=x)
    np.expm1(x, out=x)
    np.maximum(x, 0.0, out=x)
    np.divide(b_pe, x, out=x)  # inf where the exponent is <= 0, else > 0
    by_slot = np.zeros((r.b_mask.shape[1], *u.shape))  # (N, R, K): 0 in padded slots
    by_slot[slots, rows] = x
    return np.maximum(by_slot.max(0, initial=0.0) - r.n_e_w[:, None], 0.0)


def _psi(r: FeasibleRows, gl: np.ndarray, u: np.ndarray) -> np.ndarray:
    """psi(u) of each row at the sync times u (R, K); ``gl`` = g_iE left_i (R, M), 0 in
    padded slots."""
    pay = _slot_sum(np.minimum(r.g_gq[:, :, None] * u[:, None, :], gl[:, :, None]), 1)
    return pay - u * _need_w(r, u)


def _u_grid(r: FeasibleRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u_lo, s_hi, free) per row: the sync-time search range of s = log((u - u_lo)/u_lo),
    from u_lo (infinite jamming) to the sync time without jamming u_free (s_hi = log(u_free
    / u_lo - 1)) where every BLD syncs without jamming (``free``), else to u = e^16 u_lo.
    Rows without BLDs: u_lo = -inf (their callers leave them out). Kept with ``r``."""
    if r._grid is None:
        r._grid = _u_grid_of(r)
    return r._grid  # type: ignore[return-value]


def _u_grid_of(r: FeasibleRows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    bm = r.b_mask
    u_lo = np.where(bm, r.b_data / (r.w_hz[:, None] * r.b_legit), -np.inf).max(
        1, initial=-np.inf
    )  # eq. (23) as Q -> infinity
    rate0 = r.b_legit - np.log2(1.0 + r.b_pe / r.n_e_w[:, None])  # eq. (21) at Q = 0, per W
    free = ((rate0 > 0) | ~bm).all(1)
    u_free = np.where(bm, r.b_data / (r.w_hz[:, None] * rate0), -np.inf).max(1, initial=-np.inf)
    s_hi = np.where(free, np.log(np.maximum(u_free / u_lo - 1.0, 0.0)), _S_MAX)
    return u_lo, s_hi, free


def _masked_left(r: FeasibleRows, left_j: np.ndarray) -> np.ndarray:
    left = np.asarray(left_j, dtype=float)
    return left if r.g_mask.all() else np.where(r.g_mask, left, 0.0)


# ----------------------------------------------------------------------------- jamming
def _zoom(
    r: FeasibleRows, gl: np.ndarray, u_lo: np.ndarray, neg: np.ndarray, pos: np.ndarray
) -> np.ndarray:
    """Shrink brackets of s = log((u - u_lo)/u_lo) around sign changes of psi: B brackets
    per row, ``neg``, ``pos`` (R, B): s at psi < 0 and at psi >= 0, in either order (the
    brackets of a row are evaluated together, as one grid of sync times).

    Each round evaluates psi on a grid across every bracket and keeps the cell with the sign
    change; a final secant step in u, where psi is concave, lands on the feasible side (the
    chord between a negative and a non-negative point lies below a concave function; the
    point is checked, and the bracket's feasible end kept otherwise). Returns the u values
    (R, B).
    """
    n_rows, n_br = neg.shape
    ulo = u_lo[:, None, None]
    ri, bi = np.arange(n_rows)[:, None], np.arange(n_br)[None, :]
    for _ in range(_ROUNDS):
        s = neg[:, :, None] + (pos - neg)[:, :, None] * _UNIT_FINE  # infeasible to feasible
        ok = (_psi(r, gl, (ulo * (1.0 + np.exp(s))).reshape(n_rows, -1)) >= 0).reshape(s.shape)
        j = np.where(ok.any(2), ok.argmax(2), _FINE - 1)  # first feasible point
        neg, pos = s[ri, bi, np.maximum(j - 1, 0)], s[ri, bi, j]
    u_neg, u_pos = u_lo[:, None] * (1.0 + np.exp(neg)), u_lo[:, None] * (1.0 + np.exp(pos))
    both = _psi(r, gl, np.concatenate([u_neg, u_pos], axis=1))
    p_neg, p_pos = both[:, :n_br], both[:, n_br:]
    u_sec = u_pos - p_pos * (u_pos - u_neg) / (p_pos - p_neg)
    u_sec = np.where(np.isfinite(u_sec) & (p_neg < 0), u_sec, u_pos)
    return np.where(_psi(r, gl, u_sec) >= 0, u_sec, u_pos)


def _jamming_interval(
    r: FeasibleRows, left: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`jamming_interval_batch` on one chunk (``left`` masked)."""
    n_rows = r.size
    q_low, q_high = np.zeros(n_rows), np.zeros(n_rows)
    ok = np.ones(n_rows, dtype=bool)
    has_b = r.n_bld > 0
    if not has_b.any():
        return q_low, q_high, ok  # no BLD: no jamming needed
    u_lo, s_hi, free = _u_grid(r)
    has_left = (left > 0).any(1)
    ok &= ~has_b | has_left | free  # nothing to jam with: fine only if none is needed
    # s_hi <= _S_MIN + 1: jamming cannot shorten the sync time measurably
    idx = np.flatnonzero(has_b & has_left & ~(s_hi <= _S_MIN + 1.0))
    if not idx.size:
        return q_low, q_high, ok
    rs, ulo, fr = _sub(r, idx), u_lo[idx], free[idx]
    gl = rs.g_gain_e * left[idx]
    # every row's grid of s (the coarse one, or a zoom on the peak: its first _FINE
    # columns) and where psi >= 0 on it
    s = _lin(np.full(idx.size, _S_MIN), s_hi[idx], _COARSE)  # psi(u_free) >= 0
    psi = _psi(rs, gl, ulo[:, None] * (1.0 + np.exp(s)))
    pos = psi >= 0
    width = np.full(idx.size, _COARSE)
    hit = pos.any(1)
    act = np.flatnonzero(~hit)  # the rows still zooming on their peak
    if act.size:
        ps, pp = s[act], psi[act]
        ra, gla, ula = _sub(rs, act, _PSI_FIELDS), gl[act], ulo[act, None]
    for _ in range(_ROUNDS + 2 if act.size else 0):
        # the feasible interval may be narrower than the grid: zoom on the peak
        k = np.where(np.isfinite(pp), pp, -np.inf).argmax(1)
        w = ps.shape[1]
        ps = _lin(_pick(ps, np.maximum(k - 1, 0)), _pick(ps, np.minimum(k + 1, w - 1)), _FINE)
        pp = _psi(ra, gla, ula * (1.0 + np.exp(ps)))
        pos_p = pp >= 0
        h = pos_p.any(1)
        if h.any():
            got = act[h]
            s[got, :_FINE], pos[got, :_FINE], pos[got, _FINE:] = ps[h], pos_p[h], False
            width[got], hit[got] = _FINE, True
            if h.all():
                act = act[:0]
                break
            act, ps, pp, gla, ula = act[~h], ps[~h], pp[~h], gla[~h], ula[~h]
            ra = rs.take(act, fields=_PSI_FIELDS)
    if act.size:
        # a peak that misses by rounding only is the one-point interval (where an optimum
        # with T_GLD binding sits): the split then overspends by ~PEAK_TOLERANCE at most
        k = np.where(np.isfinite(pp), pp, -np.inf).argmax(1)
        near = _pick(pp, k) >= -PEAK_TOLERANCE * _slot_sum(gla, 1)
        q = _need_w(ra, ula * (1.0 + np.exp(_pick(ps, k)))[:, None])[:, 0]
        rows = idx[act]
        ok[rows] = near
        q_low[rows] = q_high[rows] = np.where(near, q, 0.0)
    if not hit.any():
        return q_low, q_high, ok
    # the interval's ends: the first and last affordable grid points, zoomed (both at once)
    # where the grid point next to them is not affordable
    ri = np.arange(idx.size)[:, None]
    j0 = pos.argmax(1)
    j1 = _COARSE - 1 - pos[:, ::-1].argmax(1)
    ends = s[ri, np.stack([j0, j1], axis=1)]  # s of the first and last point with psi >= 0
    zoom = np.stack([j0 > 0, ~fr & (j1 < width - 1)], axis=1)  # a neighbour has psi < 0
    br = np.flatnonzero(hit & zoom.any(1))
    u_ends = ulo[:, None] * (1.0 + np.exp(ends))
    if br.size:
        # (s infeasible, s feasible) per bracket; a missing one (no zoom needed) is the end
        # itself, zoomed in vain
        nbr = s[ri, np.stack([np.maximum(j0 - 1, 0), np.minimum(j1 + 1, _COARSE - 1)], axis=1)]
        neg = np.where(zoom[br], nbr[br], ends[br])
        zoomed = _zoom(_sub(rs, br, _PSI_FIELDS), gl[br], ulo[br], neg, ends[br])
        u_ends[br] = np.where(zoom[br], zoomed, u_ends[br])
    q = _need_w(rs, np.where(hit[:, None], u_ends, 1.0))
    out = idx[hit]
    q_high[out] = q[hit, 0]
    q_low[out] = np.where(fr[hit], 0.0, np.minimum(q[hit, 1], q[hit, 0]))
    return q_low, q_high, ok


@_quiet
def jamming_interval_batch(
    r: FeasibleRows, left_j: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`jamming_interval` of every row (energy ``left_j`` (R, M)): (Q_low, Q_high,
    ok), each (R,); ``ok`` is False where no level is affordable (then Q_low = Q_high = 0).

    The coarse grid runs on every row that needs a search; the zoom on a narrow peak (no
    grid point affordable) on those rows only, round by round; the brackets of all rows'
    interval ends are refined together (:func:`_zoom`)."""
    left = _masked_left(r, left_j)
    q_low, q_high = np.zeros(r.size), np.zeros(r.size)
    ok = np.ones(r.size, dtype=bool)
    for idx, rc in _chunks(r, _COARSE):
        q_low[idx], q_high[idx], ok[idx] = _jamming_interval(rc, left[idx, : rc.width])
    return q_low, q_high, ok


def jamming_interval(a, left_j: np.ndarray) -> tuple[float, float] | None:  # type: ignore[no-untyped-def]
    """The aggregate jamming levels [Q_low, Q_high] that sync every BLD and that every GLD
    can pay from ``left_j`` joules over the sync time tB_up(Q) they buy (q_i <= Q_max,i,
    q_i tB_up(Q) <= left_i). ``None`` when no level is affordable.

    Q_high (the fastest affordable sync) is found from the feasible side, so jamming at it
    never overspends; Q_low is 0 when the BLDs sync without jamming (eq. (22)'s lower bound
    is negative). A cluster without BLDs needs no jamming: (0, 0). The batch of one of
    :func:`jamming_interval_batch`.
    """
    q_low, q_high, ok = jamming_interval_batch(
        FeasibleRows.from_row(a), np.asarray(left_j, dtype=float)[None]
    )
    return (float(q_low[0]), float(q_high[0])) if ok[0] else None


def _sync_time_s(r: FeasibleRows, q_w: np.ndarray) -> np.ndarray:
    """tB_up at aggregate jamming Q (R,) per row, eqs. (21), (23); 0 without BLDs."""
    eve = np.log2(1.0 + r.b_pe / (r.n_e_w + q_w)[:, None])
    rate = r.w_hz[:, None] * np.maximum(r.b_legit - eve, 0.0)  # eq. (21)
    return np.where(r.b_mask, r.b_data / rate, 0.0).max(1, initial=0.0)  # eq. (23)


@_quiet
def jamming_split_batch(r: FeasibleRows, q_w: np.ndarray, left_j: np.ndarray) -> np.ndarray:
    """:func:`jamming_split` of every row: powers (R, M) for the aggregate levels ``q_w``
    (R,) from the energy ``left_j`` (R, M); 0 in padded slots."""
    return _jamming_split(r, np.asarray(q_w, dtype=float), _masked_left(r, left_j))


def _jamming_split(r: FeasibleRows, q_w: np.ndarray, left: np.ndarray) -> np.ndarray:
    u = _sync_time_s(r, q_w)
    cap = np.clip(np.minimum(r.g_q_max, left / u[:, None]), 0.0, None)
    total = _slot_sum(r.g_gain_e * cap, 1)
    share = np.minimum(1.0, q_w / total)
    use = (q_w > 0) & (r.n_bld > 0) & (r.n_gld > 0) & (total > 0)
    return np.where(use[:, None] & r.g_mask, cap * share[:, None], 0.0)


def jamming_split(a, q_w: float, left_j: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Powers q_i with sum_i q_i g_iE = Q (eq. (20)), each within min(Q_max,i, left_i / u),
    u = tB_up(Q): every GLD's cap scaled by one factor (no GLD pushed to its limit unless
    the demand needs all of them there). Zeros when Q <= 0 or there is no BLD. The batch of
    one of :func:`jamming_split_batch`."""
    return jamming_split_batch(
        FeasibleRows.from_row(a), np.array([float(q_w)]), np.asarray(left_j, dtype=float)[None]
    )[0]


# ----------------------------------------------------------------------------- training time
@_quiet
def training_time_floor_batch_s(r: FeasibleRows, left_up_j: np.ndarray) -> np.ndarray:
    """:func:`training_time_floor_s` of every row (energy ``left_up_j`` (R, M)), (R,)."""
    ok = (np.asarray(left_up_j) > 0) & r.g_mask
    ratio = np.where(ok, r.g_kloc / np.where(ok, left_up_j, 1.0), -np.inf).max(1, initial=-np.inf)
    return np.where(ok.any(1), np.maximum(r.y_min_s, np.sqrt(ratio)), r.y_min_s)


def training_time_floor_s(a, left_up_j: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """y_lo: the smallest common training time every GLD can pay from the energy left after
    its upload, max(y_min, max_i sqrt(K_i / left_i)) (eqs. (5), (17), (19)); GLDs with no
    energy left (they cannot even upload) are left out: they drop out whatever y is. The
    batch of one of :func:`training_time_floor_batch_s`."""
    return float(
        training_time_floor_batch_s(
            FeasibleRows.from_row(a), np.asarray(left_up_j, dtype=float)[None]
        )[0]
    )


def _peak(f: Callable[[np.ndarray], np.ndarray], u_lo: np.ndarray, s_hi: np.ndarray) -> np.ndarray:
    """Row-wise maximum over s in [_S_MIN, s_hi] of ``f(u)`` ((R, k) values for k sync times
    u per row; ``u_lo``, ``s_hi`` (R,)), for functions unimodal in u: a coarse grid, then
    zooms on each row's argmax. The maximum is approached from below (a grid value), never
    overstated."""
    return _peak_rows(lambda u, rows: f(u), u_lo, s_hi)


def _peak_rows(
    f: Callable[[np.ndarray, np.ndarray | None], np.ndarray],
    u_lo: np.ndarray,
    s_hi: np.ndarray,
    stop_at: float | None = None,
) -> np.ndarray:
    """:func:`_peak` of ``f(u, rows)``: the values at u of the rows ``rows`` (None: all).
    With ``stop_at``, a row stops zooming once its maximum so far reaches ``stop_at`` (its
    result is then that value: enough to tell whether the maximum reaches ``stop_at``,
    which zooming further cannot change: the maximum only grows)."""
    n_rows = u_lo.size
    s = _S_MIN + (s_hi - _S_MIN)[:, None] * _UNIT
    best = np.full(n_rows, -np.inf)
    width = (s_hi - _S_MIN)[:, None] / (_COARSE - 1)
    act, r = None, np.arange(n_rows)  # the rows still zooming (None: all)
    ulo, shi = u_lo[:, None], s_hi[:, None]
    for _ in range(_ROUNDS + 2):
        val = f(ulo * (1.0 + np.exp(s)), act)
        val = np.where(val == val, val, -np.inf)  # NaN (inf - inf) counts as infeasible
        k = val.argmax(1)
        if act is None:
            best = top = np.maximum(best, val[r, k])
        else:
            best[act] = top = np.maximum(best[act], val[r, k])
        s = np.minimum(np.maximum(s[r, k][:, None] + width * _ZOOM, _S_MIN), shi)
        width = width * (2.0 / (_FINE - 1))
        if stop_at is not None and not (go := top < stop_at).all():
            act = r[go] if act is None else act[go]
            if not act.size:
                break
            r, s, width, ulo, shi = np.arange(act.size), s[go], width[go], ulo[go], shi[go]
    return best


def _sync_w(r: FeasibleRows, left_up: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """w(u) = the largest 1/y^2 at which the GLDs of each row can pay training plus the
    jamming that syncs every BLD within u, for the energy ``left_up`` (R, M) left after the
    upload, at the sync times u (R, k), increasing along each row; -inf where none.

    With cap_i = Q_max,i u, D = u Q(u)^+ and beta_i = (A_i - cap_i) / K_i (A_i: energy left
    after the upload), H(w) = sum_i g_iE min(cap_i, A_i - K_i w) = C - sum_i g_i K_i (w -
    beta_i)^+ (C = sum_i g_i cap_i) is concave, piecewise linear and decreasing; the largest
    w with H(w) >= D is the least over the prefixes of the breakpoints in ascending order
    of (C - D + sum g K beta) / sum g K (none when C < D): the sum of the (.)^+ terms is the
    largest of its partial sums, so every set's root bounds it from above, and the set of
    the breakpoints below it attains it. It is capped by every GLD's training energy (w <=
    A_i / K_i) and the CPU bound (19). GLDs with no energy left after the upload (they drop
    out) and padded slots have zero weight and beta = inf; rows where no GLD has energy
    left are the caller's.

    beta_i = A_i / K_i - (Q_max,i / K_i) u is linear in u, so where the breakpoints' order
    (a stable sort) is the same at the first and the last u of a window of sync times
    (_WINDOW of the coarse grid, a zoom's whole grid), it holds in between: one sort and
    prefix sums serve the window. Elsewhere the prefixes are the sets S_j = {i : beta_i <=
    beta_j}, found by comparing the breakpoints pairwise at each u (M^2 per sync time).
    """
    ok = (left_up > 0) & r.g_mask
    k_loc = r.g_kloc
    gk = np.where(ok, r.g_gain_e * k_loc, 0.0)
    g_a = np.where(ok, r.g_gain_e * left_up, 0.0)  # g_i A_i
    g_q = np.where(ok, r.g_gq, 0.0)  # g_i Q_max,i
    c_rate = _slot_sum(g_q, 1)  # C = c_rate u
    a_k = np.where(ok, left_up / k_loc, np.inf)  # beta_i = a_k - q_k u
    q_k = np.where(ok, r.g_q_max / k_loc, 0.0)
    w_cap = np.minimum(a_k.min(1, initial=np.inf), 1.0 / r.y_min_s**2)
    rows = np.arange(r.size)[:, None, None]
    weights = np.stack([gk, g_a, g_q], axis=2)  # (R, M, 3): summed over prefixes

    def pairwise(i: np.ndarray, u: np.ndarray, e: np.ndarray) -> np.ndarray:
        u3 = u[:, None, :]
        beta = a_k[i, :, None] - q_k[i, :, None] * u3  # (R, M, k)
        gkb = g_a[i, :, None] - g_q[i, :, None] * u3  # g_i K_i beta_i, 0 without energy
        inside = beta[:, None, :, :] <= beta[:, :, None, :]  # [r, j, i, k]: i in S_j
        # sums over i in slot order (k > 1 follows: see _slot_sum)
        num = (inside * gkb[:, None]).sum(2)
        den = (inside * gk[i, None, :, None]).sum(2)
        return ((e[:, None, :] + num) / den).min(1)

    def w_of_u(u: np.ndarray) -> np.ndarray:
        n_rows, k = u.shape
        e = c_rate[:, None] * u - u * _need_w(r, u)  # C - D, (R, k)
        n_win = _COARSE // _WINDOW if k == _COARSE else 1  # a zoom's grid: one window
        uw = u.reshape(n_rows, n_win, -1)  # windows of sync times
        ends = np.concatenate([uw[:, :, :1], uw[:, :, -1:]], axis=1)  # (R, 2 windows)
        beta = a_k[:, None, :] - q_k[:, None, :] * ends[:, :, 0, None]
        order = beta.argsort(axis=2, kind="stable")
        lo, hi = order[:, :n_win], order[:, n_win:]  # at each window's first and last u
        same = (lo == hi).all(2)  # (R, windows): one order over the window
        pre = np.cumsum(weights[rows, lo], axis=2)  # prefix sums, (R, windows, M, 3)
        w = (
            (e.reshape(uw.shape)[:, :, None, :] + pre[..., 1:2] - uw[:, :, None, :] * pre[..., 2:3])
            / pre[..., 0:1]
        ).min(2)
        if not same.all():  # the order changes within some windows
            i, j = np.nonzero(~same)
            w[i, j] = pairwise(i, uw[i, j], e.reshape(uw.shape)[i, j])
        return np.where(e >= 0, np.minimum(w.reshape(n_rows, k), w_cap[:, None]), -np.inf)

    return w_of_u


def _sync_training_time(r: FeasibleRows, left: np.ndarray) -> np.ndarray:
    """:func:`sync_training_time_batch_s` on one chunk (``left`` masked)."""
    y = np.full(r.size, np.inf)
    has_b = r.n_bld > 0
    idx = np.flatnonzero(has_b & (left > 0).any(1))
    if idx.size:
        ri = _sub(r, idx)
        u_lo, s_hi, _ = _u_grid(ri)
        w = _peak(_sync_w(ri, left[idx]), u_lo, np.maximum(s_hi, _S_MIN + 1.0))
        y[idx] = np.where(w > 0, np.maximum(ri.y_min_s, w**-0.5), np.inf)
    if not has_b.all():  # without BLDs: the energy floor
        y = np.where(has_b, y, training_time_floor_batch_s(r, left))
    return y


def _training_base(r: FeasibleRows, left: np.ndarray) -> np.ndarray:
    """:func:`training_base_batch_s` on one chunk (``left`` masked)."""
    y = _sync_training_time(r, left)
    bad = ~np.isfinite(y)
    if bad.any():
        y[bad] = training_time_floor_batch_s(_sub(r, np.flatnonzero(bad)), left[bad])
    return y


@_quiet
def sync_training_time_batch_s(r: FeasibleRows, left_up_j: np.ndarray) -> np.ndarray:
    """:func:`sync_training_time_s` of every row (energy ``left_up_j`` (R, M)), (R,)."""
    left = _masked_left(r, left_up_j)
    y = np.empty(r.size)
    for idx, rc in _chunks(r, _COARSE):
        y[idx] = _sync_training_time(rc, left[idx, : rc.width])
    return y


def sync_training_time_s(a, left_up_j: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """y_sync: the shortest common training time at which the GLDs can still pay jamming
    that syncs every BLD, given the energy ``left_up_j`` left after the upload (``inf``
    where no training time is slow enough). ``w(u)`` (:func:`_sync_w`) is concave in u (the
    upper boundary of the convex set psi(u, w) >= 0), so its maximum is found on a grid
    with zooms, from below: y_sync is never understated. Without BLDs: the energy floor.
    The batch of one of :func:`sync_training_time_batch_s`."""
    return float(
        sync_training_time_batch_s(
            FeasibleRows.from_row(a), np.asarray(left_up_j, dtype=float)[None]
        )[0]
    )


@_quiet
def training_base_batch_s(r: FeasibleRows, left_up_j: np.ndarray) -> np.ndarray:
    """:func:`training_base_s` of every row (energy ``left_up_j`` (R, M)), (R,)."""
    left = _masked_left(r, left_up_j)
    y = np.empty(r.size)
    for idx, rc in _chunks(r, _COARSE):
        y[idx] = _training_base(rc, left[idx, : rc.width])
    return y


def training_base_s(a, left_up_j: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """y_base: the ``safe`` mode's lower end of the training time for the energy
    ``left_up_j`` left after the upload, :func:`sync_training_time_s`, or where no training
    time lets the BLDs be synced, :func:`training_time_floor_s`. The batch of one of
    :func:`training_base_batch_s`."""
    return float(
        training_base_batch_s(FeasibleRows.from_row(a), np.asarray(left_up_j, dtype=float)[None])[0]
    )


def training_base_rows_s(a, left_up_j: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """:func:`training_base_s` for R energy vectors ``left_up_j`` (M, R) of one cluster at
    once (one search instead of R)."""
    left = np.asarray(left_up_j, dtype=float)
    r = FeasibleRows.from_row(a).take(np.zeros(left.shape[1], dtype=int))
    return training_base_batch_s(r, left.T)


# ----------------------------------------------------------------------------- upload time
#: how far beyond tg_range tg_lo :func:`sync_upload_time_s` looks for the shortest upload
#: that lets the BLDs sync (a multiple of tg_lo): a deep-fade GLD may need one that slow
SYNC_UPLOAD_MAX_FACTOR = 1e6


def _upload_syncs(
    r: FeasibleRows, tg: np.ndarray, u_lo: np.ndarray, s_hi: np.ndarray
) -> np.ndarray:
    """Whether the energy left after an upload of tG (``tg`` (R, P): P upload times per
    row) pays, with endless training (w = 0), the jamming of some sync time u: max_u psi(u)
    >= 0 (:func:`_peak`, stopped where a grid point already tells), (R, P) booleans."""
    n_rows, n_pts = tg.shape
    gl = r.g_gain_e[:, :, None] * np.clip(r.g_e_max[:, :, None] - r.upload_energy_j(tg), 0.0, None)
    gl = gl.transpose(0, 2, 1)  # (R, P, M)
    flat_gl = gl.reshape(n_rows * n_pts, -1)
    row_of = np.repeat(np.arange(n_rows), n_pts)
    gq4 = r.g_gq[:, None, :, None]

    def psi(u: np.ndarray, sel: np.ndarray | None) -> np.ndarray:  # (points, k), k > 1
        if sel is not None:  # a few points left: gather their rows
            return _psi(r.take(row_of[sel], fields=_PSI_FIELDS), flat_gl[sel], u)
        k = u.shape[1]  # every point: a row's P points share its BLDs' Q(u)
        pay = np.minimum(gq4 * u.reshape(n_rows, n_pts, 1, k), gl[:, :, :, None]).sum(2)
        flat = u.reshape(n_rows, n_pts * k)
        return (pay.reshape(n_rows, -1) - flat * _need_w(r, flat)).reshape(-1, k)

    return (
        _peak_rows(psi, np.repeat(u_lo, n_pts), np.repeat(s_hi, n_pts), stop_at=0.0) >= 0
    ).reshape(n_rows, n_pts)


def _upload_syncs_rows(
    r: FeasibleRows, tg: np.ndarray, u_lo: np.ndarray, s_hi: np.ndarray
) -> np.ndarray:
    """:func:`_upload_syncs` in chunks of rows (:func:`_chunks`)."""
    out = np.empty(tg.shape, dtype=bool)
    for idx, rc in _chunks(r, tg.shape[1] * _COARSE):
        out[idx] = _upload_syncs(rc, tg[idx], u_lo[idx], s_hi[idx])
    return out


def _sync_upload_time(r: FeasibleRows, tg_lo: np.ndarray, ln_tg_range: float) -> np.ndarray:
    """:func:`sync_upload_time_batch_s`: every pass checks the rows at each stage together,
    in chunks (the few rows that need a whole grid or a second end are then one batch)."""
    out = tg_lo.copy()  # no GLD or no BLD: tg_lo
    act = np.flatnonzero((r.n_gld > 0) & (r.n_bld > 0))
    if not act.size:
        return out
    ln_far = math.log(SYNC_UPLOAD_MAX_FACTOR)
    u_lo, s_hi, _ = _u_grid(_sub(r, act))
    s_hi = np.maximum(s_hi, _S_MIN + 1.0)
    lo, hi = np.zeros(act.size), np.full(act.size, float(ln_tg_range))
    it = np.zeros(act.size, dtype=int)  # refinements done
    far = np.zeros(act.size, dtype=bool)  # searching beyond tg_range
    # what each row checks next: its grid's lower end (0), upper end (1), whole grid (2)
    stage = np.zeros(act.size, dtype=int)
    while act.size:
        ra = _sub(r, act)
        x = np.zeros((act.size, _FINE))
        x[:, 0] = np.where(stage == 1, hi, lo)
        ok = np.zeros((act.size, _FINE), dtype=bool)
        for st, n_pts in ((0, 1), (1, 1), (2, _FINE)):
            i = np.flatnonzero(stage == st)
            if i.size:
                if st == 2:
                    x[i] = _lin(lo[i], hi[i], _FINE)
                ok[i, :n_pts] = _upload_syncs_rows(
                    _sub(ra, i), tg_lo[act[i], None] * np.exp(x[i, :n_pts]), u_lo[i], s_hi[i]
                )
        tg = tg_lo[act, None] * np.exp(x)
        some = ok.any(1)
        j = ok.argmax(1)
        # no point of the grid lets the BLDs sync (its upper end does not, or, the whole
        # grid evaluated, none does): after a refinement, the grid's upper end (it did on
        # the coarser grid); on [tg_lo, tg_range tg_lo], look beyond the range (its lower
        # end is this one's upper end: its upper end next); beyond it, none
        none = np.where(stage == 1, ~ok[:, 0], (stage == 2) & ~some)
        beyond = none & (it == 0) & ~far & (ln_tg_range < ln_far)
        done_hi = none & (it > 0)
        out[act[done_hi]] = tg_lo[act[done_hi]] * np.exp(hi[done_hi])
        out[act[none & ~done_hi & ~beyond]] = np.nan
        first = (stage != 1) & some & (j == 0)  # a grid's lower end lets them sync
        out[act[first]] = tg[first, 0]
        # on to the upper end (the lower does not) or the whole grid (the upper end does)
        advance = (stage == 0) & ~some | (stage == 1) & ~none
        refine = (stage == 2) & some & (j > 0)
        ref = np.flatnonzero(refine)
        lo[ref], hi[ref] = x[ref, j[ref] - 1], x[ref, j[ref]]
        it[ref] += 1
        lo[beyond], hi[beyond], far[beyond] = ln_tg_range, ln_far, True
        last = refine & (it >= 3)
        out[act[last]] = tg_lo[act[last]] * np.exp(hi[last])
        keep = (refine & (it < 3)) | beyond | advance
        stage = np.where(beyond, 1, np.where(refine | (stage == 1), 2, 1))[keep]
        act, lo, hi, it, far = act[keep], lo[keep], hi[keep], it[keep], far[keep]
        u_lo, s_hi = u_lo[keep], s_hi[keep]
    return out


@_quiet
def sync_upload_time_batch_s(
    r: FeasibleRows, tg_lo_s: np.ndarray, ln_tg_range: float
) -> np.ndarray:
    """:func:`sync_upload_time_s` of every row (``tg_lo_s`` (R,)), (R,).

    Whether an upload time lets the BLDs sync is monotone in it (the energy left grows with
    the upload time), so a grid's ends are checked before its interior: where its lower end
    already allows it (most clusters: at tg_lo) that is the answer, where its upper end does
    not, none of the grid does. Every pass evaluates the points of all rows still searching
    at once (an end: 1 point, a grid: _FINE)."""
    return _sync_upload_time(r, np.asarray(tg_lo_s, dtype=float), ln_tg_range)


def sync_upload_time_s(a, tg_lo_s: float, ln_tg_range: float) -> float:  # type: ignore[no-untyped-def]
    """The shortest upload time (to ~0.2 %, from above) at which some training time and
    jamming sync every BLD within the budgets: the energy left after the upload must pay,
    with endless training (w = 0), the jamming of some sync time u, max_u psi(u) >= 0.
    Searched in [tg_lo, tg_range tg_lo], then, where none there allows it, in
    [tg_range tg_lo, SYNC_UPLOAD_MAX_FACTOR tg_lo] (the energy left grows with the upload
    time, so the first upload time that allows it bounds the feasible ones from below).
    ``nan`` where none up to SYNC_UPLOAD_MAX_FACTOR tg_lo allows it. The batch of one of
    :func:`sync_upload_time_batch_s`."""
    return float(
        sync_upload_time_batch_s(FeasibleRows.from_row(a), np.array([float(tg_lo_s)]), ln_tg_range)[
            0
        ]
    )


def tg_base_batch_s(r: FeasibleRows, tg_lo_s: np.ndarray, ln_tg_range: float) -> np.ndarray:
    """The ``safe`` box's tg_base of every row: :func:`sync_upload_time_batch_s`, or where
    no upload time lets the BLDs sync, tg_lo (the shortest every GLD can pay); 0 for a row
    without GLDs."""
    tg_lo = np.asarray(tg_lo_s, dtype=float)
    tg = sync_upload_time_batch_s(r, tg_lo, ln_tg_range)
    return np.where(r.n_gld > 0, np.where(np.isnan(tg), tg_lo, tg), 0.0)


# ----------------------------------------------------------------------------- safe mode
#: the upload-time excesses e of :func:`safe_bound_features`: y_base at tG = tg_base (1 + e)
BOUND_EXCESS = (0.01, 0.1, 1.0)


@_quiet
def safe_bound_features_batch(r: FeasibleRows, tg_base_s: np.ndarray) -> np.ndarray:
    """:func:`safe_bound_features` of every row (``tg_base_s`` (R,)), shape (R, 4): the
    y_base searches of all rows and excesses run as one batch of 3 R rows."""
    tg_base = np.asarray(tg_base_s, dtype=float)
    n_exc = len(BOUND_EXCESS)
    out = np.zeros((r.size, 1 + n_exc))
    idx = np.flatnonzero((r.n_gld > 0) & (tg_base > 0))
    if not idx.size:
        return out
    ri = _sub(r, idx)
    out[idx, 0] = np.log10(tg_base[idx])
    tg = tg_base[idx, None] * (1.0 + np.asarray(BOUND_EXCESS))  # (I, 3)
    left = ri.g_e_max[:, :, None] - ri.upload_energy_j(tg)  # (I, M, 3)
    rep = np.repeat(np.arange(idx.size), n_exc)
    y = training_base_batch_s(
        ri.take(rep), left.transpose(0, 2, 1).reshape(-1, left.shape[1])
    ).reshape(idx.size, n_exc)
    out[idx, 1:] = np.where((y > 0) & np.isfinite(y), np.log10(y), 5.0)
    return out


def safe_bound_features(a, tg_base_s: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The ``safe`` box's lower bounds as observation features, in log10 seconds:
    tg_base, then y_base(tG) (:func:`training_base_s`) at tG = tg_base (1 + e) for each e
    of :data:`BOUND_EXCESS` (how steeply the training time falls as the upload slows down:
    the trade-off the optimum balances). Zeros for a cluster without GLDs. The batch of one
    of :func:`safe_bound_features_batch`."""
    return safe_bound_features_batch(FeasibleRows.from_row(a), np.array([float(tg_base_s)]))[0]


#: the ``excess`` scale's smallest step above a bound: factor 1 + EXCESS_FLOOR at a = -1
EXCESS_FLOOR = 1e-3


def _factor(a_k: Any, ln_range: float, scale: str) -> Any:
    """The multiple of its lower bound that action value ``a_k`` in [-1, 1] sets (a0: tG,
    a1: y; a float or an array). ``"ratio"``: range^((a + 1) / 2), log-uniform in [1,
    range]. ``"excess"``: 1 + EXCESS_FLOOR (rho^u - 1), u = (a + 1) / 2, rho = 1 + (range -
    1) / EXCESS_FLOOR: exactly the bound at a = -1, the range at a = 1, and in between
    log-uniform in the excess over the bound (from about EXCESS_FLOOR up): finer just above
    the bound, where y_sync(tG) and the sync time are steep and most optima lie."""
    u = 0.5 * (np.minimum(np.maximum(a_k, -1.0), 1.0) + 1.0)
    if scale == "ratio":
        return np.exp(u * ln_range)
    return 1.0 + EXCESS_FLOOR * np.expm1(u * _excess_log_rho(ln_range))


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


def _sync_target_jamming(
    r: FeasibleRows, q_low: np.ndarray, q_high: np.ndarray, t_gld_s: np.ndarray, ratio: np.ndarray
) -> np.ndarray:
    """The least Q in [Q_low, Q_high] of each row at which the BLDs finish (sync plus twin
    training, eq. (13)) within ``ratio`` times the GLDs' time T_GLD = y + tG (eq. (12));
    Q_high where even that is too slow (eq. (23) inverted by :func:`_need_w`); Q_low
    without BLDs."""
    u = ratio * t_gld_s - r.tb_loc_s
    need = _need_w(r, u[:, None])[:, 0]  # max(Q(u), 0): Q_low >= 0 clips it anyway
    q = np.where((u > 0) & np.isfinite(need), np.minimum(np.maximum(need, q_low), q_high), q_high)
    return np.where(r.n_bld > 0, q, q_low)


def _safe_allocation(
    r: FeasibleRows,
    tg_base: np.ndarray,
    a: np.ndarray,
    ln_tg_range: float,
    ln_y_range: float,
    jamming: str,
    ln_sync_range: float,
    scale: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`safe_allocation_batch` on one chunk (``a`` clipped)."""
    has = r.n_gld > 0
    tg = np.where(has, tg_base, 1.0) * _factor(a[:, 0], ln_tg_range, scale)
    left_up = r.g_e_max - r.upload_energy_j(tg)
    y = _training_base(r, _masked_left(r, left_up)) * _factor(a[:, 1], ln_y_range, scale)
    left = _masked_left(r, np.clip(left_up - r.g_kloc / (y**2)[:, None], 0.0, None))
    q_low, q_high, ok = _jamming_interval(r, left)
    if jamming == "sync":
        q_w = _sync_target_jamming(r, q_low, q_high, y + tg, np.exp(a[:, 2] * ln_sync_range))
    else:
        q_w = q_low + 0.5 * (a[:, 2] + 1.0) * (q_high - q_low)
    q = _jamming_split(r, q_w, left)
    q = np.where((ok & has)[:, None], q, 0.0)
    return np.where(has, y, 0.0), np.where(has, tg, 0.0), q


@_quiet
def safe_allocation_batch(
    r: FeasibleRows,
    tg_base_s: np.ndarray,
    action: np.ndarray,
    ln_tg_range: float,
    ln_y_range: float,
    jamming: str = "interval",
    ln_sync_range: float = math.log(2.0),
    scale: str = "ratio",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`safe_allocation` of every row: ``tg_base_s`` (R,), ``action`` (R, 3) ->
    (y (R,), tG (R,), q (R, M)); zeros for a row without GLDs."""
    a = np.minimum(np.maximum(np.asarray(action, dtype=float)[:, :3], -1.0), 1.0)
    tg_base = np.asarray(tg_base_s, dtype=float)
    y, tg = np.zeros(r.size), np.zeros(r.size)
    q = np.zeros((r.size, r.width))
    for idx, rc in _chunks(r, _COARSE):
        y[idx], tg[idx], q[idx, : rc.width] = _safe_allocation(
            rc, tg_base[idx], a[idx], ln_tg_range, ln_y_range, jamming, ln_sync_range, scale
        )
    return y, tg, q


def safe_allocation(
    a,
    tg_base_s: float,
    action: np.ndarray,
    ln_tg_range: float,  # type: ignore[no-untyped-def]
    ln_y_range: float,
    jamming: str = "interval",
    ln_sync_range: float = math.log(2.0),
    scale: str = "ratio",
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

    The batch of one of :func:`safe_allocation_batch`.
    """
    y, tg, q = safe_allocation_batch(
        FeasibleRows.from_row(a),
        np.array([float(tg_base_s)]),
        np.asarray(action, dtype=float).reshape(1, -1),
        ln_tg_range,
        ln_y_range,
        jamming,
        ln_sync_range,
        scale,
    )
    return float(y[0]), float(tg[0]), q[0]


def safe_action(
    a,
    tg_base_s: float,
    y_s: float,
    tg_s: float,
    jam_power_w: np.ndarray,  # type: ignore[no-untyped-def]
    ln_tg_range: float,
    ln_y_range: float,
    jamming: str = "interval",
    ln_sync_range: float = math.log(2.0),
    scale: str = "ratio",
) -> np.ndarray:
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
    tg = tg_base_s * float(_factor(out[0], ln_tg_range, scale))
    left_up = a.g_e_max - a.upload_energy_j(tg)
    y_base = training_base_s(a, left_up)
    out[1] = _unfactor(y_s / y_base, ln_y_range, scale)
    y = y_base * float(_factor(out[1], ln_y_range, scale))
    left = np.clip(left_up - training_energy_j(a, y), 0.0, None)
    iv = jamming_interval(a, left)
    q_w = float(np.asarray(jam_power_w) @ a.g_gain_e)
    if jamming == "sync":
        if iv is None or a.b_data.size == 0:
            out[2] = 0.0
        else:
            q = min(max(q_w, iv[0]), iv[1])
            with np.errstate(divide="ignore"):
                u = float(_sync_time_s(FeasibleRows.from_row(a), np.array([q]))[0])
            ratio = (u + a.tb_loc_s) / (y + tg)
            out[2] = math.log(ratio) / ln_sync_range if ratio > 0 and math.isfinite(ratio) else 1.0
    elif iv is None or iv[1] <= iv[0]:
        out[2] = 1.0 if iv is not None else -1.0
    else:
        out[2] = 2.0 * (q_w - iv[0]) / (iv[1] - iv[0]) - 1.0
    out[2] = min(max(out[2], -1.0), 1.0)
    return out
