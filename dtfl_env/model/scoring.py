"""Device classification (eq. (3)) and coordinator reputation (eq. (2)), as pure functions.

Every capability sub-score is a number in [0, 1] (1 = best); raw attributes are mapped to
sub-scores by :func:`device_capabilities` with documented reference scales, so the weights
of eq. (3) and eq. (2) are comparable and the threshold of eq. (3) lives in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

__all__ = [
    "DeviceAttributes",
    "ReputationWeights",
    "ResourceWeights",
    "classify_devices",
    "device_capabilities",
    "reputation_score",
    "resource_score",
]


def _check_weights(obj: object, prefix: str) -> None:
    total = 0.0
    for f in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{prefix}.{f.name}: must be a finite number >= 0, got {v!r}")
        total += v
    if total <= 0:
        raise ValueError(f"{prefix}: at least one weight must be > 0")


@dataclass(frozen=True)
class ResourceWeights:
    """omega_Proc, omega_Store, omega_Com, omega_Pow of eq. (3) (defaults: equal)."""

    processing: float = 0.25
    storage: float = 0.25
    communication: float = 0.25
    power: float = 0.25

    def __post_init__(self) -> None:
        _check_weights(self, "resource_weights")


@dataclass(frozen=True)
class ReputationWeights:
    """omega_Enc, omega_Rou, omega_Prop, omega_Hist of eq. (2) (defaults: equal)."""

    encryption: float = 0.25
    routing: float = 0.25
    proportion: float = 0.25
    history: float = 0.25

    def __post_init__(self) -> None:
        _check_weights(self, "reputation_weights")


def _unit_array(x: np.ndarray | float, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: must be finite")
    if np.any((a < 0) | (a > 1)):
        raise ValueError(f"{name}: sub-scores must lie in [0, 1]")
    return a


def resource_score(
    processing: np.ndarray,
    storage: np.ndarray,
    communication: np.ndarray,
    power: np.ndarray,
    weights: ResourceWeights | None = None,
) -> np.ndarray:
    """Score_LDk = w_Proc Cap^Proc + w_Store Cap^Store + w_Com Cap^Com + w_Pow E, eq. (3).

    Each argument is an array of sub-scores in [0, 1]; the result is normalised by the sum of
    the weights, so it also lies in [0, 1].
    """
    w = weights or ResourceWeights()
    parts = [
        _unit_array(v, n)
        for v, n in (
            (processing, "processing"),
            (storage, "storage"),
            (communication, "communication"),
            (power, "power"),
        )
    ]
    total = w.processing + w.storage + w.communication + w.power
    return (
        w.processing * parts[0]
        + w.storage * parts[1]
        + w.communication * parts[2]
        + w.power * parts[3]
    ) / total  # eq. (3)


def classify_devices(scores: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Split local devices by eq. (3): ``score <= threshold`` -> BLD (needs a twin), else GLD.

    Returns ``(gld_index, bld_index)``, each sorted ascending.
    """
    s = np.asarray(scores, dtype=float)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: must be finite")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold: must be finite, got {threshold}")
    bld = s <= threshold
    return np.flatnonzero(~bld), np.flatnonzero(bld)


@dataclass(frozen=True)
class DeviceAttributes:
    """Raw attributes of local devices for the eq. (3) score (arrays, one entry per device)."""

    cpu_hz: np.ndarray
    cycles_per_bit: np.ndarray
    storage_bits: np.ndarray
    range_m: np.ndarray
    bandwidth_hz: np.ndarray
    battery_j: np.ndarray
    tx_power_w: np.ndarray


def device_capabilities(
    attrs: DeviceAttributes,
    *,
    ref_bits_per_s: float = 1e8,
    ref_storage_bits: float = 8e9,
    ref_range_m: float = 500.0,
    ref_bandwidth_hz: float = 1e6,
    ref_battery_j: float = 5.0,
    ref_tx_power_w: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map raw attributes to the four sub-scores of eq. (3), each ``min(1, value/reference)``.

    - processing: training throughput v / iota in bit/s against ``ref_bits_per_s``
      (CPU power and cycles per bit, as the paper defines Cap^Proc);
    - storage: storage in bits against ``ref_storage_bits`` (1 GB);
    - communication: the mean of range and bandwidth sub-scores;
    - power: the mean of residual battery and transmit power sub-scores.
    """

    def unit(x: np.ndarray, ref: float) -> np.ndarray:
        return np.clip(np.asarray(x, dtype=float) / ref, 0.0, 1.0)

    proc = unit(np.asarray(attrs.cpu_hz) / np.asarray(attrs.cycles_per_bit), ref_bits_per_s)
    store = unit(attrs.storage_bits, ref_storage_bits)
    com = 0.5 * (unit(attrs.range_m, ref_range_m) + unit(attrs.bandwidth_hz, ref_bandwidth_hz))
    powr = 0.5 * (unit(attrs.battery_j, ref_battery_j) + unit(attrs.tx_power_w, ref_tx_power_w))
    return proc, store, com, powr


def reputation_score(
    encryption: np.ndarray,
    routing: np.ndarray,
    twin_proportion: np.ndarray,
    history: np.ndarray,
    weights: ReputationWeights | None = None,
) -> np.ndarray:
    """Score_Cs^Rep of eq. (2) for each group coordinator, normalised to [0, 1].

    ``encryption``, ``routing`` and ``history`` are sub-scores in [0, 1] (higher is better);
    ``twin_proportion`` is Prop_Cs, the share of the coordinator's devices that need a twin.
    The paper says *fewer* twins earn a higher score, so the term enters as 1 - Prop.
    """
    w = weights or ReputationWeights()
    enc = _unit_array(encryption, "encryption")
    rou = _unit_array(routing, "routing")
    prop = _unit_array(twin_proportion, "twin_proportion")
    hist = _unit_array(history, "history")
    total = w.encryption + w.routing + w.proportion + w.history
    return (
        w.encryption * enc + w.routing * rou + w.proportion * (1.0 - prop) + w.history * hist
    ) / total  # eq. (2)
