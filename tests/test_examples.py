"""Each figure runs with ``--quick`` and its outputs have the paper's qualitative shape.

The figures run in this process through the package (``agents.figures.run_figure``, as
``dtfl reproduce`` runs them), writing into a temporary folder; one example script runs as
the README says (``python examples/figN_x.py``) in a subprocess. About 15 s in all.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.figures import FIGURES, figure_entry, run_figure

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_script(key: str, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """Run figure ``key`` with ``--quick --out out``; check its PNG and summary; its stdout."""
    name = FIGURES[key].name
    argv = ["--quick", "--out", str(out), *extra]
    record = run_figure(key, argv, progress=False)
    stdout = capsys.readouterr().out
    assert (out / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((out / f"{name}_summary.json").read_text())
    assert summary["figure"] == name and summary["config"]["quick"] is True
    assert summary["argv"] == argv and record == summary  # main returns what it wrote
    return stdout


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def num(text: str) -> float:
    return math.nan if text == "" else float(text)


def test_fig3_lambda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdout = run_script("fig3", tmp_path, capsys)
    rows = read_csv(tmp_path / "fig3_lambda.csv")
    assert {r["mode"] for r in rows} == {"paper", "corrected"}
    lam = np.array([[num(v) for k, v in r.items() if k.startswith("lambda_gld")] for r in rows])
    assert lam.shape[1] == 6 and np.all(np.isfinite(lam)) and np.all(lam >= 0)
    for mode in ("paper", "corrected"):
        its = [int(r["iteration"]) for r in rows if r["mode"] == mode]
        assert its == list(range(len(its))) and len(its) > 10
    checks = {float(r["Q_w"]): r for r in read_csv(tmp_path / "fig3_lambda_q_check.csv")}
    assert checks[3e-8]["feasible"] == "1"
    assert checks[3e-7]["feasible"] == "0"
    assert num(checks[3e-7]["Q_max_reachable_w"]) == pytest.approx(8.35e-8)
    for text in (checks[3e-7]["note"], stdout):
        assert "3e-07" in text and "infeasible" in text and "8.35e-08" in text


def test_fig4_latency_u_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_script("fig4", tmp_path, capsys)
    optima = {float(r["L_mbit"]): r for r in read_csv(tmp_path / "fig4_latency_vs_q_optima.csv")}
    reference = {1.0: 3.516, 2.0: 3.532, 3.0: 4.254, 4.0: 5.751}
    t_star = [num(optima[mbit]["T_star_s"]) for mbit in sorted(reference)]
    assert t_star == pytest.approx([reference[m] for m in sorted(reference)], abs=2e-3)
    assert all(np.diff(t_star) >= 0)  # latency grows with the model size L
    rows = [r for r in read_csv(tmp_path / "fig4_latency_vs_q.csv") if float(r["L_mbit"]) == 2]
    q = np.array([num(r["Q_w"]) for r in rows])
    t = np.array([num(r["T_s"]) for r in rows])
    assert np.all(np.diff(q) > 0)
    assert np.isnan(t).any()  # infeasible Q values are gaps, never a finite T
    feas = np.isfinite(t)
    qf, tf = q[feas], t[feas]
    k = int(np.argmin(tf))
    assert 0 < k < tf.size - 1  # interior optimum
    assert tf[0] > 2 * tf[k] and tf[-1] > 1.5 * tf[k]
    assert np.all(np.diff(tf[: k + 1]) <= 1e-9)  # decreases up to the optimum ...
    assert np.all(np.diff(tf[k:]) >= -1e-9)  # ... and increases after it
    assert tf[k] >= num(optima[2.0]["T_star_s"]) - 1e-9  # no grid point beats the exact T*
    assert qf[k] == pytest.approx(num(optima[2.0]["Q_star_w"]), rel=0.05)


def test_fig5_solver_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_script("fig5", tmp_path, capsys)
    rows = read_csv(tmp_path / "fig5_solver_time.csv")
    assert {r["method"] for r in rows} == {"exact", "algorithm2", "cvxpy"}
    assert sorted({int(r["clusters"]) for r in rows}) == [1, 2, 3]
    for method in ("exact", "algorithm2", "cvxpy"):
        sub = sorted((int(r["clusters"]), r) for r in rows if r["method"] == method)
        totals = [num(r["total_wall_s"]) for _, r in sub]
        assert all(x > 0 for x in totals) and all(np.diff(totals) >= 0)
        assert all(r["all_feasible"] == "1" for _, r in sub)
        assert num(sub[-1][1]["max_rel_diff_T_vs_exact"]) < 5e-3  # "at equal T"
    per = read_csv(tmp_path / "fig5_solver_time_per_cluster.csv")
    assert len(per) == 3 * 3


def test_fig6_jamming_raises_secrecy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_script("fig6", tmp_path, capsys)
    rows = read_csv(tmp_path / "fig6_secrecy.csv")
    rate = {(r["case"], int(r["bld"])): num(r["secrecy_rate_bps"]) for r in rows}
    blds = sorted({j for _, j in rate})
    assert blds == [1, 2, 3, 4]
    assert all(rate["optimal", j] > rate["none", j] for j in blds)
    assert all(rate["fixed", j] > rate["none", j] for j in blds)
    assert any(rate["none", j] == 0 for j in blds)  # without jamming some twin cannot sync
    cases = {r["case"]: r for r in read_csv(tmp_path / "fig6_secrecy_latency.csv")}
    assert cases["none"]["tB_up_s"] == "inf" and cases["none"]["T_s"] == ""
    assert num(cases["optimal"]["T_s"]) == pytest.approx(3.5315, abs=1e-3)
    assert num(cases["fixed"]["T_s"]) >= num(cases["optimal"]["T_s"])


def test_fig8_ledger_keeps_poisoned_models_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_script("fig8", tmp_path, capsys, "--attacks", "scaled")
    rows = read_csv(tmp_path / "fig8_malicious.csv")
    final = {r["mode"]: num(r["accuracy"]) for r in rows if r["round"] == "2"}
    assert set(final) == {"full", "signature", "none"}
    assert final["full"] > 0.5 > final["none"]  # a x-10 update wrecks unverified FedAvg
    caught = sum(int(r["rejected_malicious"]) for r in rows if r["mode"] == "full")
    assert caught == 2  # one attacker in the quick run, two rounds


def test_fig8b_validator_selection(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_script("fig8b", tmp_path, capsys)
    rows = [r for r in read_csv(tmp_path / "fig8b_validator.csv") if r["round"] != "0"]
    assert {r["policy"] for r in rows} == {"reputation", "random", "round_robin", "honest"}
    assert len(rows) == 4 * 2 * 3  # policies x seeds x rounds

    def col(policy: str, key: str) -> list[int]:
        return [int(r[key]) for r in rows if r["policy"] == policy]

    # round robin hands round 0 to coordinator 0, the malicious one, in every seed
    assert [int(r["validator_cluster"]) for r in rows if r["policy"] == "round_robin"] == [
        0,
        1,
        2,
    ] * 2
    assert sum(col("round_robin", "validator_malicious")) == 2
    for policy in ("reputation", "random", "round_robin"):  # every wrong block is caught
        assert col(policy, "audit_failed") == col(policy, "validator_malicious")
    assert sum(col("honest", "audit_failed")) == 0
    assert sum(col("reputation", "validator_malicious")) < sum(
        col("round_robin", "validator_malicious")
    )
    summary = json.loads((tmp_path / "fig8b_validator_summary.json").read_text())
    table = summary["summary"]["policies"]
    assert table["round_robin"]["malicious_validator_rounds"] == 2
    assert table["round_robin"]["poisoned_accepted"] >= 1  # "both": its ally's model gets in
    assert table["round_robin"]["final_accuracy_mean"] < table["honest"]["final_accuracy_mean"]


def test_fig9_block_size_ordering(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_script("fig9", tmp_path, capsys)
    rows = read_csv(tmp_path / "fig9_block_size.csv")
    assert len(rows) >= 3
    n = np.array([int(r["devices"]) for r in rows])
    fed = np.array([int(r["fedavg_bytes"]) for r in rows])
    for key in ("proposed_per_cluster_bytes", "proposed_fixed_bytes"):
        prop = np.array([int(r[key]) for r in rows])
        assert np.all(prop < fed)
        assert np.polyfit(n, fed, 1)[0] > 5 * np.polyfit(n, prop, 1)[0]  # FedAvg grows faster


def test_fig10_ppo_against_algorithm2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stdout = run_script("fig10", tmp_path, capsys, "--envs", "DTFL-TableII-v0")
    rows = read_csv(tmp_path / "fig10_ppo.csv")
    by = {r["policy"]: r for r in rows}
    assert {"ppo", "algorithm2", "exact", "random"} <= set(by)
    assert num(by["algorithm2"]["gap_to_algorithm2"]) == 0.0
    # the reference policies: no violation where a feasible allocation exists
    for name in ("algorithm2", "exact"):
        assert num(by[name]["violation_rate_feasible"]) in (0.0,) or math.isnan(
            num(by[name]["violation_rate_feasible"])
        )
    # PPO acts through the safe action mode: feasible wherever the cluster is
    assert num(by["ppo"]["violation_rate_feasible"]) == 0.0 or math.isnan(
        num(by["ppo"]["violation_rate_feasible"])
    )
    ppo_dir = tmp_path / "ppo_DTFL-TableII-v0"
    assert (ppo_dir / "model.zip").is_file() and (ppo_dir / "learning_curve.png").is_file()
    assert "PPO" in stdout and "Algorithm 2" in stdout


def test_reproduce_all_script_is_valid_bash() -> None:
    script = EXAMPLES / "reproduce_all.sh"
    assert "examples/fig*.py" in script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_every_example_script_runs_a_registered_figure() -> None:
    """``examples/<name>.py`` exists for every registered figure and calls its module's
    ``main`` with the command line; each module's ``FIGURE`` is the registered name."""
    import importlib

    scripts = {p.stem: p for p in EXAMPLES.glob("fig*.py")}
    assert set(scripts) == {e.name for e in FIGURES.values()}
    for entry in FIGURES.values():
        assert importlib.import_module(entry.module).FIGURE == entry.name
        tree = ast.parse(scripts[entry.name].read_text())
        assert ast.get_docstring(tree)  # what the figure shows
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert [(n.module, [a.name for a in n.names]) for n in imports] == [
            ("agents.figures", [entry.module.rpartition(".")[2]])
        ]
        assert f"{entry.module.rpartition('.')[2]}.main(sys.argv[1:])" in ast.unparse(tree)


def test_example_script_runs_from_the_repository_root(tmp_path: Path) -> None:
    """``python examples/fig9_block_size.py --quick --out DIR``, as the README says."""
    proc = subprocess.run(
        [sys.executable, "examples/fig9_block_size.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, f"fig9 failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "fig9_block_size.png").read_bytes()[:8] == PNG_MAGIC
    summary = json.loads((tmp_path / "fig9_block_size_summary.json").read_text())
    assert summary["argv"] == ["--quick", "--out", str(tmp_path)]
    assert "Fig. 9" in proc.stdout


def test_unknown_figure_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown figure .fig99.*fig4, fig5"):
        figure_entry("fig99")
