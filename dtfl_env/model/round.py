"""One cluster's round as the environment charges it: eqs. (4)-(13), (20)-(23) plus the
environment's rules for what happens when an allocation breaks a budget.

This is the fast path of the environment's ``step``: plain arrays, no validation, no loops
over devices. :func:`dtfl_env.model.system.evaluate_allocation` is the reference it must
agree with (tested): on the cluster reduced to the GLDs that remain and the BLDs that sync.

Rules beyond the paper (documented in the environment):
- A GLD whose assignment (14a) costs more than its budget drops out: it refuses the
  assignment whole, so it does not train, upload or jam, and the round is charged on the
  GLDs that remain (:func:`gld_dropouts`, the one definition of a drop-out). The excess is
  reported so that a violation penalty can be charged.
- A BLD with zero secrecy rate (eq. (21)) under the jamming of the remaining GLDs cannot
  sync securely: its twin is not updated this round and the sync time tB_up is the maximum
  over the BLDs that do sync.
- With a round deadline, devices that finish after it are stragglers (not aggregated) and
  the round closes at the deadline.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from dtfl_env.model.system import ENERGY_TOLERANCE, LN2

__all__ = ["ENERGY_TOLERANCE", "ClusterArrays", "RoundOutcome", "build_cluster_arrays",
           "gld_dropouts", "max_upload_rate", "round_outcome", "segment_max"]

_RAW = ("g_data", "g_gain_c", "g_gain_e", "g_p_max", "g_q_max", "g_v_max", "g_e_max",
        "b_data", "b_gain_c", "b_gain_e", "b_power")
_DERIVED = ("g_cd", "g_kcd", "g_nog", "sic", "b_legit", "b_pe", "tg_min_s", "y_min_s",
            "tb_loc_s", "x_scale", "n_e_w", "w_hz", "fixed_s")


class ClusterArrays:
    """The numbers of one cluster for one round, without validation (internal fast path).

    Raw per-device arrays (``g_*`` for GLDs, ``b_*`` for BLDs) plus the derived constants
    the step needs: cycles eta iota D_i, kappa eta iota D_i, n_C / g_iC, the SIC index,
    log2(1 + p_j h_jC / n_j), p_j h_jE, tG_min (24c), y_min (19) and tB_loc (6).
    Build many at once with :func:`build_cluster_arrays`.
    """

    __slots__ = _RAW + _DERIVED

    @classmethod
    def from_cluster(cls, cluster) -> ClusterArrays:  # type: ignore[no-untyped-def]
        g, b = cluster.gld, cluster.bld
        return build_cluster_arrays(
            cluster.constants,
            gld={"g_data": g.data_bits, "g_gain_c": g.gain_coordinator,
                 "g_gain_e": g.gain_eavesdropper, "g_p_max": g.max_power_w,
                 "g_q_max": g.max_jam_power_w, "g_v_max": g.max_cpu_hz,
                 "g_e_max": g.energy_budget_j},
            bld={"b_data": b.data_bits, "b_gain_c": b.gain_coordinator,
                 "b_gain_e": b.gain_eavesdropper, "b_power": b.power_w},
            gld_counts=np.array([g.data_bits.size]), bld_counts=np.array([b.data_bits.size]),
        )[0]


def _segment_reduce(ufunc: np.ufunc, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-segment reduction (``np.maximum``, ``np.add``) of a flat array; 0 when empty."""
    out = np.zeros(counts.size)
    nonempty = counts > 0
    if nonempty.any():
        starts = (np.cumsum(counts) - counts)[nonempty]
        out[nonempty] = ufunc.reduceat(values, starts)
    return out


def segment_max(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-segment maximum of a flat array of back-to-back segments; 0 for an empty one."""
    return _segment_reduce(np.maximum, values, counts)


def build_cluster_arrays(constants, *, gld: dict[str, np.ndarray],  # type: ignore[no-untyped-def]
                         bld: dict[str, np.ndarray], gld_counts: np.ndarray,
                         bld_counts: np.ndarray) -> list[ClusterArrays]:
    """Build the :class:`ClusterArrays` of many clusters in one vectorised pass.

    ``gld`` and ``bld`` map the raw field names (``g_data``, ..., ``b_power``) to flat
    arrays holding the devices of every cluster back to back; ``gld_counts[s]`` and
    ``bld_counts[s]`` say how many belong to cluster s.
    """
    k = constants
    c = k.cycles_per_round_bit
    g_data = gld["g_data"]
    starts = np.cumsum(gld_counts) - gld_counts
    sic = np.arange(g_data.size, dtype=float) - np.repeat(starts, gld_counts)
    g_cd = c * g_data
    derived_g = {
        "g_cd": g_cd,
        "g_kcd": k.switched_capacitance * g_cd,
        "g_nog": k.noise_coordinator_w / gld["g_gain_c"],
        "sic": sic,
    }
    x = max_upload_rate(gld["g_p_max"] * gld["g_gain_c"] / k.noise_coordinator_w, sic)
    x_scale = k.model_bits * LN2 / k.bandwidth_hz
    tg_min = _segment_reduce(np.maximum, x_scale / x, gld_counts)  # (24c)
    y_min = _segment_reduce(np.maximum, g_cd / gld["g_v_max"], gld_counts)  # (19)
    b_power = bld["b_power"]
    derived_b = {
        "b_legit": np.log2(1.0 + b_power * bld["b_gain_c"] / k.noise_bld_w),
        "b_pe": b_power * bld["b_gain_e"],
    }
    # eq. (6): twin training time at each coordinator
    tb_loc = _segment_reduce(np.add, c * bld["b_data"], bld_counts) / k.coordinator_cpu_hz
    out = []
    go = np.concatenate([[0], np.cumsum(gld_counts)])
    bo = np.concatenate([[0], np.cumsum(bld_counts)])
    for s in range(gld_counts.size):
        a = ClusterArrays.__new__(ClusterArrays)
        g0, g1, b0, b1 = go[s], go[s + 1], bo[s], bo[s + 1]
        for name, arr in gld.items():
            setattr(a, name, arr[g0:g1])
        for name, arr in derived_g.items():
            setattr(a, name, arr[g0:g1])
        for name, arr in bld.items():
            setattr(a, name, arr[b0:b1])
        for name, arr in derived_b.items():
            setattr(a, name, arr[b0:b1])
        a.tg_min_s = float(tg_min[s])
        a.y_min_s = float(y_min[s])
        a.tb_loc_s = float(tb_loc[s])
        a.x_scale = x_scale
        a.n_e_w = k.noise_eavesdropper_w
        a.w_hz = k.bandwidth_hz
        a.fixed_s = k.fixed_latency_s
        out.append(a)
    return out


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
    bld_sync_energy_j: np.ndarray
    """p_j D_j / R_j: what each BLD's sync upload costs at its secrecy rate (``inf`` where
    R_j = 0); problem P does not constrain it."""
    bld_energy_short: np.ndarray
    """BLDs with a positive secrecy rate whose sync would cost more than their battery (all
    False without batteries)."""


def round_outcome(a: ClusterArrays, *, y_s: float, tg_s: float, jam_power_w: np.ndarray,
                  deadline_s: float | None = None, bld_battery_j: np.ndarray | None = None,
                  enforce_bld_energy: bool = False) -> RoundOutcome:
    """Charge an allocation (common training time y, upload time tG, jamming q) on a cluster.

    CPU rates are v_i = min(eta iota D_i / y, V_max,i) (eq. (17); a GLD that cannot meet y
    runs flat out and finishes later). Powers follow eq. (7) with the SIC factor; an upload
    time below tG_min would break (14c) and is raised to tG_min.

    **Drop-outs** (:func:`gld_dropouts`): a GLD whose assignment costs more than its budget
    (14a) refuses it whole: it does not train, upload or jam. The round is then charged on
    the GLDs that remain (their NOMA order closes up, the aggregate jamming Q counts only
    their q_i), which can push another GLD over its budget (less jamming, a longer sync);
    refusals repeat until every remaining GLD can pay. A refused GLD reports the energy of
    the assignment it refused (``energy_j``) and the excess over its budget, and zero
    ``cpu_hz``, ``upload_power_w`` and ``jam_power_w``. BLDs whose secrecy rate is zero
    under the remaining jamming cannot sync (``bld_synced``).

    **BLD energy**: a BLD's sync costs p_j D_j / R_j (``bld_sync_energy_j``). Problem P does
    not constrain it; with ``bld_battery_j`` the outcome flags the BLDs that cannot afford it
    (``bld_energy_short``), and with ``enforce_bld_energy`` such a BLD does not sync.
    """
    m = a.g_cd.size
    q = np.asarray(jam_power_w, dtype=float)
    # the assignment: below tG_min some GLD would break (14c), so tG is raised to it once;
    # the GLDs that remain after a refusal keep that upload time
    tg_s = max(tg_s, a.tg_min_s) if m else tg_s
    active = np.ones(m, dtype=bool)
    refused_energy = np.zeros(m)
    while True:
        out = _charge(a, active, y_s=y_s, tg_s=tg_s, q=q, deadline_s=deadline_s,
                      bld_battery_j=bld_battery_j, enforce_bld_energy=enforce_bld_energy)
        over = active & (out.energy_j - a.g_e_max > ENERGY_TOLERANCE * a.g_e_max)
        if not over.any():
            break
        refused_energy[over] = out.energy_j[over]
        active &= ~over
    if active.all():
        return out
    dropped = ~active
    energy = np.where(dropped, refused_energy, out.energy_j)
    excess = np.where(dropped, refused_energy - a.g_e_max, 0.0)
    return dataclasses.replace(out, energy_j=energy, energy_excess_j=excess,
                               gld_dropped=dropped)


def gld_dropouts(a: ClusterArrays, *, y_s: float, tg_s: float, jam_power_w: np.ndarray,
                 deadline_s: float | None = None, bld_battery_j: np.ndarray | None = None,
                 enforce_bld_energy: bool = False) -> np.ndarray:
    """The GLDs that refuse an allocation (boolean mask): the one definition of a drop-out.

    A GLD drops out when its assignment (training, upload and jamming energy, (14a)) costs
    more than ``(1 + ENERGY_TOLERANCE)`` times its budget; the others are then charged
    without it (no training, upload or jamming of the dropped GLD), repeatedly, until every
    remaining GLD can pay. See :func:`round_outcome`.
    """
    return round_outcome(a, y_s=y_s, tg_s=tg_s, jam_power_w=jam_power_w,
                         deadline_s=deadline_s, bld_battery_j=bld_battery_j,
                         enforce_bld_energy=enforce_bld_energy).gld_dropped


def _charge(a: ClusterArrays, active: np.ndarray, *, y_s: float, tg_s: float, q: np.ndarray,
            deadline_s: float | None, bld_battery_j: np.ndarray | None,
            enforce_bld_energy: bool) -> RoundOutcome:
    """Charge the allocation on the GLDs in ``active`` (every BLD); the others idle. ``tg_s``
    is at least the full set's tG_min (raised by :func:`round_outcome`), so at least the
    remaining GLDs' too."""
    m = a.g_cd.size
    full = bool(active.all())
    n_act = m if full else int(np.count_nonzero(active))
    cpu = np.zeros(m)
    p_up = np.zeros(m)
    e_loc = np.zeros(m)
    q_eff = q if full else np.where(active, q, 0.0)
    t_loc = None
    if n_act:
        if full:
            g_cd, v_max, nog, sic, y_min = a.g_cd, a.g_v_max, a.g_nog, a.sic, a.y_min_s
        else:  # the remaining GLDs close up their NOMA order (SIC index among them)
            g_cd, v_max, nog = a.g_cd[active], a.g_v_max[active], a.g_nog[active]
            sic = np.arange(n_act, dtype=float)
            y_min = float(np.max(g_cd / v_max))  # (19)
        tg = tg_s
        if y_s >= y_min:  # every GLD meets y: v_i = eta iota D_i / y, eq. (17)
            v = g_cd / y_s
            y = y_s
        else:  # too short for some: they run at V_max and finish later, eq. (4)
            v = np.minimum(g_cd / y_s, v_max)
            t_loc = g_cd / v
            y = float(t_loc.max())
        x = a.x_scale / tg  # r ln 2
        p_act = nog * (math.expm1(x) * np.exp(sic * x))  # eq. (7) with the SIC factor
        if full:
            cpu, p_up = v, p_act
        else:
            cpu[active], p_up[active] = v, p_act
        e_loc = a.g_kcd * cpu * cpu  # eq. (5)
        jam = float(q_eff @ a.g_gain_e)  # eq. (20)
    else:
        tg = y = jam = 0.0
    n = a.b_data.size
    if n:
        eve = np.log2(1.0 + a.b_pe / (a.n_e_w + jam))
        rate = a.w_hz * np.maximum(a.b_legit - eve, 0.0)  # eq. (21)
        synced = rate > 0
        with np.errstate(divide="ignore"):
            e_sync = a.b_power * a.b_data / rate  # p_j x sync time D_j / R_j
        short = (synced & (e_sync > (1.0 + ENERGY_TOLERANCE) * bld_battery_j)
                 if bld_battery_j is not None else np.zeros(n, dtype=bool))
        if enforce_bld_energy:
            synced &= ~short
        if synced.all():
            tb = float(np.max(a.b_data / rate))  # eq. (23)
        else:
            tb = float(np.max(a.b_data[synced] / rate[synced])) if synced.any() else 0.0
    else:
        rate = e_sync = np.zeros(0)
        synced = short = np.zeros(0, dtype=bool)
        tb = 0.0
    # jammers jam while the BLDs sync, and stop at the round deadline if there is one
    tb_jam = tb if deadline_s is None else min(tb, deadline_s)
    energy = e_loc + p_up * tg + q_eff * tb_jam  # (14a): eqs. (5), (8), (10)
    excess = energy - a.g_e_max
    # an excess below ENERGY_TOLERANCE * E_max is rounding (e.g. of float32 actions), not a
    # violation: at the optimum the budget binds exactly
    over = excess > ENERGY_TOLERANCE * a.g_e_max
    excess = np.where(over, excess, 0.0)
    t_gld = y + tg if n_act else 0.0  # eq. (12)
    t_bld = tb + a.tb_loc_s if n else 0.0  # eq. (13)
    span = max(t_gld, t_bld)
    g_late = np.zeros(m, dtype=bool)
    b_late = np.zeros(n, dtype=bool)
    if deadline_s is not None and span > deadline_s:
        if n_act:
            finish = (t_loc if t_loc is not None else np.full(n_act, y)) + tg
            if full:
                g_late = finish > deadline_s
            else:
                g_late[active] = finish > deadline_s
        if n:
            b_late = synced & (a.b_data / np.where(synced, rate, 1.0) + a.tb_loc_s > deadline_s)
        span = deadline_s
    return RoundOutcome(
        latency_s=span + a.fixed_s, t_gld_s=t_gld, t_bld_s=t_bld, y_s=y, tg_s=tg, tb_up_s=tb,
        tb_loc_s=a.tb_loc_s, jamming_w=jam, cpu_hz=cpu, upload_power_w=p_up, jam_power_w=q_eff,
        energy_j=energy, energy_excess_j=excess, gld_dropped=~active, gld_straggler=g_late,
        secrecy_rate_bps=rate, bld_synced=synced, bld_straggler=b_late,
        bld_sync_energy_j=e_sync, bld_energy_short=short)
