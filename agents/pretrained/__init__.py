"""Pretrained agents shipped with the package: ``ppo:tableii`` and ``ppo:random``.

Each is a folder of this package holding what :func:`agents.training.train_agent` writes
(``model.zip``, ``vecnormalize.pkl``, ``config.json``: the SB3 model, its observation
statistics and its training record) and ``card.json``: the command that trained it, the
commit, and its gap to Algorithm 2 on held-out evaluation seeds (mean latency over the
clusters with a feasible allocation, as ``dtfl compare`` reports it). The model's Adam state
is reset before shipping (fine-tuning starts a fresh optimizer), which keeps each agent
under 1 MB.

    from agents.pretrained import load_pretrained
    policy = load_pretrained("ppo:tableii")            # the predict protocol
    dtfl compare --env DTFL-TableII-v0 --policies ppo:tableii,algorithm2

``python -m agents.pretrained.build`` trains and exports them again (seeded; see its
docstring and docs/AGENTS.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PRETRAINED",
    "PretrainedSpec",
    "evaluate_gap",
    "load_pretrained",
    "pretrained_card",
    "pretrained_path",
]

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class PretrainedSpec:
    """How one pretrained agent is trained and checked."""

    algo: str
    env_id: str
    folder: str
    timesteps: int = 200_000
    seed: int = 0
    #: held-out evaluation: episodes from ``eval_seed`` (training evaluates from 10,001)
    eval_seed: int = 1_000
    eval_episodes: int = 5


#: name ("algo:key") -> spec
PRETRAINED: dict[str, PretrainedSpec] = {
    "ppo:tableii": PretrainedSpec("ppo", "DTFL-TableII-v0", "ppo_tableii"),
    "ppo:random": PretrainedSpec("ppo", "DTFL-Random-v0", "ppo_random"),
}


def _spec(name: str) -> PretrainedSpec:
    try:
        return PRETRAINED[name]
    except KeyError:
        raise ValueError(
            f"pretrained agent: unknown name {name!r} (known: {', '.join(PRETRAINED)})"
        ) from None


def pretrained_path(name: str) -> Path:
    """The folder of the pretrained agent ``name`` (e.g. ``"ppo:tableii"``)."""
    folder = _HERE / _spec(name).folder
    if not (folder / "model.zip").is_file():
        raise ValueError(
            f"pretrained agent {name}: {folder / 'model.zip'} is missing from this "
            "installation (python -m agents.pretrained.build makes it)"
        )
    return folder


def pretrained_card(name: str) -> dict[str, Any]:
    """The agent's card: training command, commit and held-out gap to Algorithm 2."""
    path = pretrained_path(name) / "card.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"pretrained agent {name}: no card at {path}") from None
    return data


def load_pretrained(name: str) -> Any:
    """The pretrained agent ``name`` as a policy (:class:`agents.base.SB3Policy`)."""
    from agents.training import load_agent

    spec = _spec(name)
    return load_agent(pretrained_path(name), algo=spec.algo, name=name)


def evaluate_gap(
    policy: Any, env_id: str, seed: int, episodes: int, config: dict[str, Any] | None = None
) -> dict[str, float]:
    """``policy``'s mean latency on the clusters with a feasible allocation, Algorithm 2's
    on the same episodes, and the gap between them (``latency / algorithm2 - 1``), with the
    policy's violation rate there and its mean per-cluster gap to the exact optimum;
    ``episodes`` seeded episodes from ``seed`` (the exact solver decides which clusters
    have a feasible allocation)."""
    from agents.evaluation import evaluate_policies
    from agents.policies import make_policy

    report = evaluate_policies(
        {"agent": policy, "algorithm2": make_policy("algorithm2")},
        env_id=env_id,
        config=config,
        episodes=episodes,
        seed=seed,
    )
    agent, ref = report.summary["agent"], report.summary["algorithm2"]
    return {
        "latency_feasible_s": float(agent["latency_feasible_s"]),
        "algorithm2_latency_feasible_s": float(ref["latency_feasible_s"]),
        "gap_to_algorithm2": float(agent["latency_feasible_s"] / ref["latency_feasible_s"] - 1),
        "violation_rate_feasible": float(agent["violation_rate_feasible"]),
        "gap_to_exact": float(agent["gap"]),
    }
