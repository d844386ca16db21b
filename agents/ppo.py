"""PPO (stable-baselines3) on any DTFL id: :func:`train_ppo` and :func:`load_ppo`, the PPO
entries of the shared training path :mod:`agents.training` (A2C, SAC and TD3 take the same
path: ``train_agent(algo, ...)``, ``load_agent(path, algo)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.base import SB3Policy
from agents.training import (
    _worker_config,  # noqa: F401  (re-exported: the worker config of subprocess envs)
    default_hyperparams,
    load_agent,
    train_agent,
    worker_fl_threads,
)
from agents.training import resolve_hyperparams as _resolve

__all__ = [
    "DEFAULT_HYPERPARAMS",
    "load_ppo",
    "resolve_hyperparams",
    "train_ppo",
    "worker_fl_threads",
]

#: PPO settings used unless a JSON file overrides them (``agents/ppo_defaults.json``: keys
#: of ``stable_baselines3.PPO`` plus the training code's own, ``agents.training.OWN_KEYS``).
#: Why these values: ``docs/AGENTS.md``, and ``docs/PPO.md`` for what was tried. In short:
#: - every step is one cluster and, without FL, an action does not change later clusters (a
#:   contextual bandit): ``gamma = 0`` removes the value function's bootstrapping noise;
#: - the ``safe`` action mode (3 actions inside the energy-feasible set) instead of 2 + 16
#:   raw actions of which most break budgets;
#: - ``log_weighted`` latency reward against the box centre's latency: the same per-cluster
#:   optimum, scale-free across clusters whose optimal latency spans 3-100 s, weighted as
#:   the mean latency weighs them; ``count`` violations: a GLD that cannot pay even an
#:   endless upload (deep fade) drops out whatever the action, and its energy excess must
#:   not reward slowing everybody down;
#: - ``vec_env = "auto"``: the native vector env on the latency-only ids, subprocess
#:   workers on ``DTFL-v0`` (real FL training).
DEFAULT_HYPERPARAMS: dict[str, Any] = default_hyperparams("ppo")


def resolve_hyperparams(
    path: str | Path | None, overrides: dict[str, Any] | None
) -> dict[str, Any]:
    """PPO's defaults, updated by the JSON file at ``path`` and then by ``overrides``
    (:func:`agents.training.resolve_hyperparams` with ``algo = "ppo"``)."""
    return _resolve(path, overrides, "ppo")


def train_ppo(
    env_id: str = "DTFL-Fast-v0", *, out_dir: str | Path = "runs/ppo", **kwargs: Any
) -> Path:
    """Train PPO: :func:`agents.training.train_agent` with ``algo = "ppo"`` (the same
    keywords); returns the model path."""
    return train_agent("ppo", env_id, out_dir=out_dir, **kwargs)


def load_ppo(path: str | Path, name: str = "ppo") -> SB3Policy:
    """Load a trained PPO agent as a policy (:func:`agents.training.load_agent`)."""
    return load_agent(path, algo="ppo", name=name)
