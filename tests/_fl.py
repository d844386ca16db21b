"""Test helpers of the FL test modules."""

from __future__ import annotations

from dtfl_env.fl.data import MNISTData

#: the FL settings of tests that must run on the CPU
CPU = {"device": "cpu"}


def subset(data: MNISTData, n_train: int, n_test: int) -> MNISTData:
    """The first ``n_train`` training and ``n_test`` test images of ``data``."""
    return MNISTData(
        data.train_x[:n_train],
        data.train_y[:n_train],
        data.test_x[:n_test],
        data.test_y[:n_test],
        data.source,
    )
