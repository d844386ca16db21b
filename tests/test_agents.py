"""Policies, the evaluation harness, PPO smoke run and the compare/train CLI."""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest

from agents import POLICIES, CallablePolicy, load_policy_class, make_policy
from agents.cli import main
from agents.evaluation import evaluate_policies, mean_ci
from dtfl_env.registration import ENV_IDS

SMALL = {"clusters": 2, "rounds": 1, "fl": {"backend": "none"}}  # FL: tests/test_env_fl.py


@pytest.mark.parametrize("mode", ["direct", "safe"])
@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
@pytest.mark.parametrize("name", [*sorted(POLICIES), "algorithm2-paper"])
def test_every_policy_runs_on_every_id(env_id, name, mode):
    env = gym.make(env_id, config={**SMALL, "action": {"mode": mode}})
    policy = make_policy(name).bind(env)
    obs, _ = env.reset(seed=3)
    done = False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)
        # analytical policies answer in float64 (exact round trips); the values are in the box
        assert env.action_space.contains(np.asarray(action, dtype=np.float32))
        obs, reward, term, trunc, _ = env.step(action)
        assert math.isfinite(reward)
        done = term or trunc


def test_algorithm2_gap_to_exact():
    report = evaluate_policies(
        {"algorithm2": make_policy("algorithm2"), "exact": make_policy("exact")},
        env_id="DTFL-v0",
        config={"clusters": 10, "rounds": 2, "fl": {"backend": "none"}},
        episodes=1,
        seed=11,
    )
    gaps = [
        r["gap"] for r in report.records if r["policy"] == "algorithm2" and math.isfinite(r["gap"])
    ]
    assert len(gaps) >= 12
    assert max(gaps) <= 0.005
    exact = [r for r in report.records if r["policy"] == "exact"]
    assert all(abs(r["gap"]) < 1e-5 for r in exact if math.isfinite(r["gap"]))
    assert all(r["violation"] == 0 for r in exact if math.isfinite(r["gap"]))


def test_custom_policy_from_file(tmp_path, capsys):
    src = tmp_path / "my_policy.py"
    src.write_text(
        "import numpy as np\n"
        "class Lazy:\n"
        "    def predict(self, obs, state=None, episode_start=None, deterministic=False):\n"
        "        return np.ones(18, dtype=np.float32), state\n"
    )
    cls = load_policy_class(f"{src}:Lazy")
    assert hasattr(cls(), "predict")
    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            "--policies",
            "algorithm2",
            "--policy",
            f"{src}:Lazy",
            "--episodes",
            "1",
            "--config",
            json.dumps(SMALL),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    for name in ("results.json", "steps.csv", "summary.md", "latency.png", "gap.png"):
        assert (out / name).is_file()
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["summary"]) == {"algorithm2", "Lazy"}
    assert summary["meta"]["versions"]["numpy"]
    assert "| Lazy |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nocolon", "module:Class"),
        ("no_such_module_xyz:C", "cannot import"),
        ("/no/such/file.py:C", "no such file"),
        ("json:NoSuchClass", "no attribute"),
    ],
)
def test_bad_policy_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        load_policy_class(spec)


def test_compare_cli_errors(tmp_path, capsys):
    assert main(["compare", "--policies", "nonsense", "--out", str(tmp_path)]) == 2
    assert "unknown policy" in capsys.readouterr().err
    assert main(["compare", "--config", "{bad json", "--out", str(tmp_path)]) == 2


def test_callable_adapter():
    env = gym.make("DTFL-Fast-v0", config=SMALL)
    pol = CallablePolicy(lambda obs: np.zeros(18))
    obs, _ = env.reset(seed=0)
    action, state = pol.predict(obs)
    assert action.shape == (18,) and state is None
    with pytest.raises(ValueError, match="fn"):
        CallablePolicy(3)  # type: ignore[arg-type]


def test_mean_ci():
    m, h = mean_ci(np.array([1.0, 2.0, 3.0, np.nan]))
    assert m == 2.0 and h == pytest.approx(1.96 * 1.0 / math.sqrt(3))


def test_worker_fl_threads_share_the_cores():
    from agents.ppo import _worker_config, worker_fl_threads

    assert worker_fl_threads(4, cores=2) == 1 and worker_fl_threads(2, cores=16) == 8
    assert worker_fl_threads(3, cores=8) == 2 and worker_fl_threads(1) >= 1
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_envs"):
            worker_fl_threads(bad)
    # only where the env trains with torch and the user left fl.threads unset
    real = _worker_config("DTFL-v0", {"fl": {"model": "mlp"}}, 2)
    assert real == {"fl": {"model": "mlp", "threads": worker_fl_threads(2)}}
    assert _worker_config("DTFL-v0", {"fl": {"threads": 3}}, 2) == {"fl": {"threads": 3}}
    assert _worker_config("DTFL-Fast-v0", SMALL, 4) is SMALL


def test_ppo_smoke(tmp_path):
    from agents.ppo import load_ppo, train_ppo

    # trained with the bound features, evaluated (below) in envs without them
    trained = {**SMALL, "observation": {"safe_bounds": True}}
    path = train_ppo(
        "DTFL-Fast-v0",
        total_timesteps=256,
        config=trained,
        out_dir=tmp_path,
        overrides={"n_envs": 1, "n_steps": 128, "batch_size": 64, "n_epochs": 1},
        eval_freq=128,
        eval_episodes=1,
        eval_seed=1,
    )
    assert path.is_file() and (tmp_path / "vecnormalize.pkl").is_file()
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["env_id"] == "DTFL-Fast-v0" and cfg["hyperparams"]["n_envs"] == 1
    assert (tmp_path / "evaluations.csv").read_text().startswith("timesteps,")
    policy = load_ppo(tmp_path)
    assert policy.observation_config == {"safe_bounds": True}
    report = evaluate_policies(
        {"ppo": policy}, env_id="DTFL-Fast-v0", config=SMALL, episodes=1, compute_gap=False
    )
    assert report.summary["ppo"]["steps"] == 2
    with pytest.raises(ValueError, match="hyperparams"):
        train_ppo(
            "DTFL-Fast-v0", total_timesteps=10, overrides={"n_stepz": 3}, out_dir=tmp_path / "x"
        )
    with pytest.raises(ValueError, match="lr_schedule"):
        train_ppo(
            "DTFL-Fast-v0",
            total_timesteps=10,
            overrides={"lr_schedule": "cosine"},
            out_dir=tmp_path / "x",
        )
    # eval_freq 0 used to evaluate and checkpoint at every step (a run that never ends)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="eval_freq"):
            train_ppo(
                "DTFL-Fast-v0",
                total_timesteps=10,
                eval_freq=bad,  # type: ignore[arg-type]
                out_dir=tmp_path / "y",
            )
    assert not (tmp_path / "y").exists()
    # an agent trained in the safe mode (the default) acts in a direct-mode env too
    assert policy.action_mode == "safe"
    direct = evaluate_policies(
        {"ppo": policy},
        env_id="DTFL-Fast-v0",
        config={**SMALL, "action": {"mode": "direct"}},
        episodes=1,
        compute_gap=False,
    )
    assert direct.summary["ppo"]["steps"] == 2


def test_shipped_hyperparameter_files_are_valid():
    from pathlib import Path

    from agents.ppo import resolve_hyperparams

    for path in sorted((Path(__file__).resolve().parents[1] / "agents").glob("ppo_*.json")):
        hp = resolve_hyperparams(path, None)
        assert hp["env_config"]["action"]["mode"] == "safe", path
