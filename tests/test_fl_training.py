"""Batched and sequential local training, FedAvg, evaluation, threads (dtfl_env.fl.training)."""

from __future__ import annotations

import itertools

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
    make_model,
    make_schedule,
    train_batched,
    train_centralized,
    train_sequential,
)
from dtfl_env.fl.training import fl_threads, flatten_stacked, resolve_device

from _fl import CPU, subset


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("name", "impl", "chunk"),
    [
        ("cnn", "manual", None),
        ("cnn", "manual", 1),
        ("cnn", "stacked", None),
        ("cnn", "vmap", None),
        ("mlp", "manual", None),
        ("mlp", "manual", 2),
        ("mlp", "vmap", None),
    ],
)
def test_batched_equals_sequential(
    mnist: MNISTData,
    name: str,
    impl: str,
    chunk: int | None,
    dtype: torch.dtype,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
def test_batched_result_does_not_depend_on_worker_threads(
    mnist: MNISTData, name: str, monkeypatch: pytest.MonkeyPatch
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
    ref = flatten_stacked(
        train_batched(model, init, mnist.train_x, mnist.train_y, sched, 0.1, threads=1)
    )
    for threads in (2, 3):
        out = flatten_stacked(
            train_batched(model, init, mnist.train_x, mnist.train_y, sched, 0.1, threads=threads)
        )
        assert torch.allclose(out, ref, rtol=0, atol=1e-6)
        assert torch.get_num_threads() == before
    seq = flatten_stacked(train_sequential(model, init, mnist.train_x, mnist.train_y, sched, 0.1))
    assert float((ref - seq).abs().max()) < 1e-5


def _masked_loss_sum(
    model: torch.nn.Module, p: dict, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
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
        type(model).sgd_step_stacked(params, x, y, w / w.sum(1, keepdim=True).clamp_min(1.0), lr)
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
        train_batched(
            make_model("mlp"),
            flatten_params(make_model("mlp")),
            mnist.train_x,
            mnist.train_y,
            sched,
            0.1,
            impl="fast",
        )
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
    small = subset(mnist, 1000, 300)
    acc0, loss0 = evaluate(
        flatten_params(make_model("mlp", seed=0)), "mlp", small.test_x, small.test_y
    )
    assert 0.0 <= acc0 <= 0.3 and loss0 > 2.0
    res = train_centralized(small, "mlp", epochs=2, batch_size=10, lr=0.1, seed=0)
    assert len(res.accuracy) == 2 and res.samples_seen == [1000, 2000]
    assert res.accuracy[-1] > 0.8 and res.loss[-1] < loss0
    assert evaluate(res.params, "mlp", small.test_x, small.test_y)[0] == res.accuracy[-1]


def test_evaluate_through_stacked_copies_equals_the_plain_forward(
    mnist: MNISTData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CNN's evaluate runs copies of the model through forward_stacked on a CPU: the
    same accuracy and loss as the plain forward, with leftover samples and small sets."""
    from dtfl_env.fl.models import CNN

    small = subset(mnist, 400, 333)
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
    plain = [
        evaluate(m, "cnn", small.test_x[:n], small.test_y[:n], bs)
        for m in models
        for n, bs in cases
    ]
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


def test_system_trains_and_evaluates_on_fl_threads(
    mnist: MNISTData, monkeypatch: pytest.MonkeyPatch
) -> None:
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
