"""The reward of DTFL-v0: named terms, summed (HighwayEnv's ``_rewards``).

Each term is a function of the :class:`~dtfl_env.envs.config.RewardConfig` and a
:class:`StepOutcome` (the clusters just charged, their
:class:`~dtfl_env.model.round.BatchOutcome`, the accuracy gains and the latency references;
one row per cluster, so the single env and the vector env share every term);
:data:`REWARD_TERMS` lists them, and ``info`` reports each as ``reward_<term>``
(:func:`dtfl_env.envs.info.reward_key`). A new term is one function here, one entry in
:data:`REWARD_TERMS` and its weight (a field of the same name) in
:class:`~dtfl_env.envs.config.RewardConfig`. The forms are documented in docs/ENVIRONMENT.md
(Rewards).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from dtfl_env.envs.config import RewardConfig
from dtfl_env.model.round import BatchOutcome

__all__ = [
    "REWARD_TERMS",
    "RewardFunction",
    "StepOutcome",
    "accuracy_term",
    "latency_term",
    "violation_term",
]


class StepOutcome(NamedTuple):
    """What the reward terms read of a step, for B charged clusters (one row each)."""

    outcome: BatchOutcome  # their rounds (true values)
    energy_budget_j: np.ndarray  # E_max,i, padded like the outcome's GLD fields (B, M)
    accuracy_gain: np.ndarray  # the global accuracy gain (0 but at the end of a round), (B,)
    baseline_s: np.ndarray  # the latency term's reference (:meth:`RewardFunction.baseline_s`)


def latency_term(w: RewardConfig, s: StepOutcome) -> np.ndarray:
    """-w_latency times T relative to the reference: linear, log or log_weighted."""
    rel = np.maximum(s.outcome.latency_s, 1e-12) / s.baseline_s  # > 0: a log stays finite
    form = w.latency_form
    term = rel if form == "linear" else np.log(rel)
    if form == "log_weighted":  # the cluster's weight: its latency scale, capped
        term = term * np.minimum(s.baseline_s / w.latency_reference_s, w.latency_weight_max)
    return -w.latency * term


def accuracy_term(w: RewardConfig, s: StepOutcome) -> np.ndarray:
    """w_accuracy times the global accuracy gain (at the end of a round)."""
    return w.accuracy * s.accuracy_gain


def violation_term(w: RewardConfig, s: StepOutcome) -> np.ndarray:
    """-w_violation times (the GLDs' relative energy excess, or their drop-out share with
    ``violation_measure = "count"``) plus the unsynced BLD share."""
    out = s.outcome
    m, n = out.n_gld, out.n_bld
    if w.violation_measure == "energy":  # padded entries: no excess
        viol = (out.energy_excess_j / s.energy_budget_j).sum(1)
    else:  # "count": the share of GLDs that dropped out
        viol = np.where(m > 0, out.gld_dropped.sum(1) / np.maximum(m, 1), 0.0)
    unsynced = n - out.bld_synced.sum(1)
    return -w.violation * (viol + np.where(n > 0, unsynced / np.maximum(n, 1), 0.0))


#: term name (also its weight's field in :class:`RewardConfig`) -> the term
REWARD_TERMS: dict[str, Callable[[RewardConfig, StepOutcome], np.ndarray]] = {
    "latency": latency_term,
    "accuracy": accuracy_term,
    "violation": violation_term,
}


class RewardFunction:
    """The reward of a :class:`RewardConfig`: its latency reference and its terms, for B
    charged clusters at once (the single env's B = 1, the vector env's N sub-envs)."""

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        #: whether the latency reference is the exact optimum (``latency_baseline``)
        self.needs_optimum: bool = config.latency_baseline == "optimum"

    def baseline_s(
        self, size: int, optimum_s: np.ndarray | None, center_latency_s: Callable[[], np.ndarray]
    ) -> np.ndarray:
        """The latency term's reference per cluster, shape (``size``,):
        ``latency_reference_s``, or with ``latency_baseline = "center"`` the latency of the
        action box's centre on the cluster (``center_latency_s()``, charged like the step;
        the constant where that is not positive), with ``"optimum"`` the exact solver's T*
        on the true cluster (``optimum_s``, ``inf`` where infeasible; the centre's latency
        where the cluster has no feasible allocation)."""
        w = self.config
        ref = float(w.latency_reference_s)
        if w.latency_baseline == "fixed":
            return np.full(size, ref)
        use = np.zeros(size, dtype=bool)
        if w.latency_baseline == "optimum" and optimum_s is not None:
            use = np.isfinite(optimum_s) & (optimum_s > 0)
            if use.all():
                return np.array(optimum_s, dtype=float)
        t = center_latency_s()
        t = np.where((t > 0) & np.isfinite(t), t, ref)
        return np.where(use, optimum_s, t) if use.any() else t

    def terms(
        self,
        outcome: BatchOutcome,
        energy_budget_j: np.ndarray,
        accuracy_gain: np.ndarray,
        baseline_s: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """The named terms of a step, each of shape (B,) (their sum is the reward; a term may
        return a scalar, the same for every cluster)."""
        s = StepOutcome(outcome, energy_budget_j, accuracy_gain, baseline_s)
        b = outcome.latency_s.shape
        out = {}
        for name, term in REWARD_TERMS.items():
            v = np.asarray(term(self.config, s), dtype=float)
            out[name] = v if v.shape == b else np.full(b, v)
        return out
