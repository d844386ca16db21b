"""FL speed: batched local training of many clients vs the sequential loop, same run.

For each model (``--models``, default CNN and MLP) and two client populations of
``--clients`` clients (default 100) over the embedded MNIST training set (4,000 digits):

- ``table2``: 10 Table II clusters (6 GLDs of 30-55 Mbit, 4 BLDs of 2-3.5 Mbit each), i.e.
  the data sizes the environment produces, so clients hold 3-80 samples;
- ``uniform``: equal shares (40 samples per client);

one local-training round (the same minibatch plan, ``--epochs`` epochs of batch
``--batch-size``) is timed with ``train_batched`` and with ``train_sequential`` in the same
process, after one warm-up of each, in ``--repeats`` back-to-back pairs (batched, then
sequential); the speed-up is the median of the pairs' ratios, so that a change in the
machine's speed during the run weighs on both sides alike, and the range of the ratios is
printed beside it. The largest parameter
difference between the two is reported too, with the number of clients that differ by more
than 1e-5. In float32 that number can be one or two when clients take many steps: a
rounding difference flips a ReLU or max-pool tie and that client's trajectory moves apart
(by up to ~0.1 after 100 steps); ``--dtype float64`` shows that the maths agree (~1e-15).
Then one full FL round of a 10-cluster :class:`FederatedSystem` (every cluster's round,
FedAvg per cluster, global aggregation and test evaluation; float32) is timed, batched over
the whole round (``clusters_round``) and cluster by cluster (``cluster_round``, as an
environment step does it). Results are saved as JSON.

    python benchmarks/fl_speed.py                 # about 30 s on 2 CPU cores
    python benchmarks/fl_speed.py --threads 2 --models mlp
    python benchmarks/fl_speed.py --threads 1 --impl stacked   # the autograd path
    python benchmarks/fl_speed.py --device cuda   # on a GPU machine
    python benchmarks/fl_speed.py --models cnn --breakdown   # op by op, one thread

``--breakdown`` also sets the block step's and the sequential step's arithmetic rate
(FLOPs counted by ``torch.utils.flop_counter``, per second) beside the same core's float32
matrix product: how far the batched step is from what the core's arithmetic allows.

The issue's target: >= 5x for 100 clients batched vs sequential. ``--threads`` sets
``torch.set_num_threads`` (default: torch's own choice). On a machine shared with other
busy processes use ``--threads 1``: OpenMP threads waiting for a busy core make timings
erratic (seconds instead of milliseconds).
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# run as a script, this file's folder comes first on sys.path and the benchmark named
# `solvers.py` would shadow the `solvers` package: drop it before importing the project
_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from dtfl_env.fl import (  # noqa: E402
    FederatedSystem,
    load_mnist,
    make_model,
    make_schedule,
    partition,
    train_batched,
    train_sequential,
)
from dtfl_env.fl.training import (  # noqa: E402
    cpu_threads,
    flatten_stacked,
    resolve_device,
    stack_params,
)
from dtfl_env.scenarios import table2_cluster  # noqa: E402

TARGET_SPEEDUP = 5.0


def _median_time(fn: Any, repeats: int) -> tuple[float, Any]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _paired_times(fn_a: Any, fn_b: Any, repeats: int) -> tuple[float, float, list[float], Any, Any]:
    """Time ``fn_a`` and ``fn_b`` in alternation: one warm-up of each, then ``repeats``
    pairs, each pair run back to back, so that a change of the machine's speed during the
    run (a shared or throttled CPU) falls on both alike.

    Returns the median time of each, the pairs' ratios ``t_b / t_a`` and the last outputs.
    """
    out_a, out_b = fn_a(), fn_b()
    t_a, t_b = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out_a = fn_a()
        t1 = time.perf_counter()
        out_b = fn_b()
        t_a.append(t1 - t0)
        t_b.append(time.perf_counter() - t1)
    return (
        statistics.median(t_a),
        statistics.median(t_b),
        [b / a for a, b in zip(t_a, t_b, strict=True)],
        out_a,
        out_b,
    )


def _sync(out: Any) -> Any:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out


def _populations(n_clients: int) -> dict[str, np.ndarray]:
    c = table2_cluster()
    per_cluster = np.concatenate([c.gld.data_bits, c.bld.data_bits])
    reps = -(-n_clients // per_cluster.size)
    return {"table2": np.tile(per_cluster, reps)[:n_clients], "uniform": np.ones(n_clients)}


def bench_local_round(
    data: Any,
    model_name: str,
    weights: np.ndarray,
    epochs: int,
    batch_size: int,
    lr: float,
    repeats: int,
    seed: int,
    device: str,
    impl: str = "auto",
    dtype: torch.dtype = torch.float32,
) -> dict[str, Any]:
    model = make_model(model_name, seed=seed).to(dtype)
    init = {n: p.detach() for n, p in model.named_parameters()}
    shards = partition(data.train_y, weights, "iid", rng=np.random.default_rng(seed))
    sched = make_schedule(
        shards, epochs, batch_size, [np.random.default_rng([seed, k]) for k in range(len(shards))]
    )
    x, y = data.train_x.to(dtype), data.train_y
    t_b, t_s, ratios, out_b, out_s = _paired_times(
        lambda: _sync(train_batched(model, init, x, y, sched, lr, device, impl=impl)),
        lambda: _sync(train_sequential(model, init, x, y, sched, lr, device)),
        repeats,
    )
    # per client: in float32 a rounding difference can flip a ReLU or max-pool tie and move
    # one client's trajectory apart (float64 shows that the maths agree)
    per_client = (flatten_stacked(out_b) - flatten_stacked(out_s)).abs().amax(dim=1)
    diff = float(per_client.max()) if per_client.numel() else 0.0
    return {
        "model": model_name,
        "impl": impl,
        "clients": len(shards),
        "samples_min": int(sched.n_samples.min()),
        "samples_max": int(sched.n_samples.max()),
        "samples_total": int(sched.n_samples.sum()),
        "client_steps": int(sched.steps.sum()) * epochs,
        "batched_s": t_b,
        "sequential_s": t_s,
        "speedup": statistics.median(ratios),
        "speedup_pairs": ratios,
        "dtype": str(dtype).removeprefix("torch."),
        "max_param_diff": diff,
        "clients_above_1e-5": int((per_client > 1e-5).sum()),
    }


def bench_full_round(
    data: Any,
    model_name: str,
    clusters: int,
    epochs: int,
    batch_size: int,
    lr: float,
    repeats: int,
    seed: int,
    device: str,
) -> dict[str, Any]:
    cfg = {
        "model": model_name,
        "local_epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "device": device,
    }
    system = FederatedSystem(cfg, [table2_cluster()] * clusters, seed=seed, data=data)

    def whole_round() -> float:
        out = system.clusters_round([(s, None, None, None) for s in range(clusters)])
        system.global_aggregate([p for p, _ in out], [n for _, n in out])
        return system.evaluate()[0]

    def per_cluster() -> float:
        out = [system.cluster_round(s) for s in range(clusters)]
        system.global_aggregate([p for p, _ in out], [n for _, n in out])
        return system.evaluate()[0]

    t_all, t_each, _, _, _ = _paired_times(whole_round, per_cluster, repeats)
    t_eval, _ = _median_time(system.evaluate, repeats)
    return {
        "model": model_name,
        "clusters": clusters,
        "devices": clusters * (table2_cluster().n_gld + table2_cluster().n_bld),
        "round_batched_over_clusters_s": t_all,
        "round_cluster_by_cluster_s": t_each,
        "evaluate_s": t_eval,
        "accuracy_after": system.evaluate()[0],
        "rounds_run": system.round,
    }


class _OpTimer(TorchDispatchMode):
    """Wall time and calls of every ATen op dispatched inside the ``with`` block, by name.

    An op's time includes the kernels it calls (they are not dispatched to Python again).
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: collections.Counter[str] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        t0 = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.seconds[name] += time.perf_counter() - t0
        self.calls[name] += 1
        return out


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _sgemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """This core's float32 matrix-product rate: an n x n x n ``torch.mm`` on the calling
    thread's torch threads (median of ``repeats``), in GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t, _ = _median_time(lambda: torch.mm(a, b), repeats)
    return 2.0 * n**3 / t / 1e9


def _flops_per_sample(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Floating-point operations of one plain training step (forward and autograd backward,
    as counted by ``torch.utils.flop_counter``) per sample of the minibatch ``x``.

    The batched step does the same maths per sample (the grouped convolutions are the
    clients' own, and neither path computes conv1's input gradient). Counted on the plain
    model: the counter overstates grouped ``convolution_backward`` (torch 2.14)."""
    counter = FlopCounterMode(display=False)
    with counter:
        loss = F.cross_entropy(net(x), y)
        torch.autograd.grad(loss, list(net.parameters()))
    return counter.get_total_flops() / x.shape[0]


def bench_breakdown(
    data: Any, model_name: str, batch_size: int, lr: float, steps: int, seed: int
) -> dict[str, Any]:
    """One manual-path step of one block of ``stacked_chunk`` clients on one CPU thread,
    op by op, beside the sequential loop's step of one client on one thread.

    Times are medians of ``steps`` steps (after 5 warm-up steps) without the op timer; the
    op table comes from ``steps`` further steps under :class:`_OpTimer` and is given per
    step. The clients start from the same model on different minibatches. Both steps'
    arithmetic rates (GFLOP/s, from :func:`_flops_per_sample`) are set beside the core's
    float32 matrix-product rate (:func:`_sgemm_gflops`), a rough ceiling for any
    reorganisation of the block step (products of these small shapes run slower still).
    """
    model = make_model(model_name, seed=seed)
    step = getattr(model, "sgd_step_stacked", None)
    if not callable(step):
        raise ValueError(f"--breakdown: model {model_name!r} has no manual batched step")
    k = int(getattr(model, "stacked_chunk", 1))
    start = {n: p.detach() for n, p in model.named_parameters()}
    x = data.train_x[: k * batch_size].reshape(k, batch_size, *data.train_x.shape[1:])
    y = data.train_y[: k * batch_size].reshape(k, batch_size)
    w = torch.full((k, batch_size), 1.0 / batch_size)
    params = stack_params(start, k)
    net = make_model(model_name, seed=seed)
    named = dict(net.named_parameters())

    def batched_step() -> None:
        with torch.no_grad():
            step(params, x, y, w, lr)

    def sequential_step() -> None:  # train_sequential's step, one client
        loss = F.cross_entropy(net(x[0]), y[0])
        grads = torch.autograd.grad(loss, list(named.values()))
        with torch.no_grad():
            for p, g in zip(named.values(), grads, strict=True):
                p.sub_(g, alpha=lr)

    def median_step(fn: Any) -> float:
        for _ in range(4):  # with _median_time's own: 5 warm-up steps
            fn()
        return _median_time(fn, steps)[0]

    with cpu_threads(1):
        t_block = median_step(batched_step)
        t_seq = median_step(sequential_step)
        flops = _flops_per_sample(net, x[0], y[0])  # gradients only: net unchanged
        sgemm = _sgemm_gflops()
        timer = _OpTimer()
        with timer:
            for _ in range(steps):
                batched_step()
    ops = [
        {"op": name, "ms_per_step": sec / steps * 1e3, "calls_per_step": timer.calls[name] / steps}
        for name, sec in timer.seconds.most_common()
    ]
    timed = sum(o["ms_per_step"] for o in ops)
    conv = sum(o["ms_per_step"] for o in ops if "convolution" in o["op"])
    return {
        "model": model_name,
        "block_clients": k,
        "batch_size": batch_size,
        "block_step_s": t_block,
        "per_client_step_s": t_block / k,
        "sequential_step_s": t_seq,
        "speedup_per_core": t_seq / (t_block / k),
        "ops": ops,
        "ops_ms_per_step": timed,
        "convolution_share": conv / timed,
        "flops_per_sample_step": flops,
        "block_gflops": flops * k * batch_size / t_block / 1e9,
        "sequential_gflops": flops * batch_size / t_seq / 1e9,
        "sgemm_gflops": sgemm,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads (default: leave torch's choice)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float64"],
        help="of the local-round comparison (float64: the batched and the "
        "sequential maths agree to ~1e-15)",
    )
    ap.add_argument(
        "--impl",
        default="auto",
        choices=["auto", "manual", "stacked", "vmap"],
        help="train_batched's implementation in the local-round timings "
        "(stacked: autograd through the model's forward_stacked)",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time one block step op by op on one CPU thread",
    )
    ap.add_argument("--breakdown-steps", type=int, default=50)
    ap.add_argument("--out", default=str(_HERE / "results" / "fl_speed.json"))
    args = ap.parse_args(argv)
    if args.breakdown_steps < 1:
        ap.error("--breakdown-steps: must be >= 1")
    if args.repeats < 1:
        ap.error("--repeats: must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()

    data = load_mnist("embedded")
    local, full = [], []
    for model_name in args.models:
        for pop, weights in _populations(args.clients).items():
            row = bench_local_round(
                data,
                model_name,
                weights,
                args.epochs,
                args.batch_size,
                args.lr,
                args.repeats,
                args.seed,
                args.device,
                args.impl,
                getattr(torch, args.dtype),
            )
            row["population"] = pop
            local.append(row)
            print(
                f"{model_name:3s} {pop:7s} {row['clients']} clients "
                f"({row['samples_min']}-{row['samples_max']} samples): batched "
                f"{row['batched_s'] * 1e3:8.1f} ms, sequential {row['sequential_s'] * 1e3:8.1f}"
                f" ms, speed-up {row['speedup']:5.2f}x ({min(row['speedup_pairs']):.2f}-"
                f"{max(row['speedup_pairs']):.2f}x over {len(row['speedup_pairs'])} pairs; "
                f"max |diff| {row['max_param_diff']:.1e}, "
                f"{row['clients_above_1e-5']} client(s) above 1e-5)"
            )
        row = bench_full_round(
            data,
            model_name,
            args.clusters,
            args.epochs,
            args.batch_size,
            args.lr,
            args.repeats,
            args.seed,
            args.device,
        )
        full.append(row)
        print(
            f"{model_name:3s} full FL round, {row['clusters']} clusters / {row['devices']} "
            f"devices: {row['round_batched_over_clusters_s'] * 1e3:.1f} ms batched over the "
            f"round, {row['round_cluster_by_cluster_s'] * 1e3:.1f} ms cluster by cluster "
            f"(evaluation {row['evaluate_s'] * 1e3:.1f} ms)"
        )
    breakdown = []
    for model_name in args.models if args.breakdown else []:
        row = bench_breakdown(
            data, model_name, args.batch_size, args.lr, args.breakdown_steps, args.seed
        )
        breakdown.append(row)
        print(
            f"{model_name:3s} one step of a block of {row['block_clients']} clients x "
            f"{row['batch_size']} samples, 1 thread: {row['block_step_s'] * 1e3:.2f} ms "
            f"({row['per_client_step_s'] * 1e3:.3f} ms per client); the sequential loop's "
            f"step of one client: {row['sequential_step_s'] * 1e3:.3f} ms; per core "
            f"{row['speedup_per_core']:.2f}x"
        )
        print(
            f"    ops timed: {row['ops_ms_per_step']:.2f} ms per step, convolutions "
            f"{100 * row['convolution_share']:.0f} %"
        )
        print(
            f"    arithmetic: {row['flops_per_sample_step'] / 1e6:.2f} MFLOP per sample and "
            f"step; block {row['block_gflops']:.1f} GFLOP/s, sequential step "
            f"{row['sequential_gflops']:.1f} GFLOP/s, this core's float32 matrix product "
            f"(1024^3) {row['sgemm_gflops']:.1f} GFLOP/s"
        )
        for o in row["ops"][:8]:
            print(f"    {o['op']:40s} {o['ms_per_step']:7.3f} ms  ({o['calls_per_step']:g} calls)")
    cpu = _cpu_model()
    lo, hi = min(r["speedup"] for r in local), max(r["speedup"] for r in local)
    met = "met" if lo >= TARGET_SPEEDUP else ("met by some" if hi >= TARGET_SPEEDUP else "not met")
    print(
        f"speed-up {lo:.2f}x-{hi:.2f}x (target >= {TARGET_SPEEDUP:.0f}x: {met}); torch "
        f"{torch.__version__}, device {resolve_device(args.device)}, {args.threads} thread(s)"
        f" of {cpu}"
    )
    result = {
        "args": vars(args),
        "target_speedup": TARGET_SPEEDUP,
        "local_round": local,
        "full_round": full,
        "breakdown": breakdown,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
        },
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu,
            "cpu_threads": args.threads,
            "device": str(resolve_device(args.device)),
            "cuda": torch.cuda.is_available(),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
