"""dtfl-gym: digital-twin-assisted, blockchain-verified federated learning benchmark."""

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams
from dtfl_env.scenarios import get_preset, table2_cluster

__version__ = "0.1.0"

__all__ = ["BLDParams", "Cluster", "Constants", "GLDParams", "get_preset", "table2_cluster"]
