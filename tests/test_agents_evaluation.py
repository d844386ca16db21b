"""dtfl compare's FL metrics (final accuracy, time to a target accuracy, accuracy against
simulated time), its seed groups (IQM, stratified bootstrap, performance profile) and its
progress bars."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.cli import build_parser, main
from agents.evaluation import (
    DEFAULT_TARGET_ACCURACY,
    EvaluationReport,
    accuracy_over_time,
    accuracy_summary,
    evaluate_policies,
    time_to_accuracy,
)
from agents.policies import make_policy
from agents.statistics import iqm

#: DTFL-v0 with real training, as small as it gets: one cluster of 3-4 devices, two rounds
FL_TINY = {
    "clusters": 1,
    "rounds": 2,
    "devices_per_cluster": [3, 4],
    "max_devices": 6,
    "fl": {"model": "mlp", "device": "cpu", "batch_size": 50, "threads": 1},
    "ledger": {"enabled": False},
}
TINY = {"clusters": 2, "rounds": 2}
PPO_TINY = {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 1}


def _steps(path: Path) -> list[dict[str, str]]:
    with (path / "steps.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_time_to_accuracy_by_hand() -> None:
    t, a = [1.0, 3.0, 6.0, 10.0], [0.1, 0.5, 0.8, 0.9]
    assert time_to_accuracy(t, a, 0.8) == 6.0  # the first step at or above the target
    assert time_to_accuracy(t, a, 0.85) == 10.0
    assert math.isnan(time_to_accuracy(t, a, 0.95))  # never reached
    assert time_to_accuracy(t, a, 0.05, initial_accuracy=0.1) == 0.0  # reached at reset
    with pytest.raises(ValueError, match="sim_time_s, accuracy"):
        time_to_accuracy(t, a[:2], 0.5)
    grid = np.array([0.5, 1.0, 2.0, 6.0, 20.0])
    np.testing.assert_array_equal(
        accuracy_over_time(t, a, grid, initial_accuracy=0.05), [0.05, 0.1, 0.1, 0.8, 0.9]
    )


def test_accuracy_summary_counts_the_episodes_that_miss_the_target() -> None:
    rows = [
        {"episode": 0, "global_accuracy": 0.5, "sim_time_s": 10.0},
        {"episode": 0, "global_accuracy": 0.9, "sim_time_s": 30.0},
        {"episode": 1, "global_accuracy": 0.3, "sim_time_s": 5.0},
        {"episode": 1, "global_accuracy": 0.6, "sim_time_s": 50.0},
        {"episode": 2, "global_accuracy": 0.7, "sim_time_s": 8.0},
        {"episode": 2, "global_accuracy": 0.8, "sim_time_s": 9.0},
    ]
    s = accuracy_summary(rows, 0.7, {0: 0.1, 1: 0.1, 2: 0.1})
    # episodes 0 and 2 reach 70 % (at 30 s and 8 s); episode 1 never does
    assert (s["target_reached"], s["target_episodes"]) == (2, 3)
    assert s["time_to_target_s"] == pytest.approx(19.0)
    assert s["time_to_target_s_ci"] == pytest.approx(1.96 * np.std([30, 8], ddof=1) / math.sqrt(2))
    assert s["final_accuracy"] == pytest.approx((0.9 + 0.6 + 0.8) / 3)
    assert s["episode_sim_time_s"] == pytest.approx((30 + 50 + 9) / 3)
    none = accuracy_summary(rows, 0.95)
    assert none["target_reached"] == 0 and math.isnan(none["time_to_target_s"])
    # the table: "reached k/n", and "not reached" instead of a time where none reached it
    report = EvaluationReport(
        records=[], summary={"a": s, "b": none}, meta={"target_accuracy": 0.7}
    )
    table = report.markdown()
    assert "| time to 70 % [s] | reached |" in table
    assert "| 19 ± " in table and "| 2/3 |" in table
    assert "| not reached | 0/3 |" in table


def test_fl_report_and_seed_group_on_accuracy(tmp_path) -> None:
    report = evaluate_policies(
        {"algorithm2": make_policy("algorithm2"), "random": make_policy("random")},
        env_id="DTFL-v0",
        config=FL_TINY,
        episodes=2,
        seed=4,
        target_accuracy=1.0,  # no MLP reaches 100 % test accuracy in two rounds
        groups={"both": ["algorithm2", "random"]},
    )
    assert report.meta["learning"] and report.meta["target_accuracy"] == 1.0
    assert "algorithm2" in report.summary and len(report.summary) == 2  # nothing added
    for name, s in report.summary.items():
        finals = [
            [r for r in report.records if r["policy"] == name and r["episode"] == ep][-1]
            for ep in (0, 1)
        ]
        assert s["final_accuracy"] == pytest.approx(np.mean([r["global_accuracy"] for r in finals]))
        assert s["episode_sim_time_s"] == pytest.approx(np.mean([r["sim_time_s"] for r in finals]))
        assert s["target_reached"] == 0 and math.isnan(s["time_to_target_s"])
        assert 0.0 < s["final_accuracy"] < 1.0
    group = report.groups["both"]
    assert group["score"] == "final accuracy" and group["episodes"] == 2
    expected = [
        [
            [r for r in report.records if r["policy"] == n and r["episode"] == ep][-1][
                "global_accuracy"
            ]
            for ep in (0, 1)
        ]
        for n in ("algorithm2", "random")
    ]
    np.testing.assert_allclose(group["scores"], expected)
    assert group["iqm"] == pytest.approx(iqm(np.array(expected)))
    assert group["iqm_ci"][0] <= group["iqm"] <= group["iqm_ci"][1]
    paths = {p.name for p in report.save(tmp_path)}
    assert {"accuracy_time.png", "profile.png"} <= paths
    table = (tmp_path / "summary.md").read_text()
    assert "| final accuracy | time to 100 % [s] | reached | simulated time [s] |" in table
    assert "| not reached | 0/2 |" in table and "| both | 2 x 2 | final accuracy |" in table
    rows = _steps(tmp_path)
    assert "sim_time_s" in rows[0] and float(rows[-1]["sim_time_s"]) > 0


def test_compare_cli_on_dtfl_v0(tmp_path, capsys) -> None:
    out = tmp_path / "cmp"
    argv = ["compare", "--env", "DTFL-v0", "--policies", "algorithm2", "--episodes", "1"]
    argv += ["--config", json.dumps(FL_TINY), "--out", str(out), "--no-gap"]
    # the untrained model's ~10 % already passes 5 %: reached at time 0
    assert main([*argv, "--target-accuracy", "0.05"]) == 0
    s = json.loads((out / "results.json").read_text())["summary"]["algorithm2"]
    assert s["time_to_target_s"] == 0.0 and s["target_reached"] == 1
    assert "| 1/1 |" in capsys.readouterr().out
    assert (out / "accuracy_time.png").is_file()
    for bad in ("0", "1.5", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["compare", "--target-accuracy", bad])
        assert "--target-accuracy" in capsys.readouterr().err
    assert build_parser().parse_args(["compare"]).target_accuracy == DEFAULT_TARGET_ACCURACY


def test_latency_ids_keep_their_table(tmp_path) -> None:
    report = evaluate_policies(
        {"algorithm2": make_policy("algorithm2")}, env_id="DTFL-Fast-v0", config=TINY, episodes=1
    )
    assert not report.meta["learning"] and "final_accuracy" not in report.summary["algorithm2"]
    assert report.markdown().splitlines()[0] == (
        "| policy | latency, feasible [s] | gap to exact | latency, all [s] | reward | "
        "violations, feasible | violations, all | drop-outs/step | decision [ms] |"
    )
    names = {p.name for p in report.save(tmp_path)}
    assert names == {"results.json", "steps.csv", "summary.md", "latency.png", "gap.png"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "tty, flags, shown",
    [
        (True, [], True),
        (True, ["--quiet"], False),
        (False, [], False),
        (False, ["--progress"], True),
    ],
)
def test_compare_progress_bar_on_a_terminal_only(tmp_path, monkeypatch, capsys, tty, flags, shown):
    err = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    argv = ["compare", "--env", "DTFL-Fast-v0", "--policies", "random", "--episodes", "1"]
    argv += ["--config", json.dumps(TINY), "--no-plots", "--no-gap", "--out", str(tmp_path)]
    assert main([*argv, *flags]) == 0
    assert ("evaluating" in err.getvalue()) is shown
    assert "4/4" in err.getvalue() if shown else err.getvalue() == ""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["compare", "--quiet", "--progress"])


# seed groups: several PPO agents of different training seeds


@pytest.fixture(scope="session")
def ppo_seeds(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """Three tiny PPO agents (128 steps each), trained with seeds 0, 1, 2 in seed0..seed2."""
    from agents.training import train_agent

    root = tmp_path_factory.mktemp("ppo_seeds")
    for seed in range(3):
        train_agent(
            "ppo",
            "DTFL-Fast-v0",
            total_timesteps=128,
            config=TINY,
            overrides=PPO_TINY,
            out_dir=root / f"seed{seed}",
            seed=seed,
            eval_freq=10_000,
            eval_episodes=1,
        )
    return root


def _compare(out: Path, policies: str, *extra: str) -> int:
    argv = ["compare", "--env", "DTFL-Fast-v0", "--policies", policies, "--episodes", "2"]
    return main([*argv, "--config", json.dumps(TINY), "--out", str(out), "--quiet", *extra])


def test_seed_group_iqm_and_profile(ppo_seeds, tmp_path, capsys) -> None:
    dirs = [str(ppo_seeds / f"seed{k}") for k in range(3)]
    spec = "ppo:" + "+".join(dirs)
    assert _compare(tmp_path, spec) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    members = [f"ppo:{d}" for d in dirs]
    # each seed is a policy of its own; algorithm2, the score's reference, joins them
    assert list(result["summary"]) == [*members, "algorithm2"]
    group = result["groups"][spec]
    assert group["members"] == members and group["episodes"] == 2
    assert group["score"] == "algorithm2's latency / the agent's"
    # the score by hand from steps.csv: per episode, Algorithm 2's mean latency on the
    # feasible clusters over the agent's on the same clusters
    rows = _steps(tmp_path)
    expected = np.zeros((3, 2))
    for ep in range(2):
        ref = [r for r in rows if r["policy"] == "algorithm2" and int(r["episode"]) == ep]
        feasible = {r["step"] for r in ref if math.isfinite(float(r["optimal_latency_s"]))}
        t_ref = np.mean([float(r["latency_s"]) for r in ref if r["step"] in feasible])
        for k, m in enumerate(members):
            mine = [r for r in rows if r["policy"] == m and int(r["episode"]) == ep]
            expected[k, ep] = t_ref / np.mean(
                [float(r["latency_s"]) for r in mine if r["step"] in feasible]
            )
    np.testing.assert_allclose(group["scores"], expected, rtol=1e-12)
    assert group["iqm"] == pytest.approx(iqm(expected))
    assert group["iqm_ci"][0] <= group["iqm"] <= group["iqm_ci"][1]
    assert group["mean"] == pytest.approx(expected.mean())
    prof = group["profile"]
    assert prof["fraction"][0] == 1.0 and prof["fraction"][-1] == 0.0
    assert np.all(np.diff(prof["fraction"]) <= 0)
    assert (tmp_path / "profile.png").is_file()
    text = capsys.readouterr().out
    assert f"| {spec} | 3 x 2 | algorithm2's latency / the agent's |" in text


def test_seed_group_glob_and_errors(ppo_seeds, tmp_path, monkeypatch, capsys) -> None:
    pattern = f"ppo:{ppo_seeds}/seed*"
    (Path(ppo_seeds) / "seed0.log").write_text("a training log beside the runs\n")
    assert _compare(tmp_path / "glob", pattern, "--no-plots", "--no-gap", "--episodes", "1") == 0
    result = json.loads((tmp_path / "glob" / "results.json").read_text())
    assert result["groups"][pattern]["members"] == [f"ppo:{ppo_seeds}/seed{k}" for k in range(3)]
    # one agent, as before: no group
    single = f"ppo:{ppo_seeds}/seed1"
    assert _compare(tmp_path / "one", single, "--no-plots", "--no-gap", "--episodes", "1") == 0
    result = json.loads((tmp_path / "one" / "results.json").read_text())
    assert result["groups"] == {} and list(result["summary"]) == [single]
    capsys.readouterr()
    # a folder "a+b" beside folders "a" and "b": both readings hold
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b", "a+b", "c+d"):
        (tmp_path / name).mkdir()
    assert _compare(tmp_path / "x", "ppo:a+b") == 2
    assert "ppo:a+b is ambiguous: a+b is a path and also reads as the agents a, b" in (
        capsys.readouterr().err
    )
    assert _compare(tmp_path / "x", f"ppo:a+{tmp_path}/b") == 2  # a group: no agents there
    assert "no trained model at a" in capsys.readouterr().err
    # "c+d" exists and "c" does not: one folder (which holds no agent)
    assert _compare(tmp_path / "x", "ppo:c+d") == 2
    assert "no trained model at c+d" in capsys.readouterr().err
    assert _compare(tmp_path / "x", f"ppo:{ppo_seeds}/nothing*") == 2
    assert "matches no path" in capsys.readouterr().err
    assert _compare(tmp_path / "x", f"ppo:{ppo_seeds}/seed0+{ppo_seeds}/seed9") == 2
    assert "seed9' is no path" in capsys.readouterr().err
    assert _compare(tmp_path / "x", f"ppo:{ppo_seeds}/seed0++{ppo_seeds}/seed1") == 2
    assert "empty path" in capsys.readouterr().err
    with pytest.raises(ValueError, match="groups"):
        evaluate_policies({"a": make_policy("random")}, groups={"g": ["a", "b"]}, episodes=1)


def test_train_progress_bar(tmp_path, capsys) -> None:
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps(PPO_TINY))
    argv = ["train", "ppo", "--env", "DTFL-Fast-v0", "--timesteps", "128", "--eval-freq", "1000"]
    argv += ["--config", json.dumps(TINY), "--hyperparams", str(hp), "--out", str(tmp_path)]
    assert main([*argv, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "training ppo" in err and "128/128" in err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--quiet", "--progress"])
