"""Ray RLlib scale-out: the RLlib env runner builds the native vector env, the scripts
``examples/rllib_ppo.py`` and ``examples/rllib_tune.py`` run with ``--quick``, and the
checkpoint adapter (``agents.rllib.RLlibPolicy``) acts as RLlib's own inference does.

The RLlib tests need the ``rllib`` extra (``pip install -e '.[rllib]'``); without ray they
are skipped. ``.ci/run`` runs this file in its own ``.venv-rllib`` (ray[rllib] pins its own
gymnasium) with ``DTFL_REQUIRE_RLLIB=1``, which turns the skip into a failure. About a
minute there (two Ray starts).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.rllib import CHECKPOINT_ENV_VAR, RLlibPolicy, find_module_dir, saved_env_configs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(
    not HAVE_RAY and not os.environ.get("DTFL_REQUIRE_RLLIB"),
    reason="ray[rllib] is not installed: the rllib extra (pip install -e '.[rllib]'); "
    ".ci/run runs these tests in .venv-rllib",
)


def run_example(name: str, out: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# --- without ray: the adapter's arguments and files ------------------------------------


def test_policy_needs_a_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHECKPOINT_ENV_VAR, raising=False)
    with pytest.raises(ValueError, match=CHECKPOINT_ENV_VAR):
        RLlibPolicy()


def test_module_dir_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="no RLModule checkpoint"):
        find_module_dir(tmp_path)
    monkeypatch.setenv(CHECKPOINT_ENV_VAR, str(tmp_path))
    with pytest.raises(ValueError, match="no RLModule checkpoint"):
        RLlibPolicy()


def test_module_dir_layouts(tmp_path: Path) -> None:
    module = tmp_path / "checkpoint" / "learner_group" / "learner" / "rl_module"
    leaf = module / "default_policy"
    for folder in (module, leaf):  # the multi-module folder holds the same files
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "class_and_ctor_args.pkl").write_bytes(b"")
        (folder / "module_state.pkl").write_bytes(b"")
    for given in (tmp_path, tmp_path / "checkpoint", module, leaf):
        assert find_module_dir(given) == leaf


def test_saved_env_configs(tmp_path: Path) -> None:
    from dtfl_env.envs.config import default_config

    assert saved_env_configs(tmp_path) == (None, None)
    (tmp_path / "config.json").write_text(
        json.dumps({"config": {"action": {"mode": "safe"}, "observation": {"safe_bounds": True}}})
    )
    (tmp_path / "checkpoint").mkdir()
    for given in (tmp_path, tmp_path / "checkpoint"):
        action, obs = saved_env_configs(given)
        assert action == {**default_config()["action"], "mode": "safe"}
        assert obs == {**default_config()["observation"], "safe_bounds": True}
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        saved_env_configs(tmp_path)


# --- with ray ---------------------------------------------------------------------------


@needs_ray
def test_env_runner_builds_the_native_vector_env() -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        from rllib_ppo import QUICK_CONFIG, Args, ppo_config
    finally:
        sys.path.remove(str(EXAMPLES))
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    from dtfl_env.envs.vector import DTFLVectorEnv

    config = ppo_config(Args(env_runners=0, envs_per_runner=3, hidden=8), QUICK_CONFIG)
    runner = SingleAgentEnvRunner(config=config)
    try:
        assert isinstance(runner.env.unwrapped, DTFLVectorEnv)
        assert runner.env.num_envs == 3
        # 3 envs x 6 steps (3 clusters x 2 rounds): every episode ends in one sample
        episodes = runner.sample(num_timesteps=18, random_actions=True)
        done = [e for e in episodes if e.is_done]
        assert len(done) == 3 and all(len(e) == 6 for e in done)
        assert all(np.isfinite(e.get_return()) for e in done)
    finally:
        runner.stop()


@needs_ray
def test_env_runners_sample_disjoint_episodes() -> None:
    """Runner w's sub-env k starts from the single env seeded with seed + w M + k
    (``disjoint_env_seeds``), not seed + w + k, which runner w + 1's sub-env k - 1 shares."""
    import gymnasium as gym

    sys.path.insert(0, str(EXAMPLES))
    try:
        from rllib_ppo import QUICK_CONFIG, Args, ppo_config
    finally:
        sys.path.remove(str(EXAMPLES))
    from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

    m, seed = 3, 5
    config = ppo_config(Args(env_runners=2, envs_per_runner=m, hidden=8, seed=seed), QUICK_CONFIG)
    single = gym.make("DTFL-TableII-v0", config=config.env_config["config"])
    firsts = []
    for w in (1, 2):
        runner = SingleAgentEnvRunner(config=config, worker_index=w, num_workers=2)
        try:
            episodes = runner.sample(num_timesteps=m, random_actions=True)
        finally:
            runner.stop()
        assert len(episodes) == m
        for k, episode in enumerate(episodes):
            want, _ = single.reset(seed=seed + w * m + k)
            np.testing.assert_array_equal(episode.get_observations(0), want)
            firsts.append(want)
    assert len({f.tobytes() for f in firsts}) == 2 * m


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("rllib_ppo")
    return out, run_example("rllib_ppo", out)


@needs_ray
def test_rllib_ppo_quick(ppo_run: tuple[Path, str]) -> None:
    out, stdout = ppo_run
    with open(out / "rllib_ppo_iterations.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert [int(r["env_steps"]) for r in rows] == [64, 128]  # the quick train batch
    assert all(float(r["env_steps_per_s"]) > 0 for r in rows)
    assert math.isfinite(float(rows[-1]["episode_return_mean"]))
    summary = json.loads((out / "rllib_ppo_summary.json").read_text())
    assert summary["figure"] == "rllib_ppo" and summary["config"]["quick"] is True
    s = summary["summary"]
    assert s["env_steps"] == 128
    assert math.isfinite(s["gap_to_algorithm2"]) and s["gap_to_algorithm2"] > -0.01
    assert math.isfinite(s["gap_to_exact"]) and s["gap_to_exact"] > -1e-6
    report = json.loads((out / "compare" / "results.json").read_text())
    assert set(report["summary"]) == {"algorithm2", "RLlibPolicy"}
    assert report["summary"]["RLlibPolicy"]["steps"] == report["summary"]["algorithm2"]["steps"]
    assert report["meta"]["seed"] == 1000
    assert "gap" in stdout and "Algorithm 2" in stdout


@needs_ray
def test_policy_acts_as_rllib_inference(
    ppo_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The adapter's action is the one RLlib's env runner sends to the env with
    ``explore=False``: its env-to-module and module-to-env connectors of the checkpoint."""
    import gymnasium as gym
    import torch
    from ray.rllib.connectors.connector_v2 import ConnectorV2
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    out, _ = ppo_run
    cfg = json.loads((out / "env_config.json").read_text())
    env = gym.make("DTFL-TableII-v0", config=cfg)
    obs, _ = env.reset(seed=3)
    batch_obs = [obs]
    for _ in range(5):
        obs, *_ = env.step(env.action_space.sample())
        batch_obs.append(obs)
    ckpt = out / "checkpoint" / "env_runner"
    to_module = ConnectorV2.from_checkpoint(ckpt / "env_to_module_connector")
    to_env = ConnectorV2.from_checkpoint(ckpt / "module_to_env_connector")
    policy = RLlibPolicy(out).bind(env)
    module = policy.model.module

    def rllib_actions() -> np.ndarray:
        episodes = [
            SingleAgentEpisode(
                observations=[o],
                observation_space=module.observation_space,
                action_space=module.action_space,
            )
            for o in batch_obs
        ]
        shared: dict = {}  # type: ignore[type-arg]
        batch = to_module(
            rl_module=module, batch={}, episodes=episodes, explore=False, shared_data=shared
        )
        fwd = module.forward_inference(batch)
        return np.asarray(
            to_env(
                rl_module=module,
                batch=dict(fwd),
                episodes=episodes,
                explore=False,
                shared_data=shared,
            )["actions_for_env"]
        )

    got = np.stack([policy.predict(o, deterministic=True)[0] for o in batch_obs])
    assert got.shape == (len(batch_obs), *env.action_space.shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, rllib_actions(), atol=1e-6)
    # means pushed out of the box (the policy head's mean biases +-3): clipped as RLlib does
    head = [m for m in module.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        head.bias[:2] += torch.tensor([3.0, -3.0])
    clipped = np.stack([policy.predict(o)[0] for o in batch_obs])
    np.testing.assert_allclose(clipped, rllib_actions(), atol=1e-6)
    np.testing.assert_array_equal(clipped[:, :2], np.tile([1.0, -1.0], (len(batch_obs), 1)))
    # the environment variable names the same checkpoint
    monkeypatch.setenv(CHECKPOINT_ENV_VAR, str(out))
    again = RLlibPolicy().bind(env).predict(batch_obs[0])[0]
    np.testing.assert_array_equal(again, got[0])


@needs_ray
def test_rllib_tune_quick(tmp_path: Path) -> None:
    stdout = run_example("rllib_tune", tmp_path)
    with open(tmp_path / "rllib_tune_trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(int(r["num_epochs"]) for r in rows) == [1, 2]  # the quick grid
    assert all(int(r["iterations"]) == 1 and int(r["env_steps"]) == 64 for r in rows)
    assert all(math.isfinite(float(r["episode_return_mean"])) for r in rows)
    summary = json.loads((tmp_path / "rllib_tune_summary.json").read_text())["summary"]
    assert summary["trials"] == 2
    assert summary["best"]["episode_return_mean"] == max(
        float(r["episode_return_mean"]) for r in rows
    )
    assert "<- best" in stdout
