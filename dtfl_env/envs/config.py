"""Environment configuration: typed, validated settings behind a plain-dict API (HighwayEnv
style: defaults plus strict overrides).

Users pass plain dicts (``gym.make("DTFL-v0", config={...})``, ``reset(options={"config":
...})``); ``merge_config(default_config(), overrides)`` returns a new nested dict in which an
unknown or misspelled key raises ``ValueError`` naming its dotted path (``reward.latncy``).
:func:`validate_config` reads that dict into :class:`EnvConfig`, frozen dataclasses (one per
block: :class:`ActionConfig`, :class:`ObservationConfig`, :class:`RewardConfig`,
:class:`LedgerConfig`, :class:`BLDEnergyConfig`, and :class:`~dtfl_env.fl.config.FLConfig`,
:class:`~dtfl_env.scenarios.RandomClusterConfig`, :class:`~dtfl_env.config.Constants`)
validated the one shared way of :mod:`dtfl_env.settings`: a value of the wrong type or out of
range names its path and what is allowed. The environment's roles are built from these.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dtfl_env.config import Constants
from dtfl_env.fl.config import FLConfig, model_size_bits
from dtfl_env.instances import InstanceSet, load_instances
from dtfl_env.scenarios import RandomClusterConfig
from dtfl_env.settings import Settings, block, check_keys, choice, flag, integer, number, setting

__all__ = [
    "ActionConfig",
    "BLDEnergyConfig",
    "EnvConfig",
    "LedgerConfig",
    "ObservationConfig",
    "RewardConfig",
    "default_config",
    "merge_config",
    "validate_config",
]

# the allowed values of the config's choices (the roles' registries are checked against them:
# tests/test_env_roles.py)
#: the scenarios (dtfl_env.envs.sites.SCENARIOS); ``scenario`` names one of NAMED_SCENARIOS
#: as a string, or a scenario with parameters as a mapping: ``{"instances": ...}``
SCENARIOS = ("random", "table2", "instances")
NAMED_SCENARIOS = ("random", "table2")
LEDGER_MODES = ("none", "signature", "full")
ACTION_MODES = ("direct", "safe")
SAFE_JAMMING = ("interval", "sync")
SAFE_SCALES = ("ratio", "excess")
LATENCY_FORMS = ("linear", "log", "log_weighted")
VIOLATION_MEASURES = ("energy", "count")
LATENCY_BASELINES = ("fixed", "center", "optimum")
ATTACKS = ("random", "scaled", "tamper", "label_flip", "tampered_sync")
#: dtfl_env.ledger.VALIDATOR_ATTACKS and SELECTION_POLICIES (kept here so that validating a
#: config needs no cryptography import; tests/test_env_fl.py checks that they agree)
VALIDATOR_ATTACKS = ("none", "accept_poisoned", "reject_honest", "both")
VALIDATOR_SELECTIONS = ("reputation", "random", "round_robin")
#: removed keys (dotted path) -> what to use instead; passing one is an error that says so
REMOVED_KEYS = {
    "cluster_in_info": "info holds numbers only; read the raw cluster from env.unwrapped.cluster",
}
#: keys whose value an override replaces whole instead of merging into it (a string or a
#: mapping)
WHOLE_KEYS = ("scenario",)


@dataclass(frozen=True)
class BLDEnergyConfig(Settings):
    """The BLDs' sync energy against their batteries (``bld_energy``)."""

    section = "bld_energy"

    enforce: bool = flag(False)
    """A BLD whose battery cannot pay its sync energy p_j D_j / R_j does not sync (off:
    reported only; problem P has no BLD energy constraint)."""
    table2_battery_j: float = number(1.75, gt=0)
    """The battery of every BLD of the ``table2`` scenario and of instance files, which
    hold no batteries (J)."""


@dataclass(frozen=True)
class ActionConfig(Settings):
    """The action's mode and ranges (``action``; docs/ENVIRONMENT.md, Action Space)."""

    section = "action"

    mode: str = choice("direct", ACTION_MODES)
    """``"direct"``: tG, y and one jamming power per GLD slot; ``"safe"``: three values
    parametrising the feasible set of problem P."""
    tg_range: float = number(1000.0, gt=1)
    """tG spans [base, tg_range * base] on a log scale."""
    y_range: float = number(1000.0, gt=1)
    """y spans [base, y_range * base] on a log scale."""
    jamming: str = choice("interval", SAFE_JAMMING)
    """Safe mode: a[2] sets the aggregate jamming within its affordable ``"interval"``, or
    the least jamming that syncs the BLDs within rho (y + tG) (``"sync"``)."""
    sync_range: float = number(2.0, gt=1)
    """Safe mode, ``jamming="sync"``: rho = sync_range ** a[2]."""
    scale: str = choice("ratio", SAFE_SCALES)
    """Safe mode: tG and y as ratios to their bounds, or their ``"excess"`` over them."""


@dataclass(frozen=True)
class ObservationConfig(Settings):
    """Optional observation features (``observation``)."""

    section = "observation"

    safe_bounds: bool = flag(False)
    """Append ``BOUND_FEATURES``: the safe box's lower bounds (log10 seconds)."""


@dataclass(frozen=True)
class RewardConfig(Settings):
    """The reward terms' weights and forms (``reward``; docs/ENVIRONMENT.md, Rewards).
    A term's weight is the field of the term's name (:data:`~dtfl_env.envs.reward.REWARD_TERMS`)."""

    section = "reward"

    latency: float = number(1.0, ge=0)
    """w_latency."""
    accuracy: float = number(10.0, ge=0)
    """w_accuracy, times the global accuracy gain of a round."""
    violation: float = number(5.0, ge=0)
    """w_violation, times the energy excess (or drop-out share) plus the unsynced BLD share."""
    latency_reference_s: float = number(10.0, gt=0)
    """The latency term's constant reference (s)."""
    latency_form: str = choice("linear", LATENCY_FORMS)
    """T relative to the reference: as is, its log, or its log weighted by the reference."""
    latency_baseline: str = choice("fixed", LATENCY_BASELINES)
    """The reference: ``latency_reference_s``, the action box centre's latency on the same
    cluster, or the exact optimum T*."""
    latency_weight_max: float = number(10.0, gt=0)
    """``"log_weighted"``: the cap of a cluster's weight."""
    violation_measure: str = choice("energy", VIOLATION_MEASURES)
    """The GLDs' summed relative energy ``"energy"`` excess, or their drop-out share."""


@dataclass(frozen=True)
class LedgerConfig(Settings):
    """The consortium ledger and the malicious coordinators (``ledger``; docs/ENVIRONMENT.md,
    Learning and ledger)."""

    section = "ledger"

    enabled: bool = flag(True)
    """Verify the cluster models on the ledger (real training only)."""
    mode: str = choice("full", LEDGER_MODES)
    """The validators' checks: ``"full"`` (signatures, provenance, quality, norms),
    ``"signature"`` only, or ``"none"``."""
    malicious_clusters: int = integer(0, ge=0)
    """How many coordinators (clusters 0, 1, ...) attack; at most ``clusters``."""
    attack: str = choice("random", ATTACKS)
    """What the malicious coordinators do (:data:`dtfl_env.envs.learning.ATTACKS`)."""
    store_payload: bool = flag(False)
    """Keep the model parameters in the blocks."""
    validation_samples: int = integer(500, ge=1)
    """Images of the validation split the quality check scores a model on."""
    peer_baseline: bool = flag(True)
    """The quality check compares with the round's median model too."""
    validator_selection: str = choice("reputation", VALIDATOR_SELECTIONS)
    """How each round's validator is chosen (``"reputation"``: eq. (2))."""
    validator_attack: str = choice("none", VALIDATOR_ATTACKS)
    """How a malicious coordinator chosen as validator verifies."""


def _scenario(value: Any, where: str) -> str | InstanceSet:
    """A scenario's name (``"random"``, ``"table2"``) or ``{"instances": [FILE, ...] or
    "DIR"}``, read into an :class:`~dtfl_env.instances.InstanceSet`."""
    if isinstance(value, InstanceSet) or (isinstance(value, str) and value in NAMED_SCENARIOS):
        return value
    if isinstance(value, Mapping):
        check_keys(value, {"instances"}, where)
        if "instances" not in value:
            raise ValueError(f"{where}: a mapping needs the key 'instances' (files or a directory)")
        return load_instances(value["instances"], f"{where}.instances")
    raise ValueError(
        f"{where}: must be one of {list(NAMED_SCENARIOS)} or "
        f"{{'instances': [files] or 'directory'}}, got {value!r}"
    )


def _device_range(value: Any, where: str) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in value)
        or not 1 <= value[0] <= value[1]
    ):
        raise ValueError(
            f"{where}: must be [low, high] integers with 1 <= low <= high, got {value!r}"
        )
    return (value[0], value[1])


@dataclass(frozen=True)
class EnvConfig(Settings):
    """The whole configuration of ``DTFL-v0``, typed (its plain-dict form:
    :func:`default_config`; docs/ENVIRONMENT.md describes the environment it sets up).

    Read from a mapping by :meth:`from_dict` (as the environment does); there, with instance
    files (``scenario = {"instances": ...}``), ``constants`` are the ones the files share,
    the config's ``constants`` applying over them, and with real training
    (``fl.backend = "torch"``) ``constants.model_bits`` left out (of the config and every
    instance file) is the trained model's size.
    """

    scenario: str | InstanceSet = setting("random", _scenario)
    """``"random"``: drawn clusters; ``"table2"``: Table II's cluster every time;
    ``{"instances": [FILE, ...] or "DIR"}``: clusters of instance files (the JSON of ``dtfl
    solve --instance``; DIR: its ``*.json`` files by name), each topology dealing
    ``clusters`` of them from the env's generator, a fresh permutation of all whenever it
    runs out; their constants are the env's, the config's ``constants`` applying over
    them."""
    clusters: int = integer(10, ge=1)
    """S, clusters per round (a step handles one)."""
    rounds: int = integer(10, ge=1)
    """R, global FL rounds per episode."""
    max_devices: int = integer(16, ge=1, le=256)
    """Device slots of the observation and the direct action."""
    devices_per_cluster: tuple[int, int] = setting((8, 12), _device_range)
    """``"random"``: [low, high] of the uniform device count of a cluster."""
    classification_threshold: float = number(0.5)
    """The eq. (3) score above which a device is a GLD."""
    new_topology_each_episode: bool = flag(True)
    """Draw new cluster sites at every reset (else only when seeded)."""
    fading: bool = flag(True)
    """Fresh Rayleigh fading every round."""
    twin_deviation: float = number(0.0, ge=0)
    """Relative deviation of the digital twins' estimates of the BLDs."""
    round_deadline_s: float | None = number(None, gt=0, optional=True)
    """Devices that finish later are stragglers; ``None``: no deadline."""
    bld_energy: BLDEnergyConfig = block(BLDEnergyConfig)
    action: ActionConfig = block(ActionConfig)
    observation: ObservationConfig = block(ObservationConfig)
    reward: RewardConfig = block(RewardConfig)
    compute_optimal: bool = flag(False)
    """Solve every step's cluster exactly (``info["optimal_latency_s"]``)."""
    random: RandomClusterConfig = block(RandomClusterConfig)
    constants: Constants = block(Constants)
    fl: FLConfig = block(FLConfig)
    ledger: LedgerConfig = block(LedgerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        high = self.devices_per_cluster[1]
        if high > self.max_devices:
            raise ValueError(
                f"devices_per_cluster: high ({high}) exceeds max_devices ({self.max_devices})"
            )
        mal = self.ledger.malicious_clusters
        if mal > self.clusters:
            raise ValueError(
                f"ledger.malicious_clusters: must be an integer in [0, clusters], got {mal!r}"
            )
        if (
            self.fl.backend == "torch"
            and self.ledger.enabled
            and self.ledger.mode == "full"
            and self.fl.validation_fraction == 0
        ):
            raise ValueError(
                "fl.validation_fraction: must be > 0 with ledger.mode='full' (the "
                "validators' quality check runs on the validation split)"
            )
        if self.scenario == "table2" and self.max_devices < 10:
            raise ValueError("max_devices: the table2 scenario has 10 devices per cluster")
        if isinstance(self.scenario, InstanceSet):
            i, k = self.scenario.largest()
            if k > self.max_devices:
                raise ValueError(
                    f"max_devices: {self.scenario.label(i)} has {k} devices, more than "
                    f"max_devices ({self.max_devices})"
                )

    @property
    def scenario_name(self) -> str:
        """The scenario's name in the registry (:data:`SCENARIOS`)."""
        return self.scenario if isinstance(self.scenario, str) else self.scenario.name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str | None = None) -> EnvConfig:
        cfg = super().from_dict(data, path)
        own = (data or {}).get("constants", {})
        model_bits_set = "model_bits" in own
        if isinstance(cfg.scenario, InstanceSet):
            # the instances' constants, with the config's overrides over them
            cfg = dataclasses.replace(cfg, constants=cfg.scenario.shared_constants(own))
            model_bits_set = model_bits_set or cfg.scenario.sets_constant("model_bits")
        if cfg.fl.backend == "torch" and not model_bits_set:
            # L: the serialised size of the model that is trained (CNN: 0.70 Mbit); set
            # constants.model_bits to override (Table II's analysis uses 2 Mbit)
            cfg = dataclasses.replace(
                cfg, constants=cfg.constants.replace(model_bits=model_size_bits(cfg.fl.model))
            )
        return cfg


def default_config() -> dict[str, Any]:
    """The default configuration of ``DTFL-v0`` as a plain dict (each key documented in
    :class:`EnvConfig` and its blocks); ``random`` and ``constants`` hold overrides of their
    dataclasses' defaults (empty by default)."""
    return {**EnvConfig().to_dict(), "random": {}, "constants": {}}


def merge_config(
    base: Mapping[str, Any], overrides: Mapping[str, Any] | None, path: str = ""
) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``base``; unknown keys are errors.

    Keys whose default is an empty dict (``random``, ``constants``) are free-form here and
    validated by their own dataclasses; ``scenario`` (:data:`WHOLE_KEYS`) is replaced whole.
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
        if where in WHOLE_KEYS:
            out[key] = copy.deepcopy(value)
        elif isinstance(out[key], dict) and out[key]:
            out[key] = merge_config(out[key], value, where)
        elif isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: expected a mapping, got {type(value).__name__}")
            out[key] = {**out[key], **dict(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_config(cfg: Mapping[str, Any]) -> EnvConfig:
    """``cfg`` (a full config, e.g. of :func:`merge_config`) as typed settings; a wrong
    type or a value out of range raises ``ValueError`` naming its dotted path."""
    return EnvConfig.from_dict(cfg)
