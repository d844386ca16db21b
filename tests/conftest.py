from __future__ import annotations

import pytest

from dtfl_env.config import Cluster
from dtfl_env.scenarios import table2_cluster


@pytest.fixture
def table2() -> Cluster:
    return table2_cluster()
