"""Aggregate statistics of several training runs (Agarwal et al., NeurIPS 2021, "Deep RL at
the Edge of the Statistical Precipice"): the interquartile mean, stratified bootstrap
confidence intervals and performance profiles.

Scores are a matrix of shape (runs, tasks): here one row per training seed of an agent and
one column per evaluation episode (every agent sees the same clusters in an episode, so an
episode plays the part of the paper's task). The stratified bootstrap resamples the runs
with replacement within each column, independently across columns, as the paper's
``rliable`` library does (``rliable`` 1.2 does not import beside pandas 3: its ``arch``
dependency breaks, so the few lines are ours; ``tests/test_agents_statistics.py`` checks
them against hand-computed values). Pure numpy and scipy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

__all__ = [
    "iqm",
    "performance_profile",
    "stratified_bootstrap",
    "stratified_bootstrap_ci",
]


def _score_matrix(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"{name}: must be a non-empty (runs, tasks) matrix, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name}: must be finite (drop the tasks with missing scores first)")
    return s


def _stack(scores: np.ndarray) -> np.ndarray:
    """A (..., runs, tasks) stack of score matrices, checked, as (..., runs * tasks)."""
    s = np.asarray(scores, dtype=float)
    if s.ndim < 2:
        s = _score_matrix(s)
    elif s.ndim == 2:
        _score_matrix(s)
    elif s.shape[-1] * s.shape[-2] == 0 or not np.isfinite(s).all():
        raise ValueError(f"scores: must be finite and non-empty, got shape {s.shape}")
    return s.reshape(*s.shape[:-2], -1)


def iqm(scores: np.ndarray) -> np.ndarray | float:
    """Interquartile mean of the entries of a (runs, tasks) matrix: the mean of the middle
    50 %, after cutting ``floor(n / 4)`` of the n scores from each end (the paper's
    definition, ``scipy.stats.trim_mean`` at 0.25; fewer than 4 scores: the mean). A
    (..., runs, tasks) stack gives one IQM per matrix."""
    flat = _stack(scores)
    out = stats.trim_mean(flat, proportiontocut=0.25, axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def stratified_bootstrap(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray | float],
    *,
    reps: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> np.ndarray:
    """``statistic`` of ``reps`` stratified resamples of the (runs, tasks) matrix ``scores``.

    Each resample draws, for every task (column) on its own, as many runs as there are,
    with replacement. ``statistic`` gets all resamples at once, a (reps, runs, tasks)
    stack, and returns one number or 1-d array per matrix (:func:`iqm`,
    :func:`performance_profile` and ``lambda x: x.mean(axis=(-2, -1))`` do). Returns shape
    (reps,) or (reps, k). ``rng``: a generator or a seed (the default 0 makes reports
    reproducible).
    """
    s = _score_matrix(scores)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps: must be an integer >= 1, got {reps!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    runs, tasks = s.shape
    rows = gen.integers(0, runs, size=(reps, runs, tasks))
    resampled = s[rows, np.arange(tasks)]  # (reps, runs, tasks): column t keeps task t
    out = np.asarray(statistic(resampled), dtype=float)
    if out.shape[:1] != (reps,):
        raise ValueError(
            f"statistic: must return one value per resample, shape ({reps}, ...), got {out.shape}"
        )
    return out


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray | float] = iqm,
    *,
    confidence: float = 0.95,
    reps: int = 2000,
    rng: np.random.Generator | int | None = 0,
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Percentile confidence interval of ``statistic`` (default :func:`iqm`; see
    :func:`stratified_bootstrap`): the (1 - confidence) / 2 and (1 + confidence) / 2
    quantiles of the resampled statistic; returns ``(low, high)`` (numbers, or arrays for
    a vector statistic)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: must lie in (0, 1), got {confidence!r}")
    boot = stratified_bootstrap(scores, statistic, reps=reps, rng=rng)
    alpha = 1.0 - confidence
    low, high = np.quantile(boot, [alpha / 2, 1.0 - alpha / 2], axis=0)
    if np.ndim(low) == 0:
        return float(low), float(high)
    return low, high


def performance_profile(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Run-score distribution: the fraction of the scores of a (runs, tasks) matrix strictly
    above each threshold in ``taus`` (the paper's performance profile; higher scores are
    better), shape of ``taus``; a (..., runs, tasks) stack gives shape (..., len(taus))."""
    flat = _stack(scores)
    t = np.asarray(taus, dtype=float).ravel()
    return (flat[..., None, :] > t[:, None]).mean(axis=-1)
