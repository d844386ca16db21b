"""dtfl-gym: digital-twin-assisted, blockchain-verified federated learning benchmark."""

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams
from dtfl_env.scenarios import get_preset, table2_cluster

__version__ = "0.1.0"

from dtfl_env.registration import ENV_IDS, register_envs

register_envs()

__all__ = [
    "ENV_IDS",
    "BLDParams",
    "Cluster",
    "Constants",
    "GLDParams",
    "get_preset",
    "table2_cluster",
]
