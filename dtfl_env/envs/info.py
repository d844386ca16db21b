"""The outcome of a step as ``info`` reports it: per-device arrays in slot order.

:func:`outcome_info` lays a :class:`~dtfl_env.model.round.RoundOutcome` out in the
observation's slot order (GLDs, then BLDs, then empty slots) with arrays of length
``max_devices``, so that vector environments can stack them; :func:`outcome_record` keeps
the per-GLD and per-BLD arrays of the outcome (for the renderer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dtfl_env.envs.sites import Site
from dtfl_env.model.round import RoundOutcome

__all__ = ["outcome_info", "outcome_record"]


def outcome_info(site: Site, out: RoundOutcome, max_devices: int) -> dict[str, Any]:
    """The step's outcome entries of ``info``. Per-device entries are arrays of length
    ``max_devices`` in slot order: 0 where a quantity does not apply (GLD quantities in
    slots < n_gld, BLD ones in slots n_gld .. n_gld + n_bld - 1), masks instead of index
    lists."""
    d, m, n = max_devices, site.m, site.n
    # one block per dtype, a row per entry (fewer allocations on the step's hot path)
    q, cpu, energy, excess, rate, e_sync, battery = np.zeros((7, d))
    short, dropped, unsynced, late, part = np.zeros((5, d), dtype=bool)
    q[:m], cpu[:m], energy[:m], excess[:m] = (out.jam_power_w, out.cpu_hz, out.energy_j,
                                              out.energy_excess_j)
    rate[m:m + n] = out.secrecy_rate_bps
    rate_ok = out.secrecy_rate_bps > 0  # a sync that can happen (at this jamming)
    e_sync[m:m + n] = np.where(rate_ok, out.bld_sync_energy_j, 0.0)
    battery[m:m + n] = site.bld_battery_j
    short[m:m + n] = out.bld_energy_short
    dropped[:m] = out.gld_dropped
    unsynced[m:m + n] = ~out.bld_synced
    late[:m] = out.gld_straggler
    late[m:m + n] = out.bld_straggler
    part[:m] = ~(out.gld_dropped | out.gld_straggler)
    part[m:m + n] = out.bld_synced & ~out.bld_straggler

    def cnt(mask: np.ndarray) -> int:  # True entries of one of the outcome's boolean masks
        return int(np.count_nonzero(mask))

    return {
        "latency_s": out.latency_s,
        "T": out.latency_s, "T_GLD": out.t_gld_s, "T_BLD": out.t_bld_s,
        "y": out.y_s, "tG": out.tg_s, "tB_up": out.tb_up_s, "Q": out.jamming_w,
        "q_w": q, "cpu_hz": cpu, "energy_j": energy, "energy_excess_j": excess,
        "secrecy_rate_bps": rate,
        "bld_sync_energy_j": e_sync, "bld_battery_j": battery, "bld_energy_short": short,
        "n_bld_energy_short": cnt(out.bld_energy_short),
        "participant": part, "dropped": dropped, "unsynced": unsynced, "straggler": late,
        "n_gld": m, "n_bld": n,
        "n_dropouts": cnt(out.gld_dropped),
        "n_unsynced": n - cnt(out.bld_synced),
        "n_stragglers": cnt(out.gld_straggler) + cnt(out.bld_straggler),
    }


def outcome_record(out: RoundOutcome) -> dict[str, Any]:
    """The outcome in device order: per-GLD and per-BLD arrays, index lists of the GLDs
    that dropped out, the unsynced BLDs and the stragglers."""
    fnz = np.flatnonzero
    return {
        "latency_s": out.latency_s, "T_GLD": out.t_gld_s, "T_BLD": out.t_bld_s,
        "y": out.y_s, "tG": out.tg_s, "tB_up": out.tb_up_s, "Q": out.jamming_w,
        "q": out.jam_power_w, "cpu_hz": out.cpu_hz, "energy_j": out.energy_j,
        "energy_excess_j": out.energy_excess_j, "secrecy_rate_bps": out.secrecy_rate_bps,
        "dropouts": fnz(out.gld_dropped), "unsynced_blds": fnz(~out.bld_synced),
        "stragglers": {"gld": fnz(out.gld_straggler), "bld": fnz(out.bld_straggler)},
    }
