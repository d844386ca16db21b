"""The MNIST models and the flat float32 parameter vectors the ledger hashes and signs.

- ``"cnn"``: the paper's CNN (Table II: "Training model: CNN"; two convolutional and two
  fully connected layers), sized like the classic PyTorch MNIST example so that it trains
  fast on a CPU: conv(1->10, 5x5) - maxpool 2 - ReLU - conv(10->20, 5x5) - maxpool 2 - ReLU -
  fc(320->50) - ReLU - fc(50->10); 21,840 parameters. No dropout and no batch norm, so a
  forward pass is deterministic and the model has no buffers.
- ``"mlp"``: fc(784->64) - ReLU - fc(64->10); 50,890 parameters, the cheapest option.

A model's parameters travel as one flat float32 vector in ``named_parameters`` order
(:func:`flatten_params`, :func:`unflatten_params`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "flatten_params",
    "make_model",
    "n_params",
    "param_shapes",
    "unflatten_params",
]

_aten = torch.ops.aten
_FC = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def _ce_grad(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Gradient of the K weighted cross-entropy sums w.r.t. their logits ``(K, B, C)``.

    Client k's loss is ``sum_b w_kb CE(logits_kb, y_kb)``; its gradient is
    ``w_kb (softmax - onehot)``.
    """
    g = torch.softmax(logits, dim=-1)
    wt = w.unsqueeze(-1)
    g.mul_(wt)
    return g.scatter_add_(-1, y.unsqueeze(-1), wt.neg())


def _fc_sgd_step(
    feat: torch.Tensor,
    fc: Sequence[torch.Tensor],
    y: torch.Tensor,
    w: torch.Tensor,
    lr: float,
    input_grad: bool,
) -> torch.Tensor | None:
    """fc(F->H) - ReLU - fc(H->C) - weighted CE of K clients: forward, backward and SGD.

    ``feat`` ``(K, B, F)``; ``fc`` the weights ``(K, out, in)`` and biases ``(K, out)`` of
    the two layers, updated in place. The weight gradient is fused into the update
    (``baddbmm_(alpha=-lr)``): the K x out x in gradient is never stored. Returns
    ``d loss / d feat`` (with the weights before the update) when ``input_grad``, else None.
    """
    w1, b1, w2, b2 = fc
    h = torch.baddbmm(b1.unsqueeze(1), feat, w1.transpose(1, 2)).relu_()
    dz = _ce_grad(torch.baddbmm(b2.unsqueeze(1), h, w2.transpose(1, 2)), y, w)
    dh = torch.bmm(dz, w2).mul_(h > 0)
    dfeat = torch.bmm(dh, w1) if input_grad else None
    w2.baddbmm_(dz.transpose(1, 2), h, alpha=-lr)
    b2.sub_(dz.sum(1), alpha=lr)
    w1.baddbmm_(dh.transpose(1, 2), feat, alpha=-lr)
    b1.sub_(dh.sum(1), alpha=lr)
    return dfeat


class CNN(nn.Module):
    """Two convolutional + two fully connected layers for 1x28x28 digits (see module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(-3)))
        return self.fc2(x)

    @staticmethod
    def forward_stacked(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """K models at once: ``params`` stacked ``(K, ...)``, ``x`` ``(K, B, 1, 28, 28)``.

        Returns logits ``(K, B, 10)``, equal to ``forward`` client by client. The K clients'
        images are laid side by side as channels, ``(B, K, 28, 28)``, and each convolution is
        one grouped convolution (``groups=K``) in channels-last layout; on a CPU this is 2-3x
        faster than ``vmap``'s batching rule for ``conv2d`` with batched weights (the tests
        check that both agree).
        """
        k, b = x.shape[0], x.shape[1]
        w1, w2 = params["conv1.weight"], params["conv2.weight"]
        h = x.reshape(k, b, 28, 28).transpose(0, 1)  # (B, K, 28, 28)
        # channels-last: max-pooling K * 10 channels is ~10x faster than in NCHW on a CPU
        h = h.contiguous(memory_format=torch.channels_last)
        h = F.conv2d(h, w1.reshape(k * 10, 1, 5, 5), params["conv1.bias"].reshape(-1), groups=k)
        h = F.relu(F.max_pool2d(h, 2))
        h = F.conv2d(h, w2.reshape(k * 20, 10, 5, 5), params["conv2.bias"].reshape(-1), groups=k)
        h = F.relu(F.max_pool2d(h, 2))  # (B, K * 20, 4, 4)
        h = h.reshape(b, k, 320).transpose(0, 1)  # (K, B, 320)
        h = F.relu(
            torch.baddbmm(params["fc1.bias"].unsqueeze(1), h, params["fc1.weight"].transpose(1, 2))
        )
        return torch.baddbmm(
            params["fc2.bias"].unsqueeze(1), h, params["fc2.weight"].transpose(1, 2)
        )

    #: clients per block and CPU thread in ``train_batched(impl="manual")`` (see there)
    stacked_chunk = 10
    #: on a CPU, run blocks on worker threads with single-threaded ops (``train_batched``)
    stacked_parallel = "blocks"
    #: on a CPU, ``evaluate`` runs ``stacked_chunk`` copies through ``forward_stacked``
    stacked_eval = True

    @staticmethod
    def sgd_step_stacked(
        params: Mapping[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor,
        lr: float,
    ) -> None:
        """One SGD step of K models at once, forward and backward by hand, in place.

        ``params`` stacked ``(K, ...)`` (contiguous, updated in place), ``x``
        ``(K, B, 1, 28, 28)``, labels ``y`` ``(K, B)``, per-sample loss weights ``w``
        ``(K, B)`` of the parameters' dtype: the loss of client k is
        ``sum_b w_kb CE(f_k(x_kb), y_kb)`` (``train_batched`` passes ``mask / max(sum mask,
        1)``, the mean over the real samples of the minibatch). The forward pass is
        :meth:`forward_stacked`'s (grouped convolutions, channels-last); the backward pass
        calls the same ATen kernels autograd would (``convolution_backward``, max-pooling's
        backward through the argmax indices) without building a graph, skips conv1's input
        gradient and fuses the fully connected layers' weight gradients into the update.
        The gradient equals ``torch.func.grad`` of the summed loss (the tests check it).
        Clients whose weights are all zero are left exactly unchanged.
        """
        k, b = x.shape[0], x.shape[1]
        w1 = params["conv1.weight"].view(k * 10, 1, 5, 5)
        w2 = params["conv2.weight"].view(k * 20, 10, 5, 5)
        b1, b2 = params["conv1.bias"].view(-1), params["conv2.bias"].view(-1)
        pool = ([2, 2], [2, 2], [0, 0], [1, 1], False)
        conv = ([1, 1], [0, 0], [1, 1], False, [0, 0], k)
        h0 = (
            x.reshape(k, b, 28, 28).transpose(0, 1).contiguous(memory_format=torch.channels_last)
        )  # (B, K, 28, 28)
        y1 = F.conv2d(h0, w1, b1, groups=k)
        p1, i1 = _aten.max_pool2d_with_indices(y1, *pool[:2])
        a1 = p1.relu()
        y2 = F.conv2d(a1, w2, b2, groups=k)
        p2, i2 = _aten.max_pool2d_with_indices(y2, *pool[:2])
        feat = p2.relu().reshape(b, k, 320).transpose(0, 1)  # (K, B, 320)
        dfeat = _fc_sgd_step(feat, [params[n] for n in _FC], y, w, lr, True)
        assert dfeat is not None
        g = (
            dfeat.transpose(0, 1)
            .reshape(b, k * 20, 4, 4)
            .contiguous(memory_format=torch.channels_last)
        )
        g = _aten.threshold_backward(g, p2, 0)
        g = _aten.max_pool2d_with_indices_backward(g, y2, *pool, i2)
        g, dw2, db2 = _aten.convolution_backward(g, a1, w2, [k * 20], *conv, [True, True, True])
        g = _aten.threshold_backward(g, p1, 0)
        g = _aten.max_pool2d_with_indices_backward(g, y1, *pool, i1)
        _, dw1, db1 = _aten.convolution_backward(g, h0, w1, [k * 10], *conv, [False, True, True])
        torch._foreach_add_([w1, b1, w2, b2], [dw1, db1, dw2, db2], alpha=-lr)


class MLP(nn.Module):
    """One hidden layer of 64 units for flattened 28x28 digits."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(-3))))

    #: clients per block and CPU thread in ``train_batched(impl="manual")`` (see there)
    stacked_chunk = 25
    #: on a CPU, one block after another, each op on torch's threads (``train_batched``)
    stacked_parallel = "ops"

    @staticmethod
    def sgd_step_stacked(
        params: Mapping[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor,
        lr: float,
    ) -> None:
        """One SGD step of K models at once, by hand, in place (see ``CNN.sgd_step_stacked``).

        ``x`` ``(K, B, 1, 28, 28)``; the weight gradients are fused into the update
        (``baddbmm_``), so each step reads and writes the K x 50k weights once.
        """
        k, b = x.shape[0], x.shape[1]
        _fc_sgd_step(x.reshape(k, b, -1), [params[n] for n in _FC], y, w, lr, False)


MODELS: dict[str, type[nn.Module]] = {"cnn": CNN, "mlp": MLP}


def make_model(name: str, seed: int | None = None) -> nn.Module:
    """Build a model by name (``"cnn"`` or ``"mlp"``) with PyTorch's default initialisation.

    Parameters
    ----------
    name : {"cnn", "mlp"}
    seed : int, optional
        Seed of the initial weights. The global torch RNG is left untouched (the draw runs
        inside ``torch.random.fork_rng``). ``None``: draw from the global RNG.
    """
    if name not in MODELS:
        raise ValueError(f"model: must be one of {sorted(MODELS)}, got {name!r}")
    if seed is None:
        return MODELS[name]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return MODELS[name]()


def _tensors(obj: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return {k: v.detach() for k, v in obj.named_parameters()}
    if isinstance(obj, Mapping):
        return dict(obj)
    raise ValueError(f"params: expected an nn.Module or a mapping of tensors, got {type(obj)}")


def param_shapes(template: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Size]:
    """Name -> shape of every parameter, in flattening order."""
    return {k: v.shape for k, v in _tensors(template).items()}


def n_params(template: nn.Module | Mapping[str, torch.Tensor]) -> int:
    """Number of scalars in the flat vector of ``template``."""
    return sum(int(np.prod(s)) for s in param_shapes(template).values())


def flatten_params(params: nn.Module | Mapping[str, torch.Tensor]) -> np.ndarray:
    """Concatenate the parameters into one flat float32 numpy vector (a fresh copy).

    The order is the model's ``named_parameters`` order, or the mapping's iteration order
    (dicts built from a model keep it).
    """
    tensors = _tensors(params)
    if not tensors:
        return np.zeros(0, dtype=np.float32)
    flat = torch.cat([t.detach().reshape(-1).to(torch.float32) for t in tensors.values()])
    return flat.cpu().numpy().copy()


def unflatten_params(
    vec: np.ndarray | torch.Tensor,
    template: nn.Module | Mapping[str, torch.Tensor],
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Split a flat vector back into named float32 tensors shaped like ``template``.

    Parameters
    ----------
    vec : array, shape (P,)
        A vector from :func:`flatten_params` of the same architecture.
    template : nn.Module or mapping of tensors
        Gives names, shapes and order.
    device : torch device, optional
        Where the tensors live (default: CPU for numpy input, else ``vec``'s device).

    Returns
    -------
    dict of str -> torch.Tensor
        Fresh tensors (never views of ``vec``'s memory).
    """
    shapes = param_shapes(template)
    v = vec if isinstance(vec, torch.Tensor) else torch.from_numpy(np.array(vec, np.float32))
    total = sum(int(np.prod(s)) for s in shapes.values())
    if v.ndim != 1 or v.numel() != total:
        raise ValueError(
            f"vec: expected a flat vector of {total} values, got shape {tuple(v.shape)}"
        )
    v = v.to(device=device, dtype=torch.float32) if device is not None else v.float()
    out: dict[str, torch.Tensor] = {}
    start = 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = v[start : start + size].reshape(shape).clone()
        start += size
    return out
