"""The pretrained agents shipped with the package: they load, act deterministically, weigh
under 1 MB and keep their documented gap to Algorithm 2 on their held-out seeds."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents.cli import main
from agents.pretrained import (
    PRETRAINED,
    evaluate_gap,
    load_pretrained,
    pretrained_card,
    pretrained_path,
)
from agents.pretrained.build import MAX_BYTES, compact_zip, export_run
from agents.training import load_agent

NAMES = list(PRETRAINED)


@pytest.mark.parametrize("name", NAMES)
def test_ships_under_a_megabyte_with_its_card(name: str) -> None:
    folder = pretrained_path(name)
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert {"model.zip", "vecnormalize.pkl", "config.json", "card.json"} <= set(files)
    assert sum(files.values()) < MAX_BYTES
    card = pretrained_card(name)
    spec = PRETRAINED[name]
    assert card["env_id"] == spec.env_id and card["name"] == name
    held = card["held_out"]
    assert held["seed"] == spec.eval_seed and held["episodes"] == spec.eval_episodes
    assert np.isfinite(held["gap_to_algorithm2"])
    record = json.loads((folder / "config.json").read_text())
    assert record["algo"] == spec.algo and record["total_timesteps"] == spec.timesteps
    with zipfile.ZipFile(folder / "model.zip") as zf:  # deflated, Adam state reset
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        assert zf.getinfo("policy.optimizer.pth").file_size < 20_000


@pytest.mark.parametrize("name", NAMES)
def test_acts_deterministically(name: str) -> None:
    policy = load_pretrained(name)
    assert policy.name == name
    env = gym.make(PRETRAINED[name].env_id)
    obs, _ = env.reset(seed=123)
    policy.bind(env)
    a1, _ = policy.predict(obs, deterministic=True)
    a2, _ = load_pretrained(name).bind(env).predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    assert env.action_space.contains(np.asarray(a1, dtype=env.action_space.dtype))
    # the same agent through the ALGO:NAME form of load_agent and dtfl compare
    a3, _ = load_agent(name.split(":")[1], algo="ppo").bind(env).predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a3)


@pytest.mark.parametrize("name", NAMES)
def test_keeps_its_documented_gap_on_held_out_seeds(name: str) -> None:
    spec, held = PRETRAINED[name], pretrained_card(name)["held_out"]
    got = evaluate_gap(load_pretrained(name), spec.env_id, held["seed"], held["episodes"])
    # deterministic policy, seeded episodes: the same numbers up to float noise across
    # platforms and torch builds
    assert got["algorithm2_latency_feasible_s"] == pytest.approx(
        held["algorithm2_latency_feasible_s"], rel=1e-6
    )
    assert got["gap_to_algorithm2"] <= held["gap_to_algorithm2"] + 2e-3
    assert got["violation_rate_feasible"] <= held["violation_rate_feasible"]


def test_unknown_and_missing_names_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown name 'ppo:nope'"):
        load_pretrained("ppo:nope")
    with pytest.raises(ValueError, match="no trained model at nope"):
        load_agent("nope", algo="ppo")


def test_an_existing_folder_wins_over_a_pretrained_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tableii").mkdir()  # a user's own run folder of that name, without a model
    with pytest.raises(ValueError, match="no trained model at tableii"):
        load_agent("tableii", algo="ppo")


def test_export_checks_the_run_and_compacts(tmp_path: Path) -> None:
    src = pretrained_path("ppo:tableii")
    run = tmp_path / "run"
    run.mkdir()
    for f in ("model.zip", "vecnormalize.pkl", "config.json"):
        (run / f).write_bytes((src / f).read_bytes())
    record = json.loads((run / "config.json").read_text())
    record["seed"] = 7
    (run / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="seed is 7, the spec trains with 0"):
        export_run("ppo:tableii", run, dest_root=tmp_path / "out")
    record["seed"], record["hyperparams"]["n_epochs"] = 0, 3
    (run / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="not the shipped"):
        export_run("ppo:tableii", run, dest_root=tmp_path / "out")
    dst = tmp_path / "small.zip"
    compact_zip(src / "model.zip", dst, "ppo")
    assert dst.stat().st_size < MAX_BYTES


def test_compare_runs_the_pretrained_agent(tmp_path: Path, capsys) -> None:
    code = main(
        [
            "compare",
            "--env",
            "DTFL-TableII-v0",
            "--policies",
            "ppo:tableii,algorithm2",
            "--episodes",
            "1",
            "--seed",
            "5",
            "--no-plots",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "| ppo:tableii |" in out and "| algorithm2 |" in out
