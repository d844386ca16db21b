"""One cluster's round as the environment charges it: eqs. (4)-(13), (20)-(23) plus the
environment's rules for what happens when an allocation breaks a budget.

This is the fast path of the environment's ``step``: plain arrays, no validation, no loops
over devices. :func:`dtfl_env.model.system.evaluate_allocation` is the reference it must
agree with (tested) whenever every device participates.

Rules beyond the paper (documented in the environment):
- A GLD whose energy (14a) exceeds its budget drops out: its model is not aggregated, and
  the excess is reported so that a violation penalty can be charged.
- A BLD with zero secrecy rate (eq. (21)) cannot sync securely: its twin is not updated this
  round and the sync time tB_up is the maximum over the BLDs that do sync.
- With a round deadline, devices that finish after it are stragglers (not aggregated) and
  the round closes at the deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dtfl_env.model.system import LN2

__all__ = ["ClusterArrays", "RoundOutcome", "max_upload_rate", "round_outcome"]


class ClusterArrays:
    """The numbers of one cluster for one round, without validation (internal fast path)."""

    __slots__ = ("b_data", "b_gain_c", "b_gain_e", "b_power", "c", "fixed_s", "g_data",
                 "g_e_max", "g_gain_c", "g_gain_e", "g_k_loc", "g_p_max", "g_q_max",
                 "g_v_max", "kappa", "l_bits", "n_bld_w", "n_c_w", "n_e_w", "sic", "tb_loc_s",
                 "tg_min_s", "w_hz", "y_min_s")

    def __init__(self, *, g_data: np.ndarray, g_gain_c: np.ndarray, g_gain_e: np.ndarray,
                 g_p_max: np.ndarray, g_q_max: np.ndarray, g_v_max: np.ndarray,
                 g_e_max: np.ndarray, b_data: np.ndarray, b_gain_c: np.ndarray,
                 b_gain_e: np.ndarray, b_power: np.ndarray, constants) -> None:  # type: ignore[no-untyped-def]
        k = constants
        self.g_data, self.g_gain_c, self.g_gain_e = g_data, g_gain_c, g_gain_e
        self.g_p_max, self.g_q_max = g_p_max, g_q_max
        self.g_v_max, self.g_e_max = g_v_max, g_e_max
        self.b_data, self.b_gain_c = b_data, b_gain_c
        self.b_gain_e, self.b_power = b_gain_e, b_power
        self.c = k.cycles_per_round_bit
        self.kappa = k.switched_capacitance
        self.w_hz = k.bandwidth_hz
        self.l_bits = k.model_bits
        self.n_c_w, self.n_bld_w, self.n_e_w = (k.noise_coordinator_w, k.noise_bld_w,
                                                k.noise_eavesdropper_w)
        self.fixed_s = k.fixed_latency_s
        self.sic = np.arange(g_data.size, dtype=float)
        self.g_k_loc = self.kappa * (self.c * g_data) ** 3  # eq. (18)
        self.tb_loc_s = self.c * float(b_data.sum()) / k.coordinator_cpu_hz  # eq. (6)
        self.y_min_s = float(np.max(self.c * g_data / g_v_max)) if g_data.size else 0.0  # (19)
        if g_data.size:
            x = max_upload_rate(g_p_max * g_gain_c / self.n_c_w, self.sic)
            self.tg_min_s = float(np.max(self.l_bits * LN2 / (self.w_hz * x)))  # (24c)
        else:
            self.tg_min_s = 0.0

    @classmethod
    def from_cluster(cls, cluster) -> ClusterArrays:  # type: ignore[no-untyped-def]
        g, b = cluster.gld, cluster.bld
        return cls(g_data=g.data_bits, g_gain_c=g.gain_coordinator,
                   g_gain_e=g.gain_eavesdropper, g_p_max=g.max_power_w,
                   g_q_max=g.max_jam_power_w, g_v_max=g.max_cpu_hz, g_e_max=g.energy_budget_j,
                   b_data=b.data_bits, b_gain_c=b.gain_coordinator, b_gain_e=b.gain_eavesdropper,
                   b_power=b.power_w, constants=cluster.constants)


def max_upload_rate(snr_max: np.ndarray, sic: np.ndarray, iters: int = 8) -> np.ndarray:
    """Largest x = r ln 2 with (e^x - 1) e^(sic x) <= snr_max, per GLD (power bound (14c)).

    Newton on the concave increasing f(x) = log(e^x - 1) + sic x - log(snr_max) from a
    point left of the root: every iterate stays left (feasible) and converges quadratically.
    """
    log_c = np.log(snr_max)
    x = np.log1p(snr_max) / (1.0 + sic)
    for _ in range(iters):
        em = -np.expm1(-x)  # 1 - e^-x
        f = x + np.log(em) + sic * x - log_c
        x = x - f / (1.0 / em + sic)
    # guard against rounding on the wrong side of the root
    return x * (1.0 - 4e-16)


@dataclass(frozen=True)
class RoundOutcome:
    """What one cluster's round cost and who took part (SI units)."""

    latency_s: float
    t_gld_s: float
    t_bld_s: float
    y_s: float
    tg_s: float
    tb_up_s: float
    tb_loc_s: float
    jamming_w: float
    cpu_hz: np.ndarray
    upload_power_w: np.ndarray
    jam_power_w: np.ndarray
    energy_j: np.ndarray
    energy_excess_j: np.ndarray
    gld_dropped: np.ndarray
    gld_straggler: np.ndarray
    secrecy_rate_bps: np.ndarray
    bld_synced: np.ndarray
    bld_straggler: np.ndarray


def round_outcome(a: ClusterArrays, *, y_s: float, tg_s: float, jam_power_w: np.ndarray,
                  deadline_s: float | None = None) -> RoundOutcome:
    """Charge an allocation (common training time y, upload time tG, jamming q) on a cluster.

    CPU rates are v_i = min(eta iota D_i / y, V_max,i) (eq. (17); a GLD that cannot meet y
    runs flat out and finishes later). Powers follow eq. (7) with the SIC factor; an upload
    time below tG_min would break (14c) and is raised to tG_min.
    """
    m = a.g_data.size
    q = jam_power_w
    tg = max(tg_s, a.tg_min_s) if m else 0.0
    if m:
        v = np.minimum(a.c * a.g_data / y_s, a.g_v_max)  # eq. (17)
        t_loc = a.c * a.g_data / v  # eq. (4)
        y = float(t_loc.max())
        x = a.l_bits * LN2 / (a.w_hz * tg)
        p_up = (a.n_c_w / a.g_gain_c) * math.expm1(x) * np.exp(a.sic * x)  # eq. (7)
        e_loc = a.kappa * a.c * a.g_data * v * v  # eq. (5)
        jam = float(q @ a.g_gain_e)  # eq. (20)
    else:
        v = t_loc = p_up = e_loc = np.zeros(0)
        y = 0.0
        jam = 0.0
    n = a.b_data.size
    if n:
        legit = np.log2(1.0 + a.b_power * a.b_gain_c / a.n_bld_w)
        eve = np.log2(1.0 + a.b_power * a.b_gain_e / (a.n_e_w + jam))
        rate = a.w_hz * np.maximum(legit - eve, 0.0)  # eq. (21)
        synced = rate > 0
        tb = float(np.max(a.b_data[synced] / rate[synced])) if synced.any() else 0.0  # (23)
    else:
        rate = np.zeros(0)
        synced = np.zeros(0, dtype=bool)
        tb = 0.0
    energy = e_loc + p_up * tg + q * tb  # (14a): eqs. (5), (8), (10)
    excess = energy - a.g_e_max
    dropped = excess > 1e-9 * a.g_e_max  # rounding-level excess is not a violation
    excess = np.where(dropped, excess, 0.0)
    t_gld = y + tg if m else 0.0  # eq. (12)
    t_bld = tb + a.tb_loc_s if n else 0.0  # eq. (13)
    span = max(t_gld, t_bld)
    g_late = np.zeros(m, dtype=bool)
    b_late = np.zeros(n, dtype=bool)
    if deadline_s is not None and span > deadline_s:
        g_late = (t_loc + tg) > deadline_s
        if n:
            b_late = synced & (a.b_data / np.where(synced, rate, 1.0) + a.tb_loc_s > deadline_s)
        span = deadline_s
    return RoundOutcome(
        latency_s=span + a.fixed_s, t_gld_s=t_gld, t_bld_s=t_bld, y_s=y, tg_s=tg, tb_up_s=tb,
        tb_loc_s=a.tb_loc_s, jamming_w=jam, cpu_hz=v, upload_power_w=p_up, jam_power_w=q,
        energy_j=energy, energy_excess_j=excess, gld_dropped=dropped, gld_straggler=g_late,
        secrecy_rate_bps=rate, bld_synced=synced, bld_straggler=b_late)
