"""agents.statistics against hand-computed values: IQM, the stratified bootstrap, profiles."""

from __future__ import annotations

import numpy as np
import pytest

from agents.statistics import (
    iqm,
    performance_profile,
    stratified_bootstrap,
    stratified_bootstrap_ci,
)


def _mean(stack: np.ndarray) -> np.ndarray:
    return stack.mean(axis=(-2, -1))


def test_iqm_by_hand() -> None:
    # 8 scores: cut 2 from each end, mean of 3, 4, 5, 6 (the outlier 100 is cut)
    assert iqm(np.array([[1, 2, 3, 4], [5, 6, 7, 100]])) == pytest.approx(4.5)
    # 6 scores: cut floor(1.5) = 1 from each end: mean of 2, 3, 4, 5
    assert iqm(np.array([[60, 2, 3], [4, 5, 1]])) == pytest.approx(3.5)
    # fewer than 4: nothing is cut
    assert iqm(np.array([1.0, 2.0, 9.0])) == pytest.approx(4.0)
    # a stack of matrices: one IQM each
    stack = np.array([[[1, 2, 3, 4], [5, 6, 7, 100]], [[0, 0, 0, 0], [1, 1, 1, 1]]])
    np.testing.assert_allclose(iqm(stack), [4.5, 0.5])


def test_bootstrap_resamples_runs_within_each_task() -> None:
    # each task's runs agree: every stratified resample is the original matrix, so the
    # interval has no width (resampling all entries together would give one)
    same = np.array([[1.0, 10.0], [1.0, 10.0], [1.0, 10.0]])
    assert stratified_bootstrap_ci(same, _mean) == (5.5, 5.5)
    # rows sum to 1: resampling whole rows would keep the mean at 0.5; stratified, each
    # column's two draws are independent: column sums 0, 1, 2 with 1/4, 1/2, 1/4, so the
    # matrix sum 0..4 has probabilities 1, 4, 6, 4, 1 (/16)
    crossed = np.array([[0.0, 1.0], [1.0, 0.0]])
    sums = stratified_bootstrap(crossed, lambda x: x.sum(axis=(1, 2)), reps=8000, rng=1)
    freq = np.bincount(sums.astype(int), minlength=5) / sums.size
    np.testing.assert_allclose(freq, np.array([1, 4, 6, 4, 1]) / 16, atol=0.02)
    # 2 runs of one task, values 0 and 1: resampled means 0, 0.5, 1 with 1/4, 1/2, 1/4;
    # the 2.5 % and 97.5 % quantiles are then 0 and 1
    low, high = stratified_bootstrap_ci(np.array([[0.0], [1.0]]), _mean, reps=4000)
    assert (low, high) == (0.0, 1.0)
    means = stratified_bootstrap(np.array([[0.0], [1.0]]), _mean, reps=8000, rng=2)
    assert np.mean(means == 0.5) == pytest.approx(0.5, abs=0.03)


def test_bootstrap_is_seeded_and_vectorised() -> None:
    scores = np.arange(12.0).reshape(3, 4)
    a = stratified_bootstrap_ci(scores, iqm, rng=3)
    assert a == stratified_bootstrap_ci(scores, iqm, rng=3)
    assert a[0] <= iqm(scores) <= a[1]
    taus = np.array([0.0, 5.0, 20.0])
    low, high = stratified_bootstrap_ci(scores, lambda x: performance_profile(x, taus))
    assert low.shape == high.shape == (3,)
    # only column 0 holds a score <= 0 (the 0 of run 0): at worst all 3 of its draws
    assert np.all(low <= high) and high[-1] == 0.0 and high[0] == 1.0 and low[0] >= 0.75


def test_performance_profile_by_hand() -> None:
    scores = np.array([[0.2, 0.5], [0.9, 0.5]])
    np.testing.assert_array_equal(
        performance_profile(scores, np.array([0.0, 0.5, 0.95])), [1.0, 0.25, 0.0]
    )


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: iqm(np.array([])), "scores"),
        (lambda: iqm(np.array([[1.0, np.nan]])), "finite"),
        (lambda: stratified_bootstrap(np.ones((2, 2)), _mean, reps=0), "reps"),
        (lambda: stratified_bootstrap_ci(np.ones((2, 2)), confidence=1.0), "confidence"),
        (lambda: stratified_bootstrap(np.ones((2, 2)), np.mean), "one value per resample"),
    ],
)
def test_bad_input_is_named(call, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()
