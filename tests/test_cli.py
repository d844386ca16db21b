"""The dtfl CLI and the README's commands."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli import JSON_KEYS, main

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_solve_preset_table(capsys):
    assert main(["solve", "--preset", "table2"]) == 0
    out = capsys.readouterr().out
    assert "T*      = 3.5315 s" in out
    assert "status: optimal" in out


def test_solve_instances_json(tmp_path, capsys):
    good = tmp_path / "t2.json"
    assert main(["solve", "--preset", "table2", "--save", str(good)]) == 0
    bad = tmp_path / "bad.json"
    data = json.loads(good.read_text())
    data["gld"]["max_power_w"] = [1.0, -2.0, 1.0, 1.0, 1.0, 1.0]
    bad.write_text(json.dumps(data))
    capsys.readouterr()
    code = main(
        ["solve", "--instance", str(good), str(bad), str(good), "--json", "--solver", "algorithm2"]
    )
    captured = capsys.readouterr()
    assert code == 2
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert len(lines) == 3
    assert set(JSON_KEYS) <= set(lines[0])
    assert lines[0]["T"] == pytest.approx(3.5315, rel=1e-4)
    assert lines[0]["status"] == "converged" and lines[2]["status"] == "converged"
    assert lines[1]["status"] == "error" and lines[1]["T"] is None
    assert "gld.max_power_w[1]" in captured.err and "bad.json" in captured.err


def test_infeasible_instance_json(tmp_path, capsys):
    path = tmp_path / "poor.json"
    main(["solve", "--preset", "table2", "--save", str(path)])
    data = json.loads(path.read_text())
    data["gld"]["energy_budget_j"] = [0.01] * 6
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["solve", "--instance", str(path), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["status"] == "infeasible" and rec["T"] is None and rec["message"]


def _readme_blocks(lang: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_python_blocks_run():
    blocks = _readme_blocks("python")
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})


def test_readme_shell_commands_run(tmp_path):
    commands = [
        line.split("#")[0].strip()
        for block in _readme_blocks("bash")
        for line in block.splitlines()
    ]
    commands = [c for c in commands if c]
    ran = 0
    for cmd in commands:
        # the install-and-run line: its last part is the main job
        cmd = cmd.split("&&")[-1].strip()
        argv = shlex.split(cmd)
        if argv[0] in (".venv/bin/python",):
            argv[0] = sys.executable
            argv = [a if not a.startswith("benchmarks/") else str(ROOT / a) for a in argv]
            if "-m" in argv and "pytest" in argv:
                continue  # the test command itself: run by .ci/run
            if "--clusters" in argv:
                argv[argv.index("--clusters") + 1] = "2"
                argv += ["--out", str(tmp_path / "bench.json")]
        elif argv[0] in ("dtfl", ".venv/bin/dtfl"):
            argv[0] = str(BIN / "dtfl")
            if argv[1] == "compare":  # the same command on a smaller episode
                argv += ["--config", '{"clusters": 3, "rounds": 1}']
        else:
            raise AssertionError(f"README command not covered by this test: {cmd}")
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-2000:])
        ran += 1
    assert ran >= 4


def test_train_rejects_a_zero_eval_freq(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "ppo",
                "--env",
                "DTFL-Fast-v0",
                "--timesteps",
                "64",
                "--eval-freq",
                "0",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "eval_freq: must be an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_reproduce_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "fig9", "--quick"]) == 0
    assert (tmp_path / "runs" / "fig9_block_size" / "fig9_block_size.png").is_file()
    assert main(["reproduce", "fig99"]) == 2
    err = capsys.readouterr().err
    assert "unknown figure 'fig99'" in err
    assert "known: fig3, fig4, fig5, fig6, fig7, fig8, fig8b, fig9, fig10, all" in err
    # --out DIR: the figure goes to DIR/<figure name>/, nothing under ./runs
    out = tmp_path / "elsewhere"
    assert main(["reproduce", "fig9", "--quick", "--out", str(out), "--quiet"]) == 0
    files = sorted(p.name for p in (out / "fig9_block_size").iterdir())
    assert files == ["fig9_block_size.csv", "fig9_block_size.png", "fig9_block_size_summary.json"]
    summary = json.loads((out / "fig9_block_size" / "fig9_block_size_summary.json").read_text())
    assert summary["argv"] == ["--quick", "--out", str(out / "fig9_block_size")]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["fig9_block_size"]
    # stderr is not a terminal here: no progress bar, so CI logs stay clean
    assert capsys.readouterr().err == ""


def test_reproduce_all_runs_every_figure_in_process(tmp_path, monkeypatch, capsys):
    """``all`` runs the registry in order, each into DIR/<name>/; a failing figure is
    reported and the others still run; --quiet turns the figures' progress bars off."""
    import agents.figures
    from agents.figures import FIGURES

    calls = []

    def fake_run(key, argv, *, progress=None):  # type: ignore[no-untyped-def]
        calls.append((key, list(argv), progress))
        if key == "fig5":
            raise RuntimeError("fig5 broke")
        return {}

    monkeypatch.setattr(agents.figures, "run_figure", fake_run)
    assert main(["reproduce", "all", "--quick", "--out", str(tmp_path)]) == 1
    assert [c[0] for c in calls] == list(FIGURES)
    for key, argv, progress in calls:
        assert argv == ["--quick", "--out", str(tmp_path / FIGURES[key].name)]
        assert progress is None  # a bar where stderr is a terminal
    err = capsys.readouterr().err
    assert "RuntimeError: fig5 broke" in err and "error: failed: fig5" in err
    calls.clear()
    assert main(["reproduce", "fig4", "--quiet"]) == 0
    assert calls == [("fig4", ["--out", str(Path("runs") / "fig4_latency_vs_q")], False)]


def test_progress_bar_only_on_a_terminal(capsys):
    from agents.figures.common import progress_bar

    assert list(progress_bar(range(3), None, desc="quiet here")) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # pytest's stderr is no terminal
    assert list(progress_bar(range(3), True, desc="forced")) == [0, 1, 2]
    assert "forced" in capsys.readouterr().err


@pytest.mark.parametrize("solver", ["exact", "algorithm2"])
def test_many_instances_are_solved_as_one_batch(tmp_path, capsys, monkeypatch, solver):
    import solvers
    from dtfl_env.scenarios import random_cluster
    from solvers import solve

    calls = []

    def spy(clusters, method="exact", **kw):  # type: ignore[no-untyped-def]
        calls.append((len(clusters), method))
        return solvers.batch.solve_batch(clusters, method, **kw)

    monkeypatch.setattr(solvers, "solve_batch", spy)

    paths = []
    for seed in range(4):
        c = random_cluster(seed, n_gld=3 + seed, n_bld=seed % 3)
        if seed == 3:  # an infeasible one among them
            c = type(c)(
                c.gld.__class__(**{**c.gld.to_dict(), "energy_budget_j": [0.01] * c.n_gld}),
                c.bld,
                c.constants,
            )
        paths.append(tmp_path / f"c{seed}.json")
        c.save(paths[-1])
    capsys.readouterr()
    assert main(["solve", "--instance", *map(str, paths), "--json", "--solver", solver]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert calls == [(4, solver)]  # one batched solve for the four instances
    assert [r["solver"] for r in lines] == [f"{solver}-batch"] * 4
    for path, rec in zip(paths, lines, strict=True):
        ref = solve(type(c).load(path), solver)
        if ref.feasible:
            assert rec["T"] == pytest.approx(ref.T, rel=1e-6) and rec["status"] == ref.status
        else:
            assert rec["status"] == "infeasible" and rec["T"] is None
    assert lines[3]["status"] == "infeasible"


def test_config_json_longer_than_a_file_name(tmp_path) -> None:
    """--config takes JSON text of any length (a long text is not mistaken for a path)."""
    from agents.cli import main

    long = {
        "clusters": 1,
        "rounds": 1,
        "random": {"difficulty": 0.0},
        "reward": {"latency_form": "log", "latency_reference_s": 10.000000000000000001},
        "constants": {
            "model_bits": 2e6,
            "bandwidth_hz": 1e6,
            "noise_coordinator_w": 1e-9,
            "noise_bld_w": 1e-9,
            "noise_eavesdropper_w": 1e-9,
            "coordinator_cpu_hz": 1e10,
            "aggregation_s": 0.05,
        },
    }
    text = json.dumps(long)
    assert len(text) > 255  # longer than a file name may be
    assert (
        main(
            [
                "compare",
                "--env",
                "DTFL-Fast-v0",
                "--policies",
                "random",
                "--episodes",
                "1",
                "--config",
                text,
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )


def _instance_dir(folder: Path) -> list[float]:
    """Three instance files (Table II, an infeasible random cluster, a small feasible one)
    in ``folder``; their exact T* in name order."""
    from dtfl_env.scenarios import random_cluster, table2_cluster
    from solvers.exact import solve_exact

    folder.mkdir()
    clusters = [table2_cluster(), random_cluster(3, 4, 3), random_cluster(5, 2, 2)]
    for name, c in zip("abc", clusters, strict=True):
        c.save(folder / f"{name}.json")
    return [solve_exact(c).T for c in clusters]


def test_compare_on_instance_files(tmp_path, capsys) -> None:
    t_star = _instance_dir(tmp_path / "inst")
    argv = ["compare", "--env", "DTFL-Fast-v0", "--policies", "exact", "--episodes", "1"]
    argv += ["--instances", str(tmp_path / "inst"), "--no-plots", "--out", str(tmp_path / "r")]
    assert main([*argv, "--config", '{"fading": false, "rounds": 2}']) == 0
    meta = json.loads((tmp_path / "r" / "results.json").read_text())["meta"]
    assert meta["config"] == {
        "clusters": 3,  # one cluster per instance
        "fading": False,
        "rounds": 2,
        "scenario": {"instances": str(tmp_path / "inst")},
    }
    rows = (tmp_path / "r" / "steps.csv").read_text().splitlines()
    head = rows[0].split(",")
    steps = [dict(zip(head, r.split(","), strict=True)) for r in rows[1:]]
    assert len(steps) == 2 * 3
    for r in range(2):  # every round: each instance once, its channels as given
        seen = sorted(float(s["optimal_latency_s"]) for s in steps if s["round"] == str(r))
        assert seen == pytest.approx(sorted(t_star), rel=1e-6)  # solve_batch: to 1e-7
    # --config's clusters stands (the instances dealt evenly: each twice)
    assert main([*argv, "--config", '{"clusters": 6, "rounds": 1}']) == 0
    assert len((tmp_path / "r" / "steps.csv").read_text().splitlines()) == 1 + 6
    capsys.readouterr()
    assert main([*argv, "--config", '{"scenario": "table2"}']) == 2
    assert "--instances and --config both set the scenario" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    argv[argv.index("--instances") + 1] = str(tmp_path / "empty")
    assert main(argv) == 2
    assert (
        "error: --instances: no *.json instance files in the directory" in capsys.readouterr().err
    )
