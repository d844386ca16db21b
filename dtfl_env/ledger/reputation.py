"""Coordinator reputation (eq. (2)), its history term, and validator selection.

Score_Cs^Rep = w_Enc Cap^Enc + w_Rou Cap^Rou + w_Prop (1 - Prop) + w_Hist Hist, eq. (2),
computed by :func:`dtfl_env.model.scoring.reputation_score` (fewer twins score higher, as
the paper says; all terms in [0, 1]).

History term Hist_Cs
--------------------
Three running rates, each a Beta-Bernoulli posterior mean with exponential forgetting:
a rate keeps a discounted success mass ``a`` and trial mass ``n`` and is updated by an event
of weight ``w`` and value ``x`` in [0, 1] as::

    a <- gamma * a + w * x,   n <- gamma * n + w,   rate = (a + 1) / (n + 2)

(``gamma = HistoryConfig.decay``; ``gamma = 1`` is the plain Laplace running mean; a
newcomer's rate is 1/2; with ``gamma < 1`` the history spans about ``1 / (1 - gamma)``
events, so a rate stays within ``[1 / (m + 2), (m + 1) / (m + 2)]``, ``m = 1 / (1 - gamma)``,
e.g. [0.08, 0.92] for the default 0.9). Per round (:meth:`ReputationTracker.record_round`):

- participation: every eligible coordinator, ``x = 1`` if it submitted a model, else 0
  ("consistent online availability");
- success: every submitter; accepted -> ``x = 1, w = 1``; rejected -> ``x = 0,
  w = rejection_weight`` (>= 1: a rejection costs more than an acceptance earns,
  "intentional wrongdoing");
- block quality: every coordinator that served as validator, ``x`` = the quality of its
  block in [0, 1] (e.g. 1 when the block was valid and appended, 0 when it was refused);
  a block the consortium's audit proved wrong (a poisoned model accepted or an honest one
  rejected: :func:`~dtfl_env.ledger.verification.audit_block`) counts ``x = 0`` with
  weight ``audit_weight`` (>= 1: "failure to comply with consensus agreements" costs more
  than a good block earns).

``Hist = (w_p participation + w_s success + w_q block_quality) / (w_p + w_s + w_q)``.

Defaults: success carries half of Hist and a rejection counts as three failed trials, so a
coordinator caught submitting a bad model loses its validator rank within a round or two
even against a better static capability score (with equal weights in eq. (2), history is
a quarter of the score).

Validators: the coordinator with the highest score (Algorithm 1, lines 3-4), or the top V;
ties go to the coordinator listed first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dtfl_env.ledger.identity import check_id
from dtfl_env.model.scoring import ReputationWeights, reputation_score

__all__ = [
    "HistoryConfig",
    "ReputationTracker",
    "RunningRate",
    "encryption_capability",
    "routing_capability",
]


@dataclass(frozen=True)
class HistoryConfig:
    """Weights and update rule of the history term Hist_Cs (see the module docstring).

    Parameters
    ----------
    participation, success, block_quality : float
        Weights of the three running rates (>= 0, not all 0).
    decay : float
        Forgetting factor gamma in (0, 1]; 1 keeps the whole history.
    rejection_weight : float
        Trial weight of a rejected submission (>= 1).
    audit_weight : float
        Trial weight of a block proven wrong by the consortium's audit (>= 1).
    """

    participation: float = 0.25
    success: float = 0.5
    block_quality: float = 0.25
    decay: float = 0.9
    rejection_weight: float = 3.0
    audit_weight: float = 3.0

    def __post_init__(self) -> None:
        total = 0.0
        for name in ("participation", "success", "block_quality"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
            ):
                raise ValueError(f"history.{name}: must be a finite number >= 0, got {v!r}")
            total += v
        if total <= 0:
            raise ValueError(
                "history: at least one of participation, success, block_quality must be > 0"
            )
        if not (isinstance(self.decay, (int, float)) and 0 < self.decay <= 1):
            raise ValueError(f"history.decay: must lie in (0, 1], got {self.decay!r}")
        for name in ("rejection_weight", "audit_weight"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 1
            ):
                raise ValueError(f"history.{name}: must be a finite number >= 1, got {v!r}")


@dataclass
class RunningRate:
    """A discounted Beta-Bernoulli rate: ``(successes + 1) / (trials + 2)``."""

    successes: float = 0.0
    trials: float = 0.0
    events: int = field(default=0)

    def update(self, x: float, weight: float = 1.0, decay: float = 1.0) -> None:
        """``a <- decay a + weight x``, ``n <- decay n + weight``."""
        self.successes = decay * self.successes + weight * x
        self.trials = decay * self.trials + weight
        self.events += 1

    @property
    def rate(self) -> float:
        return (self.successes + 1.0) / (self.trials + 2.0)


def encryption_capability(
    encrypt_time_s: np.ndarray | float, randomness: np.ndarray | float, *, ref_time_s: float = 0.01
) -> np.ndarray:
    """Cap^Enc of eq. (2) in [0, 1]: faster encryption and more random ciphertext score higher.

    ``0.5 * min(1, ref_time_s / encrypt_time_s) + 0.5 * randomness``, with ``randomness`` in
    [0, 1] (e.g. the ciphertext's byte entropy / 8 bits) and ``encrypt_time_s`` the time to
    encrypt a reference message.
    """
    t = np.asarray(encrypt_time_s, dtype=float)
    r = np.asarray(randomness, dtype=float)
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("encrypt_time_s: must be finite and > 0")
    if np.any(~np.isfinite(r)) or np.any((r < 0) | (r > 1)):
        raise ValueError("randomness: must lie in [0, 1]")
    if not (math.isfinite(ref_time_s) and ref_time_s > 0):
        raise ValueError(f"ref_time_s: must be finite and > 0, got {ref_time_s}")
    return 0.5 * np.minimum(1.0, ref_time_s / t) + 0.5 * r


def routing_capability(relay_hops: np.ndarray | int) -> np.ndarray:
    """Cap^Rou of eq. (2) in (0, 1]: ``1 / (1 + hops)``; a direct link to the main
    coordinator (0 relays or access points) scores 1."""
    h = np.asarray(relay_hops, dtype=float)
    if np.any(~np.isfinite(h)) or np.any(h < 0):
        raise ValueError("relay_hops: must be finite and >= 0")
    return 1.0 / (1.0 + h)


class ReputationTracker:
    """Per-coordinator eq. (2) inputs, running history, scores and validator selection.

    Parameters
    ----------
    coordinator_ids : sequence of str
        The candidate validators (group coordinators), in tie-breaking order.
    encryption, routing : float or array-like or mapping, optional
        Cap^Enc and Cap^Rou in [0, 1] (scalar for all, array aligned with the ids, or
        ``{id: value}``); default 1.
    twin_proportion : float or array-like or mapping, optional
        Prop_Cs in [0, 1], the share of the cluster's devices that need a twin; default 0.
    weights : ReputationWeights, optional
        Weights of eq. (2) (default: equal).
    history : HistoryConfig, optional
        Weights and update rule of the history term.
    """

    def __init__(
        self,
        coordinator_ids: Sequence[str],
        *,
        encryption: float | Sequence[float] | Mapping[str, float] = 1.0,
        routing: float | Sequence[float] | Mapping[str, float] = 1.0,
        twin_proportion: float | Sequence[float] | Mapping[str, float] = 0.0,
        weights: ReputationWeights | None = None,
        history: HistoryConfig | None = None,
    ) -> None:
        ids = tuple(check_id(c, f"coordinator_ids[{i}]") for i, c in enumerate(coordinator_ids))
        if not ids:
            raise ValueError("coordinator_ids: at least one coordinator is needed")
        if len(set(ids)) != len(ids):
            raise ValueError("coordinator_ids: ids must be unique")
        if weights is not None and not isinstance(weights, ReputationWeights):
            raise TypeError("weights: expected ReputationWeights")
        if history is not None and not isinstance(history, HistoryConfig):
            raise TypeError("history: expected HistoryConfig")
        self.coordinator_ids = ids
        self._pos = {c: i for i, c in enumerate(ids)}
        self.weights = weights or ReputationWeights()
        self.history_config = history or HistoryConfig()
        n = len(ids)
        self.encryption = np.ones(n)
        self.routing = np.ones(n)
        self.twin_proportion = np.zeros(n)
        self.set_capabilities(
            encryption=encryption, routing=routing, twin_proportion=twin_proportion
        )
        self._participation = {c: RunningRate() for c in ids}
        self._success = {c: RunningRate() for c in ids}
        self._quality = {c: RunningRate() for c in ids}
        self.rounds_recorded = 0

    # --- inputs
    def _vector(
        self, value: float | Sequence[float] | Mapping[str, float], name: str, current: np.ndarray
    ) -> np.ndarray:
        out = current.copy()
        if isinstance(value, Mapping):
            for cid, v in value.items():
                out[self._index(cid, name)] = float(v)
        else:
            arr = np.asarray(value, dtype=float)
            if arr.ndim == 0:
                out[:] = float(arr)
            elif arr.shape == out.shape:
                out[:] = arr
            else:
                raise ValueError(
                    f"{name}: expected a scalar, {len(out)} values or a mapping, "
                    f"got shape {arr.shape}"
                )
        if np.any(~np.isfinite(out)) or np.any((out < 0) | (out > 1)):
            raise ValueError(f"{name}: values must lie in [0, 1]")
        return out

    def _index(self, cid: str, name: str) -> int:
        try:
            return self._pos[cid]
        except KeyError:
            raise ValueError(f"{name}: unknown coordinator id {cid!r}") from None

    def set_capabilities(
        self,
        *,
        encryption: float | Sequence[float] | Mapping[str, float] | None = None,
        routing: float | Sequence[float] | Mapping[str, float] | None = None,
        twin_proportion: float | Sequence[float] | Mapping[str, float] | None = None,
    ) -> None:
        """Update Cap^Enc, Cap^Rou or Prop (e.g. the twin share of this round's clusters)."""
        if encryption is not None:
            self.encryption = self._vector(encryption, "encryption", self.encryption)
        if routing is not None:
            self.routing = self._vector(routing, "routing", self.routing)
        if twin_proportion is not None:
            self.twin_proportion = self._vector(
                twin_proportion, "twin_proportion", self.twin_proportion
            )

    # --- outputs
    def history_components(self) -> dict[str, dict[str, float]]:
        """``{id: {"participation", "success", "block_quality", "history"}}``."""
        hc = self.history_config
        wsum = hc.participation + hc.success + hc.block_quality
        out = {}
        for c in self.coordinator_ids:
            p, s, q = (self._participation[c].rate, self._success[c].rate, self._quality[c].rate)
            out[c] = {
                "participation": p,
                "success": s,
                "block_quality": q,
                "history": (hc.participation * p + hc.success * s + hc.block_quality * q) / wsum,
            }
        return out

    def history(self) -> np.ndarray:
        """Hist_Cs in [0, 1], aligned with ``coordinator_ids``."""
        comp = self.history_components()
        return np.array([comp[c]["history"] for c in self.coordinator_ids])

    def scores(self) -> np.ndarray:
        """Score_Cs^Rep of eq. (2), aligned with ``coordinator_ids``."""
        return reputation_score(
            self.encryption, self.routing, self.twin_proportion, self.history(), self.weights
        )  # eq. (2)

    def score_table(self) -> dict[str, float]:
        """``{id: eq. (2) score}``."""
        return dict(zip(self.coordinator_ids, self.scores().tolist(), strict=True))

    def select_validators(self, top_v: int = 1, *, exclude: Iterable[str] = ()) -> list[str]:
        """The ``top_v`` highest-scoring coordinators, best first (Algorithm 1, lines 3-4).

        Parameters
        ----------
        top_v : int
            Number of validators V (>= 1, at most the number of candidates).
        exclude : iterable of str
            Ids that may not validate this round (e.g. offline).
        """
        excl = set(exclude)
        for c in excl:
            self._index(c, "exclude")
        cand = [i for i, c in enumerate(self.coordinator_ids) if c not in excl]
        if (
            isinstance(top_v, bool)
            or not isinstance(top_v, (int, np.integer))
            or not 1 <= top_v <= len(cand)
        ):
            raise ValueError(f"top_v: must be an integer in [1, {len(cand)}], got {top_v!r}")
        s = self.scores()[cand]
        order = np.argsort(-s, kind="stable")[: int(top_v)]
        return [self.coordinator_ids[cand[i]] for i in order]

    # --- history updates
    def record_round(
        self,
        *,
        submitted: Iterable[str],
        accepted: Iterable[str],
        eligible: Iterable[str] | None = None,
        block_quality: Mapping[str, float] | None = None,
        audit_failed: Iterable[str] = (),
    ) -> None:
        """Update the history after a round (see the module docstring for the rule).

        Parameters
        ----------
        submitted : iterable of str
            Coordinators that submitted a model this round.
        accepted : iterable of str
            Those whose submission the validator accepted (a subset of ``submitted``);
            the others were rejected.
        eligible : iterable of str, optional
            Coordinators expected to take part (default: all); those not in ``submitted``
            count as absent.
        block_quality : mapping, optional
            ``{validator id: quality in [0, 1]}`` for this round's validators.
        audit_failed : iterable of str
            Validators whose block the audit proved wrong: block quality 0 with weight
            ``history.audit_weight`` (instead of their ``block_quality`` entry).
        """
        sub = set(submitted)
        acc = set(accepted)
        elig = set(self.coordinator_ids) if eligible is None else set(eligible)
        for name, group in (("submitted", sub), ("accepted", acc), ("eligible", elig)):
            for c in group:
                self._index(c, name)
        if not acc <= sub:
            raise ValueError(f"accepted: {sorted(acc - sub)} did not submit")
        if not sub <= elig:
            raise ValueError(f"submitted: {sorted(sub - elig)} are not eligible")
        bq = dict(block_quality or {})
        for c, q in bq.items():
            self._index(c, "block_quality")
            if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 1:
                raise ValueError(f"block_quality[{c!r}]: must lie in [0, 1], got {q!r}")
        failed = set(audit_failed)
        for c in failed:
            self._index(c, "audit_failed")
        hc = self.history_config
        for c in self.coordinator_ids:
            if c in elig:
                self._participation[c].update(1.0 if c in sub else 0.0, decay=hc.decay)
            if c in sub:
                ok = c in acc
                self._success[c].update(
                    1.0 if ok else 0.0, weight=1.0 if ok else hc.rejection_weight, decay=hc.decay
                )
            if c in failed:
                self._quality[c].update(0.0, weight=hc.audit_weight, decay=hc.decay)
            elif c in bq:
                self._quality[c].update(float(bq[c]), decay=hc.decay)
        self.rounds_recorded += 1
