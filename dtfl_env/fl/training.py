"""Local training of many clients as one batched computation, FedAvg and evaluation.

Batching
--------
The K clients' parameters are stacked along a leading client axis and one SGD step of many
of them is one call, by one of three implementations (``train_batched(impl=...)``):

- ``"manual"`` (the default for the CNN and the MLP): the model's ``sgd_step_stacked`` runs
  the forward pass, the backward pass and the update by hand, without autograd. The CNN's
  convolutions are grouped convolutions (``groups=K``, channels-last) and its backward pass
  calls the ATen kernels autograd would call (``convolution_backward``, max-pooling's
  backward through the argmax indices), skipping conv1's input gradient; the fully
  connected layers' weight gradients are fused into the update (``baddbmm_`` with
  ``alpha=-lr``), so the MLP reads and writes its K x 50k weights once per step.
- ``"stacked"``: ``torch.func.grad`` of the sum of the clients' losses through the model's
  ``forward_stacked``, whose gradient with respect to client k's slice is client k's own.
- ``"vmap"``: ``vmap(grad(loss))`` over ``torch.func.functional_call`` (any model).

On a CPU the manual path trains the clients in blocks of ``stacked_chunk`` clients (a
class attribute of the model: 10 for the CNN, 25 for the MLP), each block through all of
its steps before the next, so that a block's weights and activations stay in the cache. The
CNN's blocks (``stacked_parallel = "blocks"``) go to ``torch.get_num_threads()`` worker
threads, each running its ops on one thread: its small grouped convolutions scale poorly
across threads inside one op (1.6x on 2 threads) but well across blocks (1.75-1.85x), and
the result is then the same for any number of threads (a multi-threaded convolution sums in
another order). Where there is only one block (at most ``stacked_chunk`` clients) it runs on
the calling thread with its ops on torch's threads, and the result then depends on torch's
thread count by float rounding. The MLP (``"ops"``, memory bound) runs one block of
``stacked_chunk`` x threads clients after another on torch's threads. On a GPU all clients
form one block.

Clients hold different amounts of data. Every client runs standard minibatch SGD: in each
of ``epochs`` local epochs it visits its own ``n_k`` samples once, in a fresh random order,
in ``ceil(n_k / B)`` minibatches of ``B`` (the last one partial), i.e. what a per-client
``DataLoader(shuffle=True, drop_last=False)`` loop does. The work of a client is then
proportional to its data, as in the paper's latency model (eq. (4): eta * iota * D).

To batch clients with different step counts the plan is padded (**masked updates**): every
minibatch has ``B`` slots with a 0/1 mask and the loss is the masked mean
``sum(mask * loss) / max(sum(mask), 1)``, i.e. the mean over the real samples. Padding is
not computed where it can be skipped: clients are sorted by data size, so at step ``s`` the
clients still training are a prefix of the stack, and that prefix is cut into a few calls
of similar real minibatch sizes (see :func:`_step_runs`). :func:`train_sequential` runs the
same plan client by client with an ``nn.Module`` and ordinary autograd, skipping the
padding, so the two agree up to float rounding (the tests check 1e-5 in float32 and 1e-12
in float64). Caveat: ReLU and max-pooling are not differentiable at ties, and over many
steps a rounding difference can flip one (an equally valid subgradient step), after which
that client's trajectory moves apart: by ~1e-3, and up to ~0.1 for one of four CNN clients
after 100 steps of lr 0.1 (float64 agrees to ~1e-15 on the same plan); results are exactly
reproducible for a fixed code path and device.

The plan (:func:`make_schedule`) is drawn with one numpy generator per client, so a
client's minibatches do not depend on which other clients are trained with it.

Nothing here requires a GPU: ``device="auto"`` picks CUDA when it is available and
otherwise the CPU. Measured speed-ups over the sequential loop, and why the CNN's stops
where it does: ``docs/PERFORMANCE.md`` (``benchmarks/fl_speed.py``).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from dtfl_env.fl.data import MNISTData
from dtfl_env.fl.models import flatten_params, make_model, unflatten_params

__all__ = [
    "CentralizedResult",
    "Schedule",
    "cpu_threads",
    "evaluate",
    "fedavg",
    "fl_threads",
    "flatten_stacked",
    "make_schedule",
    "resolve_device",
    "stack_params",
    "train_batched",
    "train_centralized",
    "train_sequential",
]

Params = dict[str, torch.Tensor]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: {device!r} requested but CUDA is not available (use 'cpu' or 'auto')"
            )
        return torch.device(device)
    raise ValueError(f"device: must be 'cpu', 'cuda' or 'auto', got {device!r}")


_BLAS: Any = None  # threadpoolctl's controller of the loaded BLAS libraries, built on first use


_UNSET: Any = object()


@contextlib.contextmanager
def cpu_threads(threads: int | None, blas_threads: int | None = _UNSET) -> Iterator[None]:
    """Run the block with ``threads`` CPU threads for torch (``torch.set_num_threads``) and
    ``blas_threads`` for numpy's BLAS (``threadpoolctl``), restoring both after (also on an
    exception). ``blas_threads`` defaults to ``threads``; ``None`` leaves that one alone.

    The counts are process-wide: use it from one thread at a time (``train_batched``'s own
    worker threads are started inside and see it).
    """
    global _BLAS
    if blas_threads is _UNSET:
        blas_threads = threads
    for name, value in (("threads", threads), ("blas_threads", blas_threads)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
        ):
            raise ValueError(f"{name}: must be an integer >= 1 or None, got {value!r}")
    with contextlib.ExitStack() as stack:
        if blas_threads is not None:
            if _BLAS is None:
                from threadpoolctl import ThreadpoolController

                _BLAS = ThreadpoolController()
            stack.enter_context(_BLAS.limit(limits=int(blas_threads), user_api="blas"))
        saved = torch.get_num_threads()
        if threads is not None and saved != threads:
            torch.set_num_threads(int(threads))
            stack.callback(torch.set_num_threads, saved)
        yield


def fl_threads(threads: int | None) -> contextlib.AbstractContextManager[None]:
    """The FL backend's threads for ``fl.threads``: torch and numpy's BLAS on ``threads``;
    ``None``: torch's own count and numpy's BLAS on one thread.

    The backend's numpy work (FedAvg of flat vectors, the ledger's update norms) is small,
    and OpenBLAS's worker threads spin for a while after each multi-threaded call, taking
    the cores from the torch work that follows: in ``DTFL-v0`` the ledger's quality check
    of 11 models, right after the update norms, took 130-190 ms instead of 75-80 ms.
    """
    return cpu_threads(threads, blas_threads=1 if threads is None else threads)


# ---------------------------------------------------------------------- the minibatch plan
@dataclass(frozen=True)
class Schedule:
    """Minibatch plan of one local-training round of K clients (masked, padded).

    Attributes
    ----------
    indices : ndarray of int64, shape (K, E, S, B)
        Sample ids (into the data set) of client k's minibatch s in epoch e; padding slots
        hold a valid id and are masked out.
    mask : ndarray of bool, shape (K, E, S, B)
        True for real samples.
    n_samples : ndarray of int64, shape (K,)
        Samples per client (its FedAvg weight).
    steps : ndarray of int64, shape (K,)
        Minibatches per epoch of each client, ``ceil(n_k / B)``.
    batch_size : int
        B.
    """

    indices: np.ndarray
    mask: np.ndarray
    n_samples: np.ndarray
    steps: np.ndarray
    batch_size: int

    @property
    def n_clients(self) -> int:
        return int(self.n_samples.size)

    @property
    def epochs(self) -> int:
        return int(self.indices.shape[1])


def make_schedule(
    client_indices: Sequence[np.ndarray],
    epochs: int,
    batch_size: int,
    rng: np.random.Generator | Sequence[np.random.Generator],
) -> Schedule:
    """Draw every client's per-epoch shuffles and cut them into minibatches.

    Parameters
    ----------
    client_indices : sequence of int arrays
        The sample ids each client trains on (possibly empty).
    epochs : int
        Local epochs eta (>= 1).
    batch_size : int
        Minibatch size B (>= 1).
    rng : Generator or sequence of Generators
        One generator per client (recommended: the plan of a client then does not depend
        on the other clients), or one shared generator used client after client.
    """
    _check_int(epochs, "epochs")
    _check_int(batch_size, "batch_size")
    k = len(client_indices)
    rngs = list(rng) if not isinstance(rng, np.random.Generator) else [rng] * k
    if len(rngs) != k:
        raise ValueError(f"rng: got {len(rngs)} generators for {k} clients")
    n = np.array([np.asarray(ix).size for ix in client_indices], dtype=np.int64)
    steps = -(-n // batch_size)
    s_max = int(steps.max()) if k else 0
    slots = s_max * batch_size
    idx = np.zeros((k, epochs, slots), dtype=np.int64)
    pos = np.arange(slots)
    mask = np.broadcast_to(pos < n[:, None, None], (k, epochs, slots)).copy()
    for c, (ix, g) in enumerate(zip(client_indices, rngs, strict=True)):
        ix = np.asarray(ix, dtype=np.int64)
        if ix.size == 0:
            continue
        for e in range(epochs):
            idx[c, e, : ix.size] = ix[g.permutation(ix.size)]
        idx[c, :, ix.size :] = ix[0]  # padding: any valid id, masked out
    shape = (k, epochs, s_max, batch_size)
    return Schedule(idx.reshape(shape), mask.reshape(shape), n, steps, batch_size)


def _check_int(value: object, name: str, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name}: must be an integer >= {lo}, got {value!r}")


def _check_lr(lr: float) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr: must be a finite number > 0, got {lr!r}")


# ---------------------------------------------------------------------- parameter stacks
def stack_params(params: Mapping[str, torch.Tensor], k: int) -> Params:
    """K independent copies of ``params`` along a new leading client axis."""
    return {n: p.detach().unsqueeze(0).expand(k, *p.shape).clone() for n, p in params.items()}


def flatten_stacked(stacked: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Stacked parameters ``{name: (K, ...)}`` -> one ``(K, P)`` tensor (dtype kept)."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in stacked.values()], dim=1)


def _as_params(
    params: nn.Module | Mapping[str, torch.Tensor] | np.ndarray | torch.Tensor,
    model: nn.Module,
    device: torch.device,
) -> Params:
    if isinstance(params, nn.Module):
        return {n: p.detach().to(device) for n, p in params.named_parameters()}
    if isinstance(params, Mapping):
        return {n: t.detach().to(device) for n, t in params.items()}
    return unflatten_params(params, model, device=device)


def _masked_loss(model: nn.Module) -> Callable[..., torch.Tensor]:
    def loss(p: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, p, (x,))
        per_sample = F.cross_entropy(logits, y, reduction="none")
        return (per_sample * w).sum() / w.sum().clamp_min(1.0)

    return loss


# ---------------------------------------------------------------------- training
def _stacked_loss(model: nn.Module) -> Callable[..., torch.Tensor]:
    forward = model.forward_stacked  # type: ignore[operator]

    def loss(p: Params, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        logits = forward(p, x)  # (K, B, classes)
        k, b = w.shape
        per_sample = F.cross_entropy(
            logits.reshape(k * b, -1), y.reshape(-1), reduction="none"
        ).reshape(k, b)
        # clients are independent: d(sum_k L_k)/d(theta_k) = dL_k/d(theta_k)
        return ((per_sample * w).sum(1) / w.sum(1).clamp_min(1.0)).sum()

    return loss


def _step_runs(n_sorted: np.ndarray, batch_size: int) -> list[list[tuple[int, int, int]]]:
    """Per step, the calls ``(lo, hi, width)`` that cover the clients still training.

    ``n_sorted`` is non-increasing, so at step ``s`` the clients with real samples are a
    prefix and their real sizes ``c_k = min(B, n_k - s B)`` are non-increasing. The prefix is
    cut into contiguous runs of equal ``ceil(log2 c_k)`` and each run is one call padded to
    its widest client: a client with 3 samples is not padded to B = 32 (at most 2x padding
    per call, at most log2(B) + 1 calls per step).
    """
    out: list[list[tuple[int, int, int]]] = []
    n_steps = int(-(-int(n_sorted[0]) // batch_size)) if n_sorted.size else 0
    for s in range(n_steps):
        c = np.clip(n_sorted - s * batch_size, 0, batch_size)
        a = int(np.count_nonzero(c))
        key = np.ceil(np.log2(c[:a])).astype(np.int64)
        cuts = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [a]])
        out.append([(int(lo), int(hi), int(c[lo])) for lo, hi in itertools.pairwise(cuts)])
    return out


def train_batched(
    model: nn.Module,
    init: Mapping[str, torch.Tensor] | np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    schedule: Schedule,
    lr: float,
    device: str | torch.device = "cpu",
    impl: str = "auto",
    threads: int | None = None,
) -> Params:
    """Run the plan for all K clients at once (a few calls per step for all clients); SGD.

    Parameters
    ----------
    model : nn.Module
        Architecture (its own weights are not used).
    init : mapping of tensors or flat vector
        Common starting point of every client (the current global model).
    x, y : torch.Tensor
        The data set the schedule's ids index (moved to ``device`` if needed).
    schedule : Schedule
    lr : float
        SGD learning rate: ``p <- p - lr * grad``.
    device : {"cpu", "cuda", "auto"} or torch.device
    impl : {"auto", "manual", "stacked", "vmap"}
        ``"manual"``: the model's ``sgd_step_stacked`` (the CNN and the MLP: forward,
        backward and update by hand, no autograd; the fastest).
        ``"stacked"``: ``grad`` of the sum of the clients' losses through the model's
        ``forward_stacked`` (the CNN's grouped convolutions).
        ``"vmap"``: ``vmap(grad(loss))`` over ``functional_call`` (any model).
        ``"auto"``: the first of these the model supports.
    threads : int, optional
        CPU worker threads of the ``"manual"`` path. Each worker trains whole blocks of
        clients with single-threaded ops (torch's intra-op thread count is 1 while they run
        and restored after), so the result does not depend on the number of threads. 1:
        the blocks run one after another on the calling thread, each op on torch's own
        threads. Default: the model's ``stacked_parallel``; ``"blocks"`` (the CNN, whose
        small convolutions scale poorly across threads): ``torch.get_num_threads()``
        workers; ``"ops"`` (the MLP, memory bound): 1.

    Returns
    -------
    dict of str -> torch.Tensor
        Stacked trained parameters ``(K, ...)`` in the schedule's client order, on ``device``.
    """
    _check_lr(lr)
    supported = [
        name
        for name, attr in (("manual", "sgd_step_stacked"), ("stacked", "forward_stacked"))
        if callable(getattr(model, attr, None))
    ] + ["vmap"]
    if impl == "auto":
        impl = supported[0]
    if impl not in ("manual", "stacked", "vmap"):
        raise ValueError(f"impl: must be 'auto', 'manual', 'stacked' or 'vmap', got {impl!r}")
    if impl not in supported:
        attr = "sgd_step_stacked" if impl == "manual" else "forward_stacked"
        raise ValueError(f"impl: {impl!r} needs a model with {attr}, got {type(model).__name__}")
    dev = resolve_device(device)
    k = schedule.n_clients
    start = _as_params(init, model, dev)
    if k == 0 or schedule.indices.shape[2] == 0:
        return stack_params(start, k)
    x, y = x.to(dev), y.to(dev)
    # most data first: the clients still training at step s are a prefix of the stack, and
    # their real minibatch sizes min(B, n_k - s B) are non-increasing along it
    order = np.argsort(-schedule.n_samples, kind="stable")
    n_sorted = schedule.n_samples[order]
    idx = torch.as_tensor(schedule.indices[order], device=dev)
    w = torch.as_tensor(schedule.mask[order], dtype=torch.float32, device=dev)
    workers = 1
    if impl == "manual":
        step = model.sgd_step_stacked  # type: ignore[operator]
        # blocks of a few clients, each trained through all its steps before the next: the
        # block's weights and activations stay in the cache (clients are independent). On
        # a CPU the blocks go to one worker thread per torch thread, each running its ops
        # on one thread (see the module doc); on a GPU all clients form one block.
        chunk = int(getattr(model, "stacked_chunk", 0) or k) if dev.type == "cpu" else k
        by_blocks = getattr(model, "stacked_parallel", "ops") == "blocks"
        if dev.type == "cpu" and (threads is not None or by_blocks):
            workers = min(
                torch.get_num_threads() if threads is None else int(threads), -(-k // chunk)
            )
        if dev.type == "cpu" and workers <= 1:  # the ops use torch's threads instead
            chunk *= torch.get_num_threads()
    else:
        step_grad = (
            vmap(grad(_masked_loss(model))) if impl == "vmap" else grad(_stacked_loss(model))
        )

        def step(
            p: Params, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor, lr: float
        ) -> None:
            grads = step_grad(p, xb, yb, wb)
            for n, t in p.items():
                t.sub_(grads[n], alpha=lr)

        chunk = k
    x_rows = x.reshape(x.shape[0], -1)  # index_select of whole rows: a memcpy per sample
    if impl == "manual":  # the steps take per-sample loss weights: the masked mean
        w = w.to(next(iter(start.values())).dtype)
        w = w / w.sum(-1, keepdim=True).clamp_min(1.0)
    y_plan = y[idx]
    out = {n: torch.empty((k, *t.shape), dtype=t.dtype, device=dev) for n, t in start.items()}
    where = torch.as_tensor(order, device=dev)
    blocks = [(c0, min(c0 + chunk, k)) for c0 in range(0, k, chunk)]

    def run(mine: Sequence[tuple[int, int]]) -> None:
        # one reused buffer for the minibatches' inputs (fresh allocations page-fault) and
        # one block's parameters, reused block after block
        x_buf = x_rows.new_empty(min(chunk, k) * schedule.batch_size * x_rows.shape[1])
        buf = stack_params(start, min(chunk, k))
        with torch.no_grad():
            for c0, c1 in mine:
                params = {n: t[: c1 - c0] for n, t in buf.items()}
                for n, t in params.items():
                    t.copy_(start[n].expand_as(t))
                runs = _step_runs(n_sorted[c0:c1], schedule.batch_size)
                for e in range(schedule.epochs):
                    for s, step_runs in enumerate(runs):
                        for lo, hi, b in step_runs:
                            ib = idx[c0 + lo : c0 + hi, e, s, :b].reshape(-1)
                            xb = torch.index_select(
                                x_rows,
                                0,
                                ib,
                                out=x_buf[: ib.numel() * x_rows.shape[1]].view(ib.numel(), -1),
                            ).view(hi - lo, b, *x.shape[1:])
                            step(
                                {n: p[lo:hi] for n, p in params.items()},
                                xb,
                                y_plan[c0 + lo : c0 + hi, e, s, :b],
                                w[c0 + lo : c0 + hi, e, s, :b],
                                lr,
                            )
                for n, t in out.items():  # disjoint rows per block
                    t.index_copy_(0, where[c0:c1], params[n])

    if workers <= 1:
        run(blocks)
        return out
    # the blocks' work is unequal (clients sorted by data size): largest first, each to
    # the least loaded worker
    load = [0] * workers
    shares: list[list[tuple[int, int]]] = [[] for _ in range(workers)]
    for c0, c1 in sorted(blocks, key=lambda b: -int(n_sorted[b[0] : b[1]].sum())):
        i = load.index(min(load))
        shares[i].append((c0, c1))
        load[i] += int(n_sorted[c0:c1].sum())
    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # each worker's ops on one thread: no oversubscription
    try:
        with ThreadPoolExecutor(workers) as pool:
            for f in [pool.submit(run, mine) for mine in shares]:
                f.result()
    finally:
        torch.set_num_threads(saved)
    return out


def train_sequential(
    model: nn.Module,
    init: Mapping[str, torch.Tensor] | np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    schedule: Schedule,
    lr: float,
    device: str | torch.device = "cpu",
) -> Params:
    """The reference loop: the same plan and maths as :func:`train_batched`, one client at
    a time with an ``nn.Module`` and ordinary autograd (padding slots skipped).

    Returns stacked parameters ``(K, ...)`` like :func:`train_batched`.
    """
    _check_lr(lr)
    dev = resolve_device(device)
    start = _as_params(init, model, dev)
    x, y = x.to(dev), y.to(dev)
    net = copy.deepcopy(model).to(dev)
    named = dict(net.named_parameters())
    out: dict[str, list[torch.Tensor]] = {n: [] for n in start}
    for c in range(schedule.n_clients):
        with torch.no_grad():
            for n, p in named.items():
                p.copy_(start[n])
        for e in range(schedule.epochs):
            for s in range(int(schedule.steps[c])):
                sel = schedule.indices[c, e, s][schedule.mask[c, e, s]]
                ib = torch.as_tensor(sel, device=dev)
                loss = F.cross_entropy(net(x[ib]), y[ib])
                grads = torch.autograd.grad(loss, list(named.values()))
                with torch.no_grad():
                    for p, g in zip(named.values(), grads, strict=True):
                        p.sub_(g, alpha=lr)
        for n, p in named.items():
            out[n].append(p.detach().clone())
    if schedule.n_clients == 0:
        return stack_params(start, 0)
    return {n: torch.stack(v) for n, v in out.items()}


# ---------------------------------------------------------------------- aggregation
def fedavg(
    params: np.ndarray | torch.Tensor | Sequence[np.ndarray] | Mapping[str, torch.Tensor],
    weights: np.ndarray | Sequence[float],
) -> np.ndarray | torch.Tensor | dict[str, torch.Tensor]:
    """Weighted average of K models (FedAvg, weights = sample counts), in float64.

    Parameters
    ----------
    params : (K, P) array or tensor, sequence of K flat vectors, or stacked dict
        The K models. A dict maps names to ``(K, ...)`` tensors.
    weights : array of K non-negative numbers, not all zero

    Returns
    -------
    Same kind as ``params`` minus the client axis: a float32 numpy vector ``(P,)`` for numpy
    input or a sequence, a float32 tensor ``(P,)``, or a dict of float32 tensors.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights: expected a non-empty 1-D list, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights: must be finite and >= 0")
    if w.sum() <= 0:
        raise ValueError("weights: must not all be zero")
    w = w / w.sum()
    if isinstance(params, Mapping):
        out = {}
        for n, t in params.items():
            if t.shape[0] != w.size:
                raise ValueError(f"params[{n!r}]: {t.shape[0]} models but {w.size} weights")
            wt = torch.as_tensor(w, dtype=torch.float64, device=t.device)
            out[n] = torch.tensordot(wt, t.to(torch.float64), dims=1).to(torch.float32)
        return out
    if isinstance(params, torch.Tensor):
        if params.ndim != 2 or params.shape[0] != w.size:
            raise ValueError(f"params: expected shape ({w.size}, P), got {tuple(params.shape)}")
        wt = torch.as_tensor(w, dtype=torch.float64, device=params.device)
        return (wt @ params.to(torch.float64)).to(torch.float32)
    arr = np.asarray(
        params if isinstance(params, np.ndarray) else np.stack(list(params)), dtype=np.float64
    )
    if arr.ndim != 2 or arr.shape[0] != w.size:
        raise ValueError(
            f"params: expected {w.size} flat vectors of equal length, got shape {arr.shape}"
        )
    return (w @ arr).astype(np.float32)


# ---------------------------------------------------------------------- evaluation
def evaluate(
    params: nn.Module | Mapping[str, torch.Tensor] | np.ndarray | torch.Tensor,
    model: nn.Module | str,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    """Accuracy (0-1) and mean cross-entropy of ``params`` on ``(x, y)``.

    Parameters
    ----------
    params : flat vector, mapping of tensors, or nn.Module
    model : nn.Module or model name
        The architecture ``params`` belong to.
    x, y : torch.Tensor
        Images ``(N, 1, 28, 28)`` and labels ``(N,)``.
    batch_size : int
        Samples per forward pass.

    Notes
    -----
    On a CPU a model that sets ``stacked_eval`` (the CNN) runs each pass as
    ``stacked_chunk`` copies of itself on equal shares of the pass's samples through its
    ``forward_stacked`` (grouped convolutions; the few samples left over go through the
    plain forward): the same function up to float rounding, 2.4x faster than the plain
    convolutions (1,000 test digits: 12 ms against 29 ms on 2 cores), whose 1 and 10
    channels fill oneDNN's 16-lane blocks poorly.
    """
    _check_int(batch_size, "batch_size")
    dev = resolve_device(device)
    net = make_model(model, seed=0) if isinstance(model, str) else model
    p = _as_params(params, net, dev)
    n = int(y.shape[0])
    if n == 0:
        raise ValueError("y: empty evaluation set")
    forward = getattr(net, "forward_stacked", None)
    copies, stacked = 1, {}
    if dev.type == "cpu" and callable(forward) and getattr(net, "stacked_eval", False):
        copies = int(getattr(net, "stacked_chunk", 1))
        stacked = stack_params(p, copies)
    correct = 0
    loss_sum = 0.0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            xb, yb = x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)
            m = int(xb.shape[0])
            k = min(copies, m)
            parts, done = [], 0
            if k > 1:  # k copies of the model, m // k samples each
                b = m // k
                logits = forward(
                    {name: t[:k] for name, t in stacked.items()},
                    xb[: k * b].reshape(k, b, *xb.shape[1:]),
                )
                parts.append(logits.reshape(k * b, -1))
                done = k * b
            if done < m:  # the rest (or all) through the plain forward
                parts.append(functional_call(net, p, (xb[done:],)))
            logits = torch.cat(parts) if len(parts) > 1 else parts[0]
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return correct / n, loss_sum / n


# ---------------------------------------------------------------------- centralized baseline
@dataclass(frozen=True)
class CentralizedResult:
    """Per-epoch test accuracy and loss of centralized training (Fig. 7's upper baseline)."""

    accuracy: list[float]
    """Test accuracy (0-1) after each epoch."""
    loss: list[float]
    """Test cross-entropy after each epoch."""
    params: np.ndarray
    """Final flat float32 parameters."""
    samples_seen: list[int]
    """Training samples processed up to each epoch."""
    train_s: list[float]
    """Cumulative wall time of training (evaluation excluded) up to each epoch."""


def train_centralized(
    data: MNISTData,
    model: str = "cnn",
    epochs: int = 5,
    batch_size: int = 10,
    lr: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    init: np.ndarray | None = None,
) -> CentralizedResult:
    """Train one model on the whole training set (no federation): Fig. 7's centralized CNN.

    Parameters
    ----------
    data : MNISTData
        Uses ``train_x, train_y`` to train and ``test_x, test_y`` to evaluate.
    model : {"cnn", "mlp"}
    epochs, batch_size, lr : int, int, float
        Plain minibatch SGD, reshuffled every epoch.
    seed : int
        Seeds the shuffles, and the initial weights unless ``init`` is given.
    device : {"cpu", "cuda", "auto"}
    init : flat float32 vector, optional
        Starting parameters, e.g. ``FederatedSystem.global_params`` before round 1, so that
        the baseline and the federated runs start from the same model.

    Returns
    -------
    CentralizedResult
        ``accuracy[e]``, ``loss[e]`` on the test set after epoch ``e + 1``.
    """
    _check_int(epochs, "epochs")
    _check_int(batch_size, "batch_size")
    dev = resolve_device(device)
    net = make_model(model, seed=seed)
    x, y = data.train_x, data.train_y
    all_ids = np.arange(int(y.shape[0]))
    sched = make_schedule([all_ids], epochs, batch_size, np.random.default_rng(seed))
    params: np.ndarray | Params = flatten_params(net) if init is None else np.asarray(init)
    accs, losses, seen, wall = [], [], [], []
    elapsed = 0.0
    for e in range(epochs):
        one = Schedule(
            sched.indices[:, e : e + 1],
            sched.mask[:, e : e + 1],
            sched.n_samples,
            sched.steps,
            batch_size,
        )
        t0 = time.perf_counter()
        stacked = train_sequential(net, params, x, y, one, lr, dev)
        elapsed += time.perf_counter() - t0
        wall.append(elapsed)
        params = {n: t[0] for n, t in stacked.items()}
        acc, loss = evaluate(params, net, data.test_x, data.test_y, device=dev)
        accs.append(acc)
        losses.append(loss)
        seen.append((e + 1) * int(y.shape[0]))
    return CentralizedResult(accs, losses, flatten_params(params), seen, wall)
