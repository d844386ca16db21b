"""Instance files as the env's scenario (dtfl_env.instances, sites.instance_sites)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import dtfl_env  # noqa: F401  (registers the ids)
from dtfl_env.config import Cluster
from dtfl_env.envs.config import EnvConfig, default_config, merge_config, validate_config
from dtfl_env.fl.config import model_size_bits
from dtfl_env.instances import load_instances
from dtfl_env.registration import ENV_IDS
from dtfl_env.scenarios import random_cluster, table2_cluster
from solvers.exact import solve_exact

LATENCY_IDS = sorted(i for i, o in ENV_IDS.items() if o.get("fl", {}).get("backend") == "none")


def _write(folder: Path) -> list[Cluster]:
    """Three instance files in ``folder``: Table II (saved: every constant), a random cluster
    (saved) and a small one without constants (the defaults); returned in name order."""
    folder.mkdir(exist_ok=True)
    clusters = [table2_cluster(), random_cluster(3, 4, 3), random_cluster(5, 2, 2)]
    clusters[0].save(folder / "a_table2.json")
    clusters[1].save(folder / "b_random.json")
    c = clusters[2]
    (folder / "c_bare.json").write_text(
        json.dumps({"gld": c.gld.to_dict(), "bld": c.bld.to_dict()})
    )
    (folder / "notes.txt").write_text("not an instance")  # only *.json files count
    return clusters


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _write(tmp_path / "inst")
    return tmp_path / "inst"


def _make(folder: Path, env_id: str = "DTFL-Fast-v0", **overrides):  # type: ignore[no-untyped-def]
    return gym.make(env_id, config={"scenario": {"instances": str(folder)}, **overrides}).unwrapped


# ------------------------------------------------------------------------------ loading
def test_a_directory_reads_its_json_files_by_name_and_a_list_keeps_its_order(
    folder: Path,
) -> None:
    clusters = [table2_cluster(), random_cluster(3, 4, 3), random_cluster(5, 2, 2)]
    by_dir = load_instances(str(folder))
    assert [Path(p).name for p in by_dir.paths] == ["a_table2.json", "b_random.json", "c_bare.json"]
    assert all(a == b for a, b in zip(by_dir.clusters, clusters, strict=True))
    assert by_dir.given_constants[2] == () and "model_bits" in by_dir.given_constants[0]
    files = [str(folder / "c_bare.json"), str(folder / "a_table2.json")]
    by_list = load_instances(files)
    assert by_list.paths == tuple(files) and by_list.clusters[1] == clusters[0]
    assert by_list.to_dict() == {"instances": files}
    assert by_dir.to_dict() == {"instances": str(folder)}


def _bad_file(folder: Path, text: str) -> str:
    path = folder / "z_bad.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["gld"].update(energy_budget_j=[3.0, -1.0, 3.0, 3.0, 3.0, 3.0]),
            r"gld\.energy_budget_j\[1\]: must be > 0, got -1\.0",
        ),
        (lambda d: d["bld"].pop("power_w"), r"missing key\(s\): bld\.power_w"),
        (lambda d: d.update(extra=1), r"unknown key\(s\): extra"),
        (
            lambda d: d["constants"].update(bandwith_hz=1.0),
            r"unknown key\(s\): constants\.bandwith_hz",
        ),
    ],
    ids=["value", "missing", "unknown", "constant"],
)
def test_errors_name_the_entry_the_file_and_the_field(folder: Path, change, message) -> None:
    data = table2_cluster().to_dict()
    change(data)
    bad = _bad_file(folder, json.dumps(data))
    files = [str(folder / "a_table2.json"), str(folder / "b_random.json"), bad]
    where = rf"scenario\.instances\[2\] \({re.escape(bad)}\): "
    with pytest.raises(ValueError, match=where + message):
        gym.make("DTFL-Fast-v0", config={"scenario": {"instances": files}})
    where = rf"scenario\.instances\[3\] \({re.escape(bad)}\): "  # after the three by name
    with pytest.raises(ValueError, match=where + message):  # the directory form alike
        gym.make("DTFL-Fast-v0", config={"scenario": {"instances": str(folder)}})


def test_missing_files_bad_json_and_empty_sources_are_clear_errors(
    folder: Path, tmp_path: Path
) -> None:
    a = str(folder / "a_table2.json")

    def fails(instances, message: str) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(ValueError, match=message):
            gym.make("DTFL-Fast-v0", config={"scenario": {"instances": instances}})

    fails([a, "no/such.json"], r"scenario\.instances\[1\] \(no/such\.json\): no such file")
    fails(
        [a, str(folder)], rf"scenario\.instances\[1\] \({re.escape(str(folder))}\): is a directory"
    )
    bad = _bad_file(folder, "{not json")
    fails([bad], rf"scenario\.instances\[0\] \({re.escape(bad)}\): not valid JSON")
    fails([_bad_file(folder, "[1, 2]")], r"\[0\] .*: expected a JSON object with gld, bld")
    (tmp_path / "empty").mkdir()
    fails(str(tmp_path / "empty"), r"scenario\.instances: no \*\.json instance files in")
    fails(str(tmp_path / "nowhere"), r"scenario\.instances: no such directory: '.*nowhere'")
    fails([], r"scenario\.instances: the list is empty")
    fails([a, 3], r"scenario\.instances\[1\]: expected a file path \(a string\), got 3")
    fails({"a": a}, r"scenario\.instances: expected a list of instance files or a directory")
    with pytest.raises(ValueError, match=r"unknown key\(s\): scenario\.files"):
        gym.make("DTFL-Fast-v0", config={"scenario": {"files": [a]}})
    with pytest.raises(ValueError, match=r"scenario: a mapping needs the key 'instances'"):
        gym.make("DTFL-Fast-v0", config={"scenario": {}})
    with pytest.raises(ValueError, match=r"scenario: must be one of \['random', 'table2'\]"):
        gym.make("DTFL-Fast-v0", config={"scenario": "files"})
    with pytest.raises(
        ValueError,
        match=rf"max_devices: scenario\.instances\[0\] \({re.escape(a)}\) has 10 devices",
    ):
        small = {"max_devices": 8, "devices_per_cluster": [2, 4]}
        gym.make("DTFL-Fast-v0", config={"scenario": {"instances": [a]}, **small})


# ----------------------------------------------------------------------------- channels
def test_without_fading_every_round_charges_the_instances_as_given(folder: Path) -> None:
    clusters = _write(folder)
    env = _make(folder, clusters=3, rounds=2, fading=False, compute_optimal=True)
    env.reset(seed=0)
    assert sorted(s.instance for s in env.view.sites) == [0, 1, 2]  # clusters = n: each once
    for _ in range(2 * 3):
        c = clusters[env.view.sites[env.view.cluster].instance]
        assert env.true_cluster == c and env.cluster == c  # gains as given, GLDs in file order
        _, _, _, _, info = env.step(env.action_space.sample())
        t_star = solve_exact(c).T
        assert info["optimal_latency_s"] == pytest.approx(t_star, rel=1e-7) or (
            np.isinf(t_star) and np.isinf(info["optimal_latency_s"])
        )


def test_with_fading_each_round_draws_rayleigh_gains_around_the_instances(folder: Path) -> None:
    clusters = _write(folder)
    env = _make(folder, clusters=3, rounds=300)
    env.reset(seed=3)
    ratios = []
    for _ in range(300 * 3):
        site = env.view.sites[env.view.cluster]
        c = clusters[site.instance]
        np.testing.assert_array_equal(site.mean_gc, c.gld.gain_coordinator)  # the means
        np.testing.assert_array_equal(site.mean_he, c.bld.gain_eavesdropper)
        true = env.true_cluster
        assert true.gld.data_bits is not None and np.array_equal(
            true.gld.max_power_w, c.gld.max_power_w
        )
        ratios.append(true.gld.gain_coordinator / c.gld.gain_coordinator)
        ratios.append(true.bld.gain_eavesdropper / c.bld.gain_eavesdropper)
        env.step(env.action_space.sample())
    ratios = np.concatenate(ratios)
    assert not np.any(ratios == 1.0)  # every round's gains are drawn
    # |h|^2 ~ Exp(1): mean 1, P(X > 1) = 1 / e (about 5000 draws)
    assert abs(ratios.mean() - 1.0) < 0.05 and abs(np.mean(ratios > 1.0) - np.exp(-1)) < 0.02


@pytest.mark.parametrize("clusters", [1, 2, 3, 7])
def test_each_topology_deals_clusters_of_the_instances_evenly(folder: Path, clusters) -> None:
    env = _make(folder, clusters=clusters, rounds=1, fading=False)
    env.reset(seed=5)
    first = [s.instance for s in env.view.sites]
    counts = Counter(first)
    assert len(first) == clusters and set(counts) <= {0, 1, 2}
    assert len(counts) == min(clusters, 3)  # distinct until every instance is dealt
    if clusters >= 3:  # then each floor(S / 3) or ceil(S / 3) times
        assert max(counts.values()) - min(counts.values()) <= 1
    env.reset(seed=5)
    assert [s.instance for s in env.view.sites] == first  # seeded: the same deal
    deals = set()
    for _ in range(20):  # new_topology_each_episode: a fresh deal every reset
        env.reset()
        deals.add(tuple(s.instance for s in env.view.sites))
    assert len(deals) > 1


# ---------------------------------------------------------------------------- constants
def test_the_instances_constants_are_the_envs_with_the_config_over_them(folder: Path) -> None:
    a = table2_cluster().with_constants(bandwidth_hz=2e6)
    b = random_cluster(3, 4, 3).with_constants(bandwidth_hz=2e6)
    a.save(folder / "a_table2.json")
    b.save(folder / "b_random.json")
    files = [str(folder / "a_table2.json"), str(folder / "b_random.json")]
    with pytest.raises(ValueError) as err:  # the bare file keeps the default bandwidth
        validate_config(merge_config(default_config(), {"scenario": {"instances": str(folder)}}))
    assert "scenario.instances[2]" in str(err.value) and "c_bare.json" in str(err.value)
    assert "constants.bandwidth_hz: 1000000.0 differs from 2000000.0 of" in str(err.value)
    env = gym.make(
        "DTFL-Fast-v0", config={"scenario": {"instances": files}, "fading": False}
    ).unwrapped
    assert env.constants.bandwidth_hz == 2e6
    env.reset(seed=0)
    assert env.true_cluster.constants == a.constants
    over = {"scenario": {"instances": str(folder)}, "constants": {"bandwidth_hz": 3e6}}
    env = gym.make("DTFL-Fast-v0", config=over).unwrapped  # one value for all: no conflict
    env.reset(seed=0)
    assert env.constants.bandwidth_hz == 3e6 == env.true_cluster.constants.bandwidth_hz


def test_with_training_the_upload_size_follows_the_files_unless_none_sets_it(
    folder: Path,
) -> None:
    def model_bits(files: list[str], **constants: float) -> float:
        over = {"scenario": {"instances": files}, "constants": constants}
        return validate_config(merge_config(default_config(), over)).constants.model_bits

    saved, bare = str(folder / "a_table2.json"), str(folder / "c_bare.json")
    assert model_bits([saved]) == 2e6  # a saved file sets L
    assert model_bits([bare]) == model_size_bits("cnn")  # left out: the trained model's
    assert model_bits([bare], model_bits=1e6) == 1e6


def test_config_round_trips_and_reset_options_replace_the_scenario(folder: Path) -> None:
    cfg = validate_config(merge_config(default_config(), {"scenario": {"instances": str(folder)}}))
    assert cfg.scenario_name == "instances" and len(cfg.scenario) == 3
    again = EnvConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and hash(again) == hash(cfg)
    env = _make(folder, clusters=2, rounds=1)
    env.reset(seed=0, options={"config": {"scenario": "table2"}})
    assert env.settings.scenario == "table2" and env.view.sites[0].instance is None
    env.reset(
        seed=0, options={"config": {"scenario": {"instances": [str(folder / "c_bare.json")]}}}
    )
    assert [s.instance for s in env.view.sites] == [0, 0]


# ---------------------------------------------------------------------------------- ids
@pytest.mark.parametrize("env_id", LATENCY_IDS)
def test_every_latency_only_id_runs_on_instances(folder: Path, env_id: str) -> None:
    env = gym.make(
        env_id,
        config={"scenario": {"instances": str(folder)}, "clusters": 3, "rounds": 2},
        render_mode="ansi",
    )
    check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    assert env.unwrapped.settings.scenario_name == "instances"
    assert env.render().startswith("DTFL [instances]")


def test_dtfl_v0_trains_on_instances(folder: Path) -> None:
    env = _make(
        folder,
        "DTFL-v0",
        clusters=3,
        rounds=1,
        fl={"model": "mlp", "device": "cpu"},
    )
    _, info = env.reset(seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(env.action_space.sample())
    assert info["ledger_round_closed"] == 1 and np.isfinite(info["global_accuracy"])
    assert env.constants.model_bits == 2e6  # the saved files set L
