"""Reputation, eq. (2), and its history rule (dtfl_env.ledger.reputation)."""

from __future__ import annotations

import numpy as np
import pytest

from dtfl_env.ledger import (
    HistoryConfig,
    ReputationTracker,
    encryption_capability,
    routing_capability,
)
from dtfl_env.model import ReputationWeights, reputation_score


# ---------------------------------------------------------------- reputation (eq. (2))
def test_reputation_scores_and_selection():
    tr = ReputationTracker(
        ["a", "b", "c"],
        encryption=[1.0, 0.5, 0.8],
        routing={"b": 0.25},
        twin_proportion=[0.2, 0.0, 0.5],
    )
    hist = tr.history()
    np.testing.assert_allclose(hist, 0.5)  # newcomers: every running rate starts at 1/2
    expected = reputation_score(tr.encryption, tr.routing, tr.twin_proportion, hist)
    np.testing.assert_allclose(tr.scores(), expected)
    # by hand, equal weights: a = (1 + 1 + 0.8 + 0.5) / 4
    assert tr.score_table()["a"] == pytest.approx(3.3 / 4)
    assert tr.select_validators() == ["a"]
    assert tr.select_validators(2) == ["a", "c"]
    assert tr.select_validators(1, exclude=["a"]) == ["c"]
    with pytest.raises(ValueError, match="top_v"):
        tr.select_validators(4)
    with pytest.raises(ValueError, match="unknown coordinator id 'z'"):
        tr.set_capabilities(encryption={"z": 1.0})
    w = ReputationWeights(encryption=0.0, routing=0.0, proportion=1.0, history=0.0)
    assert ReputationTracker(
        ["a", "b"], twin_proportion=[0.5, 0.1], weights=w
    ).select_validators() == ["b"]
    tie = ReputationTracker(["x", "y"])
    assert tie.select_validators() == ["x"]  # ties go to the first listed


def test_history_update_rule():
    tr = ReputationTracker(["a", "b", "c"], history=HistoryConfig(decay=1.0, rejection_weight=2))
    tr.record_round(submitted=["a", "b"], accepted=["a"], block_quality={"c": 1.0})
    comp = tr.history_components()
    # participation (x+1)/(n+2): a, b took part, c did not
    assert comp["a"]["participation"] == pytest.approx(2 / 3)
    assert comp["c"]["participation"] == pytest.approx(1 / 3)
    # success: accepted -> 2/3; rejected with weight 2 -> 1/4
    assert comp["a"]["success"] == pytest.approx(2 / 3)
    assert comp["b"]["success"] == pytest.approx(1 / 4)
    assert comp["c"]["block_quality"] == pytest.approx(2 / 3)
    assert comp["a"]["history"] == pytest.approx(0.25 * 2 / 3 + 0.5 * 2 / 3 + 0.25 * 1 / 2)
    s = tr.score_table()
    assert s["a"] > s["c"] and s["a"] > s["b"]  # a rejection lowers the score
    # forgetting: with decay, a long-past rejection fades
    tr2 = ReputationTracker(["a"], history=HistoryConfig(decay=0.5))
    tr2.record_round(submitted=["a"], accepted=[])
    low = tr2.history_components()["a"]["success"]
    for _ in range(10):
        tr2.record_round(submitted=["a"], accepted=["a"])
    # the window is ~1 / (1 - decay) = 2 events: the rate tends to (2 + 1) / (2 + 2)
    assert tr2.history_components()["a"]["success"] == pytest.approx(0.75, abs=1e-3)
    assert low == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="accepted"):
        tr.record_round(submitted=["a"], accepted=["b"])
    with pytest.raises(ValueError, match=r"history\.decay"):
        HistoryConfig(decay=0.0)
    with pytest.raises(ValueError, match=r"history\.audit_weight"):
        HistoryConfig(audit_weight=0.5)
    with pytest.raises(ValueError, match="audit_failed"):
        tr.record_round(submitted=[], accepted=[], audit_failed=["z"])
    # a block proven wrong: block quality 0 with weight audit_weight, whatever block_quality
    tr3 = ReputationTracker(["a", "b"], history=HistoryConfig(decay=1.0, audit_weight=4))
    tr3.record_round(
        submitted=[], accepted=[], block_quality={"a": 1.0, "b": 1.0}, audit_failed=["a"]
    )
    q3 = {c: v["block_quality"] for c, v in tr3.history_components().items()}
    assert q3 == pytest.approx({"a": 1 / 6, "b": 2 / 3})
    np.testing.assert_allclose(routing_capability([0, 1, 3]), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(encryption_capability([0.01, 0.02], [1.0, 0.5]), [1.0, 0.5])
