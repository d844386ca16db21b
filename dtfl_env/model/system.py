"""The latency and energy model of one cluster, eqs. (4)-(13) and (20)-(23), in pure numpy.

All functions are vectorised over devices (and, where noted, over a leading batch axis).
Nothing here imports gymnasium, torch, the solvers or the agents.

Erratum (docs/MODEL.md): the NOMA upload power carries the SIC factor ``2^((i-1) r)`` for the
GLD with index ``i`` (1-based), as in (24a), (30), (31); eq. (7) as printed drops it.
Powers are computed in the log domain so that small upload times overflow to ``inf``
(never to NaN).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.model.batch import LN2, ClusterBatch
from dtfl_env.model.batch import upload_energy_j as batch_upload_energy_j

__all__ = [
    "ENERGY_TOLERANCE",
    "Evaluation",
    "bld_twin_latency_s",
    "evaluate_allocation",
    "jamming_lower_bound_w",
    "jamming_upper_bound_w",
    "local_energy_j",
    "local_latency_s",
    "min_jamming_for_sync_w",
    "min_upload_time_s",
    "secrecy_rate_bps",
    "sync_time_s",
    "upload_energy_j",
    "upload_power_w",
]

#: relative energy excess tolerated as numerical rounding (float32 actions carry ~1e-7): a GLD
#: drops out only when its energy exceeds (1 + ENERGY_TOLERANCE) E_max
ENERGY_TOLERANCE = 1e-5


def _log_expm1(x: np.ndarray) -> np.ndarray:
    """log(e^x - 1) for x > 0 without overflow."""
    with np.errstate(over="ignore", divide="ignore"):
        return x + np.log(-np.expm1(-x))


def local_latency_s(cluster: Cluster, cpu_hz: np.ndarray) -> np.ndarray:
    """t_i^loc = eta iota D_iG / v_i, eq. (4)."""
    c = cluster.constants.cycles_per_round_bit
    with np.errstate(divide="ignore"):
        return c * cluster.gld.data_bits / np.asarray(cpu_hz, dtype=float)  # eq. (4)


def local_energy_j(cluster: Cluster, cpu_hz: np.ndarray) -> np.ndarray:
    """E_i^loc = kappa eta iota D_iG v_i^2, eq. (5)."""
    k = cluster.constants
    return (
        k.switched_capacitance
        * k.cycles_per_round_bit
        * cluster.gld.data_bits
        * np.square(np.asarray(cpu_hz, dtype=float))
    )  # eq. (5)


def upload_power_w(cluster: Cluster, tg_s: np.ndarray | float) -> np.ndarray:
    """NOMA upload power p_i = n_C/g_iC (2^r - 1) 2^((i-1) r), r = L/(W tG) (eq. (7), erratum).

    ``tg_s`` may carry leading batch axes; the result has shape ``tg_s.shape + (M,)``.
    """
    k = cluster.constants
    tg = np.asarray(tg_s, dtype=float)[..., None]
    idx = np.arange(cluster.n_gld, dtype=float)  # i - 1
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        x = (k.model_bits / (k.bandwidth_hz * tg)) * LN2  # r ln 2
        log_p = (
            np.log(k.noise_coordinator_w / cluster.gld.gain_coordinator) + _log_expm1(x) + idx * x
        )  # eq. (7) with 2^((i-1) r)
        return np.exp(log_p)


def upload_energy_j(cluster: Cluster, tg_s: np.ndarray | float) -> np.ndarray:
    """E_i^up = p_i tG, eq. (8) (:func:`dtfl_env.model.batch.upload_energy_j`); ``tg_s`` may
    carry leading batch axes, the result has shape ``tg_s.shape + (M,)``."""
    k = cluster.constants
    return batch_upload_energy_j(
        k.noise_coordinator_w / cluster.gld.gain_coordinator,
        np.arange(cluster.n_gld, dtype=float),
        k.model_bits * LN2 / k.bandwidth_hz,
        np.asarray(tg_s, dtype=float)[..., None],
    )  # eq. (8)


def min_upload_time_s(cluster: Cluster) -> float:
    """Smallest tG with p_i <= P_i^max for every GLD, constraint (24c) / (14c): the cluster's
    :attr:`dtfl_env.model.batch.ClusterBatch.tg_min_s` (rates from
    :func:`dtfl_env.model.batch.max_upload_rate`); 0 without GLDs."""
    return float(ClusterBatch.from_clusters([cluster]).tg_min_s[0])


def secrecy_rate_bps(cluster: Cluster, jamming_w: np.ndarray | float) -> np.ndarray:
    """R_j = W [log2(1 + p_j h_jC/n_j) - log2(1 + p_j h_jE/(n_E + Q))]^+, eqs. (9), (21).

    ``jamming_w`` is the aggregate jamming Q = sum_i q_i g_iE at the eavesdropper (eq. (20));
    it may carry leading batch axes (result shape ``Q.shape + (N,)``).
    """
    k = cluster.constants
    b = cluster.bld
    q = np.asarray(jamming_w, dtype=float)[..., None]
    legit = np.log2(1.0 + b.power_w * b.gain_coordinator / k.noise_bld_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        eve = np.log2(1.0 + b.power_w * b.gain_eavesdropper / (k.noise_eavesdropper_w + q))
    return k.bandwidth_hz * np.maximum(legit - eve, 0.0)  # eq. (21)


def sync_time_s(cluster: Cluster, jamming_w: np.ndarray | float) -> np.ndarray:
    """tB_up(Q) = max_j D_jB / R_j(Q), eq. (23); ``inf`` where some R_j = 0, 0 with no BLD."""
    q = np.asarray(jamming_w, dtype=float)
    if cluster.n_bld == 0:
        return np.zeros(q.shape)
    rate = secrecy_rate_bps(cluster, q)
    with np.errstate(divide="ignore"):
        return np.max(cluster.bld.data_bits / rate, axis=-1)  # eq. (23)


def jamming_lower_bound_w(cluster: Cluster) -> float:
    """max_j n_j h_jE / h_jC - n_E: every R_j > 0 iff Q exceeds it, eq. (22). May be < 0."""
    k = cluster.constants
    if cluster.n_bld == 0:
        return -k.noise_eavesdropper_w
    b = cluster.bld
    return float(
        np.max(k.noise_bld_w * b.gain_eavesdropper / b.gain_coordinator) - k.noise_eavesdropper_w
    )  # eq. (22)


def jamming_upper_bound_w(cluster: Cluster) -> float:
    """sum_i Q_i^max g_iE, the largest reachable aggregate jamming, eq. (22)."""
    return float(np.sum(cluster.gld.max_jam_power_w * cluster.gld.gain_eavesdropper))


def min_jamming_for_sync_w(cluster: Cluster, sync_s: np.ndarray | float) -> np.ndarray:
    """Smallest Q with tB_up(Q) <= ``sync_s``: eq. (23) inverted in closed form.

    R_j(Q) >= D_j / u  <=>  Q >= p_j h_jE / (2^(a_j - D_j/(W u)) - 1) - n_E with
    a_j = log2(1 + p_j h_jC / n_j). Returns ``inf`` where even infinite jamming is too slow,
    and a negative value where no jamming is needed. Vectorised over ``sync_s``.
    """
    k = cluster.constants
    u = np.asarray(sync_s, dtype=float)
    if cluster.n_bld == 0:
        return np.full(u.shape, -k.noise_eavesdropper_w)
    b = cluster.bld
    a = np.log2(1.0 + b.power_w * b.gain_coordinator / k.noise_bld_w)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        expo = (a - b.data_bits / (k.bandwidth_hz * u[..., None])) * LN2
        need = b.power_w * b.gain_eavesdropper / np.expm1(expo) - k.noise_eavesdropper_w
        need = np.where(expo > 0, need, np.inf)
    return np.max(need, axis=-1)


def bld_twin_latency_s(cluster: Cluster) -> float:
    """tB_loc = sum_j eta iota D_jB / v_c, eq. (6): twin training at the coordinator."""
    k = cluster.constants
    return float(k.cycles_per_round_bit * np.sum(cluster.bld.data_bits) / k.coordinator_cpu_hz)


@dataclass(frozen=True)
class Evaluation:
    """Every term of one allocation on one cluster (SI units; per-device arrays)."""

    latency_s: float
    """T, eq. (11)."""
    t_gld_s: float
    """T^GLD = max_i t_i^loc + tG, eq. (12)."""
    t_bld_s: float
    """T^BLD = tB_up + tB_loc, eq. (13)."""
    y_s: float
    """max_i t_i^loc (the auxiliary variable y at its tightest)."""
    tg_s: float
    tb_up_s: float
    tb_loc_s: float
    jamming_w: float
    """Q = sum_i q_i g_iE, eq. (20)."""
    cpu_hz: np.ndarray
    local_latency_s: np.ndarray
    upload_power_w: np.ndarray
    jam_power_w: np.ndarray
    secrecy_rate_bps: np.ndarray
    energy_local_j: np.ndarray
    energy_upload_j: np.ndarray
    energy_jam_j: np.ndarray
    energy_total_j: np.ndarray
    slack: dict[str, np.ndarray]
    """Relative slack of each constraint (>= 0 satisfied): ``energy`` (14a) as
    (E_max - E)/E_max, ``cpu`` (14b), ``power`` (14c), ``jam_max`` and ``jam_min`` (14d),
    ``secrecy`` (R_j > 0, as R_j / W)."""

    @property
    def min_slack(self) -> float:
        vals = [np.min(v) for v in self.slack.values() if np.size(v)]
        return float(min(vals)) if vals else np.inf

    gld_dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """The GLDs that would refuse this allocation in a round (boolean, shape (M,)): a GLD
    whose assignment costs more than (1 + ENERGY_TOLERANCE) E_max refuses it whole (no
    training, upload or jamming); the others are charged without it (their NOMA order closes
    up, Q counts only their jamming, BLDs with zero secrecy rate do not sync), repeatedly,
    until every remaining GLD can pay. The environment's step applies the same rule
    (:func:`dtfl_env.model.round.round_outcome`, tested to agree) on the actions' domain:
    y >= y_min (19) and tG >= tG_min (24c), no round deadline and no BLD battery (the step
    raises a shorter tG to tG_min and caps the CPU at V_max, where this evaluation reports
    the violation instead). The other fields describe the allocation as given, every GLD
    taking part (problem P)."""

    def is_feasible(self, tol: float = 1e-9) -> bool:
        return bool(self.min_slack >= -tol and np.isfinite(self.latency_s))

    def violated(self, tol: float = 1e-9) -> dict[str, np.ndarray]:
        """Indices of devices that break each constraint by more than ``tol`` (relative)."""
        return {k: np.flatnonzero(v < -tol) for k, v in self.slack.items() if np.any(v < -tol)}


def evaluate_allocation(
    cluster: Cluster,
    *,
    tg_s: float,
    jam_power_w: np.ndarray,
    y_s: float | None = None,
    cpu_hz: np.ndarray | None = None,
) -> Evaluation:
    """Evaluate an allocation of problem P on a cluster.

    Parameters
    ----------
    cluster : Cluster
    tg_s : float
        GLD NOMA upload time t_G^up (s).
    jam_power_w : array of shape (M,)
        Jamming powers q_i (W).
    y_s : float, optional
        Common local-training deadline y; sets v_i = eta iota D_iG / y (eq. (17)).
    cpu_hz : array of shape (M,), optional
        CPU rates v_i directly (exactly one of ``y_s`` and ``cpu_hz``).

    Returns
    -------
    Evaluation
        Latency terms, powers, energies, secrecy rates and each constraint's relative slack.
        The BLD sync time is tB_up = max_j D_jB / R_j(Q) (eq. (23)), ``inf`` if some R_j = 0.
    """
    m = cluster.n_gld
    if (y_s is None) == (cpu_hz is None):
        raise ValueError("give exactly one of y_s and cpu_hz")
    q = np.asarray(jam_power_w, dtype=float).reshape(-1)
    if q.size != m:
        raise ValueError(f"jam_power_w: expected {m} entries, got {q.size}")
    tg = float(tg_s)
    for name, val in (("tg_s", tg), ("y_s", y_s)):
        if val is not None and not (np.isfinite(val) and val > 0):
            raise ValueError(f"{name}: must be finite and > 0, got {val}")
    if not np.all(np.isfinite(q)):
        raise ValueError("jam_power_w: must be finite")
    ev = _evaluate(cluster, tg, q, y_s, cpu_hz)
    if m and np.any(ev.slack["energy"] < -ENERGY_TOLERANCE):
        return dataclasses.replace(ev, gld_dropped=_dropouts(cluster, tg, q, y_s, ev.cpu_hz))
    return ev


def _evaluate(
    cluster: Cluster, tg: float, q: np.ndarray, y_s: float | None, cpu_hz: np.ndarray | None
) -> Evaluation:
    """:func:`evaluate_allocation` on checked input, every GLD taking part."""
    k = cluster.constants
    m = cluster.n_gld
    if y_s is not None:
        v = k.cycles_per_round_bit * cluster.gld.data_bits / float(y_s)  # eq. (17)
    else:
        v = np.asarray(cpu_hz, dtype=float).reshape(-1)
        if v.size != m:
            raise ValueError(f"cpu_hz: expected {m} entries, got {v.size}")
        if not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError("cpu_hz: must be finite and > 0")

    t_loc = local_latency_s(cluster, v)
    y = float(np.max(t_loc)) if m else 0.0
    e_loc = local_energy_j(cluster, v)
    if m:
        p_up = upload_power_w(cluster, tg)
        e_up = p_up * tg  # eq. (8)
    else:
        p_up = e_up = np.zeros(0)
        tg = 0.0
    jam = float(np.sum(q * cluster.gld.gain_eavesdropper))  # eq. (20)
    rate = secrecy_rate_bps(cluster, jam)
    tb_up = float(sync_time_s(cluster, jam))  # eq. (23)
    with np.errstate(invalid="ignore"):
        e_jam = np.where(q > 0, q * tb_up, 0.0)  # eq. (10)
    e_tot = e_loc + e_up + e_jam
    tb_loc = bld_twin_latency_s(cluster)
    t_gld = y + tg if m else 0.0  # eq. (12)
    t_bld = tb_up + tb_loc if cluster.n_bld else 0.0  # eq. (13)
    latency = max(t_gld, t_bld) + k.fixed_latency_s  # eq. (11)
    g = cluster.gld
    with np.errstate(invalid="ignore"):
        slack = {
            "energy": (g.energy_budget_j - e_tot) / g.energy_budget_j,  # (14a)
            "cpu": (g.max_cpu_hz - v) / g.max_cpu_hz,  # (14b)
            "power": (g.max_power_w - p_up) / g.max_power_w,  # (14c)
            "jam_max": (g.max_jam_power_w - q) / g.max_jam_power_w,  # (14d)
            "jam_min": q / g.max_jam_power_w,  # (14d), q >= 0
            "secrecy": rate / k.bandwidth_hz,  # R_j > 0, eq. (22)
        }
    slack = {key: np.where(np.isnan(val), -np.inf, val) for key, val in slack.items()}
    return Evaluation(
        latency_s=float(latency),
        t_gld_s=float(t_gld),
        t_bld_s=float(t_bld),
        y_s=y,
        tg_s=tg,
        tb_up_s=tb_up,
        tb_loc_s=tb_loc,
        jamming_w=jam,
        cpu_hz=v,
        local_latency_s=t_loc,
        upload_power_w=p_up,
        jam_power_w=q,
        secrecy_rate_bps=rate,
        energy_local_j=e_loc,
        energy_upload_j=e_up,
        energy_jam_j=e_jam,
        energy_total_j=e_tot,
        slack=slack,
        gld_dropped=np.zeros(m, dtype=bool),
    )


def _dropouts(
    cluster: Cluster, tg_s: float, q: np.ndarray, y_s: float | None, cpu_hz: np.ndarray
) -> np.ndarray:
    """The drop-out rule of :attr:`Evaluation.gld_dropped`, by re-evaluating the cluster
    reduced to the GLDs that remain and the BLDs that sync under their jamming."""
    active = np.ones(cluster.n_gld, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        jam = float(q[idx] @ cluster.gld.gain_eavesdropper[idx])  # eq. (20)
        synced = np.flatnonzero(secrecy_rate_bps(cluster, jam) > 0)
        sub = Cluster(cluster.gld.subset(idx), cluster.bld.subset(synced), cluster.constants)
        ev = _evaluate(sub, tg_s, q[idx], y_s, None if y_s is not None else cpu_hz[idx])
        over = ev.energy_total_j - sub.gld.energy_budget_j > (
            ENERGY_TOLERANCE * sub.gld.energy_budget_j
        )
        if not over.any():
            break
        active[idx[over]] = False
    return ~active
