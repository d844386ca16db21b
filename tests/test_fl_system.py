"""The federated system: clusters, twins, rounds and the global model (dtfl_env.fl.system)."""

from __future__ import annotations

import numpy as np
import pytest

from dtfl_env.fl import (
    FederatedSystem,
    FLConfig,
    MNISTData,
    load_mnist,
)
from dtfl_env.scenarios import table2_cluster

from _fl import CPU


# ---------------------------------------------------------------------- the system
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_system_learns_mnist_in_three_rounds(mnist: MNISTData, model: str) -> None:
    """10 clients (2 clusters of 3 GLDs + 2 BLDs, equal data) pass 80 % in 3 rounds."""
    system = FederatedSystem(
        {"model": model, **CPU}, [(np.ones(3), np.ones(2))] * 2, seed=0, data=mnist
    )
    acc_start, _ = system.evaluate()
    for _ in range(3):
        out = system.clusters_round([(0, None, None, None), (1, None, None, None)])
        system.global_aggregate([p for p, _ in out], [n for _, n in out])
    acc, loss = system.evaluate()
    assert system.round == 3
    assert acc > 0.8 > acc_start + 0.5
    assert loss < 1.0


def test_system_is_deterministic_per_seed(mnist: MNISTData) -> None:
    clusters = [table2_cluster(), ([20e6, 30e6], [2e6])]

    def run(seed: int) -> list[np.ndarray]:
        system = FederatedSystem({"model": "mlp", **CPU}, clusters, seed=seed, data=mnist)
        outs = [system.cluster_round(s, None, None, None) for s in range(2)]
        system.global_aggregate([p for p, _ in outs], [n for _, n in outs])
        return [outs[0][0], outs[1][0], system.global_params]

    a, b, c = run(4), run(4), run(5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[2], c[2])


def test_clusters_round_matches_cluster_round() -> None:
    # all 4,000 training digits (no validation split): with the default split's 3,500 the
    # CNN of cluster 1 meets a float-rounding tie (ReLU or max-pooling) in one grouping and
    # not the other, after which the two trajectories differ by ~0.06 (see
    # docs/REPRODUCTION.md on rounding); the grouping itself is what this test checks
    mnist = load_mnist("embedded", validation_fraction=0.0)
    clusters = [([3.0, 4.0], [1.0]), ([5.0], [1.0, 1.0])]
    one = FederatedSystem({"model": "cnn", **CPU}, clusters, seed=2, data=mnist)
    many = FederatedSystem({"model": "cnn", **CPU}, clusters, seed=2, data=mnist)
    sep = [one.cluster_round(0, [0], [0], [0]), one.cluster_round(1, None, [1], None)]
    joint = many.clusters_round([(0, [0], [0], [0]), (1, None, [1], None)])
    for (p, n), (q, m) in zip(sep, joint, strict=True):
        assert n == m and np.abs(p - q).max() < 1e-5


def test_participation_masks_and_twin_policies(mnist: MNISTData) -> None:
    clusters = [([3.0, 3.0, 3.0], [1.0, 1.0])]
    samples = FederatedSystem({"model": "mlp", **CPU}, clusters, data=mnist).device_samples(0)
    n_g, n_b = samples
    assert n_g.tolist() == [954] * 3 and n_b.tolist() == [318] * 2  # floor(3500 w / 11)
    stale = FederatedSystem({"model": "mlp", **CPU}, clusters, data=mnist)
    _, n = stale.cluster_round(0, np.array([True, False, True]), [1], None)
    assert n == 2 * 954 + 2 * 318  # the unsynced twin 0 trains on its stale copy
    assert stale.last_participation[0]["bld_stale"].tolist() == [0]
    skip = FederatedSystem(
        {"model": "mlp", "twin_stale_policy": "skip", **CPU}, clusters, data=mnist
    )
    _, n = skip.cluster_round(0, [0, 2], np.array([False, True]), [0, 1])
    assert n == 2 * 954 + 318
    assert skip.last_participation[0]["bld"].tolist() == [1]
    glob = skip.global_params
    params, n = skip.cluster_round(0, [], [], [])
    assert n == 0 and np.array_equal(params, glob)
    with pytest.raises(ValueError, match="gld_participants"):
        skip.cluster_round(0, [3], None, None)
    with pytest.raises(ValueError, match="bld_synced"):
        skip.cluster_round(0, None, [True], None)
    with pytest.raises(ValueError, match="cluster"):
        skip.cluster_round(1)


def test_stale_twins_lag_behind_growing_device_data(mnist: MNISTData) -> None:
    system = FederatedSystem(
        {"model": "mlp", "data_arrival_rounds": 4, **CPU}, [([1.0], [1.0, 1.0])], data=mnist
    )
    assert system.twin_samples(0).tolist() == [292, 292]  # round 0: ceil(1166 / 4)
    for _ in range(2):
        p, n = system.cluster_round(0, None, [1], None)  # BLD 0 never syncs
        system.global_aggregate([p], [n])
    assert system.round == 2
    system.cluster_round(0, None, [1], None)
    assert system.twin_samples(0).tolist() == [292, 875]  # round 2: ceil(1166 * 3 / 4)
    assert system.last_participation[0]["bld_stale"].tolist() == [0]


def test_window_stream_twin_starts_empty_and_holds_only_synced_chunks(mnist: MNISTData) -> None:
    """``data_stream="window"``: fresh data per round; a twin learns only what it synced."""
    cfg = {
        "model": "mlp",
        "data_arrival_rounds": 4,
        "data_stream": "window",
        "twin_stale_policy": "stale",
        **CPU,
    }
    system = FederatedSystem(cfg, [([1.0], [1.0, 1.0])], data=mnist)
    assert system.twin_samples(0).tolist() == [0, 0]  # nothing synced yet
    gld_n, bld_n = system.device_samples(0)
    p, n = system.cluster_round(0, None, [1], None)  # BLD 0 never syncs
    assert system.twin_samples(0).tolist() == [0, bld_n[1] // 4]
    assert system.last_participation[0]["bld"].tolist() == [1]  # empty twin: no training
    assert n == gld_n[0] // 4 + bld_n[1] // 4  # one chunk each, not the whole shard
    system.global_aggregate([p], [n])
    system.cluster_round(0, None, [0, 1], None)  # round 1: chunk 1 of each shard
    assert system.twin_samples(0).tolist() == [
        bld_n[0] * 2 // 4 - bld_n[0] // 4,
        bld_n[1] * 2 // 4 - bld_n[1] // 4,
    ]
    with pytest.raises(ValueError, match=r"fl\.data_stream"):
        FederatedSystem({**cfg, "data_stream": "stream"}, [([1.0], [1.0])], data=mnist)


def test_global_aggregate(mnist: MNISTData) -> None:
    system = FederatedSystem({"model": "mlp", **CPU}, [([1.0], [])], data=mnist)
    g0 = system.global_params
    assert not g0.flags.writeable
    assert np.array_equal(system.global_aggregate([g0 + 1.0], [0]), g0)  # no weight: kept
    assert system.round == 1
    new = system.global_aggregate([g0 + 1.0, g0 + 3.0], [3, 1])
    assert np.allclose(new, g0 + 1.5, atol=1e-6) and system.round == 2
    with pytest.raises(ValueError, match="sample_counts"):
        system.global_aggregate([g0], [1, 2])
    with pytest.raises(ValueError, match="cluster_params"):
        system.global_aggregate([g0[:5]], [1])
    system.reset(seed=0)
    assert system.round == 0 and np.array_equal(system.global_params, g0)


def test_fl_config_is_strict() -> None:
    assert FLConfig.from_dict({}).model == "cnn"
    with pytest.raises(ValueError, match=r"fl\.modle"):
        FLConfig.from_dict({"modle": "cnn"})
    for key, bad in [
        ("model", "vgg"),
        ("local_epochs", 0),
        ("lr", -1.0),
        ("alpha", 0),
        ("partition", "shards"),
        ("twin_stale_policy", "drop"),
        ("device", "tpu"),
        ("batch_size", 2.5),
        ("seed", -1),
        ("download", "yes"),
    ]:
        with pytest.raises(ValueError, match=rf"fl\.{key}"):
            FLConfig.from_dict({key: bad})
    with pytest.raises(ValueError, match=r"fl\.backend"):
        FederatedSystem({"backend": "none"}, [([1.0], [])])
    with pytest.raises(ValueError, match=r"clusters\[0\]"):
        FederatedSystem(CPU, [("a", "b", "c")])


@pytest.mark.parametrize("fraction", [1.0, 0.4])
def test_label_flipping_is_the_ledger_routine_on_the_devices_rows(
    mnist: MNISTData, fraction: float
) -> None:
    """One label-flipping routine (dtfl_env.ledger.attacks.flip_labels) for the FL side too."""
    from dtfl_env.ledger import flip_labels

    system = FederatedSystem({"model": "mlp", **CPU}, [table2_cluster()] * 3, seed=0, data=mnist)
    clean = system._train_y.clone()
    n = system.flip_labels([0, 2], seed=5, fraction=fraction)
    rows = np.concatenate(
        [
            *system._gld_shards[0],
            *system._bld_shards[0],
            *system._gld_shards[2],
            *system._bld_shards[2],
        ]
    )
    want = flip_labels(clean[rows].numpy(), np.random.default_rng([5, 7]), fraction=fraction)
    assert np.array_equal(system._train_y.numpy()[rows], want)
    assert n == int(np.count_nonzero(want != clean[rows].numpy()))
    assert (0.3 if fraction < 1 else 1.0) <= n / rows.size <= (0.5 if fraction < 1 else 1.0)
    others = np.setdiff1d(np.arange(clean.numel()), rows)
    assert np.array_equal(system._train_y.numpy()[others], clean.numpy()[others])
