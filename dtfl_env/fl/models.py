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

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CNN", "MLP", "MODELS", "flatten_params", "make_model", "n_params",
           "param_shapes", "unflatten_params"]


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
        h = F.conv2d(h, w1.reshape(k * 10, 1, 5, 5), params["conv1.bias"].reshape(-1),
                     groups=k)
        h = F.relu(F.max_pool2d(h, 2))
        h = F.conv2d(h, w2.reshape(k * 20, 10, 5, 5), params["conv2.bias"].reshape(-1),
                     groups=k)
        h = F.relu(F.max_pool2d(h, 2))  # (B, K * 20, 4, 4)
        h = h.reshape(b, k, 320).transpose(0, 1)  # (K, B, 320)
        h = F.relu(torch.baddbmm(params["fc1.bias"].unsqueeze(1), h,
                                 params["fc1.weight"].transpose(1, 2)))
        return torch.baddbmm(params["fc2.bias"].unsqueeze(1), h,
                             params["fc2.weight"].transpose(1, 2))


class MLP(nn.Module):
    """One hidden layer of 64 units for flattened 28x28 digits."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x.flatten(-3))))


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


def unflatten_params(vec: np.ndarray | torch.Tensor,
                     template: nn.Module | Mapping[str, torch.Tensor],
                     device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
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
        raise ValueError(f"vec: expected a flat vector of {total} values, got shape "
                         f"{tuple(v.shape)}")
    v = v.to(device=device, dtype=torch.float32) if device is not None else v.float()
    out: dict[str, torch.Tensor] = {}
    start = 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = v[start:start + size].reshape(shape).clone()
        start += size
    return out
