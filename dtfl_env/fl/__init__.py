"""Federated learning with digital twins: real training on MNIST (issue 4).

- :mod:`dtfl_env.fl.data`: MNIST (embedded 5k digits or torchvision) and the partition of
  the training set over the devices in proportion to their data sizes D.
- :mod:`dtfl_env.fl.models`: the paper's CNN, a small MLP, flat float32 parameter vectors.
- :mod:`dtfl_env.fl.training`: batched local SGD of many clients (one computation), the
  sequential reference, FedAvg, evaluation and the centralized baseline.
- :mod:`dtfl_env.fl.system`: :class:`FederatedSystem`, the clusters, twins and global model
  the environment drives round by round.

Importing the package does not import torch (:class:`FLConfig` is torch-free); the
training modules do, on first use. The pure-numpy system model never does.
"""

import importlib
from typing import Any

from dtfl_env.fl.config import MODEL_PARAMETERS, FLConfig, default_fl_config, model_size_bits

_LAZY = {  # torch is imported only when one of these is used
    "MNISTData": "data",
    "load_mnist": "data",
    "partition": "data",
    "flatten_params": "models",
    "make_model": "models",
    "unflatten_params": "models",
    "ClusterRequest": "system",
    "FederatedSystem": "system",
    "CentralizedResult": "training",
    "Schedule": "training",
    "evaluate": "training",
    "fedavg": "training",
    "make_schedule": "training",
    "train_batched": "training",
    "cpu_threads": "training",
    "fl_threads": "training",
    "train_centralized": "training",
    "train_sequential": "training",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"dtfl_env.fl.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dtfl_env.fl' has no attribute {name!r}")


__all__ = [
    "MODEL_PARAMETERS",
    "CentralizedResult",
    "ClusterRequest",
    "FLConfig",
    "FederatedSystem",
    "MNISTData",
    "Schedule",
    "cpu_threads",
    "default_fl_config",
    "evaluate",
    "fedavg",
    "fl_threads",
    "flatten_params",
    "load_mnist",
    "make_model",
    "make_schedule",
    "model_size_bits",
    "partition",
    "train_batched",
    "train_centralized",
    "train_sequential",
    "unflatten_params",
]
