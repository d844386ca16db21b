"""Configuration of one cluster: physical constants and per-device parameters.

Everything here is a frozen dataclass validated in ``__post_init__``; a bad value raises
``ValueError`` naming the offending field by its dotted path (``gld.max_power_w[2]``).
Units are SI throughout and appear in the field names (``_w``, ``_hz``, ``_j``, ``_s``).

The defaults of :class:`Constants` are the ones fixed in ``docs/MODEL.md`` (the paper
omits them); each field documents its unit and why the default was chosen.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from dtfl_env.settings import check_keys

__all__ = ["BLDParams", "Cluster", "Constants", "GLDParams", "check_keys"]


def _positive_scalar(value: Any, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    return v


def _positive_array(value: Any, name: str, *, allow_zero: bool = False) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a list of numbers ({exc})") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D list, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}]: must be finite, got {arr[i]}")
    bad = arr < 0 if allow_zero else arr <= 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}]: must be {'>= 0' if allow_zero else '> 0'}, got {arr[i]}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Constants:
    """Physical constants shared by all devices of a cluster (docs/MODEL.md defaults)."""

    local_iterations: float = 1.0
    """eta, local training iterations per round (-). Only eta*iota enters the latency."""
    cycles_per_bit: float = 20.0
    """iota, CPU cycles to process one bit (cycles/bit); 10-40 is usual."""
    switched_capacitance: float = 1e-27
    """kappa, effective switched capacitance (J s^2/cycle^3); makes energy bind at Table II."""
    bandwidth_hz: float = 1e6
    """W, bandwidth of both the GLD NOMA uplink and the BLD sync links (Hz)."""
    noise_coordinator_w: float = 1e-9
    """n_C, noise plus interference at the group coordinator (W)."""
    noise_bld_w: float = 1e-9
    """n_j, noise at the coordinator on the BLD links (W). At 1e-13 jamming is free."""
    noise_eavesdropper_w: float = 1e-9
    """n_E, noise at the eavesdropper (W)."""
    model_bits: float = 2e6
    """L, size of a local model (bits); Fig. 4 sweeps 1-4 Mbit."""
    coordinator_cpu_hz: float = 1e10
    """v_c, CPU rate of the group coordinator for twin training (Hz)."""
    aggregation_s: float = 0.05
    """T_C^agg, FedAvg at the group coordinator (s); a constant offset."""
    coordinator_upload_s: float = 0.05
    """T_C^up, upload of the cluster model to the validator (s); a constant offset."""
    main_coordinator_s: float = 0.1
    """T^MC, global aggregation and block creation at the main coordinator (s)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(
                self,
                f.name,
                _positive_scalar(
                    getattr(self, f.name), f"constants.{f.name}", allow_zero=f.name.endswith("_s")
                ),
            )

    @property
    def cycles_per_round_bit(self) -> float:
        """eta * iota: CPU cycles per bit of local data per round."""
        return self.local_iterations * self.cycles_per_bit

    @property
    def fixed_latency_s(self) -> float:
        """T_C^agg + T_C^up + T^MC of eq. (11)."""
        return self.aggregation_s + self.coordinator_upload_s + self.main_coordinator_s

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "constants") -> Constants:
        check_keys(data, {f.name for f in fields(cls)}, path)
        return cls(**dict(data))

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> Constants:
        check_keys(changes, {f.name for f in fields(self)}, "constants")
        return dataclasses.replace(self, **changes)


class _DeviceArrays:
    """Shared validation for the per-device parameter groups."""

    _prefix = ""

    def __post_init__(self) -> None:
        n = None
        first = ""
        for f in fields(self):  # type: ignore[arg-type]
            arr = _positive_array(getattr(self, f.name), f"{self._prefix}.{f.name}")
            if n is None:
                n, first = arr.size, f.name
            elif arr.size != n:
                raise ValueError(
                    f"{self._prefix}.{f.name}: has {arr.size} entries but "
                    f"{self._prefix}.{first} has {n}; every {self._prefix} list needs one entry "
                    "per device"
                )
            object.__setattr__(self, f.name, arr)

    def __len__(self) -> int:
        return int(getattr(self, fields(self)[0].name).size)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)
        )  # type: ignore[arg-type]

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str | None = None):  # type: ignore[no-untyped-def]
        path = path or cls._prefix
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        check_keys(data, names, path)
        missing = sorted(names - set(data))
        if missing:
            raise ValueError(f"missing key(s): {', '.join(f'{path}.{k}' for k in missing)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, list[float]]:
        return {f.name: getattr(self, f.name).tolist() for f in fields(self)}  # type: ignore[arg-type]

    def subset(self, index: np.ndarray):  # type: ignore[no-untyped-def]
        """A new group holding only the devices at ``index`` (in that order)."""
        return type(self)(**{f.name: getattr(self, f.name)[index] for f in fields(self)})  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class GLDParams(_DeviceArrays):
    """Per-GLD parameters (capable devices: train locally, upload by NOMA, jam).

    The GLD order is the NOMA index order i = 1..M: the coordinator decodes I..1, so GLD i
    sees the interference of GLDs 1..i-1 and its power carries the factor 2^((i-1) r).
    """

    _prefix = "gld"
    data_bits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """D_iG, local training data (bits)."""
    gain_coordinator: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """g_iC, channel power gain GLD -> group coordinator (-)."""
    gain_eavesdropper: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """g_iE, channel power gain GLD -> eavesdropper (-), for the jamming term of eq. (20)."""
    max_power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """P_i^max, maximum upload power (W), (14c)."""
    max_jam_power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Q_i^max, maximum jamming power (W), (14d)."""
    max_cpu_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """V_i^max, maximum CPU rate (Hz), (14b)."""
    energy_budget_j: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """E_i^max, energy budget per round (J), (14a)."""


@dataclass(frozen=True, eq=False)
class BLDParams(_DeviceArrays):
    """Per-BLD parameters (resource-poor devices whose digital twin trains at the coordinator)."""

    _prefix = "bld"
    data_bits: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """D_jB, data synced to the twin and trained on at the coordinator (bits)."""
    gain_coordinator: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """h_jC, channel power gain BLD -> group coordinator (-)."""
    gain_eavesdropper: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """h_jE, channel power gain BLD -> eavesdropper (-)."""
    power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """p_j^B, fixed sync transmit power (W)."""


@dataclass(frozen=True, eq=False)
class Cluster:
    """One cluster instance of problem P: its GLDs, BLDs and constants.

    The JSON form (``to_dict``/``from_dict``, also the CLI's instance file) is
    ``{"gld": {...lists...}, "bld": {...lists...}, "constants": {...}}`` with ``constants``
    optional key by key.
    """

    gld: GLDParams
    bld: BLDParams
    constants: Constants = field(default_factory=Constants)

    def __post_init__(self) -> None:
        if not isinstance(self.gld, GLDParams):
            raise ValueError("gld: expected GLDParams")
        if not isinstance(self.bld, BLDParams):
            raise ValueError("bld: expected BLDParams")
        if not isinstance(self.constants, Constants):
            raise ValueError("constants: expected Constants")
        if len(self.gld) + len(self.bld) == 0:
            raise ValueError("gld, bld: a cluster needs at least one device")

    @property
    def n_gld(self) -> int:
        return len(self.gld)

    @property
    def n_bld(self) -> int:
        return len(self.bld)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cluster):
            return NotImplemented
        return self.gld == other.gld and self.bld == other.bld and self.constants == other.constants

    __hash__ = None  # type: ignore[assignment]

    def with_constants(self, **changes: Any) -> Cluster:
        return Cluster(self.gld, self.bld, self.constants.replace(**changes))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cluster:
        check_keys(data, {"gld", "bld", "constants"}, "")
        for key in ("gld", "bld"):
            if key not in data:
                raise ValueError(f"missing key: {key}")
        return cls(
            gld=GLDParams.from_dict(data["gld"]),
            bld=BLDParams.from_dict(data["bld"]),
            constants=Constants.from_dict(data.get("constants", {})),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "gld": self.gld.to_dict(),
            "bld": self.bld.to_dict(),
            "constants": self.constants.to_dict(),
        }

    @classmethod
    def load(cls, path: str | Path) -> Cluster:
        """Read an instance file; errors name the file and the field."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{path}: no such file") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
