"""The ``info`` of DTFL-v0: numbers and numeric arrays only, the same keys at every step.

Every value is a Python ``int``, ``float`` or ``bool``, a numpy number, or a numpy array of
a numeric or boolean dtype whose shape is fixed by the config, so that Gymnasium's vector
envs, TorchRL and RLlib can stack it; reset returns the same keys with defaults
(:func:`info_defaults`: NaN for floats not known yet, 0 for counts and flags, zero arrays
and all-False masks). The keys are listed in ``docs/INFO.md``:

- :func:`outcome_info`: the step's outcome in the observation's slot order (GLDs, then
  BLDs, then empty slots), per-device arrays of length ``max_devices``, for B clusters at
  once (the native vector env's rows; the single env takes row 0 with :func:`info_row`);
- :func:`reward_info`: one ``reward_<term>`` key per term of
  :data:`~dtfl_env.envs.reward.REWARD_TERMS` (:func:`reward_key`);
- :func:`ledger_info` (real training with the ledger): ``ledger_*`` keys, the block of the
  round a step closed (``ledger_round_closed`` = 1) and defaults on every other step.

:func:`outcome_record` keeps the outcome's per-GLD and per-BLD arrays for the renderer.
Non-numeric records (the validator's coordinator id, the block hash as hex) stay in
``env.unwrapped.learner.round_record``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from dtfl_env.envs.reward import REWARD_TERMS
from dtfl_env.model.round import BatchOutcome, RoundOutcome

__all__ = [
    "DEVICE_FLOATS",
    "DEVICE_MASKS",
    "LEDGER_HASH_BYTES",
    "has_ledger",
    "info_defaults",
    "info_row",
    "ledger_info",
    "outcome_info",
    "outcome_record",
    "reward_info",
    "reward_key",
]

#: the step's times (s) and aggregate jamming (W); NaN before the first step
OUTCOME_FLOATS = ("latency_s", "T", "T_GLD", "T_BLD", "y", "tG", "tB_up", "Q")
#: per-device quantities, float arrays of length ``max_devices`` (0 where they do not apply)
DEVICE_FLOATS = (
    "q_w",
    "cpu_hz",
    "energy_j",
    "energy_excess_j",
    "secrecy_rate_bps",
    "bld_sync_energy_j",
    "bld_battery_j",
)
#: per-device masks, boolean arrays of length ``max_devices``
DEVICE_MASKS = ("bld_energy_short", "participant", "dropped", "unsynced", "straggler")
#: the step's device counts
OUTCOME_COUNTS = (
    "n_gld",
    "n_bld",
    "n_dropouts",
    "n_unsynced",
    "n_stragglers",
    "n_bld_energy_short",
)
#: bytes of a block hash (SHA-256), ``ledger_block_hash``
LEDGER_HASH_BYTES = 32
#: the ledger record's per-cluster masks (``ledger_<name>``, length ``clusters``)
_LEDGER_MASKS = ("accepted_clusters", "rejected_clusters", "audit_overturned")
#: the ledger record's integer entries (``ledger_<name>``) and their defaults
_LEDGER_INTS = {
    "validator_cluster": -1,
    "validator_malicious": 0,
    "audit_failed": 0,
    "block_size_bytes": 0,
}


def reward_key(term: str) -> str:
    """The ``info`` key of a reward term (``latency`` -> ``reward_latency``)."""
    return f"reward_{term}"


def reward_info(terms: Mapping[str, float]) -> dict[str, float]:
    """The reward terms of a step as flat ``reward_<term>`` entries."""
    return {reward_key(name): float(value) for name, value in terms.items()}


def has_ledger(config: Mapping[str, Any]) -> bool:
    """Whether an env with ``config`` runs the ledger (real training and ``ledger.enabled``),
    so that its info has the ``ledger_*`` keys."""
    return config["fl"]["backend"] == "torch" and bool(config["ledger"]["enabled"])


def ledger_info(record: Mapping[str, Any] | None, clusters: int) -> dict[str, Any]:
    """The ``ledger_*`` entries: the numeric form of ``record`` (a
    :attr:`~dtfl_env.envs.learning.LearningRound.round_record`, the round a step closed), or
    the defaults where ``record`` is None. The block hash (hex) becomes
    ``LEDGER_HASH_BYTES`` bytes (zeros where no block was written, ledger mode ``"none"``);
    the validator's coordinator id is ``"gc-<ledger_validator_cluster>"``."""
    hash_bytes = np.zeros(LEDGER_HASH_BYTES, dtype=np.uint8)
    if record is None:
        return {
            "ledger_round_closed": 0,
            **{f"ledger_{k}": v for k, v in _LEDGER_INTS.items()},
            "ledger_block_hash": hash_bytes,
            **{f"ledger_{k}": np.zeros(clusters, dtype=bool) for k in _LEDGER_MASKS},
        }
    if record["block_hash"]:
        raw = bytes.fromhex(record["block_hash"])
        if len(raw) != LEDGER_HASH_BYTES:
            raise ValueError(f"block_hash: expected {LEDGER_HASH_BYTES} bytes, got {len(raw)}")
        hash_bytes[:] = np.frombuffer(raw, dtype=np.uint8)
    masks = {f"ledger_{k}": np.asarray(record[k], dtype=bool).copy() for k in _LEDGER_MASKS}
    if any(m.shape != (clusters,) for m in masks.values()):
        raise ValueError(f"round_record: the cluster masks must have length {clusters}")
    return {
        "ledger_round_closed": 1,
        **{f"ledger_{k}": int(record[k]) for k in _LEDGER_INTS},
        "ledger_block_hash": hash_bytes,
        **masks,
    }


def info_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``info`` at reset of an env with ``config`` (a validated env config): every key
    of a step's info, with the same types and shapes, set to its default (NaN for floats
    not known yet, 0 for counts and flags, zero arrays, all-False masks; progress at the
    start of an episode: round 0, cluster 0, accuracy and simulated time 0). The env then
    fills in what it knows at reset (the initial model's accuracy and loss)."""
    d = config["max_devices"]
    nan = math.nan
    info: dict[str, Any] = {
        **{reward_key(name): nan for name in REWARD_TERMS},
        "round": 0,
        "cluster_index": 0,
        **dict.fromkeys(OUTCOME_FLOATS, nan),
        **{k: np.zeros(d) for k in DEVICE_FLOATS},
        **{k: np.zeros(d, dtype=bool) for k in DEVICE_MASKS},
        **dict.fromkeys(OUTCOME_COUNTS, 0),
        "global_accuracy": 0.0,
        "sim_time_s": 0.0,
        "next_round": 0,
        "next_cluster_index": 0,
        "latency_baseline_s": nan,
        "action_clipped": 0,
    }
    if config["fl"]["backend"] == "torch":
        info["global_loss"] = nan
    if has_ledger(config):
        info.update(ledger_info(None, config["clusters"]))
    if config["compute_optimal"]:
        info["optimal_latency_s"] = info["optimality_gap"] = nan
    return info


def outcome_info(
    out: BatchOutcome, bld_battery_j: np.ndarray, max_devices: int
) -> dict[str, np.ndarray]:
    """The outcome entries of ``info`` for B charged clusters (one row each): per-device
    entries are arrays (B, ``max_devices``) in slot order, 0 where a quantity does not
    apply (GLD quantities in slots < n_gld, BLD ones in slots n_gld .. n_gld + n_bld - 1),
    masks instead of index lists; the others have shape (B,). ``bld_battery_j``: the BLDs'
    batteries, padded like ``out``'s BLD fields. :func:`info_row` takes one row (the single
    env's info)."""
    d = max_devices
    m, n = out.n_gld, out.n_bld
    b, wg = out.cpu_hz.shape
    breal = np.arange(out.bld_synced.shape[1]) < n[:, None]  # the real BLD entries
    rows, j = np.nonzero(breal)
    cols = m[rows] + j  # a BLD's slot follows the cluster's GLDs
    floats = np.zeros((len(DEVICE_FLOATS), b, d))  # rows in DEVICE_FLOATS order
    masks = np.zeros((len(DEVICE_MASKS), b, d), dtype=bool)  # rows in DEVICE_MASKS order
    # GLD slots (padded entries of an outcome are 0 / False: copied as they are)
    floats[:4, :, :wg] = (out.jam_power_w, out.cpu_hz, out.energy_j, out.energy_excess_j)
    g_gone = out.gld_dropped | out.gld_straggler
    masks[1:, :, :wg] = (
        (np.arange(wg) < m[:, None]) & ~g_gone,
        out.gld_dropped,
        np.zeros_like(g_gone),
        out.gld_straggler,
    )
    # BLD slots: rate, sync energy (where a sync can happen: a positive rate), battery
    rate = out.secrecy_rate_bps[breal]
    synced, b_late = out.bld_synced[breal], out.bld_straggler[breal]
    floats[4:, rows, cols] = (
        rate,
        np.where(rate > 0, out.bld_sync_energy_j[breal], 0.0),
        np.asarray(bld_battery_j)[breal],
    )
    masks[:, rows, cols] = (
        out.bld_energy_short[breal],
        synced & ~b_late,
        np.zeros_like(synced),
        ~synced,
        b_late,
    )
    counts = np.count_nonzero(masks, axis=2)
    info: dict[str, np.ndarray] = {
        "latency_s": out.latency_s,
        "T": out.latency_s.copy(),
        "T_GLD": out.t_gld_s,
        "T_BLD": out.t_bld_s,
        "y": out.y_s,
        "tG": out.tg_s,
        "tB_up": out.tb_up_s,
        "Q": out.jamming_w,
        "n_gld": m,
        "n_bld": n,
        # the masks' counts in one pass: short, participant, dropped, unsynced, straggler
        **dict(
            zip(
                ("n_bld_energy_short", "n_dropouts", "n_unsynced", "n_stragglers"),
                counts[[0, 2, 3, 4]],
                strict=True,
            )
        ),
    }
    info.update(zip(DEVICE_FLOATS, floats, strict=True))
    info.update(zip(DEVICE_MASKS, masks, strict=True))
    return info


def info_row(info: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """Row ``i`` of a batched info: (B,) entries as Python numbers, the others as arrays."""
    return {k: (v[i].item() if v.ndim == 1 else v[i]) for k, v in info.items()}


def outcome_record(out: RoundOutcome) -> dict[str, Any]:
    """The outcome in device order: per-GLD and per-BLD arrays, index lists of the GLDs
    that dropped out, the unsynced BLDs and the stragglers."""
    fnz = np.flatnonzero
    return {
        "latency_s": out.latency_s,
        "T_GLD": out.t_gld_s,
        "T_BLD": out.t_bld_s,
        "y": out.y_s,
        "tG": out.tg_s,
        "tB_up": out.tb_up_s,
        "Q": out.jamming_w,
        "q": out.jam_power_w,
        "cpu_hz": out.cpu_hz,
        "energy_j": out.energy_j,
        "energy_excess_j": out.energy_excess_j,
        "secrecy_rate_bps": out.secrecy_rate_bps,
        "dropouts": fnz(out.gld_dropped),
        "unsynced_blds": fnz(~out.bld_synced),
        "stragglers": {"gld": fnz(out.gld_straggler), "bld": fnz(out.bld_straggler)},
    }
