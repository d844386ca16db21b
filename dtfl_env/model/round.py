"""The round as the environment charges it, for a batch of clusters at once: eqs. (4)-(13),
(20)-(23) plus the environment's rules for what happens when an allocation breaks a budget.

This is the fast path of the environment's ``step`` (and of the vector environment's, B
clusters at once): :func:`round_outcomes` on a
:class:`~dtfl_env.model.batch.ClusterBatch`, vectorised over clusters and device slots, no
validation; :func:`round_outcome` is its batch of one.
:func:`dtfl_env.model.system.evaluate_allocation` is the reference it must agree with
(tested): on the cluster reduced to the GLDs that remain and the BLDs that sync.

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

from dataclasses import dataclass

import numpy as np

from dtfl_env.model.batch import ClusterBatch, ClusterRow
from dtfl_env.model.system import ENERGY_TOLERANCE

__all__ = [
    "ENERGY_TOLERANCE",
    "BatchOutcome",
    "RoundOutcome",
    "gld_dropouts",
    "round_outcome",
    "round_outcomes",
]


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


@dataclass
class BatchOutcome:
    """The rounds of B clusters (:func:`round_outcomes`): the fields of
    :class:`RoundOutcome`, each with a leading batch axis; per-GLD fields are (B, M_max),
    per-BLD fields (B, N_max), zero (False) in padded slots. :meth:`item` is cluster i's
    :class:`RoundOutcome`."""

    latency_s: np.ndarray
    t_gld_s: np.ndarray
    t_bld_s: np.ndarray
    y_s: np.ndarray
    tg_s: np.ndarray
    tb_up_s: np.ndarray
    tb_loc_s: np.ndarray
    jamming_w: np.ndarray
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
    bld_energy_short: np.ndarray
    n_gld: np.ndarray
    n_bld: np.ndarray

    def item(self, i: int) -> RoundOutcome:
        """Cluster ``i``'s outcome, its device arrays without the padding."""
        m, n = int(self.n_gld[i]), int(self.n_bld[i])
        g, b = slice(None, m), slice(None, n)
        return RoundOutcome(
            latency_s=float(self.latency_s[i]),
            t_gld_s=float(self.t_gld_s[i]),
            t_bld_s=float(self.t_bld_s[i]),
            y_s=float(self.y_s[i]),
            tg_s=float(self.tg_s[i]),
            tb_up_s=float(self.tb_up_s[i]),
            tb_loc_s=float(self.tb_loc_s[i]),
            jamming_w=float(self.jamming_w[i]),
            cpu_hz=self.cpu_hz[i, g],
            upload_power_w=self.upload_power_w[i, g],
            jam_power_w=self.jam_power_w[i, g],
            energy_j=self.energy_j[i, g],
            energy_excess_j=self.energy_excess_j[i, g],
            gld_dropped=self.gld_dropped[i, g],
            gld_straggler=self.gld_straggler[i, g],
            secrecy_rate_bps=self.secrecy_rate_bps[i, b],
            bld_synced=self.bld_synced[i, b],
            bld_straggler=self.bld_straggler[i, b],
            bld_sync_energy_j=self.bld_sync_energy_j[i, b],
            bld_energy_short=self.bld_energy_short[i, b],
        )


def round_outcomes(
    batch: ClusterBatch,
    *,
    y_s: np.ndarray,
    tg_s: np.ndarray,
    jam_power_w: np.ndarray,
    deadline_s: float | None = None,
    bld_battery_j: np.ndarray | None = None,
    enforce_bld_energy: bool = False,
) -> BatchOutcome:
    """Charge B allocations on a batch: common training times y (shape (B,)), upload times
    tG (B,) and jamming powers q (B, M_max; padded entries ignored). ``bld_battery_j``:
    (B, N_max) or None. The one definition of a round's charge (eqs. (4)-(13), (20)-(23)):

    CPU rates are v_i = min(eta iota D_i / y, V_max,i) (eq. (17); a GLD that cannot meet y
    runs flat out and finishes later). Powers follow eq. (7) with the SIC factor; an upload
    time below tG_min would break (14c) and is raised to tG_min.

    **Drop-outs** (:func:`gld_dropouts`): a GLD whose assignment costs more than its budget
    (14a) by more than ``ENERGY_TOLERANCE`` refuses it whole: it does not train, upload or
    jam. The round is then charged on the GLDs that remain (their NOMA order closes up, the
    aggregate jamming Q counts only their q_i), which can push another GLD over its budget
    (less jamming, a longer sync); refusals repeat until every remaining GLD can pay. A
    refused GLD reports the energy of the assignment it refused (``energy_j``) and the
    excess over its budget, and zero ``cpu_hz``, ``upload_power_w`` and ``jam_power_w``.
    BLDs whose secrecy rate is zero under the remaining jamming cannot sync
    (``bld_synced``); the sync time tB_up covers the BLDs that do.

    **BLD energy**: a BLD's sync costs p_j D_j / R_j (``bld_sync_energy_j``). Problem P does
    not constrain it; with ``bld_battery_j`` the outcome flags the BLDs that cannot afford it
    (``bld_energy_short``), and with ``enforce_bld_energy`` such a BLD does not sync.

    **Deadline**: with ``deadline_s``, devices that finish after it are stragglers (not
    aggregated), jammers stop at it and the round closes at it.
    """
    b = batch.size
    gm = batch.gld_mask
    y = np.array(y_s, dtype=float).reshape(b)
    tg = np.asarray(tg_s, dtype=float).reshape(b)
    q = np.where(gm, np.asarray(jam_power_w, dtype=float).reshape(gm.shape), 0.0)
    # the assignment: below tG_min some GLD would break (14c), so tG is raised to it once;
    # the GLDs that remain after a refusal keep that upload time
    tg = np.where(batch.n_gld > 0, np.maximum(tg, batch.tg_min_s), tg)
    battery = (
        None
        if bld_battery_j is None
        else np.asarray(bld_battery_j, dtype=float).reshape(batch.bld_mask.shape)
    )
    out = _charge(batch, gm, y, tg, q, deadline_s, battery, enforce_bld_energy)
    e_max = batch.gld["energy_budget_j"]
    over = gm & (out["energy_j"] - e_max > ENERGY_TOLERANCE * e_max)
    if over.any():
        active = gm.copy()
        refused = np.zeros(gm.shape)
        while True:
            rows = np.flatnonzero(over.any(1))
            if not rows.size:
                break
            refused[over] = out["energy_j"][over]
            active &= ~over
            if rows.size == b:  # every cluster: no gather and scatter
                sub = out = _charge(
                    batch, active, y, tg, q, deadline_s, battery, enforce_bld_energy
                )
            else:
                sub = _charge(
                    batch.take(rows),
                    active[rows],
                    y[rows],
                    tg[rows],
                    q[rows],
                    deadline_s,
                    None if battery is None else battery[rows],
                    enforce_bld_energy,
                )
                for name, val in sub.items():
                    out[name][rows] = val
            over = np.zeros(gm.shape, dtype=bool)
            over[rows] = active[rows] & (
                sub["energy_j"] - e_max[rows] > ENERGY_TOLERANCE * e_max[rows]
            )
        dropped = gm & ~active
        out["energy_j"] = np.where(dropped, refused, out["energy_j"])
        out["energy_excess_j"] = np.where(dropped, refused - e_max, out["energy_excess_j"])
        out["gld_dropped"] = dropped
    # the outcome owns its arrays: no views of the batch's constants or the caller's input
    return BatchOutcome(**out, n_gld=batch.n_gld.copy(), n_bld=batch.n_bld.copy())


def _charge(
    batch: ClusterBatch,
    active: np.ndarray,
    y: np.ndarray,
    tg: np.ndarray,
    q: np.ndarray,
    deadline_s: float | None,
    battery: np.ndarray | None,
    enforce: bool,
) -> dict[str, np.ndarray]:
    """Charge the allocation on the GLDs in ``active`` (B, M) (every BLD); the others idle.
    ``tg`` is at least each cluster's tG_min (raised by :func:`round_outcomes`), so at least
    that of the GLDs that remain. Where no slot is padded or inactive (``dense``), the masks
    are skipped: the same expressions, fewer of them."""
    k = batch.constants
    cd, v_max = batch.cycles, batch.gld["max_cpu_hz"]
    bm = batch.bld_mask
    dense = batch.dense and active is batch.gld_mask
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if dense:
            has = batch.n_gld > 0
            sic, y_min = batch.sic, batch.y_min_s
        else:
            has = active.any(1)
            # the remaining GLDs close up their NOMA order (SIC index among them)
            sic = np.cumsum(active, 1) - 1.0
            y_min = np.where(active, cd / v_max, 0.0).max(1, initial=0.0)  # (19)
        meets = y >= y_min  # every GLD meets y: v_i = eta iota D_i / y, eq. (17)
        v = cd / y[:, None]
        if not meets.all():  # too short for some: they run at V_max and finish later, (4)
            v = np.where(meets[:, None], v, np.minimum(v, v_max))
            t_loc = cd / v
            y_eff = np.where(meets, y, np.where(active, t_loc, 0.0).max(1, initial=0.0))
        else:
            t_loc, y_eff = None, y
        x = batch.x_scale / tg  # r ln 2
        p = batch.noise_over_gain * (np.expm1(x)[:, None] * np.exp(sic * x[:, None]))  # (7)
        if dense:
            cpu, p_up, q_eff = v, p, q
        else:
            cpu, p_up, q_eff = (
                np.where(active, v, 0.0),
                np.where(active, p, 0.0),
                np.where(active, q, 0.0),
            )
        if not has.all():
            y_eff, tg = np.where(has, y_eff, 0.0), np.where(has, tg, 0.0)
        e_loc = batch.k_cycles * cpu * cpu  # eq. (5)
        jam = (q_eff * batch.gld["gain_eavesdropper"]).sum(1)  # eq. (20)
        bd = batch.bld["data_bits"]
        eve = np.log2(1.0 + batch.bld_pe / (k["noise_eavesdropper_w"] + jam)[:, None])
        rate = k["bandwidth_hz"][:, None] * np.maximum(batch.bld_legit - eve, 0.0)  # (21)
        e_sync = batch.bld["power_w"] * bd / rate  # p_j D_j / R_j
        t_sync = bd / rate
        synced = rate > 0
        if not batch.dense:
            rate, e_sync = np.where(bm, rate, 0.0), np.where(bm, e_sync, 0.0)
            synced &= bm
        if battery is not None:
            short = synced & (e_sync > (1.0 + ENERGY_TOLERANCE) * battery)
            if enforce:
                synced = synced & ~short
        else:
            short = np.zeros(bm.shape, dtype=bool)
        if not synced.all():
            t_sync = np.where(synced, t_sync, 0.0)
    tb = t_sync.max(1, initial=0.0)  # eq. (23) over the BLDs that sync
    # jammers jam while the BLDs sync, and stop at the round deadline if there is one
    tb_jam = tb if deadline_s is None else np.minimum(tb, deadline_s)
    energy = e_loc + p_up * tg[:, None] + q_eff * tb_jam[:, None]  # (14a): (5), (8), (10)
    e_max = batch.gld["energy_budget_j"]
    excess = energy - e_max
    # an excess below ENERGY_TOLERANCE * E_max is rounding (e.g. of float32 actions), not a
    # violation: at the optimum the budget binds exactly
    over = excess > ENERGY_TOLERANCE * e_max
    excess = np.where(over if dense else active & over, excess, 0.0)
    has_b = batch.n_bld > 0
    tb_loc = batch.tb_loc_s.copy()  # 0 without BLDs
    t_gld = np.where(has, y_eff + tg, 0.0)  # eq. (12)
    t_bld = np.where(has_b, tb + tb_loc, 0.0)  # eq. (13)
    span = np.maximum(t_gld, t_bld)
    g_late = np.zeros(active.shape, dtype=bool)
    b_late = np.zeros(bm.shape, dtype=bool)
    if deadline_s is not None:
        late = span > deadline_s
        if late.any():
            finish = (
                np.where(meets[:, None], y[:, None], t_loc) if t_loc is not None else y[:, None]
            ) + tg[:, None]
            g_late = late[:, None] & active & (finish > deadline_s)
            b_late = late[:, None] & synced & (t_sync + tb_loc[:, None] > deadline_s)
            span = np.where(late, deadline_s, span)
    return {
        "latency_s": span + batch.fixed_s,
        "t_gld_s": t_gld,
        "t_bld_s": t_bld,
        "y_s": y_eff,
        "tg_s": tg,
        "tb_up_s": tb,
        "tb_loc_s": tb_loc,
        "jamming_w": jam,
        "cpu_hz": cpu,
        "upload_power_w": p_up,
        "jam_power_w": q_eff,
        "energy_j": energy,
        "energy_excess_j": excess,
        "gld_dropped": batch.gld_mask & ~active,
        "gld_straggler": g_late,
        "secrecy_rate_bps": rate,
        "bld_synced": synced,
        "bld_straggler": b_late,
        "bld_sync_energy_j": e_sync,
        "bld_energy_short": short,
    }


def round_outcome(
    a: ClusterRow,
    *,
    y_s: float,
    tg_s: float,
    jam_power_w: np.ndarray,
    deadline_s: float | None = None,
    bld_battery_j: np.ndarray | None = None,
    enforce_bld_energy: bool = False,
) -> RoundOutcome:
    """One cluster's round (a :class:`~dtfl_env.model.batch.ClusterRow`): the batch of one
    of :func:`round_outcomes`, whose rules it follows."""
    one = a.one()
    q = np.asarray(jam_power_w, dtype=float).reshape(1, -1)
    battery = (
        None if bld_battery_j is None else np.asarray(bld_battery_j, dtype=float).reshape(1, -1)
    )
    return round_outcomes(
        one,
        y_s=np.array([float(y_s)]),
        tg_s=np.array([float(tg_s)]),
        jam_power_w=q,
        deadline_s=deadline_s,
        bld_battery_j=battery,
        enforce_bld_energy=enforce_bld_energy,
    ).item(0)


def gld_dropouts(
    a: ClusterRow,
    *,
    y_s: float,
    tg_s: float,
    jam_power_w: np.ndarray,
    deadline_s: float | None = None,
    bld_battery_j: np.ndarray | None = None,
    enforce_bld_energy: bool = False,
) -> np.ndarray:
    """The GLDs that refuse an allocation (boolean mask): the one definition of a drop-out.

    A GLD drops out when its assignment (training, upload and jamming energy, (14a)) costs
    more than ``(1 + ENERGY_TOLERANCE)`` times its budget; the others are then charged
    without it (no training, upload or jamming of the dropped GLD), repeatedly, until every
    remaining GLD can pay. See :func:`round_outcomes`.
    """
    return round_outcome(
        a,
        y_s=y_s,
        tg_s=tg_s,
        jam_power_w=jam_power_w,
        deadline_s=deadline_s,
        bld_battery_j=bld_battery_j,
        enforce_bld_energy=enforce_bld_energy,
    ).gld_dropped
