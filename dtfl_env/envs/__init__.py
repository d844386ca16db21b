"""Gymnasium environments of dtfl-gym."""

from dtfl_env.envs.config import default_config, merge_config
from dtfl_env.envs.dtfl import DTFLEnv

__all__ = ["DTFLEnv", "default_config", "merge_config"]
