"""Federated learning core (dtfl_env.fl): data, partition, batched training, the system."""

from __future__ import annotations

import itertools
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dtfl_env.fl import (
    FederatedSystem,
    FLConfig,
    MNISTData,
    cpu_threads,
    evaluate,
    fedavg,
    flatten_params,
    load_mnist,
    make_model,
    make_schedule,
    partition,
    train_batched,
    train_centralized,
    train_sequential,
    unflatten_params,
)
from dtfl_env.fl.data import MNIST_MEAN, MNIST_STD, _embedded_arrays
from dtfl_env.fl.training import fl_threads, flatten_stacked, resolve_device
from dtfl_env.scenarios import table2_cluster

CPU = {"device": "cpu"}


@pytest.fixture(scope="module")
def mnist() -> MNISTData:
    return load_mnist("embedded", seed=0)


def _subset(data: MNISTData, n_train: int, n_test: int) -> MNISTData:
    return MNISTData(data.train_x[:n_train], data.train_y[:n_train], data.test_x[:n_test],
                     data.test_y[:n_test], data.source)


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
    system = FederatedSystem({"model": "mlp", **CPU}, [([3.0, 2.0], [1.0, 4.0])] * 2,
                             data=mnist)
    assert not _image_keys(system.data.train_x) & _image_keys(system.data.val_x)
    g = system.global_params
    from dtfl_env.fl.training import evaluate as plain

    assert system.validation_quality(g, 100) == plain(g, system.model, mnist.val_x[:100],
                                                      mnist.val_y[:100])
    assert system.evaluate() == plain(g, system.model, mnist.test_x, mnist.test_y)
    empty = FederatedSystem({"model": "mlp", "validation_fraction": 0.0, **CPU},
                            [([1.0], [1.0])])
    with pytest.raises(ValueError, match="validation_fraction"):
        empty.validation_quality(g)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write an MNIST idx file (big-endian header, uint8 payload)."""
    header = struct.pack(">I", 0x0800 + array.ndim) + b"".join(
        struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist_root(root: Path, n_train: int = 30, n_test: int = 12) -> np.ndarray:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x, y = _embedded_arrays()
    pix = x.reshape(-1, 28, 28)
    pick = np.arange(0, 5000, 5000 // (n_train + n_test))[:n_train + n_test]
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
    expected = (torch.from_numpy(x[pick[:30]].copy()).reshape(-1, 1, 28, 28) / 255.0
                - MNIST_MEAN) / MNIST_STD
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
    root = {"none": None, "missing": tmp_path / "nope", "file": tmp_path / "f.txt",
            "empty": tmp_path}[kind]
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
    tv = [0.5 * np.abs(np.bincount(labels[p], minlength=10) / p.size - glob).sum()
          for p in parts if p.size]
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


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"weights": [1.0, -1.0]}, "weights"),
    ({"weights": [0.0, 0.0]}, "weights"),
    ({"weights": [1.0], "scheme": "shards"}, "scheme"),
    ({"weights": [1.0], "scheme": "dirichlet", "alpha": 0.0}, "alpha"),
    ({"weights": [1.0], "rng": "seed"}, "rng"),
])
def test_partition_validates_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        partition(np.zeros(10, dtype=np.int64), **kwargs)
    with pytest.raises(ValueError, match="labels"):
        partition(np.zeros(10), [1.0])


# ---------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_flatten_unflatten_round_trip(name: str) -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    model = make_model(name, seed=5)
    assert torch.equal(torch.rand(3), before)  # the global RNG is left alone
    vec = flatten_params(model)
    assert vec.dtype == np.float32 and vec.ndim == 1
    assert vec.size == sum(p.numel() for p in model.parameters())
    back = unflatten_params(vec, model)
    assert list(back) == [n for n, _ in model.named_parameters()]
    assert np.array_equal(flatten_params(back), vec)
    assert np.array_equal(flatten_params(make_model(name, seed=5)), vec)
    with pytest.raises(ValueError, match="vec"):
        unflatten_params(vec[:-1], model)
    with pytest.raises(ValueError, match="model"):
        make_model("resnet")


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "impl", "chunk"), [
    ("cnn", "manual", None), ("cnn", "manual", 1), ("cnn", "stacked", None),
    ("cnn", "vmap", None), ("mlp", "manual", None), ("mlp", "manual", 2),
    ("mlp", "vmap", None)])
def test_batched_equals_sequential(mnist: MNISTData, name: str, impl: str, chunk: int | None,
                                   dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """Heterogeneous clients (an empty one, partial batches): same plan, same parameters.

    float32 agrees to 1e-5 on this plan; over long runs a rounding difference can flip a
    ReLU or max-pool tie and move one client by ~1e-3 to ~0.1 (a valid other subgradient),
    so the float64 run checks the maths tightly.
    """
    model = make_model(name, seed=0).to(dtype)
    if chunk is not None:  # blocks of clients trained one after the other (buffer reuse)
        monkeypatch.setattr(type(model), "stacked_chunk", chunk)
    init = flatten_params(model)
    sizes = [37, 5, 0, 16, 1, 23]
    ids = np.random.default_rng(0).permutation(3500)
    starts = np.cumsum([0, *sizes])
    shards = [ids[a:b] for a, b in itertools.pairwise(starts)]
    sched = make_schedule(shards, 2, 8, [np.random.default_rng([1, k]) for k in range(6)])
    assert sched.steps.tolist() == [5, 1, 0, 2, 1, 3]
    x, y = mnist.train_x.to(dtype), mnist.train_y
    start = {n: p.detach() for n, p in model.named_parameters()}
    batched = train_batched(model, start, x, y, sched, 0.1, "cpu", impl=impl)
    seq = train_sequential(model, start, x, y, sched, 0.1, "cpu")
    assert all(t.dtype == dtype for t in [*batched.values(), *seq.values()])
    fb, fs = flatten_stacked(batched).double(), flatten_stacked(seq).double()
    first = torch.cat([p.reshape(-1) for p in start.values()]).double()
    assert fb.shape == (6, init.size)
    assert torch.equal(fb[2], first)  # no data: unchanged
    assert float((fb - fs).abs().max()) < (1e-5 if dtype == torch.float32 else 1e-12)
    assert float((fb[0] - first).abs().max()) > 1e-3  # it did train


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_batched_result_does_not_depend_on_worker_threads(mnist: MNISTData, name: str,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Blocks of clients on worker threads (single-threaded ops) give the same parameters
    for any number of workers, and torch's thread count is restored afterwards."""
    model = make_model(name, seed=1)
    monkeypatch.setattr(type(model), "stacked_chunk", 2)  # 5 blocks of 2 clients
    ids = np.random.default_rng(1).permutation(3500)
    sizes = [30, 3, 12, 0, 25, 7, 18, 9, 1, 14]
    starts = np.cumsum([0, *sizes])
    shards = [ids[a:b] for a, b in itertools.pairwise(starts)]
    sched = make_schedule(shards, 1, 8, [np.random.default_rng([2, k]) for k in range(10)])
    init = flatten_params(model)
    before = torch.get_num_threads()
    ref = flatten_stacked(train_batched(model, init, mnist.train_x, mnist.train_y, sched, 0.1,
                                        threads=1))
    for threads in (2, 3):
        out = flatten_stacked(train_batched(model, init, mnist.train_x, mnist.train_y, sched,
                                            0.1, threads=threads))
        assert torch.allclose(out, ref, rtol=0, atol=1e-6)
        assert torch.get_num_threads() == before
    seq = flatten_stacked(train_sequential(model, init, mnist.train_x, mnist.train_y, sched,
                                           0.1))
    assert float((ref - seq).abs().max()) < 1e-5


def _masked_loss_sum(model: torch.nn.Module, p: dict, x: torch.Tensor, y: torch.Tensor,
                     w: torch.Tensor) -> torch.Tensor:
    """Sum over clients of the masked-mean cross-entropy, through ``functional_call``."""
    total = 0.0
    for c in range(x.shape[0]):
        logits = torch.func.functional_call(model, {n: t[c] for n, t in p.items()}, (x[c],))
        ce = torch.nn.functional.cross_entropy(logits, y[c], reduction="none")
        total = total + (ce * w[c]).sum() / w[c].sum().clamp_min(1.0)
    return total


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_manual_sgd_step_equals_func_grad(mnist: MNISTData, name: str) -> None:
    """``sgd_step_stacked`` (backward by hand, fused update) == p - lr * torch.func.grad."""
    from dtfl_env.fl.training import stack_params

    model = make_model(name, seed=1).double()
    k, b, lr = 4, 6, 0.3
    start = stack_params(dict(model.named_parameters()), k)
    gen = torch.Generator().manual_seed(0)
    for t in start.values():  # different clients, different weights
        t.add_(0.05 * torch.randn(t.shape, generator=gen, dtype=t.dtype))
    ids = torch.randint(0, 3500, (k, b), generator=gen)
    x, y = mnist.train_x.double()[ids], mnist.train_y[ids]
    w = torch.ones(k, b, dtype=torch.float64)
    w[1, 4:] = 0.0  # padding slots
    w[3] = 0.0  # a client without data: no update
    grads = torch.func.grad(lambda p: _masked_loss_sum(model, p, x, y, w))(start)
    params = {n: t.clone() for n, t in start.items()}
    with torch.no_grad():
        type(model).sgd_step_stacked(params, x, y, w / w.sum(1, keepdim=True).clamp_min(1.0),
                                     lr)
    for n, t in params.items():
        assert t.dtype == torch.float64
        assert float((t - (start[n] - lr * grads[n])).abs().max()) < 1e-12, n
        assert torch.equal(t[3], start[n][3])
    assert float((params["fc1.weight"] - start["fc1.weight"]).abs().max()) > 1e-4


class Plain(torch.nn.Module):
    """A linear model with neither a manual step nor a stacked forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(-3))


def test_train_batched_validates_impl(mnist: MNISTData) -> None:
    sched = make_schedule([np.arange(5)], 1, 4, np.random.default_rng(0))
    init = {n: p.detach() for n, p in Plain().named_parameters()}
    for impl in ("manual", "stacked"):
        with pytest.raises(ValueError, match="impl"):
            train_batched(Plain(), init, mnist.train_x, mnist.train_y, sched, 0.1, impl=impl)
    with pytest.raises(ValueError, match="impl"):
        train_batched(make_model("mlp"), flatten_params(make_model("mlp")), mnist.train_x,
                      mnist.train_y, sched, 0.1, impl="fast")
    out = train_batched(Plain(), init, mnist.train_x, mnist.train_y, sched, 0.1)  # vmap
    assert out["fc.weight"].shape == (1, 10, 784)


def test_fedavg_weights_by_samples() -> None:
    vecs = np.array([[1.0, 2.0], [3.0, 6.0]], dtype=np.float32)
    out = fedavg(vecs, [1, 3])
    assert out.dtype == np.float32 and out.tolist() == [2.5, 5.0]
    assert fedavg(list(vecs), [1, 0]).tolist() == [1.0, 2.0]
    t = fedavg(torch.from_numpy(vecs), [1, 1])
    assert isinstance(t, torch.Tensor) and t.tolist() == [2.0, 4.0]
    d = fedavg({"w": torch.from_numpy(vecs)}, [3, 1])
    assert d["w"].tolist() == [1.5, 3.0]
    for bad in ([0, 0], [1, -1], [1.0]):
        with pytest.raises(ValueError, match=r"weights|params"):
            fedavg(vecs, bad)


def test_evaluate_and_centralized_baseline(mnist: MNISTData) -> None:
    small = _subset(mnist, 1000, 300)
    acc0, loss0 = evaluate(flatten_params(make_model("mlp", seed=0)), "mlp", small.test_x,
                           small.test_y)
    assert 0.0 <= acc0 <= 0.3 and loss0 > 2.0
    res = train_centralized(small, "mlp", epochs=2, batch_size=10, lr=0.1, seed=0)
    assert len(res.accuracy) == 2 and res.samples_seen == [1000, 2000]
    assert res.accuracy[-1] > 0.8 and res.loss[-1] < loss0
    assert evaluate(res.params, "mlp", small.test_x, small.test_y)[0] == res.accuracy[-1]


def test_evaluate_through_stacked_copies_equals_the_plain_forward(
        mnist: MNISTData, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CNN's evaluate runs copies of the model through forward_stacked on a CPU: the
    same accuracy and loss as the plain forward, with leftover samples and small sets."""
    from dtfl_env.fl.models import CNN

    small = _subset(mnist, 400, 333)
    models = [flatten_params(make_model("cnn", seed=s)) for s in range(2)]
    models.append(train_centralized(small, "cnn", epochs=1, seed=0).params)
    calls = []
    real = CNN.forward_stacked

    def spy(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape[:2]))
        return real(params, x)

    cases = [(333, 500), (333, 7), (5, 500), (1, 500)]
    stacked = []
    monkeypatch.setattr(CNN, "forward_stacked", staticmethod(spy))
    for m in models:
        for n, bs in cases:
            stacked.append(evaluate(m, "cnn", small.test_x[:n], small.test_y[:n], bs))
    # 333 = 10 x 33 + 3 (the 3 through the plain forward); 7 = 7 x 1; 5 = 5 x 1; 1 alone
    assert calls[:3] == [(10, 33), *[(7, 1)] * 2] and (5, 1) in calls
    monkeypatch.setattr(CNN, "stacked_eval", False)
    calls.clear()
    plain = [evaluate(m, "cnn", small.test_x[:n], small.test_y[:n], bs)
             for m in models for n, bs in cases]
    assert calls == []
    assert [a for a, _ in stacked] == [a for a, _ in plain]
    assert max(abs(ls - lp) for (_, ls), (_, lp) in zip(stacked, plain, strict=True)) < 1e-5
    assert stacked[8][0] > 0.3  # the trained model, well above chance


def test_evaluate_batch_size(mnist: MNISTData) -> None:
    net = Plain()
    x, y = mnist.test_x[:100], mnist.test_y[:100]
    # the pass size changes nothing but the float summation order
    acc, loss = evaluate(net, net, x, y, batch_size=7)
    assert acc == evaluate(net, net, x, y)[0]
    assert abs(loss - evaluate(net, net, x, y)[1]) < 1e-6
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            evaluate(net, net, x, y, batch_size=bad)  # type: ignore[arg-type]


def test_device_options() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")


# ---------------------------------------------------------------------- the system
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_system_learns_mnist_in_three_rounds(mnist: MNISTData, model: str) -> None:
    """10 clients (2 clusters of 3 GLDs + 2 BLDs, equal data) pass 80 % in 3 rounds."""
    system = FederatedSystem({"model": model, **CPU}, [(np.ones(3), np.ones(2))] * 2,
                             seed=0, data=mnist)
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
    skip = FederatedSystem({"model": "mlp", "twin_stale_policy": "skip", **CPU}, clusters,
                           data=mnist)
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
    system = FederatedSystem({"model": "mlp", "data_arrival_rounds": 4, **CPU},
                             [([1.0], [1.0, 1.0])], data=mnist)
    assert system.twin_samples(0).tolist() == [292, 292]  # round 0: ceil(1166 / 4)
    for _ in range(2):
        p, n = system.cluster_round(0, None, [1], None)  # BLD 0 never syncs
        system.global_aggregate([p], [n])
    assert system.round == 2
    system.cluster_round(0, None, [1], None)
    assert system.twin_samples(0).tolist() == [292, 875]  # round 2: ceil(1166 * 3 / 4)
    assert system.last_participation[0]["bld_stale"].tolist() == [0]



def test_window_stream_twin_starts_empty_and_holds_only_synced_chunks(mnist: MNISTData
                                                                       ) -> None:
    """``data_stream="window"``: fresh data per round; a twin learns only what it synced."""
    cfg = {"model": "mlp", "data_arrival_rounds": 4, "data_stream": "window",
           "twin_stale_policy": "stale", **CPU}
    system = FederatedSystem(cfg, [([1.0], [1.0, 1.0])], data=mnist)
    assert system.twin_samples(0).tolist() == [0, 0]  # nothing synced yet
    gld_n, bld_n = system.device_samples(0)
    p, n = system.cluster_round(0, None, [1], None)  # BLD 0 never syncs
    assert system.twin_samples(0).tolist() == [0, bld_n[1] // 4]
    assert system.last_participation[0]["bld"].tolist() == [1]  # empty twin: no training
    assert n == gld_n[0] // 4 + bld_n[1] // 4  # one chunk each, not the whole shard
    system.global_aggregate([p], [n])
    system.cluster_round(0, None, [0, 1], None)  # round 1: chunk 1 of each shard
    assert system.twin_samples(0).tolist() == [bld_n[0] * 2 // 4 - bld_n[0] // 4,
                                              bld_n[1] * 2 // 4 - bld_n[1] // 4]
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
    for key, bad in [("model", "vgg"), ("local_epochs", 0), ("lr", -1.0), ("alpha", 0),
                     ("partition", "shards"), ("twin_stale_policy", "drop"), ("device", "tpu"),
                     ("batch_size", 2.5), ("seed", -1), ("download", "yes")]:
        with pytest.raises(ValueError, match=rf"fl\.{key}"):
            FLConfig.from_dict({key: bad})
    with pytest.raises(ValueError, match=r"fl\.backend"):
        FederatedSystem({"backend": "none"}, [([1.0], [])])
    with pytest.raises(ValueError, match=r"clusters\[0\]"):
        FederatedSystem(CPU, [("a", "b", "c")])


# ---------------------------------------------------------------------- torch threads
def test_cpu_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    from threadpoolctl import threadpool_info

    def blas() -> list[int]:
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    blas_before = blas()
    with cpu_threads(other):
        assert torch.get_num_threads() == other
    with cpu_threads(1):
        assert all(n == 1 for n in blas())  # numpy's BLAS too
    assert torch.get_num_threads() == before and blas() == blas_before
    with pytest.raises(RuntimeError, match="inside"), cpu_threads(other):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before  # restored after an exception too
    with cpu_threads(None):
        assert torch.get_num_threads() == before
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"), cpu_threads(bad):  # type: ignore[arg-type]
            pass
        with pytest.raises(ValueError, match="blas_threads"), cpu_threads(1, bad):  # type: ignore[arg-type]
            pass
    assert torch.get_num_threads() == before
    # the two counts apart: BLAS alone, torch alone
    with cpu_threads(None, blas_threads=1):
        assert torch.get_num_threads() == before and all(n == 1 for n in blas())
    with cpu_threads(other, blas_threads=None):
        assert torch.get_num_threads() == other and blas() == blas_before
    assert torch.get_num_threads() == before and blas() == blas_before


def test_fl_threads_default_puts_blas_on_one_thread() -> None:
    """``fl.threads=None``: torch keeps its count, numpy's BLAS runs on one thread (idle
    OpenBLAS threads spinning after a call slow the torch work that follows)."""
    from threadpoolctl import threadpool_info

    def blas() -> list[int]:
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    before, blas_before = torch.get_num_threads(), blas()
    with fl_threads(None):
        assert torch.get_num_threads() == before and all(n == 1 for n in blas())
    with fl_threads(1):
        assert torch.get_num_threads() == 1 and all(n == 1 for n in blas())
    assert torch.get_num_threads() == before and blas() == blas_before


@pytest.mark.parametrize("bad", [0, -2, 2.0, True, "1"])
def test_fl_threads_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match=r"fl\.threads"):
        FLConfig(threads=bad)  # type: ignore[arg-type]
    assert FLConfig(threads=3).threads == 3 and FLConfig().threads is None


def test_system_trains_and_evaluates_on_fl_threads(mnist: MNISTData,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``fl.threads``: torch runs on that many threads while the system trains and
    evaluates, the count is restored after, and the batched results do not change."""
    import dtfl_env.fl.system as system_mod

    seen: list[int] = []
    real_train, real_eval = system_mod.train_batched, system_mod.evaluate

    def spy_train(*a: object, **k: object) -> object:
        seen.append(torch.get_num_threads())
        return real_train(*a, **k)  # type: ignore[arg-type]

    def spy_eval(*a: object, **k: object) -> object:
        seen.append(torch.get_num_threads())
        return real_eval(*a, **k)  # type: ignore[arg-type]

    clusters = [([3.0, 4.0], [1.0]), ([5.0], [1.0, 1.0])]
    base = FederatedSystem({"model": "cnn", **CPU}, clusters, seed=2, data=mnist)
    ref = base.clusters_round([(0, None, None, None), (1, None, None, None)])
    before = torch.get_num_threads()
    monkeypatch.setattr(system_mod, "train_batched", spy_train)
    monkeypatch.setattr(system_mod, "evaluate", spy_eval)
    one = FederatedSystem({"model": "cnn", "threads": 1, **CPU}, clusters, seed=2, data=mnist)
    out = one.clusters_round([(0, None, None, None), (1, None, None, None)])
    one.evaluate()
    assert seen == [1, 1] and torch.get_num_threads() == before
    for (p, n), (q, m) in zip(ref, out, strict=True):  # one block of 5 clients: its ops ran
        assert n == m and np.abs(p - q).max() < 1e-5  # on 1 thread here, by rounding only


def test_model_parameters_table_matches_the_torch_models():
    from dtfl_env.fl.config import MODEL_PARAMETERS, model_size_bits
    from dtfl_env.fl.models import make_model, n_params

    for name, count in MODEL_PARAMETERS.items():
        assert n_params(make_model(name, seed=0)) == count
    assert model_size_bits("cnn") == 32 * 21_840  # about 0.70 Mbit
    with pytest.raises(ValueError, match="model"):
        model_size_bits("resnet")
