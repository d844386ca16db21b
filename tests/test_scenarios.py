"""Tests of dtfl_env.scenarios: Table II preset and the seeded random-cluster generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dtfl_env.config import Cluster, Constants
from dtfl_env.model.scoring import classify_devices
from dtfl_env.scenarios import (
    PRESETS,
    RandomClusterConfig,
    Topology,
    classify_and_build,
    get_preset,
    random_cluster,
    random_devices,
    random_topology,
    table2_cluster,
)
from solvers.exact import solve_exact

GLD_FIELDS = (
    "data_bits",
    "gain_coordinator",
    "gain_eavesdropper",
    "max_power_w",
    "max_jam_power_w",
    "max_cpu_hz",
    "energy_budget_j",
)
BLD_FIELDS = ("data_bits", "gain_coordinator", "gain_eavesdropper", "power_w")


def _all_arrays(cluster: Cluster) -> list[np.ndarray]:
    return [getattr(cluster.gld, f) for f in GLD_FIELDS] + [
        getattr(cluster.bld, f) for f in BLD_FIELDS
    ]


# ------------------------------------------------------------------------------ presets
def test_table2_preset_unchanged() -> None:
    c = table2_cluster()
    assert (c.n_gld, c.n_bld) == (6, 4)
    assert get_preset("table2") == c
    assert set(PRESETS) == {"table2"}
    with pytest.raises(ValueError, match="preset"):
        get_preset("nope")


# ------------------------------------------------------------------------- determinism
def test_same_seed_same_cluster() -> None:
    assert random_cluster(42) == random_cluster(42)
    assert random_cluster(np.random.default_rng(7), 3, 2) == random_cluster(7, 3, 2)
    c1, t1 = random_topology(11, 5, 3)
    c2, t2 = random_topology(11, 5, 3)
    assert c1 == c2 and t1 == t2


def test_different_seeds_differ() -> None:
    assert random_cluster(1) != random_cluster(2)
    rng = np.random.default_rng(0)
    assert random_cluster(rng) != random_cluster(rng)  # the generator advances


def test_random_cluster_is_topology_cluster() -> None:
    assert random_cluster(5, 4, 2) == random_topology(5, 4, 2)[0]


# ------------------------------------------------------------------------ shapes, values
@pytest.mark.parametrize(("m", "n"), [(6, 4), (1, 0), (0, 1), (10, 6), (3, 0), (2, 1)])
def test_shapes_follow_sizes(m: int, n: int) -> None:
    cluster, topo = random_topology(3, m, n)
    assert (cluster.n_gld, cluster.n_bld) == (m, n)
    for f in GLD_FIELDS:
        assert getattr(cluster.gld, f).shape == (m,)
    for f in BLD_FIELDS:
        assert getattr(cluster.bld, f).shape == (n,)
    assert topo.coordinator_xy.shape == (2,)
    assert topo.eavesdropper_xy.shape == (2,)
    assert topo.gld_xy.shape == (m, 2)
    assert topo.bld_xy.shape == (n, 2)


@pytest.mark.parametrize("seed", range(20))
def test_values_positive_finite_and_in_range(seed: int) -> None:
    cfg = RandomClusterConfig()
    cluster, topo = random_topology(seed, 8, 5, cfg)
    for arr in _all_arrays(cluster):
        assert np.all(np.isfinite(arr)) and np.all(arr > 0)
    g, b = cluster.gld, cluster.bld
    for name in ("data_bits", "max_power_w", "max_jam_power_w", "max_cpu_hz", "energy_budget_j"):
        lo, hi = getattr(cfg, f"gld_{name}")
        assert np.all((getattr(g, name) >= lo) & (getattr(g, name) <= hi)), name
    assert np.all((b.data_bits >= cfg.bld_data_bits[0]) & (b.data_bits <= cfg.bld_data_bits[1]))
    assert np.all((b.power_w >= cfg.bld_power_w[0]) & (b.power_w <= cfg.bld_power_w[1]))
    # GLDs in NOMA order: ascending g_iC
    assert np.all(np.diff(g.gain_coordinator) >= 0)
    # geometry: inside the area, devices within the cluster radius of the coordinator
    for xy in (topo.coordinator_xy, topo.gld_xy, topo.bld_xy, topo.eavesdropper_xy):
        assert np.all((xy >= 0) & (xy <= cfg.area_m))
    d = np.linalg.norm(np.vstack([topo.gld_xy, topo.bld_xy]) - topo.coordinator_xy, axis=1)
    assert np.all((d >= cfg.min_distance_m - 1e-9) & (d <= cfg.cluster_radius_m + 1e-9))
    assert cluster.constants == Constants()


def test_gains_have_table2_scale() -> None:
    rng = np.random.default_rng(123)
    clusters = [random_cluster(rng) for _ in range(300)]
    g_c = np.median(np.concatenate([c.gld.gain_coordinator for c in clusters]))
    h_c = np.median(np.concatenate([c.bld.gain_coordinator for c in clusters]))
    g_e = np.median(np.concatenate([c.gld.gain_eavesdropper for c in clusters]))
    h_e = np.median(np.concatenate([c.bld.gain_eavesdropper for c in clusters]))
    assert 2e-8 < g_c < 5e-7 and 1e-9 < h_c < 2e-8  # within ~5x of Table II
    assert 5e-9 < g_e < 5e-8 and 3e-10 < h_e < 3e-9
    assert 10 < g_c / h_c < 40  # the BLD penalty keeps Table II's GLD/BLD ratio (~24)


def test_sort_off_keeps_drawn_order() -> None:
    cfg = RandomClusterConfig(sort_gld_by_gain=False)
    sorted_c, sorted_t = random_topology(9, 7, 2)
    plain_c, plain_t = random_topology(9, 7, 2, cfg)
    order = np.argsort(plain_c.gld.gain_coordinator, kind="stable")
    assert np.array_equal(plain_c.gld.gain_coordinator[order], sorted_c.gld.gain_coordinator)
    assert np.array_equal(plain_c.gld.data_bits[order], sorted_c.gld.data_bits)
    assert np.array_equal(plain_t.gld_xy[order], sorted_t.gld_xy)
    assert plain_c.bld == sorted_c.bld


def test_constants_pass_through() -> None:
    k = Constants(model_bits=3e6)
    assert random_cluster(0, constants=k).constants == k


def test_difficulty_moves_only_the_eavesdropper() -> None:
    base_c, base_t = random_topology(4, 5, 3)
    for d in (0.5, 1.0):
        c, t = random_topology(4, 5, 3, RandomClusterConfig(difficulty=d))
        assert np.array_equal(c.gld.gain_coordinator, base_c.gld.gain_coordinator)
        assert np.array_equal(c.bld.gain_coordinator, base_c.bld.gain_coordinator)
        assert np.array_equal(t.bld_xy, base_t.bld_xy)
        assert np.array_equal(t.coordinator_xy, base_t.coordinator_xy)
        assert not np.array_equal(t.eavesdropper_xy, base_t.eavesdropper_xy)
    _, t1 = random_topology(4, 5, 3, RandomClusterConfig(difficulty=1.0))
    # at difficulty 1 the eavesdropper sits on one of the BLDs
    assert np.min(np.linalg.norm(t1.bld_xy - t1.eavesdropper_xy, axis=1)) < 1e-9


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_gld": -1}, "n_gld"),
        ({"n_bld": -2}, "n_bld"),
        ({"n_gld": 0, "n_bld": 0}, "n_gld"),
        ({"n_gld": 1.5}, "n_gld"),
        ({"n_gld": True}, "n_gld"),
    ],
)
def test_size_validation_names_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        random_cluster(0, **kwargs)


def test_rng_and_config_type_validation() -> None:
    with pytest.raises(ValueError, match="rng"):
        random_cluster("seed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="config"):
        random_cluster(0, config={"area_m": 1000})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="constants"):
        random_cluster(0, constants={})  # type: ignore[arg-type]


def test_config_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ValueError, match=r"random\.path_loss_exponnet"):
        RandomClusterConfig.from_dict({"path_loss_exponnet": 3.0})


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"path_loss_exponent": -2.0}, "random.path_loss_exponent: must be > 0"),
        ({"path_loss_exponent": 0}, "random.path_loss_exponent"),
        ({"area_m": float("nan")}, "random.area_m"),
        ({"gld_data_bits": [55e6, 30e6]}, "random.gld_data_bits: low must be <= high"),
        ({"bld_power_w": [-1.0, 1.0]}, "random.bld_power_w"),
        ({"max_jam": 1}, "random.max_jam"),
        ({"gld_max_cpu_hz": [1e9]}, "random.gld_max_cpu_hz"),
        ({"gld_max_cpu_hz": "fast"}, "random.gld_max_cpu_hz"),
        ({"difficulty": 1.5}, "random.difficulty"),
        ({"difficulty": -0.1}, "random.difficulty"),
        ({"capable_share": 2.0}, "random.capable_share"),
        ({"min_distance_m": 60.0}, "random.min_distance_m"),
        ({"cluster_radius_m": 600.0}, "random.cluster_radius_m"),
        ({"eavesdropper_min_distance_m": 200.0}, "random.eavesdropper_min_distance_m"),
        ({"sort_gld_by_gain": "yes"}, "random.sort_gld_by_gain"),
    ],
)
def test_config_validation_names_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RandomClusterConfig.from_dict(changes)


def test_config_round_trip_and_lists() -> None:
    cfg = RandomClusterConfig.from_dict({"gld_data_bits": [20e6, 40e6], "difficulty": 0.3})
    assert cfg.gld_data_bits == (20e6, 40e6)
    assert RandomClusterConfig.from_dict(cfg.to_dict()) == cfg
    assert RandomClusterConfig() == RandomClusterConfig.from_dict({})
    assert dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.area_m = 5.0  # type: ignore[misc]


def test_topology_equality() -> None:
    _, t = random_topology(0, 2, 2)
    assert isinstance(t, Topology)
    assert t == random_topology(0, 2, 2)[1]
    assert t != random_topology(1, 2, 2)[1]


# ------------------------------------------------------------------ eq. (3) classification
def test_random_devices_shapes_and_scores() -> None:
    attrs, scores = random_devices(0, 12)
    assert scores.shape == (12,)
    for f in dataclasses.fields(attrs):
        arr = getattr(attrs, f.name)
        assert arr.shape == (12,) and np.all(np.isfinite(arr)) and np.all(arr > 0)
    assert np.all((scores >= 0) & (scores <= 1))
    a2, s2 = random_devices(0, 12)
    assert np.array_equal(scores, s2) and np.array_equal(attrs.cpu_hz, a2.cpu_hz)
    with pytest.raises(ValueError, match="k"):
        random_devices(0, 0)


def test_device_kinds_separate_at_threshold_and_mix() -> None:
    rng = np.random.default_rng(2024)
    scores = np.concatenate([random_devices(rng, 10)[1] for _ in range(300)])
    assert not np.any((scores > 0.46) & (scores < 0.6))  # a gap around the threshold 0.5
    share = np.mean(scores > 0.5)
    assert 0.55 < share < 0.65  # ~ 6 GLDs / 4 BLDs out of 10


@pytest.mark.parametrize("seed", range(10))
def test_classify_and_build_counts_consistent(seed: int) -> None:
    sc = classify_and_build(seed, k=10)
    gld, bld = classify_devices(sc.scores, 0.5)
    assert sc.cluster.n_gld == gld.size == np.sum(sc.scores > 0.5)
    assert sc.cluster.n_bld == bld.size
    assert sc.cluster.n_gld + sc.cluster.n_bld == 10
    assert np.array_equal(np.sort(sc.gld_index), gld)
    assert np.array_equal(sc.bld_index, bld)
    # attributes map onto the cluster's parameters, in the cluster's (NOMA) order
    assert np.array_equal(sc.cluster.gld.max_cpu_hz, sc.attributes.cpu_hz[sc.gld_index])
    assert np.array_equal(sc.cluster.gld.energy_budget_j, sc.attributes.battery_j[sc.gld_index])
    assert np.array_equal(sc.cluster.gld.max_power_w, sc.attributes.tx_power_w[sc.gld_index])
    assert np.array_equal(sc.cluster.bld.power_w, sc.attributes.tx_power_w[sc.bld_index])
    assert sc.topology.gld_xy.shape == (sc.cluster.n_gld, 2)
    assert sc.topology.bld_xy.shape == (sc.cluster.n_bld, 2)
    again = classify_and_build(seed, k=10)
    assert again.cluster == sc.cluster and again.topology == sc.topology


def test_classify_threshold_extremes() -> None:
    all_gld = classify_and_build(3, k=5, threshold=0.0)
    assert (all_gld.cluster.n_gld, all_gld.cluster.n_bld) == (5, 0)
    all_bld = classify_and_build(3, k=5, threshold=1.0)
    assert (all_bld.cluster.n_gld, all_bld.cluster.n_bld) == (0, 5)
    with pytest.raises(ValueError, match="threshold"):
        classify_and_build(3, threshold=float("nan"))


def test_classify_typical_split_near_table2() -> None:
    counts = np.array([classify_and_build(s).cluster.n_gld for s in range(200)])
    assert 5.5 < counts.mean() < 6.5


# ------------------------------------------------------------------------- feasibility
def test_most_random_clusters_are_feasible() -> None:
    """The calibration claim: >= 80 % of random clusters (M 2-10, N 1-6) are feasible."""
    rng = np.random.default_rng(2025)
    results = []
    for _ in range(60):
        m = int(rng.integers(2, 11))
        n = int(rng.integers(1, 7))
        results.append(solve_exact(random_cluster(rng, m, n)))
    feasible = [r for r in results if r.feasible]
    assert len(feasible) >= 0.8 * len(results)
    assert all(r.status in ("optimal", "converged") for r in feasible)
    t = np.array([r.T for r in feasible])
    assert 1.0 < np.median(t) < 10.0  # a few seconds, like Table II's 3.53 s
    assert np.mean([r.Q > 0 for r in feasible]) >= 0.8  # the optimum jams


def test_feasibility_benchmark_runs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The calibration script runs end to end with a tiny budget and writes its JSON."""
    import importlib.util
    import json
    import sys
    from pathlib import Path

    monkeypatch.setattr(sys, "path", list(sys.path))  # the script edits sys.path on import

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "feasibility.py"
    spec = importlib.util.spec_from_file_location("feasibility_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "feasibility.json"
    record = module.main(
        ["--clusters", "4", "--seed", "3", "--difficulty", "0", "1", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved["clusters"] == 4 and len(saved["results"]) == 2
    assert [r["difficulty"] for r in record["results"]] == [0.0, 1.0]
    assert 0.0 <= saved["results"][0]["feasible_share"] <= 1.0


def test_ppo_features_probe_runs(tmp_path):
    """benchmarks/ppo_features.py (the supervised probe of the observation) on a tiny budget."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "ppo_features.py"
    out = tmp_path / "probe.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--train-episodes",
            "2",
            "--test-episodes",
            "1",
            "--epochs",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["training_clusters"] > 20
    for row in res["results"].values():
        assert row["clusters"] > 10 and row["per_cluster_gap"] >= -1e-6
