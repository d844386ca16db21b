"""The timing scripts under benchmarks/ run end to end on tiny budgets and save what they
print (their numbers are not checked here: timings belong to the scripts, not to tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # a subprocess: the scripts set torch's thread count or pin the process to one core
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (script, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def test_fl_speed_small_run_with_breakdown(tmp_path: Path) -> None:
    out = tmp_path / "fl_speed.json"
    proc = _run(
        "fl_speed.py",
        "--clients",
        "4",
        "--clusters",
        "1",
        "--repeats",
        "2",
        "--threads",
        "1",
        "--dtype",
        "float64",
        "--breakdown",
        "--breakdown-steps",
        "2",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    res = json.loads(out.read_text())
    assert res["args"]["threads"] == 1 and res["target_speedup"] == 5.0
    rows = res["local_round"]
    assert {(r["model"], r["population"]) for r in rows} == {
        (m, p) for m in ("cnn", "mlp") for p in ("table2", "uniform")
    }
    for r in rows:
        assert r["clients"] == 4 and r["batched_s"] > 0 and r["sequential_s"] > 0
        # the same plan trained both ways: in float64 no tie flips apart
        assert r["dtype"] == "float64" and r["max_param_diff"] < 1e-10
        assert r["clients_above_1e-5"] == 0
        # the median of 2 back-to-back pairs' ratios, bracketed by them
        pairs = r["speedup_pairs"]
        assert len(pairs) == 2 and min(pairs) <= r["speedup"] <= max(pairs)
        assert abs(r["speedup"] - sum(pairs) / 2) < 1e-12
    assert [r["rounds_run"] >= 1 for r in res["full_round"]] == [True, True]
    by_model = {r["model"]: r for r in res["breakdown"]}
    cnn, mlp = by_model["cnn"], by_model["mlp"]
    assert cnn["block_clients"] == 10 and mlp["block_clients"] == 25
    assert {o["op"] for o in cnn["ops"]} >= {
        "convolution",
        "convolution_backward",
        "max_pool2d_with_indices",
    }
    assert 0.0 < cnn["convolution_share"] <= 1.0 and mlp["convolution_share"] == 0.0
    for r in (cnn, mlp):
        assert abs(r["per_client_step_s"] * r["block_clients"] - r["block_step_s"]) < 1e-12
        assert r["ops_ms_per_step"] > 0 and r["sequential_step_s"] > 0
        # the rates follow from the counted FLOPs and the measured step times
        n = r["block_clients"] * r["batch_size"]
        assert (
            abs(r["block_gflops"] - r["flops_per_sample_step"] * n / r["block_step_s"] / 1e9)
            < 1e-9 * r["block_gflops"]
        )
        assert r["sequential_gflops"] > 0 and r["sgemm_gflops"] > 0
    # one plain training step of the paper's CNN: 2.6 MFLOP per 28x28 digit (forward
    # 0.93, backward without conv1's input gradient); the MLP's 784-64-10 layers: 0.2
    # (2 FLOPs per multiply-add; forward, weight gradients, fc2's input gradient)
    assert abs(cnn["flops_per_sample_step"] - 2.595e6) < 1e3
    assert mlp["flops_per_sample_step"] == 2 * (2 * 784 * 64 + 3 * 64 * 10)
    assert res["machine"]["cpu"] and "GFLOP/s" in proc.stdout
    assert "per core" in proc.stdout and "convolution_backward" in proc.stdout
    assert "over 2 pairs" in proc.stdout


def test_fl_speed_rejects_zero_repeats(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "fl_speed.py"),
            "--repeats",
            "0",
            "--out",
            str(tmp_path / "x.json"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--repeats: must be >= 1" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_env_speed_small_run(tmp_path: Path) -> None:
    out = tmp_path / "env_speed.json"
    _run(
        "env_speed.py",
        "--seconds",
        "0.05",
        "--repeats",
        "1",
        "--ids",
        "DTFL-Fast-v0",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    res = json.loads(out.read_text())
    text = json.dumps(res)
    assert "DTFL-Fast-v0" in text and "CartPole-v1" in text and "steps_per_s" in text


def test_env_speed_vector_small_run_against_a_checkout(tmp_path: Path) -> None:
    out = tmp_path / "env_speed_vector.json"
    proc = _run(
        "env_speed.py",
        "--vector",
        "--num-envs",
        "2",
        "--ids",
        "DTFL-Fast-v0+safe",
        "--seconds",
        "0.05",
        "--repeats",
        "1",
        "--against",
        str(BENCH.parent),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    res = json.loads(out.read_text())
    assert res["mode"] == "vector" and res["num_envs"] == [2]
    cases = {(r["env_id"], r["num_envs"]) for r in res["rows"]}
    assert cases == {(i, n) for i in ("DTFL-Fast-v0+safe", "CartPole-v1") for n in (0, 2)}
    for r in res["rows"]:  # this checkout and the one against, each timed in its process
        for name in ("this", "against"):
            run = r[name]["runs"][0]
            assert run["num_envs"] == r["num_envs"] and run["steps"] > 0
        assert r["speedup"] > 0
    assert "against" in proc.stdout and "speed-up" in proc.stdout


def test_block_size_small_run(tmp_path: Path) -> None:
    out = tmp_path / "block_size.json"
    _run("block_size.py", "--params", "100", "--devices", "2,4", "--out", str(out), cwd=tmp_path)
    res = json.loads(out.read_text())
    assert [r["devices"] for r in res["rows"]] == [2, 4]
    for r in res["rows"]:  # one transaction per device on chain vs one per cluster
        assert r["fedavg_bytes"] > 0 and r["proposed_fixed_bytes"] > 0
    assert res["rows"][1]["fedavg_bytes"] > res["rows"][0]["fedavg_bytes"]


def test_solvers_batch_small_run(tmp_path: Path) -> None:
    out = tmp_path / "solvers_batch.json"
    proc = _run(
        "solvers.py",
        "--batch",
        "--sizes",
        "1,6",
        "--loop-clusters",
        "4",
        "--cvxpy-clusters",
        "1",
        "--repeats",
        "1",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    res = json.loads(out.read_text())
    assert res["mode"] == "batch" and [r["B"] for r in res["rows"]] == [1, 6]
    for r in res["rows"]:
        assert r["clusters_per_s"] > 0
        assert abs(r["us_per_cluster"] * r["B"] - 1e6 * r["seconds"]) < 1e-6 * r["B"] * 1e6
        assert (
            abs(r["speedup_vs_loop"] - res["loop_us_per_cluster"] / r["us_per_cluster"])
            < 1e-9 * r["speedup_vs_loop"]
        )
        assert r["speedup_vs_cvxpy"] > 0
    # both solvers certify T* to 1e-7 relative on the same clusters
    assert res["max_rel_dev_vs_loop"] <= 2e-7
    assert "x loop" in proc.stdout and "cvxpy" in proc.stdout
    # corrected Algorithm 2, batched beside its own loop: the same search, the same T
    a2 = res["algorithm2"]
    assert [r["B"] for r in a2["rows"]] == [1, 6] and a2["max_rel_dev_vs_loop"] <= 1e-9
    for r in a2["rows"]:
        assert (
            abs(r["speedup_vs_loop"] - a2["loop_us_per_cluster"] / r["us_per_cluster"])
            < 1e-9 * r["speedup_vs_loop"]
        )
    assert "algorithm2: per-cluster loop" in proc.stdout


def test_solvers_batch_rejects_bad_sizes(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "solvers.py"),
            "--batch",
            "--sizes",
            "0,4",
            "--out",
            str(tmp_path / "x.json"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--sizes" in proc.stderr
    assert not (tmp_path / "x.json").exists()


def test_sb3_speed_small_run(tmp_path: Path) -> None:
    out = tmp_path / "sb3_speed.json"
    _run(
        "sb3_speed.py",
        "--env",
        "DTFL-Fast-v0",
        "--timesteps",
        "128",
        "--env-steps",
        "64",
        "--modes",
        "direct",
        "--vec-envs",
        "native,dummy",
        "--overrides",
        json.dumps({"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 1}),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    res = json.loads(out.read_text())
    assert [r["vec_env"] for r in res["rows"]] == ["native", "dummy"]
    assert res["torch_threads"] == 1
    for r in res["rows"]:
        assert r["steps"] >= 128 and 0 < r["collect_s"] < r["learn_s"]
        assert r["env_steps_per_s"] > 0 and r["n_envs"] == 2
