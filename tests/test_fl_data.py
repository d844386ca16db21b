"""MNIST loading, the validation split and the partitions (dtfl_env.fl.data)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dtfl_env.fl import (
    FederatedSystem,
    MNISTData,
    load_mnist,
    partition,
)
from dtfl_env.fl.data import MNIST_MEAN, MNIST_STD, _embedded_arrays

from _fl import CPU


# ---------------------------------------------------------------------- data
def test_embedded_split_shapes_and_normalisation(mnist: MNISTData) -> None:
    assert mnist.train_x.shape == (3500, 1, 28, 28) and mnist.test_x.shape == (1000, 1, 28, 28)
    assert mnist.val_x.shape == (500, 1, 28, 28)
    assert mnist.train_x.dtype == torch.float32 and mnist.train_y.dtype == torch.int64
    # stratified: 20 % of each class's 500 digits in the test set, 12.5 % of the remaining
    # 400 in the validation set
    assert torch.bincount(mnist.test_y).tolist() == [100] * 10
    assert torch.bincount(mnist.val_y).tolist() == [50] * 10
    assert torch.bincount(mnist.train_y).tolist() == [350] * 10
    # shuffled (the raw data is sorted by label)
    assert len(set(mnist.train_y[:50].tolist())) > 5
    # scaled to [0, 1] then normalised: pixel 0 -> -mean/std, pixel 255 -> (1-mean)/std
    assert float(mnist.train_x.min()) == pytest.approx(-MNIST_MEAN / MNIST_STD, abs=1e-6)
    assert float(mnist.train_x.max()) == pytest.approx((1 - MNIST_MEAN) / MNIST_STD, abs=1e-5)
    raw_x, _ = _embedded_arrays()
    assert raw_x.max() == 255.0


def test_embedded_split_is_seeded(mnist: MNISTData) -> None:
    again = load_mnist(seed=0)
    assert torch.equal(again.train_x, mnist.train_x) and torch.equal(again.test_y, mnist.test_y)
    other = load_mnist(seed=1)
    assert not torch.equal(other.train_y, mnist.train_y)
    with pytest.raises(ValueError, match="test_fraction"):
        load_mnist(test_fraction=1.5)
    with pytest.raises(ValueError, match="source"):
        load_mnist("kaggle")  # type: ignore[arg-type]


def _image_keys(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.reshape(x.shape[0], -1).cpu().numpy()}


def test_validation_split_is_disjoint_and_leaves_the_test_set_alone(mnist: MNISTData) -> None:
    train, val, test = (_image_keys(t) for t in (mnist.train_x, mnist.val_x, mnist.test_x))
    assert len(train) == 3500 and len(val) == 500 and len(test) == 1000  # the digits differ
    assert not val & test and not val & train and not train & test
    # the validation images come out of the training data: the test set is the same with or
    # without a validation split, and the union is the old training set
    none = load_mnist(validation_fraction=0.0)
    assert none.n_val == 0 and torch.equal(none.test_x, mnist.test_x)
    assert _image_keys(none.train_x) == train | val
    assert torch.equal(load_mnist(seed=0).val_y, mnist.val_y)  # seeded
    for bad in (1.0, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="validation_fraction"):
            load_mnist(validation_fraction=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fl\.validation_fraction"):
        FederatedSystem({"validation_fraction": 1.5, **CPU}, [([1.0], [1.0])])


def test_clients_never_train_on_validation_images(mnist: MNISTData) -> None:
    """Every client shard indexes the training tensor, which holds no validation image;
    the validators' quality check runs on the validation split, the reported accuracy on
    the test set."""
    system = FederatedSystem({"model": "mlp", **CPU}, [([3.0, 2.0], [1.0, 4.0])] * 2, data=mnist)
    assert not _image_keys(system.data.train_x) & _image_keys(system.data.val_x)
    g = system.global_params
    from dtfl_env.fl.training import evaluate as plain

    assert system.validation_quality(g, 100) == plain(
        g, system.model, mnist.val_x[:100], mnist.val_y[:100]
    )
    assert system.evaluate() == plain(g, system.model, mnist.test_x, mnist.test_y)
    empty = FederatedSystem({"model": "mlp", "validation_fraction": 0.0, **CPU}, [([1.0], [1.0])])
    with pytest.raises(ValueError, match="validation_fraction"):
        empty.validation_quality(g)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an MNIST idx file (big-endian header, uint8 payload)."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist_root(root: Path, n_train: int = 30, n_test: int = 12) -> np.ndarray:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x, y = _embedded_arrays()
    pix = x.reshape(-1, 28, 28)
    pick = np.arange(0, 5000, 5000 // (n_train + n_test))[: n_train + n_test]
    _write_idx(raw / "train-images-idx3-ubyte", pix[pick[:n_train]])
    _write_idx(raw / "train-labels-idx1-ubyte", y[pick[:n_train]])
    _write_idx(raw / "t10k-images-idx3-ubyte", pix[pick[n_train:]])
    _write_idx(raw / "t10k-labels-idx1-ubyte", y[pick[n_train:]])
    return pick


def test_torchvision_source_reads_a_local_folder(tmp_path: Path) -> None:
    pick = _fake_mnist_root(tmp_path)
    data = load_mnist("torchvision", data_root=tmp_path, validation_fraction=0.0)
    x, y = _embedded_arrays()
    assert data.train_x.shape == (30, 1, 28, 28) and data.test_x.shape == (12, 1, 28, 28)
    assert data.train_y.tolist() == y[pick[:30]].tolist()
    expected = (
        torch.from_numpy(x[pick[:30]].copy()).reshape(-1, 1, 28, 28) / 255.0 - MNIST_MEAN
    ) / MNIST_STD
    assert torch.allclose(data.train_x, expected, atol=1e-6)
    # the validation split comes out of the official training set, seeded; the test set
    # (t10k) is untouched
    split = load_mnist("torchvision", data_root=tmp_path, validation_fraction=0.25, seed=3)
    assert torch.equal(split.test_x, load_mnist("torchvision", data_root=tmp_path).test_x)
    assert split.n_val + split.n_train == 30 and split.n_val >= 5
    assert _image_keys(split.val_x) | _image_keys(split.train_x) == _image_keys(expected)
    assert not _image_keys(split.val_x) & _image_keys(split.train_x)
    again = load_mnist("torchvision", data_root=tmp_path, validation_fraction=0.25, seed=3)
    assert torch.equal(again.val_y, split.val_y)


@pytest.mark.parametrize("kind", ["none", "missing", "file", "empty"])
def test_bad_data_root_is_a_clear_value_error(tmp_path: Path, kind: str) -> None:
    root = {
        "none": None,
        "missing": tmp_path / "nope",
        "file": tmp_path / "f.txt",
        "empty": tmp_path,
    }[kind]
    if kind == "file":
        (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="data_root"):
        load_mnist("torchvision", data_root=root)
    cfg = {"data_source": "torchvision", "data_root": None if root is None else str(root), **CPU}
    with pytest.raises(ValueError, match="data_root"):
        FederatedSystem(cfg, [([1.0], [1.0])])


def test_nothing_touches_the_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    data = load_mnist("embedded")
    system = FederatedSystem({"model": "mlp", **CPU}, [([3.0, 2.0], [1.0])], data=None)
    params, n = system.cluster_round(0)
    assert n > 0 and params.dtype == np.float32 and data.n_train == 3500
    with pytest.raises(ValueError, match="data_root"):  # no silent download attempt
        load_mnist("torchvision", data_root=tmp_path)


# ---------------------------------------------------------------------- partition
def test_partition_sizes_are_proportional_and_disjoint(mnist: MNISTData) -> None:
    d_bits = np.array([30e6, 45e6, 40e6, 2e6, 3.5e6, 0.0])
    parts = partition(mnist.train_y, d_bits, "iid", rng=np.random.default_rng(3))
    expected = np.floor(3500 * d_bits / d_bits.sum()).astype(int)
    assert [p.size for p in parts] == expected.tolist()
    flat = np.concatenate(parts)
    assert np.unique(flat).size == flat.size and flat.max() < 3500
    for scheme in ("iid", "dirichlet"):
        a = partition(mnist.train_y, d_bits, scheme, rng=np.random.default_rng(7))
        b = partition(mnist.train_y, d_bits, scheme, rng=np.random.default_rng(7))
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert [p.size for p in a] == expected.tolist()


def _label_skew(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each client's label mix and the global one."""
    glob = np.bincount(labels, minlength=10) / labels.size
    tv = [
        0.5 * np.abs(np.bincount(labels[p], minlength=10) / p.size - glob).sum()
        for p in parts
        if p.size
    ]
    return float(np.mean(tv))


def test_dirichlet_is_label_skewed_and_iid_is_not(mnist: MNISTData) -> None:
    y = mnist.train_y.numpy()
    w = np.ones(20)
    iid = partition(y, w, "iid", rng=0)
    non = partition(y, w, "dirichlet", alpha=0.1, rng=0)
    dis = np.concatenate(non)
    assert np.unique(dis).size == dis.size == 3500
    assert _label_skew(y, iid) < 0.12
    assert _label_skew(y, non) > 0.5
    assert _label_skew(y, partition(y, w, "dirichlet", alpha=100.0, rng=0)) < 0.2


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"weights": [1.0, -1.0]}, "weights"),
        ({"weights": [0.0, 0.0]}, "weights"),
        ({"weights": [1.0], "scheme": "shards"}, "scheme"),
        ({"weights": [1.0], "scheme": "dirichlet", "alpha": 0.0}, "alpha"),
        ({"weights": [1.0], "rng": "seed"}, "rng"),
    ],
)
def test_partition_validates_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        partition(np.zeros(10, dtype=np.int64), **kwargs)
    with pytest.raises(ValueError, match="labels"):
        partition(np.zeros(10), [1.0])
