"""``examples/fig7_accuracy.py --quick``: outputs, learning above chance, the latency rules.

One subprocess run (3 clusters, 2 rounds, MLP, 1 centralized epoch; ~25 s on 2 cores) plus
latency-only checks that import the script's helpers (no training).
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FIGURE = "fig7_accuracy"
SCHEMES = ("proposed", "no_jamming", "fedavg", "centralized")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("fig7")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{FIGURE}.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, f"{FIGURE} failed:\n{proc.stdout}\n{proc.stderr}"
    summary = json.loads((out / f"{FIGURE}_summary.json").read_text())
    return out, summary, proc.stdout


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def num(text: str) -> float:
    return math.nan if text == "" else float(text)


@pytest.fixture(scope="module")
def script() -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module(FIGURE)
    finally:
        sys.path.remove(str(EXAMPLES))


def test_files_and_config(quick_run: tuple[Path, dict, str]) -> None:
    out, summary, stdout = quick_run
    assert (out / f"{FIGURE}.png").read_bytes()[:8] == PNG_MAGIC
    assert summary["figure"] == FIGURE and summary["config"]["quick"] is True
    cfg = summary["config"]
    assert (cfg["clusters"], cfg["rounds"], cfg["model"], cfg["central_epochs"]) == \
        (3, 2, "mlp", 1)
    rows = read_csv(out / f"{FIGURE}.csv")
    assert list(rows[0])[:5] == ["scheme", "round", "sim_time_s", "accuracy", "loss"]
    assert {r["scheme"] for r in rows} == set(SCHEMES)
    assert len(read_csv(out / f"{FIGURE}_clusters.csv")) == 3
    for scheme in SCHEMES:
        assert scheme in stdout


def test_accuracy_rises_above_chance(quick_run: tuple[Path, dict, str]) -> None:
    out, summary, _ = quick_run
    rows = read_csv(out / f"{FIGURE}.csv")
    for scheme in SCHEMES:
        mine = [r for r in rows if r["scheme"] == scheme]
        n = 1 if scheme == "centralized" else 2
        assert [int(r["round"]) for r in mine] == list(range(n + 1))
        t = np.array([num(r["sim_time_s"]) for r in mine])
        acc = np.array([num(r["accuracy"]) for r in mine])
        assert t[0] == 0 and np.all(np.diff(t) > 0)
        assert np.allclose(np.diff(t), t[1])  # static clusters: constant time per round
        assert acc[-1] > 0.5 and acc[-1] > acc[0]  # chance is 10 %
        assert summary["summary"]["schemes"][scheme]["final_accuracy"] == pytest.approx(acc[-1])
    first = {num(r["accuracy"]) for r in rows if r["round"] == "0"}
    assert len(first) == 1  # every scheme starts from the same model


def test_latency_rules(quick_run: tuple[Path, dict, str]) -> None:
    out, summary, _ = quick_run
    s = summary["summary"]
    sch, checks = s["schemes"], s["checks"]
    clusters = read_csv(out / f"{FIGURE}_clusters.csv")
    offsets = 0.05 + 0.05 + 0.1  # T_agg + T_up + T_MC (docs/MODEL.md)
    for c in clusters:
        if c["exact_feasible"] == "1":  # optimal jamming: every twin syncs
            assert num(c["min_secrecy_rate_star_bps"]) > 0 or c["n_bld"] == "0"
        t_fed = max(num(c["fedavg_gld_path_s"]), num(c["fedavg_bld_path_s"])) + offsets
        assert num(c["T_fedavg_s"]) == pytest.approx(t_fed, rel=1e-12)
        assert num(c["fedavg_bld_path_s"]) <= (num(c["fedavg_bld_local_max_s"])
                                               + num(c["fedavg_bld_upload_max_s"])) * (1 + 1e-12)
    for scheme, key in (("proposed", "T_proposed_s"), ("no_jamming", "T_nojam_s"),
                        ("fedavg", "T_fedavg_s")):
        ts = [num(clusters[i][key]) for i in sch[scheme]["clusters_in"]]
        assert sch[scheme]["time_per_round_s"] == pytest.approx(max(ts))  # clusters in parallel
    # twins that cannot sync without jamming sit out: never more data than with jamming
    assert sch["no_jamming"]["train_samples_per_round"] <= \
        sch["proposed"]["train_samples_per_round"]
    # same clients, same plan: FedAvg trains the proposed scheme's model (time axis differs)
    assert checks["fedavg_same_accuracy_per_round_as_proposed"] is True
    # centralized: iota * all data bits / v_c per epoch
    assert sch["centralized"]["time_per_round_s"] == pytest.approx(
        20 * s["centralized_data_bits"] / 1e10)
    assert checks["fedavg_slower_per_round_than_proposed"] == (
        sch["fedavg"]["time_per_round_s"] > sch["proposed"]["time_per_round_s"])
    assert 0 <= checks["bld_slowdown_for_fedavg_slower"] < math.inf


def test_fedavg_slower_once_blds_are_slow(quick_run: tuple[Path, dict, str],
                                          script: ModuleType) -> None:
    """FedAvg's round outlasts the proposed one exactly from the reported BLD slowdown on."""
    from dtfl_env.scenarios import classify_and_build

    _, summary, _ = quick_run
    s = summary["summary"]
    factor = s["checks"]["bld_slowdown_for_fedavg_slower"]
    t_prop = s["schemes"]["proposed"]["time_per_round_s"]
    rng = np.random.default_rng(summary["config"]["seed"])
    scenarios = [classify_and_build(rng, summary["config"]["devices"]) for _ in range(3)]
    results = [script.proposed_times(sc.cluster)[1] for sc in scenarios]

    def fedavg_round(slowdown: float) -> float:
        ts = [script.fedavg_times(sc, res, slowdown)["T_fedavg_s"]
              for sc, res in zip(scenarios, results, strict=True)]
        return max(t for t in ts if math.isfinite(t))

    assert fedavg_round(1.0) == pytest.approx(s["schemes"]["fedavg"]["time_per_round_s"])
    assert fedavg_round(0.99 * factor) <= t_prop * (1 + 1e-12)
    assert fedavg_round(1.01 * factor) > t_prop
    assert fedavg_round(100.0 * factor) > 10 * t_prop
