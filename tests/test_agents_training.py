"""The shared SB3 training path (agents.training): every algorithm trains, saves, loads and
acts; the native vector env trains as the single envs do; the CLI's --algo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.cli import build_parser, main
from agents.evaluation import evaluate_policies
from agents.training import (
    ALGOS,
    load_agent,
    resolve_hyperparams,
    resolve_vec_env,
    train_agent,
)

TINY = {"clusters": 2, "rounds": 2}
#: a few hundred steps: small rollouts (on-policy) or an early start of the updates
#: (off-policy), two sub-envs
FAST: dict[str, dict] = {
    "ppo": {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2},
    "a2c": {"n_envs": 2, "n_steps": 16},
    "sac": {"n_envs": 2, "learning_starts": 64, "buffer_size": 1000, "batch_size": 64},
    "td3": {"n_envs": 2, "learning_starts": 64, "buffer_size": 1000, "batch_size": 64},
}


def _episode_actions(policy, seed: int = 5) -> np.ndarray:  # type: ignore[no-untyped-def]
    rep = evaluate_policies(
        {"p": policy}, env_id="DTFL-Fast-v0", config=TINY, episodes=1, seed=seed, compute_gap=False
    )
    return np.array([r["latency_s"] for r in rep.records])


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_each_algorithm_trains_saves_loads_and_acts(algo: str, tmp_path) -> None:
    import torch

    hp_file = tmp_path / "hp.json"
    hp_file.write_text(json.dumps(FAST[algo]))
    out = tmp_path / algo
    threads = torch.get_num_threads()
    assert (
        main(
            [
                "train",
                "--algo",
                algo,
                "--env",
                "DTFL-Fast-v0",
                "--timesteps",
                "300",
                "--config",
                json.dumps(TINY),
                "--hyperparams",
                str(hp_file),
                "--eval-freq",
                "1000",
                "--seed",
                "3",
                "--out",
                str(out),
                "--torch-threads",
                "1",
            ]
        )
        == 0
    )
    assert torch.get_num_threads() == threads  # restored after the run
    record = json.loads((out / "config.json").read_text())
    assert record["algo"] == algo and record["vec_env"] == "native"
    assert record["torch_threads"] == 1
    assert record["hyperparams"] == resolve_hyperparams(hp_file, None, algo)
    assert (out / "vecnormalize.pkl").is_file()
    assert (out / "evaluations.csv").read_text().startswith(f"timesteps,{algo}_latency_feasible_s,")
    policy = load_agent(out)  # the algorithm from config.json
    assert policy.name == algo and type(policy.model).__name__ == ALGOS[algo]
    assert policy.model.num_timesteps >= 300
    assert policy.action_mode == "safe"  # the defaults' mode
    first = _episode_actions(policy)
    np.testing.assert_array_equal(first, _episode_actions(load_agent(out, algo=algo)))
    assert np.isfinite(first).all() and first.size == 4
    # the agent beside the solvers, by name, through the CLI
    cmp_dir = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "--policies",
                f"{algo}:{out},algorithm2",
                "--env",
                "DTFL-Fast-v0",
                "--config",
                json.dumps(TINY),
                "--episodes",
                "1",
                "--no-plots",
                "--no-gap",
                "--out",
                str(cmp_dir),
            ]
        )
        == 0
    )
    summary = json.loads((cmp_dir / "results.json").read_text())["summary"]
    assert set(summary) == {f"{algo}:{out}", "algorithm2"}
    other = "td3" if algo != "td3" else "sac"
    with pytest.raises(ValueError, match=f"holds a {algo} agent"):
        load_agent(out, algo=other)


def test_native_vector_env_trains_as_single_envs(tmp_path) -> None:
    """Same seed and hyperparameters: the native vector env and DummyVecEnv over single
    envs collect the same rollouts, so PPO ends with the same network."""
    import torch
    from stable_baselines3 import PPO

    params = {}
    for vec_env in ("native", "dummy"):
        train_agent(
            "ppo",
            "DTFL-Fast-v0",
            total_timesteps=256,
            config=TINY,
            overrides={**FAST["ppo"], "vec_env": vec_env},
            out_dir=tmp_path / vec_env,
            seed=1,
            eval_freq=10_000,
            eval_episodes=1,
            torch_threads=1,
        )
        assert json.loads((tmp_path / vec_env / "config.json").read_text())["vec_env"] == vec_env
        params[vec_env] = PPO.load(tmp_path / vec_env / "model.zip").policy.state_dict()
    for key, val in params["native"].items():  # (bit-identical here; rewards agree to 1e-12)
        torch.testing.assert_close(val, params["dummy"][key], rtol=1e-5, atol=1e-6)
    # and the network did train: it left its initialisation (same seed, same init)
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.training import _build_model, make_training_env, overlay_config

    hp = resolve_hyperparams(None, FAST["ppo"], "ppo")
    venv = VecNormalize(
        make_training_env("DTFL-Fast-v0", 2, "native", overlay_config(hp["env_config"], TINY), 1)
    )
    init = _build_model("ppo", hp, venv, 1, 0, None).policy.state_dict()
    venv.close()
    assert init["action_net.weight"].shape == params["native"]["action_net.weight"].shape
    assert not torch.allclose(
        params["native"]["action_net.weight"], init["action_net.weight"], rtol=1e-3, atol=1e-4
    )


def test_vec_env_choice() -> None:
    assert resolve_vec_env("DTFL-TableII-v0", "auto") == "native"
    assert resolve_vec_env("dtfl_env:DTFL-Fast-v0", "auto") == "native"
    assert resolve_vec_env("DTFL-v0", "auto") == "subproc"  # real FL training
    assert resolve_vec_env("DTFL-Fast-v0", "auto", {"fl": {"backend": "torch"}}) == "subproc"
    assert resolve_vec_env("DTFL-Fast-v0", "dummy") == "dummy"
    with pytest.raises(ValueError, match="native"):
        resolve_vec_env("DTFL-v0", "native")
    with pytest.raises(ValueError, match="vec_env"):
        resolve_vec_env("DTFL-Fast-v0", "threads")
    with pytest.raises(ValueError, match="vec_env"):
        resolve_hyperparams(None, {"vec_env": "ray"}, "sac")
    with pytest.raises(ValueError, match="n_envs"):
        resolve_hyperparams(None, {"n_envs": 0}, "td3")
    with pytest.raises(ValueError, match="algo"):
        resolve_hyperparams(None, None, "dqn")
    with pytest.raises(ValueError, match="torch_threads"):
        train_agent("a2c", "DTFL-Fast-v0", total_timesteps=10, torch_threads=0)
    # a key of another algorithm is unknown here
    with pytest.raises(ValueError, match="n_epochs"):
        resolve_hyperparams(None, {"n_epochs": 3}, "sac")


def test_cli_parses_the_algorithm(capsys) -> None:
    parser = build_parser()
    args = parser.parse_args(["train", "--algo", "sac"])
    assert (args.algo, args.algo_name, args.out) == ("sac", None, None)
    assert args.torch_threads == 1  # the default: faster for these small networks
    assert parser.parse_args(["train", "td3"]).algo_name == "td3"
    assert parser.parse_args(["train"]).algo is None  # ppo, in cmd_train
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--algo", "dqn"])
    assert main(["train", "ppo", "--algo", "sac"]) == 2
    assert "algorithm given twice" in capsys.readouterr().err


def test_shipped_defaults_build_their_algorithm() -> None:
    """Every defaults file: its keys are the algorithm's (the constructor takes them)."""
    from stable_baselines3.common.vec_env import VecNormalize

    from agents.training import _build_model, make_training_env

    for algo in ALGOS:
        hp = resolve_hyperparams(None, None, algo)
        assert hp["gamma"] == 0.0 and hp["vec_env"] == "auto", algo
        assert hp["env_config"] == resolve_hyperparams(None, None, "ppo")["env_config"]
        venv = VecNormalize(make_training_env("DTFL-Fast-v0", 2, "native", TINY, 0))
        model = _build_model(algo, hp, venv, 0, 0, None)
        assert model.gamma == 0.0 and type(model).__name__ == ALGOS[algo]
        venv.close()
    with pytest.raises(ValueError, match="SAC rejects"):
        hp = {**resolve_hyperparams(None, None, "sac"), "n_epochs": 2}
        _build_model(
            "sac",
            hp,
            VecNormalize(make_training_env("DTFL-Fast-v0", 1, "native", TINY, 0)),
            0,
            0,
            None,
        )
