"""The reward of DTFL-v0: named terms, summed (HighwayEnv's ``_rewards``).

Each term is a function of the :class:`~dtfl_env.envs.config.RewardConfig` and a
:class:`StepOutcome` (the site just charged, its :class:`~dtfl_env.model.round.RoundOutcome`,
the accuracy gain and the latency reference); :data:`REWARD_TERMS` lists them, and ``info``
reports each as ``reward_<term>`` (:func:`dtfl_env.envs.info.reward_key`). A new term is one
function here, one entry in :data:`REWARD_TERMS` and its weight (a field of the same name) in
:class:`~dtfl_env.envs.config.RewardConfig`. The forms are documented in docs/ENVIRONMENT.md
(Rewards).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from dtfl_env.envs.config import RewardConfig
from dtfl_env.envs.sites import Site
from dtfl_env.model.round import RoundOutcome

if TYPE_CHECKING:
    from solvers.result import SolverResult

__all__ = ["REWARD_TERMS", "RewardFunction", "StepOutcome", "accuracy_term", "latency_term",
           "violation_term"]


class StepOutcome(NamedTuple):
    """What the reward terms read of a step."""

    site: Site  # the cluster charged
    outcome: RoundOutcome  # its round (true values)
    accuracy_gain: float  # the global accuracy gain (0 but at the end of a round)
    baseline_s: float  # the latency term's reference (:meth:`RewardFunction.baseline_s`)


def latency_term(w: RewardConfig, s: StepOutcome) -> float:
    """-w_latency times T relative to the reference: linear, log or log_weighted."""
    rel = max(s.outcome.latency_s, 1e-12) / s.baseline_s  # > 0: a log form stays finite
    form = w.latency_form
    term = rel if form == "linear" else math.log(rel)
    if form == "log_weighted":  # the cluster's weight: its latency scale, capped
        term *= min(s.baseline_s / w.latency_reference_s, w.latency_weight_max)
    return -w.latency * term


def accuracy_term(w: RewardConfig, s: StepOutcome) -> float:
    """w_accuracy times the global accuracy gain (at the end of a round)."""
    return w.accuracy * s.accuracy_gain


def violation_term(w: RewardConfig, s: StepOutcome) -> float:
    """-w_violation times (the GLDs' relative energy excess, or their drop-out share with
    ``violation_measure = "count"``) plus the unsynced BLD share."""
    out, site = s.outcome, s.site
    if w.violation_measure == "energy":
        viol = float(np.sum(out.energy_excess_j / site.base.gld.energy_budget_j))
    else:  # "count": the share of GLDs that dropped out
        viol = float(np.count_nonzero(out.gld_dropped)) / site.m if site.m else 0.0
    if site.n:
        viol += float(np.count_nonzero(~out.bld_synced)) / site.n
    return -w.violation * viol


#: term name (also its weight's field in :class:`RewardConfig`) -> the term
REWARD_TERMS: dict[str, Callable[[RewardConfig, StepOutcome], float]] = {
    "latency": latency_term,
    "accuracy": accuracy_term,
    "violation": violation_term,
}


class RewardFunction:
    """The reward of a :class:`RewardConfig`: its latency reference and its terms."""

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        self._terms = tuple(REWARD_TERMS.items())
        #: whether the latency reference is the exact optimum (``latency_baseline``)
        self.needs_optimum: bool = config.latency_baseline == "optimum"

    def baseline_s(self, site: Site, optimum: SolverResult | None,
                   center_latency_s: Callable[[Site], float]) -> float:
        """The latency term's reference on ``site``: ``latency_reference_s``, or with
        ``latency_baseline = "center"`` the latency of the action box's centre on this
        cluster (``center_latency_s(site)``, charged like the step; the constant where that
        is not positive), with ``"optimum"`` the exact solver's T* on the true cluster
        (``optimum``; the centre's latency where the cluster has no feasible allocation)."""
        w = self.config
        if w.latency_baseline == "fixed":
            return float(w.latency_reference_s)
        if w.latency_baseline == "optimum" and optimum is not None:
            if optimum.feasible and optimum.T > 0 and math.isfinite(optimum.T):
                return float(optimum.T)
        t = center_latency_s(site)
        return t if t > 0 and math.isfinite(t) else float(w.latency_reference_s)

    def terms(self, site: Site, outcome: RoundOutcome, accuracy_gain: float,
              baseline_s: float) -> dict[str, float]:
        """The named terms of a step (their sum is the reward)."""
        s, w = StepOutcome(site, outcome, accuracy_gain, baseline_s), self.config
        return {name: term(w, s) for name, term in self._terms}
