from __future__ import annotations

import pytest

from dtfl_env.config import Cluster
from dtfl_env.scenarios import table2_cluster


@pytest.fixture
def table2() -> Cluster:
    return table2_cluster()


@pytest.fixture(scope="session")
def keys():  # type: ignore[no-untyped-def]
    """Ed25519 identities of the ledger tests' coordinators (``_ledger.IDS``)."""
    import numpy as np

    from dtfl_env.ledger import make_identities

    from _ledger import IDS

    return make_identities(IDS, np.random.default_rng(7))


@pytest.fixture(scope="session")
def mnist():  # type: ignore[no-untyped-def]
    """The embedded MNIST split (torch is imported only by the tests that use it)."""
    from dtfl_env.fl.data import load_mnist

    return load_mnist("embedded", seed=0)
