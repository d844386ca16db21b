"""Environment configuration: defaults plus strict, validated overrides (HighwayEnv style).

``merge_config(default_config(), overrides)`` returns a new nested dict; an unknown or
misspelled key raises ``ValueError`` naming its dotted path (``reward.latncy``), and a value
of the wrong type or out of range names its path too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from dtfl_env.config import Constants
from dtfl_env.fl.config import FLConfig, default_fl_config
from dtfl_env.scenarios import RandomClusterConfig

__all__ = ["default_config", "merge_config", "validate_config"]

SCENARIOS = ("random", "table2")
LEDGER_MODES = ("none", "signature", "full")
ACTION_MODES = ("direct", "safe")
SAFE_JAMMING = ("interval", "sync")
SAFE_SCALES = ("ratio", "excess")
LATENCY_FORMS = ("linear", "log", "log_weighted")
VIOLATION_MEASURES = ("energy", "count")
LATENCY_BASELINES = ("fixed", "center", "optimum")
ATTACKS = ("random", "scaled", "tamper", "label_flip", "tampered_sync")
#: dtfl_env.ledger.VALIDATOR_ATTACKS and SELECTION_POLICIES (kept here so that validating a
#: config needs no cryptography import; tests/test_ledger.py checks that they agree)
VALIDATOR_ATTACKS = ("none", "accept_poisoned", "reject_honest", "both")
VALIDATOR_SELECTIONS = ("reputation", "random", "round_robin")
#: removed keys (dotted path) -> what to use instead; passing one is an error that says so
REMOVED_KEYS = {
    "cluster_in_info": "info holds numbers only; read the raw cluster from "
                       "env.unwrapped.cluster",
}


def default_config() -> dict[str, Any]:
    """The default configuration of ``DTFL-v0`` (each key documented in the env docstring)."""
    return {
        "scenario": "random",
        "clusters": 10,
        "rounds": 10,
        "max_devices": 16,
        "devices_per_cluster": [8, 12],
        "classification_threshold": 0.5,
        "new_topology_each_episode": True,
        "fading": True,
        "twin_deviation": 0.0,
        "round_deadline_s": None,
        "bld_energy": {"enforce": False, "table2_battery_j": 1.75},
        "action": {"mode": "direct", "tg_range": 1000.0, "y_range": 1000.0, "jamming": "interval",
                   "sync_range": 2.0, "scale": "ratio"},
        "observation": {"safe_bounds": False},
        "reward": {"latency": 1.0, "accuracy": 10.0, "violation": 5.0,
                   "latency_reference_s": 10.0, "latency_form": "linear",
                   "latency_baseline": "fixed", "latency_weight_max": 10.0,
                   "violation_measure": "energy"},
        "compute_optimal": False,
        "random": {},
        "constants": {},
        "fl": default_fl_config(),
        "ledger": {"enabled": True, "mode": "full", "malicious_clusters": 0,
                   "attack": "random", "store_payload": False, "validation_samples": 500,
                   "peer_baseline": True, "validator_selection": "reputation",
                   "validator_attack": "none"},
    }


def merge_config(base: Mapping[str, Any], overrides: Mapping[str, Any] | None,
                 path: str = "") -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``; unknown keys are errors.

    Keys whose default is an empty dict (``random``, ``constants``) are free-form here and
    validated by their own dataclasses.
    """
    out = copy.deepcopy(dict(base))
    if overrides is None:
        return out
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{path or 'config'}: expected a mapping, got {type(overrides).__name__}")
    for key, value in overrides.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in out and where in REMOVED_KEYS:
            raise ValueError(f"{where}: this config key was removed; {REMOVED_KEYS[where]}")
        if key not in out:
            raise ValueError(f"unknown config key: {where} (allowed: {', '.join(sorted(out))})")
        if isinstance(out[key], dict) and out[key]:
            out[key] = merge_config(out[key], value, where)
        elif isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
            out[key] = {**out[key], **dict(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def _int(cfg: Mapping[str, Any], key: str, lo: int, hi: int | None = None) -> None:
    v = cfg[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{key}: must be an integer {rng}, got {v!r}")


def _num(value: Any, where: str, *, lo: float = 0.0, strict: bool = True,
         allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: must be a finite number, got {value!r}")
    if value < lo or (strict and value == lo):
        raise ValueError(f"{where}: must be {'>' if strict else '>='} {lo}, got {value!r}")


def validate_config(cfg: Mapping[str, Any]) -> None:
    """Check types and ranges; errors name the dotted path of the field."""
    if cfg["scenario"] not in SCENARIOS:
        raise ValueError(f"scenario: must be one of {SCENARIOS}, got {cfg['scenario']!r}")
    _int(cfg, "clusters", 1)
    _int(cfg, "rounds", 1)
    _int(cfg, "max_devices", 1, 256)
    dpc = cfg["devices_per_cluster"]
    if (not isinstance(dpc, (list, tuple)) or len(dpc) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in dpc)
            or not 1 <= dpc[0] <= dpc[1]):
        raise ValueError(f"devices_per_cluster: must be [low, high] integers with "
                         f"1 <= low <= high, got {dpc!r}")
    if dpc[1] > cfg["max_devices"]:
        raise ValueError(f"devices_per_cluster: high ({dpc[1]}) exceeds max_devices "
                         f"({cfg['max_devices']})")
    _num(cfg["classification_threshold"], "classification_threshold", lo=-math.inf)
    for key in ("new_topology_each_episode", "fading", "compute_optimal"):
        if not isinstance(cfg[key], bool):
            raise ValueError(f"{key}: must be true or false, got {cfg[key]!r}")
    _num(cfg["twin_deviation"], "twin_deviation", strict=False)
    _num(cfg["round_deadline_s"], "round_deadline_s", allow_none=True)
    if not isinstance(cfg["bld_energy"]["enforce"], bool):
        raise ValueError(f"bld_energy.enforce: must be true or false, "
                         f"got {cfg['bld_energy']['enforce']!r}")
    _num(cfg["bld_energy"]["table2_battery_j"], "bld_energy.table2_battery_j")
    if cfg["action"]["mode"] not in ACTION_MODES:
        raise ValueError(f"action.mode: must be one of {ACTION_MODES}, "
                         f"got {cfg['action']['mode']!r}")
    for key in ("tg_range", "y_range", "sync_range"):
        _num(cfg["action"][key], f"action.{key}", lo=1.0)
    for key, allowed in (("jamming", SAFE_JAMMING), ("scale", SAFE_SCALES)):
        if cfg["action"][key] not in allowed:
            raise ValueError(f"action.{key}: must be one of {allowed}, "
                             f"got {cfg['action'][key]!r}")
    if not isinstance(cfg["observation"]["safe_bounds"], bool):
        raise ValueError(f"observation.safe_bounds: must be true or false, "
                         f"got {cfg['observation']['safe_bounds']!r}")
    for key in ("latency", "accuracy", "violation"):
        _num(cfg["reward"][key], f"reward.{key}", strict=False)
    _num(cfg["reward"]["latency_reference_s"], "reward.latency_reference_s")
    _num(cfg["reward"]["latency_weight_max"], "reward.latency_weight_max")
    for key, allowed in (("latency_form", LATENCY_FORMS),
                         ("latency_baseline", LATENCY_BASELINES),
                         ("violation_measure", VIOLATION_MEASURES)):
        if cfg["reward"][key] not in allowed:
            raise ValueError(f"reward.{key}: must be one of {allowed}, "
                             f"got {cfg['reward'][key]!r}")
    RandomClusterConfig.from_dict(cfg["random"], "random")
    Constants.from_dict(cfg["constants"], "constants")
    FLConfig.from_dict(cfg["fl"], "fl")
    led = cfg["ledger"]
    for key in ("enabled", "store_payload", "peer_baseline"):
        if not isinstance(led[key], bool):
            raise ValueError(f"ledger.{key}: must be true or false, got {led[key]!r}")
    if led["mode"] not in LEDGER_MODES:
        raise ValueError(f"ledger.mode: must be one of {LEDGER_MODES}, got {led['mode']!r}")
    if led["attack"] not in ATTACKS:
        raise ValueError(f"ledger.attack: must be one of {ATTACKS}, got {led['attack']!r}")
    for key, allowed in (("validator_selection", VALIDATOR_SELECTIONS),
                         ("validator_attack", VALIDATOR_ATTACKS)):
        if led[key] not in allowed:
            raise ValueError(f"ledger.{key}: must be one of {allowed}, got {led[key]!r}")
    mal = led["malicious_clusters"]
    if isinstance(mal, bool) or not isinstance(mal, int) or not 0 <= mal <= cfg["clusters"]:
        raise ValueError(f"ledger.malicious_clusters: must be an integer in [0, clusters], "
                         f"got {mal!r}")
    vs = led["validation_samples"]
    if isinstance(vs, bool) or not isinstance(vs, int) or vs < 1:
        raise ValueError(f"ledger.validation_samples: must be an integer >= 1, got {vs!r}")
    fl = cfg["fl"]
    if (fl.get("backend") == "torch" and led["enabled"] and led["mode"] == "full"
            and fl.get("validation_fraction") == 0):
        raise ValueError("fl.validation_fraction: must be > 0 with ledger.mode='full' (the "
                         "validators' quality check runs on the validation split)")
    if cfg["scenario"] == "table2" and cfg["max_devices"] < 10:
        raise ValueError("max_devices: the table2 scenario has 10 devices per cluster")
