"""DTFL-v0 with real training and the ledger: accuracy, verification, attacks."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from agents.policies import make_policy

CFG = {"clusters": 10, "rounds": 3, "fl": {"model": "mlp", "device": "cpu"}}


def _ledger_record(info):
    """The block of the round a step closed, from the info's flat ``ledger_*`` keys."""
    return {k.removeprefix("ledger_"): v for k, v in info.items() if k.startswith("ledger_")}


def _run(config, policy="exact", seed=0):
    env = gym.make("DTFL-v0", config=config)
    pol = make_policy(policy).bind(env)
    obs, info = env.reset(seed=seed)
    start = info["global_accuracy"]
    ledger, done = [], False
    while not done:
        action, _ = pol.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        done = term or trunc
        if info["ledger_round_closed"]:
            assert info["next_cluster_index"] == 0  # the step that closed a round
            ledger.append(_ledger_record(info))
            assert info["reward_accuracy"] != 0.0  # the round's gain is rewarded
            # the block hash: hex in the learner's record, its bytes in info (zeros: no block)
            hex_hash = env.unwrapped.learner.round_record["block_hash"]
            assert info["ledger_block_hash"].tobytes().hex() == (hex_hash or "00" * 32)
        else:
            assert not info["ledger_block_hash"].any() and info["ledger_validator_cluster"] == -1
    return start, info, ledger


def test_training_raises_accuracy_and_writes_blocks():
    start, info, ledger = _run(CFG)
    assert start < 0.3 and info["global_accuracy"] > start + 0.3
    assert len(ledger) == 3
    assert all(
        rec["block_hash"].shape == (32,) and rec["block_hash"].any() and rec["block_size_bytes"] > 0
        for rec in ledger
    )
    assert len({rec["block_hash"].tobytes() for rec in ledger}) == 3
    assert np.isfinite(info["global_loss"]) and info["sim_time_s"] > 0
    assert sum(rec["rejected_clusters"].sum() for rec in ledger) <= 1  # honest clusters pass


@pytest.mark.parametrize("attack", ["random", "scaled", "tamper", "label_flip"])
def test_malicious_clusters_are_rejected(attack):
    cfg = {**CFG, "ledger": {"malicious_clusters": 3, "attack": attack}}
    _, _, ledger = _run(cfg)
    if attack == "label_flip":
        # from a random initial model a flipped-label update is not yet worse than an honest
        # one: detection starts once the global model has learnt something (round 1)
        ledger = ledger[1:]
    for rec in ledger:
        assert rec["rejected_clusters"][:3].sum() >= 2  # clusters 0-2 are the attackers
        assert rec["accepted_clusters"][3:].sum() >= 6


def test_no_ledger_accepts_poisoned_models():
    base = {**CFG, "ledger": {"malicious_clusters": 3, "attack": "random"}}
    _, full, _ = _run(base)
    _, none, ledger = _run({**base, "ledger": {**base["ledger"], "mode": "none"}})
    assert all(rec["rejected_clusters"].sum() == 0 for rec in ledger)
    assert full["global_accuracy"] > none["global_accuracy"]


def test_bad_fl_config_is_named():
    with pytest.raises(ValueError, match=r"fl\.modle"):
        gym.make("DTFL-v0", config={"fl": {"modle": "cnn"}})
    with pytest.raises(ValueError, match=r"ledger\.attack"):
        gym.make("DTFL-v0", config={"ledger": {"attack": "nuke"}})
    with pytest.raises(ValueError, match=r"fl\.validation_fraction"):
        gym.make("DTFL-v0", config={"fl": {"validation_fraction": 1.0}})
    with pytest.raises(ValueError, match=r"fl\.validation_fraction: must be > 0"):
        gym.make("DTFL-v0", config={"fl": {"validation_fraction": 0.0}})
    gym.make(
        "DTFL-v0",
        config={
            "fl": {"validation_fraction": 0.0},  # no quality check
            "ledger": {"mode": "signature"},
        },
    )
    with pytest.raises(ValueError, match="data_root"):
        env = gym.make(
            "DTFL-v0", config={"fl": {"data_source": "torchvision", "data_root": "/no/such/dir"}}
        )
        env.reset(seed=0)


def test_tampered_sync_data_only_touches_twins():
    from dtfl_env.fl.system import FederatedSystem
    from dtfl_env.scenarios import table2_cluster

    system = FederatedSystem({"model": "mlp", "device": "cpu"}, [table2_cluster()] * 2, seed=0)
    clean = system._train_y.clone()
    flipped = system.flip_labels([1], seed=3, devices="bld")
    bld_rows = np.concatenate(system._bld_shards[1])
    gld_rows = np.concatenate(system._gld_shards[1])
    assert flipped == bld_rows.size
    assert (system._train_y[bld_rows] != clean[bld_rows]).all()
    assert (system._train_y[gld_rows] == clean[gld_rows]).all()
    with pytest.raises(ValueError, match="devices"):
        system.flip_labels([0], devices="gld")
    _, info, ledger = _run({**CFG, "ledger": {"malicious_clusters": 2, "attack": "tampered_sync"}})
    assert len(ledger) == 3 and info["global_accuracy"] > 0.5


def test_unset_fl_threads_put_numpy_blas_on_one_thread(monkeypatch):
    """``fl.threads = None``: torch keeps its count and numpy's BLAS runs on one thread
    while the ledger checks the round and the system aggregates (idle OpenBLAS threads
    spinning after a call slowed the torch work that followed by ~2x)."""
    import torch
    from threadpoolctl import threadpool_info

    import dtfl_env.fl.system as system_mod

    def blas():
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    seen = []
    real = system_mod.evaluate  # the ledger's quality checks and the test accuracy

    def spy(*a, **k):
        seen.append((torch.get_num_threads(), blas()))
        return real(*a, **k)

    monkeypatch.setattr(system_mod, "evaluate", spy)
    torch_before, blas_before = torch.get_num_threads(), blas()
    _, _, ledger = _run({**CFG, "rounds": 1})
    assert len(ledger) == 1 and seen
    assert all(t == torch_before and all(n == 1 for n in b) for t, b in seen), seen
    assert torch.get_num_threads() == torch_before and blas() == blas_before


def test_fl_threads_bound_torch_during_steps(monkeypatch):
    """``fl.threads``: training, the ledger's quality checks and the evaluation run on that
    many torch threads; between steps torch's own count is back."""
    import torch

    import dtfl_env.fl.system as system_mod

    seen: list[tuple[str, int]] = []

    def spy(name, fn):
        def wrapped(*a, **k):
            seen.append((name, torch.get_num_threads()))
            return fn(*a, **k)

        return wrapped

    monkeypatch.setattr(system_mod, "train_batched", spy("train", system_mod.train_batched))
    monkeypatch.setattr(system_mod, "evaluate", spy("evaluate", system_mod.evaluate))
    fs = system_mod.FederatedSystem
    monkeypatch.setattr(fs, "validation_quality", spy("quality", fs.validation_quality))
    before = torch.get_num_threads()
    cfg = {**CFG, "rounds": 1, "fl": {**CFG["fl"], "threads": 1}}
    _, _, ledger = _run(cfg)
    assert len(ledger) == 1 and torch.get_num_threads() == before
    names = {n for n, _ in seen}
    assert names == {"train", "evaluate", "quality"}
    assert all(t == 1 for _, t in seen), seen


def test_validators_never_see_the_test_set(monkeypatch):
    """The ledger's quality check scores models on the validation split; only the reported
    accuracy uses the test set (before, the validators scored on ``test_x[:500]``)."""
    import dtfl_env.fl.system as fl_system
    import dtfl_env.fl.training as fl_training
    from dtfl_env.fl.data import load_mnist

    def keys(x):
        return {row.tobytes() for row in x.reshape(x.shape[0], -1).cpu().numpy()}

    data = load_mnist()  # the split the env's FL system loads (seed 0)
    test, train = keys(data.test_x), keys(data.train_x)
    seen: list[set[bytes]] = []
    real = fl_training.evaluate

    def spy(params, model, x, y, *args, **kwargs):
        seen.append(keys(x))
        return real(params, model, x, y, *args, **kwargs)

    monkeypatch.setattr(fl_training, "evaluate", spy)
    monkeypatch.setattr(fl_system, "evaluate", spy)
    _, _, ledger = _run({**CFG, "clusters": 3, "rounds": 1})
    assert len(ledger) == 1 and ledger[0]["accepted_clusters"].sum() >= 2
    reported = [s for s in seen if s == test]
    checks = [s for s in seen if s != test]
    assert len(reported) == 2  # the accuracy at reset and after the round: the test set
    assert len(checks) >= 4  # the global model and 3 cluster models on the validators' data
    assert all(len(s) == 500 and not s & test and not s & train for s in checks)


def test_malicious_validator_in_the_env():
    """Round robin hands round 0 to coordinator 0, a malicious one: it lets its own random
    model in, the audit proves the block wrong (the block stands); rounds 1-2 have honest
    validators whose blocks pass the audit."""
    cfg = {
        **CFG,
        "clusters": 3,
        "ledger": {
            "malicious_clusters": 1,
            "attack": "random",
            "validator_selection": "round_robin",
            "validator_attack": "accept_poisoned",
        },
    }
    _, _, ledger = _run(cfg)
    assert [rec["validator_cluster"] for rec in ledger] == [0, 1, 2]
    assert [rec["validator_malicious"] for rec in ledger] == [1, 0, 0]
    assert [rec["audit_failed"] for rec in ledger] == [1, 0, 0]
    assert ledger[0]["accepted_clusters"][0] and ledger[0]["audit_overturned"].tolist() == [
        True,
        False,
        False,
    ]
    assert not ledger[1]["accepted_clusters"][0] and not ledger[1]["audit_overturned"].any()
    for key in ("validator_cluster", "validator_malicious", "audit_failed"):
        assert isinstance(ledger[0][key], int)
    with pytest.raises(ValueError, match=r"ledger\.validator_selection"):
        gym.make("DTFL-v0", config={"ledger": {"validator_selection": "lottery"}})
    with pytest.raises(ValueError, match=r"ledger\.validator_attack"):
        gym.make("DTFL-v0", config={"ledger": {"validator_attack": "lie"}})
    with pytest.raises(ValueError, match=r"ledger\.validator_atack"):
        gym.make("DTFL-v0", config={"ledger": {"validator_atack": "both"}})


def test_env_ledger_choices_match_the_ledger():
    from dtfl_env.envs import config as env_config
    from dtfl_env.ledger import SELECTION_POLICIES, VALIDATOR_ATTACKS

    assert env_config.VALIDATOR_SELECTIONS == SELECTION_POLICIES
    assert env_config.VALIDATOR_ATTACKS == VALIDATOR_ATTACKS
