"""B clusters as one struct of arrays: the one form of a cluster that the physics computes on.

:class:`ClusterBatch` holds B clusters with their GLD fields padded to the batch's largest M
(shape (B, M)) and their BLD fields to the largest N (shape (B, N)), boolean masks marking
the real devices, and the constants per cluster (shape (B,)). Padded entries hold 1.0 and
never enter a result. A :class:`~dtfl_env.config.Cluster` is a batch of one
(:meth:`ClusterBatch.from_clusters`, :meth:`ClusterBatch.cluster`: the conversion is exact).

The derived constants every routine needs (eta iota D_i, K_i = kappa (eta iota D_i)^3,
n_C / g_iC, the SIC index, tG_min (24c), y_min (19), log2(1 + p_j h_jC / n_j), p_j h_jE,
tB_loc (6)) are computed once per batch, vectorised over clusters and slots, on first use.
:meth:`ClusterBatch.row` gives one cluster's unpadded 1-D view (:class:`ClusterRow`), the
form the per-cluster searches of :mod:`dtfl_env.model.feasible` take.

The one routine per formula lives here: :func:`max_upload_rate` (the power bound (14c), from
which tG_min follows) and :func:`upload_energy_j` (eqs. (7)-(8) with the SIC factor). The
round's charge on a batch is :func:`dtfl_env.model.round.round_outcomes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams

__all__ = [
    "BLD_FIELDS",
    "CONSTANT_FIELDS",
    "GLD_FIELDS",
    "LN2",
    "ClusterBatch",
    "ClusterRow",
    "max_upload_rate",
    "pad_segments",
    "segment_max",
    "upload_energy_j",
]

LN2 = float(np.log(2.0))
GLD_FIELDS = tuple(f.name for f in fields(GLDParams))
BLD_FIELDS = tuple(f.name for f in fields(BLDParams))
CONSTANT_FIELDS = tuple(f.name for f in fields(Constants))


# ----------------------------------------------------------------------------- formulas
def max_upload_rate(snr_max: np.ndarray, sic: np.ndarray) -> np.ndarray:
    """Largest x = r ln 2 with (e^x - 1) e^(sic x) <= snr_max, per GLD: the power bound
    (14c) with the SIC factor, ``snr_max`` = P_max,i g_iC / n_C, ``sic`` = i - 1 (any
    broadcastable shapes). The smallest upload time that keeps GLD i within P_max,i is
    L ln2 / (W x_i), eq. (7); tG_min (24c) is the largest of these.

    f(x) = log(e^x - 1) + sic x - log(snr_max) is concave and increasing, so Newton's method
    started right of the root (at the root for sic = 0, log(1 + snr_max)) jumps left of it,
    staying positive, and then climbs monotonically: every iterate after the first keeps
    p_i <= P_max,i. An entry stops when its step falls below 1e-14 relative (the rounding
    noise of f near small x); the answer is then moved 1e-14 to the feasible side.
    """
    snr, sic = np.broadcast_arrays(np.asarray(snr_max, dtype=float), np.asarray(sic, dtype=float))
    shape = snr.shape
    log_c = np.log(snr).ravel()
    sic = sic.ravel()
    x = np.log1p(snr).ravel()
    todo = np.arange(x.size)  # the entries still moving (Newton is quadratic: few iterations)
    with np.errstate(all="ignore"):
        for it in range(100):
            xa, sa = x[todo], sic[todo]
            em1 = np.expm1(xa)
            step = (np.log(em1) + sa * xa - log_c[todo]) / ((em1 + 1.0) / em1 + sa)
            x[todo] = xa - step
            if it:
                todo = todo[np.abs(step) > 1e-14 * xa]  # below: rounding noise of f
                if not todo.size:
                    break
    # stay on the feasible side despite rounding
    return (x * (1.0 - 1e-14)).reshape(shape)


def upload_energy_j(
    noise_over_gain: np.ndarray, sic: np.ndarray, x_scale: Any, tg_s: Any
) -> np.ndarray:
    """E_i^up(tG) = n_C/g_iC tG (2^r - 1) 2^((i-1) r), r = L / (W tG), eqs. (7)-(8) with the
    SIC factor (erratum: docs/MODEL.md); ``x_scale`` = L ln2 / W, so r ln 2 = x_scale / tG.

    Broadcasts its arguments; overflows to ``inf`` (never NaN) for tiny tG.
    """
    tg = np.asarray(tg_s, dtype=float)
    x = x_scale / tg
    with np.errstate(over="ignore", invalid="ignore"):
        return noise_over_gain * (np.expm1(x) * np.exp(sic * x)) * tg  # eqs. (7), (8)


def segment_max(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-segment maximum of a flat array of back-to-back segments; 0 for an empty one."""
    out = np.zeros(counts.size)
    nonempty = counts > 0
    if nonempty.any():
        starts = (np.cumsum(counts) - counts)[nonempty]
        out[nonempty] = np.maximum.reduceat(values, starts)
    return out


# ----------------------------------------------------------------------------- the batch
def pad_segments(
    flat: Mapping[str, np.ndarray], counts: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Back-to-back device arrays (``counts[b]`` devices of cluster b) as (B, W) padded
    arrays (padding 1.0) and their mask."""
    b = counts.size
    width = int(counts.max(initial=0))
    rows = np.repeat(np.arange(b), counts)
    cols = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    mask = np.zeros((b, width), dtype=bool)
    mask[rows, cols] = True
    out = {}
    for name, arr in flat.items():
        pad = np.ones((b, width))
        pad[rows, cols] = arr
        out[name] = pad
    return out, mask


@dataclass(frozen=True, eq=False)
class ClusterBatch:
    """B clusters as padded arrays: GLD fields (B, M_max), BLD fields (B, N_max).

    ``gld`` / ``bld`` map the field names of :class:`~dtfl_env.config.GLDParams` /
    :class:`~dtfl_env.config.BLDParams` to padded arrays; ``gld_mask`` / ``bld_mask`` mark
    the real devices (GLDs first in NOMA order within a row; padded entries hold 1.0 and
    never enter a result); ``constants`` maps the :class:`~dtfl_env.config.Constants`
    fields to arrays of shape (B,). Build it with :meth:`from_clusters` or :meth:`from_flat`;
    the derived constants (properties below) are computed once, on first use.
    """

    gld: Mapping[str, np.ndarray]
    bld: Mapping[str, np.ndarray]
    constants: Mapping[str, np.ndarray]
    gld_mask: np.ndarray
    bld_mask: np.ndarray
    clusters: tuple[Cluster, ...] = field(default=(), repr=False)
    """The validated clusters the batch was built from (empty when built from arrays)."""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_clusters(cls, clusters: Sequence[Cluster]) -> ClusterBatch:
        """Pad ``clusters`` to the largest M and N among them (B = 0 allowed)."""
        clusters = tuple(clusters)
        for i, c in enumerate(clusters):
            if not isinstance(c, Cluster):
                raise ValueError(
                    f"clusters[{i}]: expected a dtfl_env.Cluster, got {type(c).__name__}"
                )
        cat = np.concatenate
        g_counts = np.array([c.n_gld for c in clusters], dtype=int)
        b_counts = np.array([c.n_bld for c in clusters], dtype=int)
        gld, gmask = pad_segments(
            {f: cat([getattr(c.gld, f) for c in clusters] or [np.zeros(0)]) for f in GLD_FIELDS},
            g_counts,
        )
        bld, bmask = pad_segments(
            {f: cat([getattr(c.bld, f) for c in clusters] or [np.zeros(0)]) for f in BLD_FIELDS},
            b_counts,
        )
        consts = {
            f: np.array([getattr(c.constants, f) for c in clusters], dtype=float)
            for f in CONSTANT_FIELDS
        }
        return cls(
            gld=gld, bld=bld, constants=consts, gld_mask=gmask, bld_mask=bmask, clusters=clusters
        )

    @classmethod
    def from_flat(
        cls,
        constants: Constants,
        gld: Mapping[str, np.ndarray],
        bld: Mapping[str, np.ndarray],
        gld_counts: np.ndarray,
        bld_counts: np.ndarray,
    ) -> ClusterBatch:
        """B clusters sharing ``constants`` from back-to-back device arrays (no validation:
        the environment's fast path). ``gld`` / ``bld`` map every field name to a flat array
        holding the devices of all clusters in order; cluster b has ``gld_counts[b]`` GLDs
        and ``bld_counts[b]`` BLDs."""
        g_counts = np.asarray(gld_counts, dtype=int)
        b_counts = np.asarray(bld_counts, dtype=int)
        g, gmask = pad_segments({f: gld[f] for f in GLD_FIELDS}, g_counts)
        b, bmask = pad_segments({f: bld[f] for f in BLD_FIELDS}, b_counts)
        consts = {f: np.full(g_counts.size, float(getattr(constants, f))) for f in CONSTANT_FIELDS}
        return cls(gld=g, bld=b, constants=consts, gld_mask=gmask, bld_mask=bmask)

    def subset(self, index: np.ndarray) -> ClusterBatch:
        """The clusters at ``index``, padded to their own largest M and N (derived
        constants already computed are carried over)."""
        index = np.asarray(index, dtype=int)
        m = int(self.n_gld[index].max(initial=0))
        n = int(self.n_bld[index].max(initial=0))
        return self.take(index, m, n)

    def take(
        self, index: slice | np.ndarray, m: int | None = None, n: int | None = None
    ) -> ClusterBatch:
        """The clusters at ``index`` (a slice gives views), their GLD slots cut to the first
        ``m`` and BLD slots to the first ``n`` (default: all, padding kept); derived
        constants already computed are carried over, not recomputed."""
        gs, bs = slice(None, m), slice(None, n)
        d = self.__dict__
        out = object.__new__(ClusterBatch)  # frozen: fields set through __dict__ (fast path)
        od = out.__dict__
        od["gld"] = {k: v[index, gs] for k, v in self.gld.items()}
        od["bld"] = {k: v[index, bs] for k, v in self.bld.items()}
        od["constants"] = {k: v[index] for k, v in self.constants.items()}
        od["gld_mask"], od["bld_mask"] = self.gld_mask[index, gs], self.bld_mask[index, bs]
        od["clusters"] = (
            tuple(self.clusters[int(j)] for j in np.atleast_1d(np.arange(self.size)[index]))
            if self.clusters
            else ()
        )
        for name in _DERIVED_1:
            if name in d:
                od[name] = d[name][index]
        for names, cut in ((_DERIVED_G, gs), (_DERIVED_B, bs)):
            for name in names:
                if name in d:
                    od[name] = d[name][index, cut]
        return out

    # ------------------------------------------------------------------ conversion
    @property
    def size(self) -> int:
        return int(self.gld_mask.shape[0])

    def __len__(self) -> int:
        return self.size

    @cached_property
    def dense(self) -> bool:
        """Whether no slot is padded (every cluster has M_max GLDs and N_max BLDs)."""
        return bool(self.gld_mask.all() and self.bld_mask.all())

    @cached_property
    def n_gld(self) -> np.ndarray:
        return self.gld_mask.sum(1)

    @cached_property
    def n_bld(self) -> np.ndarray:
        return self.bld_mask.sum(1)

    def constants_of(self, i: int) -> Constants:
        """Cluster ``i``'s constants."""
        return Constants(**{f: float(self.constants[f][i]) for f in CONSTANT_FIELDS})

    def cluster(self, i: int) -> Cluster:
        """Cluster ``i`` as a validated :class:`~dtfl_env.config.Cluster` (exact)."""
        if self.clusters:
            return self.clusters[i]
        m, n = int(self.n_gld[i]), int(self.n_bld[i])
        return Cluster(
            GLDParams(**{f: self.gld[f][i, :m].copy() for f in GLD_FIELDS}),
            BLDParams(**{f: self.bld[f][i, :n].copy() for f in BLD_FIELDS}),
            self.constants_of(i),
        )

    def row(self, i: int) -> ClusterRow:
        """Cluster ``i``'s unpadded 1-D view (:class:`ClusterRow`)."""
        return ClusterRow(self, i)

    # ------------------------------------------------------------------ derived constants
    @cached_property
    def cycles(self) -> np.ndarray:
        """eta iota D_i: CPU cycles of a GLD's local round, (B, M), eq. (4)."""
        k = self.constants
        return (k["local_iterations"] * k["cycles_per_bit"])[:, None] * self.gld["data_bits"]

    @cached_property
    def k_cycles(self) -> np.ndarray:
        """kappa eta iota D_i, (B, M): E_i^loc = kappa eta iota D_i v_i^2, eq. (5)."""
        return self.constants["switched_capacitance"][:, None] * self.cycles

    @cached_property
    def k_loc(self) -> np.ndarray:
        """K_i = kappa (eta iota D_i)^3, (B, M): E_i^loc = K_i / y^2, eqs. (5), (17), (18)."""
        return self.k_cycles * self.cycles**2

    @cached_property
    def noise_over_gain(self) -> np.ndarray:
        """n_C / g_iC, (B, M)."""
        return self.constants["noise_coordinator_w"][:, None] / self.gld["gain_coordinator"]

    @cached_property
    def sic(self) -> np.ndarray:
        """i - 1, the NOMA index of each GLD slot (SIC factor 2^((i-1) r)), (B, M)."""
        return np.broadcast_to(np.arange(self.gld_mask.shape[1], dtype=float), self.gld_mask.shape)

    @cached_property
    def x_scale(self) -> np.ndarray:
        """L ln2 / W, (B,): r ln 2 = x_scale / tG."""
        k = self.constants
        return k["model_bits"] * LN2 / k["bandwidth_hz"]

    @cached_property
    def tg_min_s(self) -> np.ndarray:
        """The smallest tG with p_i <= P_max,i for every GLD, (B,), constraint (24c); 0 for
        a cluster without GLDs."""
        g, gm = self.gld, self.gld_mask
        snr = (
            g["max_power_w"]
            * g["gain_coordinator"]
            / self.constants["noise_coordinator_w"][:, None]
        )
        t = np.zeros(gm.shape)  # the real GLDs only (no Newton on the padding)
        t[gm] = np.broadcast_to(self.x_scale[:, None], gm.shape)[gm] / max_upload_rate(
            snr[gm], self.sic[gm]
        )
        return t.max(1, initial=0.0)

    @cached_property
    def y_min_s(self) -> np.ndarray:
        """max_i eta iota D_i / V_max,i, (B,), constraint (19); 0 without GLDs."""
        return np.where(self.gld_mask, self.cycles / self.gld["max_cpu_hz"], 0.0).max(
            1, initial=0.0
        )

    @cached_property
    def bld_legit(self) -> np.ndarray:
        """log2(1 + p_j h_jC / n_j), (B, N): the legitimate link's rate per W, eq. (21)."""
        b = self.bld
        return np.log2(
            1.0 + b["power_w"] * b["gain_coordinator"] / self.constants["noise_bld_w"][:, None]
        )

    @cached_property
    def bld_pe(self) -> np.ndarray:
        """p_j h_jE, (B, N)."""
        return self.bld["power_w"] * self.bld["gain_eavesdropper"]

    @cached_property
    def tb_loc_s(self) -> np.ndarray:
        """tB_loc = sum_j eta iota D_jB / v_c, (B,): twin training at the coordinator, eq. (6)."""
        k = self.constants
        bits = np.where(self.bld_mask, self.bld["data_bits"], 0.0).sum(1)
        return k["local_iterations"] * k["cycles_per_bit"] * bits / k["coordinator_cpu_hz"]

    @cached_property
    def fixed_s(self) -> np.ndarray:
        """Aggregation, coordinator upload and main-coordinator times, (B,), eq. (11)."""
        k = self.constants
        return k["aggregation_s"] + k["coordinator_upload_s"] + k["main_coordinator_s"]

    def prepare(self) -> ClusterBatch:
        """Compute every derived constant now (a :meth:`take` of the batch then carries
        them instead of recomputing them per slice); returns the batch."""
        for name in _DERIVED_1 + _DERIVED_G + _DERIVED_B:
            getattr(self, name)
        return self

    def upload_energy_j(self, tg_s: np.ndarray) -> np.ndarray:
        """E_i^up at upload times ``tg_s`` (shape (B,)), shape (B, M), eqs. (7)-(8)."""
        return upload_energy_j(
            self.noise_over_gain,
            self.sic,
            self.x_scale[:, None],
            np.asarray(tg_s, dtype=float)[:, None],
        )

    def __repr__(self) -> str:
        return (
            f"ClusterBatch(B={self.size}, M_max={self.gld_mask.shape[1]}, "
            f"N_max={self.bld_mask.shape[1]})"
        )


# the derived constants a take() carries over: per cluster, per GLD slot, per BLD slot
_DERIVED_1 = ("n_gld", "n_bld", "x_scale", "tg_min_s", "y_min_s", "tb_loc_s", "fixed_s")
_DERIVED_G = ("cycles", "k_cycles", "k_loc", "noise_over_gain", "sic")
_DERIVED_B = ("bld_legit", "bld_pe")
assert set(_DERIVED_1 + _DERIVED_G + _DERIVED_B) | {"dense"} == {
    name for name, v in vars(ClusterBatch).items() if isinstance(v, cached_property)
}


class ClusterRow:
    """One cluster of a :class:`ClusterBatch` as unpadded 1-D views (no copies), with the
    names the per-cluster searches use: ``g_*`` per GLD, ``b_*`` per BLD, and the cluster's
    scalars. ``batch`` and ``index`` locate it in its batch."""

    __slots__ = (
        "_one",
        "b_data",
        "b_gain_c",
        "b_gain_e",
        "b_legit",
        "b_pe",
        "b_power",
        "batch",
        "fixed_s",
        "g_cd",
        "g_data",
        "g_e_max",
        "g_gain_c",
        "g_gain_e",
        "g_kcd",
        "g_kloc",
        "g_nog",
        "g_p_max",
        "g_q_max",
        "g_v_max",
        "index",
        "n_e_w",
        "sic",
        "tb_loc_s",
        "tg_min_s",
        "w_hz",
        "x_scale",
        "y_min_s",
    )

    def __init__(self, batch: ClusterBatch, index: int) -> None:
        i = int(index)
        m, n = int(batch.n_gld[i]), int(batch.n_bld[i])
        g, b, k = batch.gld, batch.bld, batch.constants
        self.batch, self.index = batch, i
        self._one: ClusterBatch | None = None
        self.g_data, self.g_gain_c = g["data_bits"][i, :m], g["gain_coordinator"][i, :m]
        self.g_gain_e, self.g_p_max = g["gain_eavesdropper"][i, :m], g["max_power_w"][i, :m]
        self.g_q_max, self.g_v_max = g["max_jam_power_w"][i, :m], g["max_cpu_hz"][i, :m]
        self.g_e_max = g["energy_budget_j"][i, :m]
        self.g_cd, self.g_kcd = batch.cycles[i, :m], batch.k_cycles[i, :m]
        self.g_kloc = batch.k_loc[i, :m]
        self.g_nog, self.sic = batch.noise_over_gain[i, :m], batch.sic[i, :m]
        self.b_data, self.b_gain_c = b["data_bits"][i, :n], b["gain_coordinator"][i, :n]
        self.b_gain_e, self.b_power = b["gain_eavesdropper"][i, :n], b["power_w"][i, :n]
        self.b_legit, self.b_pe = batch.bld_legit[i, :n], batch.bld_pe[i, :n]
        self.tg_min_s, self.y_min_s = float(batch.tg_min_s[i]), float(batch.y_min_s[i])
        self.tb_loc_s, self.fixed_s = float(batch.tb_loc_s[i]), float(batch.fixed_s[i])
        self.x_scale = float(batch.x_scale[i])
        self.n_e_w = float(k["noise_eavesdropper_w"][i])
        self.w_hz = float(k["bandwidth_hz"][i])

    @classmethod
    def from_cluster(cls, cluster: Cluster) -> ClusterRow:
        """A cluster as a batch of one, viewed as its row."""
        return ClusterBatch.from_clusters([cluster]).row(0)

    def one(self) -> ClusterBatch:
        """This cluster as a batch of one without padding (views into its batch, derived
        constants carried over)."""
        if self._one is None:
            i, m, n = self.index, self.g_cd.size, self.b_data.size
            self._one = self.batch.take(slice(i, i + 1), m, n)
        return self._one

    def cluster(self) -> Cluster:
        """The validated :class:`~dtfl_env.config.Cluster` (exact)."""
        return self.batch.cluster(self.index)

    def upload_energy_j(self, tg_s: Any) -> np.ndarray:
        """E_i^up(tG), eqs. (7)-(8): shape (M,) for one tG, (M, T) for T values of tG."""
        if np.ndim(tg_s):
            return upload_energy_j(
                self.g_nog[:, None],
                self.sic[:, None],
                self.x_scale,
                np.asarray(tg_s, dtype=float)[None, :],
            )
        return upload_energy_j(self.g_nog, self.sic, self.x_scale, tg_s)
