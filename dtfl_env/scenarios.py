"""Named cluster presets: Table II of the paper and a seeded random-cluster generator.

Two ways to get a cluster:

- :func:`table2_cluster` / :func:`get_preset` give the fixed cluster of the paper's Table II;
- :func:`random_cluster` (and :func:`random_topology`, which also returns the positions)
  draw a random cluster: devices scattered around a group coordinator in the paper's
  1000 m x 1000 m area, an eavesdropper nearby, and Rayleigh-faded channel gains
  ``g = G0 (d / 1 m)^(-alpha) X`` with ``X ~ Exp(1)`` drawn independently per link.
  :func:`classify_and_build` first draws raw device attributes (:func:`random_devices`),
  splits them into GLDs and BLDs by the resource score of eq. (3), and builds the cluster
  from that split.

Everything is pure numpy and driven by one :class:`numpy.random.Generator`, so a seed fixes
the cluster. The defaults of :class:`RandomClusterConfig` are calibrated so that about 90 % of
random clusters are feasible for problem P while energy binds and the optimum jams (see its
docstring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams, check_keys
from dtfl_env.model.scoring import (
    DeviceAttributes,
    ResourceWeights,
    classify_devices,
    device_capabilities,
    resource_score,
)

__all__ = [
    "PRESETS",
    "RandomClusterConfig",
    "Scenario",
    "Topology",
    "classify_and_build",
    "get_preset",
    "random_cluster",
    "random_devices",
    "random_topology",
    "table2_cluster",
]


def table2_cluster(constants: Constants | None = None) -> Cluster:
    """The cluster of the paper's Table II: 6 GLDs and 4 BLDs.

    Erratum (docs/MODEL.md): Table II lists 7 values of V_max for 6 GLDs; the 7th (2.2 GHz) is
    dropped. Constants the paper omits take the docs/docs/MODEL.md defaults unless given.
    """
    gld = GLDParams(
        data_bits=[30e6, 45e6, 40e6, 50e6, 55e6, 35e6],
        gain_coordinator=[2.3e-8, 2.5e-8, 2.4e-8, 2.2e-8, 2.7e-8, 2.6e-8],
        gain_eavesdropper=[1.6e-8, 1.3e-8, 1.7e-8, 1.4e-8, 1.2e-8, 1.5e-8],
        max_power_w=[1.9, 2.1, 1.8, 2.0, 2.2, 1.7],
        max_jam_power_w=[1.1, 0.8, 0.9, 1.2, 0.7, 1.0],
        max_cpu_hz=[1.0e9, 1.2e9, 1.4e9, 1.6e9, 1.8e9, 2.0e9],
        energy_budget_j=[3.8, 4.0, 3.4, 3.6, 3.8, 3.2],
    )
    bld = BLDParams(
        data_bits=[2.0e6, 3.5e6, 3.0e6, 2.5e6],
        gain_coordinator=[1.0e-9, 0.8e-9, 1.1e-9, 0.9e-9],
        gain_eavesdropper=[0.95e-9, 0.85e-9, 1.15e-9, 1.05e-9],
        power_w=[1.6, 1.4, 1.3, 1.5],
    )
    return Cluster(gld=gld, bld=bld, constants=constants or Constants())


PRESETS = {"table2": table2_cluster}


def get_preset(name: str) -> Cluster:
    """A named preset cluster (``table2``)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"preset: unknown preset {name!r} (known: {', '.join(PRESETS)})") from None


# --------------------------------------------------------------------------- random clusters

_RANGE_FIELDS = (
    "gld_data_bits",
    "gld_max_power_w",
    "gld_max_jam_power_w",
    "gld_max_cpu_hz",
    "gld_energy_budget_j",
    "bld_data_bits",
    "bld_power_w",
    "poor_cpu_hz",
    "poor_battery_j",
    "capable_storage_bits",
    "poor_storage_bits",
    "capable_range_m",
    "poor_range_m",
    "capable_bandwidth_hz",
    "poor_bandwidth_hz",
)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return v


def _range(value: Any, name: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name}: expected a (low, high) pair, got {value!r}")
    low, high = _number(value[0], f"{name}[0]"), _number(value[1], f"{name}[1]")
    if low <= 0:
        raise ValueError(f"{name}: low must be > 0, got {low}")
    if low > high:
        raise ValueError(f"{name}: low must be <= high, got ({low}, {high})")
    return (low, high)


@dataclass(frozen=True)
class RandomClusterConfig:
    """Distributions of the seeded random-cluster generator (SI units, names carry the unit).

    Geometry: the group coordinator sits uniformly in the ``area_m`` x ``area_m`` square (at
    least ``cluster_radius_m`` from its edges); GLDs and BLDs sit uniformly (by area) in the
    annulus ``min_distance_m <= d <= cluster_radius_m`` around it; the eavesdropper sits at a
    uniform angle and a distance uniform in ``[eavesdropper_min_distance_m,
    eavesdropper_max_distance_m]`` from the coordinator, then moves the fraction
    ``difficulty`` of the way towards one randomly chosen BLD (clipped to the area). Every
    channel power gain is ``G0 * max(d, min_distance_m)^(-path_loss_exponent) * X`` with
    ``X ~ Exp(1)`` (Rayleigh fading), drawn independently per link (device -> coordinator,
    device -> eavesdropper); BLD links lose ``bld_gain_penalty_db`` more. Per-device
    parameters are uniform on their ``(low, high)`` ranges, which are Table II's.

    Calibration (``benchmarks/feasibility.py --clusters 500 --seed 0``; M uniform in 2-10,
    N uniform in 1-6, every cluster solved by :func:`solvers.exact.solve_exact`):

    ===========  ========  =========  ======  =====  =========  ==========  =======
    difficulty   feasible  median T*  p95 T*  Q*>0   median Q*  jam needed  E binds
    ===========  ========  =========  ======  =====  =========  ==========  =======
    0 (default)  90.4 %    2.60 s     9.9 s   100 %  1.3e-7 W   49 %        71 %
    0.5          88.0 %    2.60 s     9.4 s   100 %  5.4e-7 W   75 %        72 %
    0.8          82.4 %    2.62 s     8.0 s   100 %  6.5e-7 W   93 %        74 %
    1.0          63.2 %    2.67 s     8.2 s   100 %  8.9e-7 W   98 %        78 %
    ===========  ========  =========  ======  =====  =========  ==========  =======

    Feasible share at defaults: 90.4 % over 500 clusters, M 2-10, N 1-6 (92.6 % with
    ``--seed 1``); every solve certified optimal. Table II for comparison: T* = 3.53 s,
    Q* = 6.3e-8 W. "Q*>0": the optimum jams; "jam needed": some BLD has zero secrecy rate
    without jamming (eq. (22)'s lower bound is > 0); "E binds": some GLD ends at its energy
    budget. T* and Q* statistics are over the feasible clusters.

    Why the gains sit above Table II's: with Rayleigh fading a link falls x times below its
    mean with probability about 1/x. Table II's margins (g_iC ~ 2.4e-8 against the ~5e-10 a
    GLD needs to pay its upload energy; BLD SNR p h_jC / n_j ~ 1.5) put a few per cent of
    all links into a fatal fade, and with up to 16 devices a quarter of the clusters would
    be infeasible. ``reference_gain_db`` = -36 dB puts the median gains at Table II's and
    gives 73 % feasible (median T* 4.0 s), -33 dB 84 % (3.1 s), -30 dB 90 % (2.6 s; 400
    clusters each). The defaults therefore put the median coordinator-side gains about 4-5x
    above Table II's (GLD g_iC ~ 1.0e-7, BLD h_jC ~ 5e-9), while the eavesdropper-side
    medians land on Table II's (g_iE ~ 1.8e-8, h_jE ~ 9e-10); the GLD/BLD ratio (~20) and
    the scale of the jamming stay those of Table II.

    The remaining infeasible clusters are the physical ones docs/MODEL.md names: a GLD or BLD in
    a deep fade, or an eavesdropper that hears some BLD better than the coordinator does, so
    that the GLDs cannot pay for the jamming. ``difficulty`` makes the latter the rule.
    """

    area_m: float = 1000.0
    """Side of the square simulation area (m): the paper's 1000 m x 1000 m (Section V)."""
    cluster_radius_m: float = 50.0
    """Devices lie within this distance of their group coordinator (m): one production
    hall. Ten such clusters fit easily in the 1e6 m^2 area."""
    min_distance_m: float = 5.0
    """Smallest device-coordinator distance, and the floor of every link distance in the
    path-loss law (m): keeps the far-field law away from its singularity at d = 0."""
    path_loss_exponent: float = 2.5
    """alpha of ``g = G0 d^-alpha`` (-): 2.5 is typical of indoor industrial halls rich in
    line of sight (between free space, 2, and cluttered indoor, 3-4)."""
    reference_gain_db: float = -30.0
    """G0, channel power gain at 1 m (dB): the usual -30 dB of the NOMA / jamming
    literature. With alpha = 2.5 a device at the median distance (35 m) has a mean gain of
    1.3e-7 (median 9e-8 after fading); see the class docstring for why not Table II's
    2.4e-8."""
    bld_gain_penalty_db: float = 13.0
    """Extra loss on every BLD link, to the coordinator and to the eavesdropper (dB):
    resource-poor devices have cheap, badly placed antennas (e.g. mounted inside
    machinery). 13 dB keeps Table II's ratio g_iC / h_jC ~ 24 between GLD and BLD gains."""
    eavesdropper_min_distance_m: float = 25.0
    """Smallest eavesdropper-coordinator distance (m), before ``difficulty`` moves it."""
    eavesdropper_max_distance_m: float = 100.0
    """Largest eavesdropper-coordinator distance (m), before ``difficulty`` moves it. With
    25-100 m the eavesdropper lurks at the rim of the hall or just outside: typically a
    little farther from a BLD than the coordinator, so about half of the clusters need
    jamming to give every BLD a positive secrecy rate, and the optimum always jams."""
    difficulty: float = 0.0
    """Knob in [0, 1] for harder scenarios (-): the eavesdropper moves the fraction
    ``difficulty`` of the way from its drawn position to one randomly chosen BLD (at 1 it
    sits on that BLD, floored at ``min_distance_m``). Secrecy then relies more on jamming:
    the share of clusters that need jamming rises from about 50 % (0) to 75 % (0.5), 93 %
    (0.8) and 98 % (1), and the feasible share falls from about 90 % to 88, 82 and 63 %.
    Every other draw is independent of the knob, so for one seed only the eavesdropper
    moves (paired comparisons)."""
    sort_gld_by_gain: bool = True
    """Order the GLDs by ascending g_iC, so the strongest GLD gets the largest NOMA index I
    and is decoded first (standard uplink NOMA). The SIC factor 2^((i-1) r) then falls on
    the GLDs with the best channels, which minimises the total upload energy (rearrangement
    inequality). Off: the GLDs keep their drawn order."""
    gld_data_bits: tuple[float, float] = (30e6, 55e6)
    """D_iG range (bits): Table II, 30-55 Mbit."""
    gld_max_power_w: tuple[float, float] = (1.7, 2.2)
    """P_i^max range (W): Table II."""
    gld_max_jam_power_w: tuple[float, float] = (0.7, 1.2)
    """Q_i^max range (W): Table II."""
    gld_max_cpu_hz: tuple[float, float] = (1.0e9, 2.0e9)
    """V_i^max range (Hz): Table II, 1.0-2.0 GHz (also the CPU of a capable device)."""
    gld_energy_budget_j: tuple[float, float] = (3.2, 4.0)
    """E_i^max range (J): Table II (also the battery of a capable device)."""
    bld_data_bits: tuple[float, float] = (2.0e6, 3.5e6)
    """D_jB range (bits): Table II, 2.0-3.5 Mbit."""
    bld_power_w: tuple[float, float] = (1.3, 1.6)
    """p_j^B range (W): Table II (also the transmit power of a resource-poor device)."""
    capable_share: float = 0.6
    """Probability that a drawn local device is of the capable kind (-), in [0, 1]; 0.6
    gives Table II's 6 GLDs / 4 BLDs out of 10 on average (:func:`random_devices`)."""
    poor_cpu_hz: tuple[float, float] = (0.2e9, 0.8e9)
    """CPU rate of a resource-poor device (Hz): an MCU-class sensor."""
    poor_battery_j: tuple[float, float] = (1.0, 2.5)
    """Residual battery of a resource-poor device, per round (J)."""
    capable_storage_bits: tuple[float, float] = (4e9, 8e9)
    """Storage of a capable device (bits)."""
    poor_storage_bits: tuple[float, float] = (0.5e9, 2.5e9)
    """Storage of a resource-poor device (bits)."""
    capable_range_m: tuple[float, float] = (300.0, 500.0)
    """Radio range of a capable device (m)."""
    poor_range_m: tuple[float, float] = (50.0, 200.0)
    """Radio range of a resource-poor device (m)."""
    capable_bandwidth_hz: tuple[float, float] = (0.8e6, 1.0e6)
    """Usable bandwidth of a capable device (Hz)."""
    poor_bandwidth_hz: tuple[float, float] = (0.2e6, 0.5e6)
    """Usable bandwidth of a resource-poor device (Hz)."""

    def __post_init__(self) -> None:
        p = "random"
        for name in (
            "area_m",
            "cluster_radius_m",
            "min_distance_m",
            "path_loss_exponent",
            "eavesdropper_min_distance_m",
            "eavesdropper_max_distance_m",
        ):
            v = _number(getattr(self, name), f"{p}.{name}")
            if v <= 0:
                raise ValueError(f"{p}.{name}: must be > 0, got {v}")
            object.__setattr__(self, name, v)
        for name in ("reference_gain_db", "bld_gain_penalty_db"):
            object.__setattr__(self, name, _number(getattr(self, name), f"{p}.{name}"))
        d = _number(self.difficulty, f"{p}.difficulty")
        if not 0 <= d <= 1:
            raise ValueError(f"{p}.difficulty: must be in [0, 1], got {d}")
        object.__setattr__(self, "difficulty", d)
        s = _number(self.capable_share, f"{p}.capable_share")
        if not 0 <= s <= 1:
            raise ValueError(f"{p}.capable_share: must be in [0, 1], got {s}")
        object.__setattr__(self, "capable_share", s)
        if not isinstance(self.sort_gld_by_gain, (bool, np.bool_)):
            raise ValueError(
                f"{p}.sort_gld_by_gain: expected true or false, got {self.sort_gld_by_gain!r}"
            )
        object.__setattr__(self, "sort_gld_by_gain", bool(self.sort_gld_by_gain))
        for name in _RANGE_FIELDS:
            object.__setattr__(self, name, _range(getattr(self, name), f"{p}.{name}"))
        if self.min_distance_m >= self.cluster_radius_m:
            raise ValueError(
                f"{p}.min_distance_m: must be < cluster_radius_m "
                f"({self.cluster_radius_m}), got {self.min_distance_m}"
            )
        if 2 * self.cluster_radius_m > self.area_m:
            raise ValueError(
                f"{p}.cluster_radius_m: a cluster must fit in the area "
                f"(2 * radius <= area_m = {self.area_m}), got {self.cluster_radius_m}"
            )
        if self.eavesdropper_min_distance_m > self.eavesdropper_max_distance_m:
            raise ValueError(
                f"{p}.eavesdropper_min_distance_m: must be <= "
                f"eavesdropper_max_distance_m ({self.eavesdropper_max_distance_m}), "
                f"got {self.eavesdropper_min_distance_m}"
            )

    @property
    def reference_gain(self) -> float:
        """G0 as a linear power ratio."""
        return 10.0 ** (self.reference_gain_db / 10.0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "random") -> RandomClusterConfig:
        """Build from a mapping; unknown keys raise ``ValueError`` naming ``random.<key>``."""
        check_keys(data, {f.name for f in fields(cls)}, path)
        return cls(
            **{
                k: tuple(v) if k in _RANGE_FIELDS and isinstance(v, list) else v
                for k, v in data.items()
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (ranges as lists) that :meth:`from_dict` reads back."""
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in fields(self)
        }


@dataclass(frozen=True, eq=False)
class Topology:
    """Positions of one random cluster (m), for rendering; rows follow the cluster's order."""

    coordinator_xy: np.ndarray
    """Group coordinator, shape (2,)."""
    gld_xy: np.ndarray
    """GLDs in the cluster's NOMA index order, shape (M, 2)."""
    bld_xy: np.ndarray
    """BLDs, shape (N, 2)."""
    eavesdropper_xy: np.ndarray
    """Eavesdropper, shape (2,)."""
    area_m: float = 1000.0
    """Side of the square area the positions lie in."""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return self.area_m == other.area_m and all(
            np.array_equal(getattr(self, n), getattr(other, n))
            for n in ("coordinator_xy", "gld_xy", "bld_xy", "eavesdropper_xy")
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class Scenario:
    """A cluster built from classified local devices (:func:`classify_and_build`)."""

    cluster: Cluster
    topology: Topology
    attributes: DeviceAttributes
    """Raw attributes of all k drawn devices."""
    scores: np.ndarray
    """Resource score of eq. (3) of each device, shape (k,)."""
    gld_index: np.ndarray
    """Indices (into the k devices) of the GLDs, in the cluster's NOMA order."""
    bld_index: np.ndarray
    """Indices of the BLDs, in the cluster's order."""
    threshold: float


def _generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng: expected a numpy Generator, an int seed or None, got {rng!r}")


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: must be >= 0, got {value}")
    return int(value)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float], size: int) -> np.ndarray:
    return rng.uniform(bounds[0], bounds[1], size)


def _draw_layout(
    rng: np.random.Generator, n_gld: int, n_bld: int, cfg: RandomClusterConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinator (2,), device positions (M + N, 2; GLDs first) and the eavesdropper (2,).

    The draws do not depend on ``cfg.difficulty``: for one seed, changing the difficulty
    moves only the eavesdropper (paired comparisons).
    """
    n = n_gld + n_bld
    r_c, r0 = cfg.cluster_radius_m, cfg.min_distance_m
    coord = rng.uniform(r_c, cfg.area_m - r_c, 2)
    # uniform by area in the annulus r0 <= d <= r_c
    radius = np.sqrt(rng.uniform(r0**2, r_c**2, n))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    devices = coord + radius[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    e_dist = rng.uniform(cfg.eavesdropper_min_distance_m, cfg.eavesdropper_max_distance_m)
    e_ang = rng.uniform(0.0, 2 * np.pi)
    eve = coord + e_dist * np.array([np.cos(e_ang), np.sin(e_ang)])
    target = int(rng.integers(max(n_bld, 1)))  # the BLD the eavesdropper closes in on
    victim = devices[n_gld + target] if n_bld else coord
    eve = eve + cfg.difficulty * (victim - eve)
    return coord, devices, np.clip(eve, 0.0, cfg.area_m)


def _faded_gain(
    rng: np.random.Generator,
    dist_m: np.ndarray,
    cfg: RandomClusterConfig,
    penalty_db: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Rayleigh-faded channel power gain G0 d^-alpha X, X ~ Exp(1), one draw per link."""
    d = np.maximum(dist_m, cfg.min_distance_m)
    mean = (
        cfg.reference_gain
        * d ** (-cfg.path_loss_exponent)
        * 10.0 ** (-np.asarray(penalty_db, dtype=float) / 10.0)
    )
    # a zero fading draw has probability 0 but would make a gain of 0; keep it positive
    return mean * np.maximum(rng.exponential(1.0, np.shape(d)), np.finfo(float).tiny)


def _build(
    rng: np.random.Generator,
    n_gld: int,
    n_bld: int,
    cfg: RandomClusterConfig,
    constants: Constants,
    gld_overrides: Mapping[str, np.ndarray] | None = None,
    bld_overrides: Mapping[str, np.ndarray] | None = None,
) -> tuple[Cluster, Topology, np.ndarray]:
    """Draw positions, gains and the missing per-device parameters; build the cluster.

    Returns the cluster, the topology and the permutation applied to the GLDs (NOMA order).
    """
    k = n_gld + n_bld
    coord, devices, eve = _draw_layout(rng, n_gld, n_bld, cfg)
    d_c = np.linalg.norm(devices - coord, axis=1)
    d_e = np.linalg.norm(devices - eve, axis=1)
    penalty = np.where(np.arange(k) < n_gld, 0.0, cfg.bld_gain_penalty_db)
    gain_c = _faded_gain(rng, d_c, cfg, penalty)  # device -> coordinator
    gain_e = _faded_gain(rng, d_e, cfg, penalty)  # device -> eavesdropper
    go = dict(gld_overrides or {})
    bo = dict(bld_overrides or {})
    gld = {
        "data_bits": _uniform(rng, cfg.gld_data_bits, n_gld),
        "max_power_w": _uniform(rng, cfg.gld_max_power_w, n_gld),
        "max_jam_power_w": _uniform(rng, cfg.gld_max_jam_power_w, n_gld),
        "max_cpu_hz": _uniform(rng, cfg.gld_max_cpu_hz, n_gld),
        "energy_budget_j": _uniform(rng, cfg.gld_energy_budget_j, n_gld),
    }
    bld = {
        "data_bits": _uniform(rng, cfg.bld_data_bits, n_bld),
        "power_w": _uniform(rng, cfg.bld_power_w, n_bld),
    }
    gld.update(go)
    bld.update(bo)
    gld["gain_coordinator"] = gain_c[:n_gld]
    gld["gain_eavesdropper"] = gain_e[:n_gld]
    bld["gain_coordinator"] = gain_c[n_gld:]
    bld["gain_eavesdropper"] = gain_e[n_gld:]
    order = (
        np.argsort(gld["gain_coordinator"], kind="stable")
        if cfg.sort_gld_by_gain
        else np.arange(n_gld)
    )
    gld = {name: np.asarray(v, dtype=float)[order] for name, v in gld.items()}
    cluster = Cluster(gld=GLDParams(**gld), bld=BLDParams(**bld), constants=constants)
    topo = Topology(
        coordinator_xy=coord,
        gld_xy=devices[:n_gld][order],
        bld_xy=devices[n_gld:],
        eavesdropper_xy=eve,
        area_m=cfg.area_m,
    )
    for a in (topo.coordinator_xy, topo.gld_xy, topo.bld_xy, topo.eavesdropper_xy):
        a.setflags(write=False)
    return cluster, topo, order


def random_topology(
    rng: np.random.Generator | int | None,
    n_gld: int = 6,
    n_bld: int = 4,
    config: RandomClusterConfig | None = None,
    constants: Constants | None = None,
) -> tuple[Cluster, Topology]:
    """Draw a random cluster and the positions it was drawn from.

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
        The only source of randomness; an int is a seed (same seed, same cluster).
    n_gld, n_bld : int
        Numbers M >= 0 of GLDs and N >= 0 of BLDs, M + N >= 1.
    config : RandomClusterConfig, optional
        The distributions (defaults: the calibrated :class:`RandomClusterConfig`).
    constants : Constants, optional
        Constants of the cluster (defaults: docs/MODEL.md's).

    Returns
    -------
    cluster : Cluster
        GLDs in NOMA index order (ascending g_iC unless ``config.sort_gld_by_gain`` is off).
    topology : Topology
        Coordinator, GLD, BLD and eavesdropper positions (m), rows in the cluster's order.
    """
    gen = _generator(rng)
    m = _count(n_gld, "n_gld")
    n = _count(n_bld, "n_bld")
    if m + n < 1:
        raise ValueError("n_gld, n_bld: a cluster needs n_gld + n_bld >= 1")
    cfg = _check_config(config)
    consts = _check_constants(constants)
    cluster, topo, _ = _build(gen, m, n, cfg, consts)
    return cluster, topo


def random_cluster(
    rng: np.random.Generator | int | None,
    n_gld: int = 6,
    n_bld: int = 4,
    config: RandomClusterConfig | None = None,
    constants: Constants | None = None,
) -> Cluster:
    """A random cluster with ``n_gld`` GLDs and ``n_bld`` BLDs (see :func:`random_topology`).

    Examples
    --------
    >>> from dtfl_env.scenarios import random_cluster
    >>> c = random_cluster(0, n_gld=4, n_bld=2)
    >>> (c.n_gld, c.n_bld), c == random_cluster(0, n_gld=4, n_bld=2)
    ((4, 2), True)
    """
    return random_topology(rng, n_gld, n_bld, config, constants)[0]


def _check_config(config: RandomClusterConfig | None) -> RandomClusterConfig:
    if config is None:
        return RandomClusterConfig()
    if not isinstance(config, RandomClusterConfig):
        raise ValueError(f"config: expected a RandomClusterConfig, got {type(config).__name__}")
    return config


def _check_constants(constants: Constants | None) -> Constants:
    if constants is None:
        return Constants()
    if not isinstance(constants, Constants):
        raise ValueError(f"constants: expected Constants, got {type(constants).__name__}")
    return constants


def random_devices(
    rng: np.random.Generator | int | None,
    k: int = 10,
    config: RandomClusterConfig | None = None,
    *,
    constants: Constants | None = None,
    weights: ResourceWeights | None = None,
) -> tuple[DeviceAttributes, np.ndarray]:
    """Draw raw attributes of ``k`` local devices and their resource scores, eq. (3).

    Each device is of the capable kind with probability ``config.capable_share`` (0.6),
    else resource-poor. Capable devices take Table II's GLD ranges (CPU 1-2 GHz, battery
    3.2-4.0 J, transmit power 1.7-2.2 W) and large storage, range and bandwidth; poor ones
    take an MCU-class CPU (0.2-0.8 GHz), 1-2.5 J, Table II's BLD powers (1.3-1.6 W) and
    small storage, range and bandwidth. With the reference scales of
    :func:`dtfl_env.model.scoring.device_capabilities` and equal weights, capable devices
    score in [0.61, 0.98] and poor ones in [0.18, 0.46], so the default threshold 0.5
    recovers the kind exactly and 10 devices split about 6 / 4 (binomial). Every device's
    cycles per bit is the cluster's iota (``constants.cycles_per_bit``).

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
    k : int
        Number of local devices, >= 1.
    config : RandomClusterConfig, optional
    constants : Constants, optional
    weights : ResourceWeights, optional
        Weights of eq. (3) (default: equal).

    Returns
    -------
    attributes : DeviceAttributes
        One entry per device.
    scores : numpy.ndarray
        Resource scores in [0, 1], shape (k,).
    """
    gen = _generator(rng)
    k = _count(k, "k")
    if k < 1:
        raise ValueError(f"k: must be >= 1, got {k}")
    cfg = _check_config(config)
    consts = _check_constants(constants)
    capable = gen.random(k) < cfg.capable_share

    def pick(good: tuple[float, float], poor: tuple[float, float]) -> np.ndarray:
        return np.where(capable, _uniform(gen, good, k), _uniform(gen, poor, k))

    attrs = DeviceAttributes(
        cpu_hz=pick(cfg.gld_max_cpu_hz, cfg.poor_cpu_hz),
        cycles_per_bit=np.full(k, consts.cycles_per_bit),
        storage_bits=pick(cfg.capable_storage_bits, cfg.poor_storage_bits),
        range_m=pick(cfg.capable_range_m, cfg.poor_range_m),
        bandwidth_hz=pick(cfg.capable_bandwidth_hz, cfg.poor_bandwidth_hz),
        battery_j=pick(cfg.gld_energy_budget_j, cfg.poor_battery_j),
        tx_power_w=pick(cfg.gld_max_power_w, cfg.bld_power_w),
    )
    scores = resource_score(*device_capabilities(attrs), weights=weights)  # eq. (3)
    return attrs, scores


def classify_and_build(
    rng: np.random.Generator | int | None,
    k: int = 10,
    config: RandomClusterConfig | None = None,
    constants: Constants | None = None,
    *,
    threshold: float = 0.5,
    weights: ResourceWeights | None = None,
) -> Scenario:
    """Draw ``k`` local devices, split them by eq. (3) and build the cluster from the split.

    A device with ``score <= threshold`` becomes a BLD (its twin trains at the coordinator),
    else a GLD. The default threshold 0.5 is the middle of the [0, 1] score scale and falls
    in the gap between the capable and poor kinds of :func:`random_devices`.

    GLD attributes map to :class:`GLDParams` as CPU -> ``max_cpu_hz``, battery ->
    ``energy_budget_j``, transmit power -> ``max_power_w``; a BLD's transmit power is its
    ``power_w``. Data sizes, maximum jamming powers, positions and gains are drawn as in
    :func:`random_topology`, with the same generator.

    Parameters
    ----------
    rng : numpy.random.Generator, int or None
    k : int
        Number of local devices, >= 1.
    config : RandomClusterConfig, optional
    constants : Constants, optional
    threshold : float
        Classification threshold of eq. (3), on the [0, 1] score scale.
    weights : ResourceWeights, optional
        Weights of eq. (3) (default: equal).

    Returns
    -------
    Scenario
        The cluster, its topology, the attributes and scores of all devices and the
        device indices of the GLDs (in NOMA order) and BLDs.
    """
    gen = _generator(rng)
    cfg = _check_config(config)
    consts = _check_constants(constants)
    t = _number(threshold, "threshold")
    attrs, scores = random_devices(gen, k, cfg, constants=consts, weights=weights)
    gld_idx, bld_idx = classify_devices(scores, t)  # eq. (3)
    cluster, topo, order = _build(
        gen,
        gld_idx.size,
        bld_idx.size,
        cfg,
        consts,
        gld_overrides={
            "max_cpu_hz": attrs.cpu_hz[gld_idx],
            "energy_budget_j": attrs.battery_j[gld_idx],
            "max_power_w": attrs.tx_power_w[gld_idx],
        },
        bld_overrides={"power_w": attrs.tx_power_w[bld_idx]},
    )
    return Scenario(
        cluster=cluster,
        topology=topo,
        attributes=attrs,
        scores=scores,
        gld_index=gld_idx[order],
        bld_index=bld_idx,
        threshold=t,
    )


def mean_gains(
    topology: Topology, config: RandomClusterConfig | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Path-loss (unfaded) channel power gains of a topology: G0 d^-alpha (BLD penalty).

    Returns ``(gld_coordinator, gld_eavesdropper, bld_coordinator, bld_eavesdropper)``; a
    fresh Rayleigh draw of a link is its mean gain times an Exp(1) variate.
    """
    cfg = _check_config(config)

    def mean(xy: np.ndarray, to: np.ndarray, penalty_db: float) -> np.ndarray:
        d = np.maximum(
            np.linalg.norm(np.asarray(xy, dtype=float).reshape(-1, 2) - to, axis=1),
            cfg.min_distance_m,
        )
        return cfg.reference_gain * d ** (-cfg.path_loss_exponent) * 10.0 ** (-penalty_db / 10)

    c, e = topology.coordinator_xy, topology.eavesdropper_xy
    return (
        mean(topology.gld_xy, c, 0.0),
        mean(topology.gld_xy, e, 0.0),
        mean(topology.bld_xy, c, cfg.bld_gain_penalty_db),
        mean(topology.bld_xy, e, cfg.bld_gain_penalty_db),
    )
