"""The validator's check of a round's cluster models (Algorithm 1, line 12).

Each group coordinator submits a :class:`Submission`: its signed :class:`Transaction` and
the flat float32 parameter vector. :func:`verify_submissions` returns, per submission,
accepted or rejected with reason codes (:class:`Reason`); only accepted models go on to the
main coordinator (line 14) and into the block (line 13).

Modes
-----
``"none"``
    FedAvg without a ledger: every submission is accepted, nothing is checked.
``"signature"``
    Blockchain FL as in the paper's ref. [39]: identity (registered submitter, valid
    signature, owner of the cluster when ``cluster_owner`` is given) and integrity (the
    parameters hash to the signed digest), plus what a block needs to be valid (the
    round is the current one; no replay of a slot already on chain or twice in the round).
``"full"`` (the paper's scheme)
    Everything above, plus provenance (trained from the current global model's digest),
    a well-formed model (same size as the global one, finite), the update-norm check
    ``||params - global||_2 <= max(norm_floor, norm_factor * median)``, the median taken
    over the round's candidate updates and any ``reference_norms`` (a robust threshold as
    long as fewer than half of them are attacked), and the quality check on the validator's
    held-out data: reject if accuracy drops by more than ``accuracy_tolerance`` or the loss
    rises by more than ``loss_tolerance`` against the shared global model (or, with
    ``VerifierConfig.peer_baseline``, against the worse of the global model and the round's
    median, which tolerates the drift of honest non-IID clusters). Only submissions that
    passed the identity, integrity and provenance checks are evaluated.

Audit
-----
The validator's block is shared with the whole consortium (Section III-B), whose members
re-run the honest verification on the round's submissions and compare: :func:`audit_block`
proves a block wrong when its transactions are not exactly the ones the honest verification
accepts (a poisoned model let in, or an honest one left out). The consortium feeds a failed
audit into the validator's history term of eq. (2)
(:meth:`~dtfl_env.ledger.reputation.ReputationTracker.record_round`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from dtfl_env.ledger.chain import Block, Blockchain, Transaction
from dtfl_env.ledger.encoding import params_bytes, params_digest, sha256_hex
from dtfl_env.ledger.identity import Identity, Registry

__all__ = [
    "AuditResult",
    "QualityFn",
    "Reason",
    "Submission",
    "Verdict",
    "VerificationMode",
    "VerificationReport",
    "VerifierConfig",
    "audit_block",
    "majority_vote",
    "make_submission",
    "verify_submissions",
]

#: ``quality(params) -> (accuracy, loss)`` on the validator's held-out data
QualityFn = Callable[[np.ndarray], tuple[float, float]]


class VerificationMode(str, Enum):
    """How much the validator checks (see the module docstring)."""

    NONE = "none"
    SIGNATURE = "signature"
    FULL = "full"


class Reason(str, Enum):
    """Why a submission was rejected (stable codes)."""

    UNKNOWN_SUBMITTER = "unknown-submitter"
    BAD_SIGNATURE = "bad-signature"
    WRONG_SUBMITTER = "wrong-submitter"
    BAD_PARAMS = "bad-params"
    DIGEST_MISMATCH = "digest-mismatch"
    WRONG_ROUND = "wrong-round"
    REPLAY = "replay"
    EQUIVOCATION = "equivocation"
    WRONG_GLOBAL = "wrong-global-model"
    SHAPE_MISMATCH = "shape-mismatch"
    NON_FINITE = "non-finite"
    UPDATE_NORM = "update-norm"
    ACCURACY_DROP = "accuracy-drop"
    LOSS_RISE = "loss-rise"
    BAD_QUALITY = "non-finite-quality"
    VALIDATOR_OVERRIDE = "validator-override"
    """A malicious validator rejected a submission that passed every check."""


@dataclass(frozen=True)
class VerifierConfig:
    """Tolerances of the ``"full"`` checks.

    Parameters
    ----------
    accuracy_tolerance : float
        Largest allowed drop of accuracy (absolute, as a fraction) below the global model's.
    loss_tolerance : float
        Largest allowed rise of loss (absolute) above the global model's.
    norm_factor : float
        Update norms above ``norm_factor * median`` are rejected (> 1).
    norm_floor : float
        Lower bound of the norm threshold (so that tiny but honest updates pass when the
        median is ~0).
    peer_baseline : bool
        Compare with ``min(global accuracy, median accuracy of the round's candidates)``
        and ``max(global loss, median loss)`` instead of the global model alone. Honest
        clusters with non-IID data all drift from the global model on the validator's data;
        the median of the round (robust while fewer than half are attacked) absorbs that
        drift. False: the global model alone (the paper's wording).
    check_quality, check_norm : bool
        Switch the quality or the update-norm check off (ablations).
    """

    accuracy_tolerance: float = 0.10
    loss_tolerance: float = 1.0
    norm_factor: float = 3.0
    norm_floor: float = 1e-6
    peer_baseline: bool = False
    check_quality: bool = True
    check_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("accuracy_tolerance", "loss_tolerance", "norm_floor"):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or v < 0
            ):
                raise ValueError(f"verifier.{name}: must be a finite number >= 0, got {v!r}")
        f = self.norm_factor
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 1:
            raise ValueError(f"verifier.norm_factor: must be a finite number > 1, got {f!r}")
        for name in ("peer_baseline", "check_quality", "check_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"verifier.{name}: must be true or false")


@dataclass(frozen=True)
class Submission:
    """A cluster model as the validator receives it: signed record + parameters.

    ``params`` is stored as given (a read-only view is not enforced); an attacker may
    change it after signing (:func:`~dtfl_env.ledger.attacks.tamper_submission`), which the
    integrity check catches.
    """

    transaction: Transaction
    params: np.ndarray = field(compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.transaction, Transaction):
            raise TypeError(
                "submission.transaction: expected a Transaction, "
                f"got {type(self.transaction).__name__}"
            )
        if not isinstance(self.params, np.ndarray):
            raise TypeError(
                f"submission.params: expected a numpy array, got {type(self.params).__name__}"
            )

    @property
    def submitter(self) -> str:
        return self.transaction.submitter

    @property
    def cluster_id(self) -> int:
        return self.transaction.cluster_id

    def to_transaction(self, include_payload: bool = False) -> Transaction:
        """The transaction for the block, optionally carrying the parameters as payload."""
        tx = self.transaction.without_payload()
        return tx.with_payload(self.params) if include_payload else tx


def make_submission(
    identity: Identity,
    *,
    cluster_id: int,
    round: int,
    params: np.ndarray,
    global_digest: str,
    participants: Sequence[int],
    sample_counts: Sequence[int],
) -> Submission:
    """Sign a cluster model: the group coordinator's step before broadcasting to V.

    Parameters
    ----------
    identity : Identity
        The group coordinator's key pair.
    cluster_id, round : int
        The slot.
    params : np.ndarray
        Flat float32 cluster model (copied).
    global_digest : str
        :func:`~dtfl_env.ledger.encoding.params_digest` of the global model trained from.
    participants, sample_counts : sequence of int
        Devices aggregated and their sample counts.
    """
    p = np.array(params, copy=True)
    digest = params_digest(p, "params")
    tx = Transaction.create(
        identity,
        cluster_id=cluster_id,
        round=round,
        model_digest=digest,
        global_digest=global_digest,
        participants=participants,
        sample_counts=sample_counts,
    )
    return Submission(tx, p)


@dataclass(frozen=True)
class Verdict:
    """The validator's decision on one submission.

    ``reasons`` are :class:`Reason` codes (empty when accepted), ``messages`` the matching
    explanations. ``accuracy``, ``loss`` and ``update_norm`` are filled where computed.
    """

    cluster_id: int
    submitter: str
    accepted: bool
    reasons: tuple[Reason, ...] = ()
    messages: tuple[str, ...] = ()
    accuracy: float | None = None
    loss: float | None = None
    update_norm: float | None = None


@dataclass(frozen=True)
class VerificationReport:
    """All verdicts of a round, aligned with the submissions.

    Attributes
    ----------
    mode : VerificationMode
    round : int
    submissions : tuple of Submission
    verdicts : tuple of Verdict
    global_accuracy, global_loss : float or None
        Quality of the shared global model on the validator's data (``"full"`` only).
    norm_threshold : float or None
        The update-norm threshold used (``"full"`` only).
    """

    mode: VerificationMode
    round: int
    submissions: tuple[Submission, ...]
    verdicts: tuple[Verdict, ...]
    global_accuracy: float | None = None
    global_loss: float | None = None
    norm_threshold: float | None = None

    @property
    def mask(self) -> np.ndarray:
        """Boolean array, True where accepted."""
        return np.array([v.accepted for v in self.verdicts], dtype=bool)

    @property
    def accepted(self) -> tuple[Submission, ...]:
        """The verified submissions, for the main coordinator and the block."""
        return tuple(s for s, v in zip(self.submissions, self.verdicts, strict=True) if v.accepted)

    @property
    def rejected(self) -> tuple[tuple[Submission, Verdict], ...]:
        """``(submission, verdict)`` of every rejected submission."""
        return tuple(
            (s, v) for s, v in zip(self.submissions, self.verdicts, strict=True) if not v.accepted
        )

    def transactions(self, include_payload: bool = False) -> list[Transaction]:
        """The accepted submissions' transactions, ready for a block."""
        return [s.to_transaction(include_payload) for s in self.accepted]

    def summary(self) -> dict[str, object]:
        """A JSON-friendly summary (e.g. for ``info``)."""
        return {
            "mode": self.mode.value,
            "round": self.round,
            "accepted": [v.cluster_id for v in self.verdicts if v.accepted],
            "rejected": {
                str(v.cluster_id): [r.value for r in v.reasons]
                for v in self.verdicts
                if not v.accepted
            },
            "global_accuracy": self.global_accuracy,
            "global_loss": self.global_loss,
            "norm_threshold": self.norm_threshold,
        }


def _quality(quality: QualityFn, params: np.ndarray, name: str) -> tuple[float, float]:
    out = quality(params)
    try:
        acc, loss = out
        return float(acc), float(loss)
    except (TypeError, ValueError):
        raise TypeError(
            f"quality: must return (accuracy, loss), got {out!r:.80} for {name}"
        ) from None


def verify_submissions(
    submissions: Sequence[Submission],
    *,
    registry: Registry,
    round: int,
    global_params: np.ndarray | None = None,
    quality: QualityFn | None = None,
    mode: VerificationMode | str = VerificationMode.FULL,
    config: VerifierConfig | None = None,
    chain: Blockchain | None = None,
    cluster_owner: Mapping[int, str] | None = None,
    reference_norms: Sequence[float] = (),
) -> VerificationReport:
    """The validator's verification of one round's cluster models.

    Parameters
    ----------
    submissions : sequence of Submission
        This round's cluster models.
    registry : Registry
        Registered coordinators' public keys.
    round : int
        The current round.
    global_params : np.ndarray, optional
        The shared global model (flat float32) the clusters trained from; required in
        ``"full"`` mode.
    quality : callable, optional
        ``quality(params) -> (accuracy, loss)`` on the validator's held-out data; required
        in ``"full"`` mode unless ``config.check_quality`` is False.
    mode : {"none", "signature", "full"}
        See the module docstring.
    config : VerifierConfig, optional
        Tolerances of the ``"full"`` checks.
    chain : Blockchain, optional
        If given, slots and transactions already on it are rejected as replays.
    cluster_owner : mapping, optional
        ``{cluster_id: coordinator id}``; a submission for a cluster by another
        coordinator is rejected.
    reference_norms : sequence of float
        Extra update norms (e.g. last round's accepted ones) for the median of the norm
        check; they make it robust when a round has few submissions.

    Returns
    -------
    VerificationReport
        One :class:`Verdict` per submission, in order.
    """
    mode = VerificationMode(mode)
    cfg = config or VerifierConfig()
    subs = tuple(submissions)
    for i, s in enumerate(subs):
        if not isinstance(s, Submission):
            raise TypeError(f"submissions[{i}]: expected a Submission, got {type(s).__name__}")
    if not isinstance(registry, Registry):
        raise TypeError(f"registry: expected a Registry, got {type(registry).__name__}")
    if isinstance(round, bool) or not isinstance(round, (int, np.integer)) or round < 0:
        raise ValueError(f"round: expected an integer >= 0, got {round!r}")
    if mode is VerificationMode.NONE:
        return VerificationReport(
            mode, int(round), subs, tuple(Verdict(s.cluster_id, s.submitter, True) for s in subs)
        )

    global_vec: np.ndarray | None = None
    global_digest: str | None = None
    if mode is VerificationMode.FULL:
        if global_params is None:
            raise ValueError("global_params: required in 'full' mode")
        global_digest = params_digest(global_params, "global_params")
        global_vec = np.asarray(global_params, dtype=np.float64)
        if cfg.check_quality and quality is None:
            raise ValueError("quality: required in 'full' mode (or set check_quality=False)")

    reasons: list[list[tuple[Reason, str]]] = [[] for _ in subs]
    # identity, integrity and chain validity (modes "signature" and "full")
    hash_count = Counter(s.transaction.tx_hash for s in subs)
    slot_hashes: dict[tuple[int, int], set[str]] = {}
    for s in subs:
        slot_hashes.setdefault(s.transaction.slot, set()).add(s.transaction.tx_hash)
    first_seen: set[str] = set()
    for i, s in enumerate(subs):
        tx, r = s.transaction, reasons[i]
        if tx.submitter not in registry:
            r.append((Reason.UNKNOWN_SUBMITTER, f"submitter {tx.submitter!r} is not registered"))
        elif not tx.signature_valid(registry):
            r.append((Reason.BAD_SIGNATURE, f"signature does not verify for {tx.submitter!r}"))
        if cluster_owner is not None and cluster_owner.get(tx.cluster_id) != tx.submitter:
            r.append(
                (
                    Reason.WRONG_SUBMITTER,
                    f"cluster {tx.cluster_id} belongs to "
                    f"{cluster_owner.get(tx.cluster_id)!r}, not {tx.submitter!r}",
                )
            )
        try:
            data = params_bytes(s.params, "params")
        except (TypeError, ValueError) as e:
            r.append((Reason.BAD_PARAMS, str(e)))
        else:
            if sha256_hex(data) != tx.model_digest:
                r.append(
                    (
                        Reason.DIGEST_MISMATCH,
                        "SHA-256 of the parameters does not match the signed model_digest",
                    )
                )
        if tx.round != round:
            r.append(
                (
                    Reason.WRONG_ROUND,
                    f"transaction.round is {tx.round}, the current round is {round}",
                )
            )
        if chain is not None and (chain.has_transaction(tx.tx_hash) or chain.has_slot(*tx.slot)):
            r.append((Reason.REPLAY, f"(cluster_id, round) = {tx.slot} is already on chain"))
        if len(slot_hashes[tx.slot]) > 1:
            r.append(
                (
                    Reason.EQUIVOCATION,
                    f"{len(slot_hashes[tx.slot])} different "
                    f"transactions for (cluster_id, round) = {tx.slot}",
                )
            )
        elif hash_count[tx.tx_hash] > 1 and tx.tx_hash in first_seen:
            r.append((Reason.REPLAY, "the same transaction was submitted twice this round"))
        first_seen.add(tx.tx_hash)

    acc: list[float] = [math.nan] * len(subs)
    loss: list[float] = [math.nan] * len(subs)
    candidates: list[int] = []
    norms: list[float | None] = [None] * len(subs)
    g_acc = g_loss = threshold = None
    if mode is VerificationMode.FULL:
        assert global_vec is not None and global_digest is not None
        for i, s in enumerate(subs):
            tx, r = s.transaction, reasons[i]
            if tx.global_digest != global_digest:
                r.append(
                    (
                        Reason.WRONG_GLOBAL,
                        "global_digest is not the digest of the current global model",
                    )
                )
            if any(code is Reason.BAD_PARAMS for code, _ in r):
                continue
            if s.params.shape != global_vec.shape:
                r.append(
                    (
                        Reason.SHAPE_MISMATCH,
                        f"params has {s.params.size} entries, the global model {global_vec.size}",
                    )
                )
                continue
            if not np.all(np.isfinite(s.params)):
                r.append((Reason.NON_FINITE, "params contain NaN or infinity"))
                continue
            norms[i] = float(np.linalg.norm(s.params.astype(np.float64) - global_vec))
            # only updates that passed identity/integrity/provenance shape the median
            if not r:
                candidates.append(i)
        if cfg.check_norm:
            pool = [norms[i] for i in candidates] + [float(x) for x in reference_norms]
            if pool:
                threshold = max(cfg.norm_floor, cfg.norm_factor * float(np.median(pool)))
                for i, n in enumerate(norms):
                    if n is not None and n > threshold:
                        reasons[i].append(
                            (
                                Reason.UPDATE_NORM,
                                f"update norm {n:.4g} exceeds "
                                f"{cfg.norm_factor:g} x median = {threshold:.4g}",
                            )
                        )
        if cfg.check_quality:
            assert quality is not None
            g_acc, g_loss = _quality(quality, np.asarray(global_params), "global_params")
            # only authenticated, well-formed models of the current global model are evaluated
            evaluated = candidates
            for i in evaluated:
                acc[i], loss[i] = _quality(quality, subs[i].params, f"submissions[{i}]")
            base_acc, base_loss = g_acc, g_loss
            peers = [i for i in candidates if math.isfinite(acc[i]) and math.isfinite(loss[i])]
            if cfg.peer_baseline and peers:
                base_acc = min(g_acc, float(np.median([acc[i] for i in peers])))
                base_loss = max(g_loss, float(np.median([loss[i] for i in peers])))
            for i in evaluated:
                a, lo, r = acc[i], loss[i], reasons[i]
                if not (math.isfinite(a) and math.isfinite(lo)):
                    r.append((Reason.BAD_QUALITY, f"quality returned accuracy={a}, loss={lo}"))
                    continue
                if a < base_acc - cfg.accuracy_tolerance:
                    r.append(
                        (
                            Reason.ACCURACY_DROP,
                            f"accuracy {a:.4f} is more than "
                            f"{cfg.accuracy_tolerance:g} below the baseline {base_acc:.4f} "
                            f"(global model: {g_acc:.4f})",
                        )
                    )
                if lo > base_loss + cfg.loss_tolerance:
                    r.append(
                        (
                            Reason.LOSS_RISE,
                            f"loss {lo:.4g} is more than "
                            f"{cfg.loss_tolerance:g} above the baseline {base_loss:.4g} "
                            f"(global model: {g_loss:.4g})",
                        )
                    )

    verdicts = tuple(
        Verdict(
            s.cluster_id,
            s.submitter,
            not r,
            tuple(c for c, _ in r),
            tuple(m for _, m in r),
            None if math.isnan(acc[i]) else acc[i],
            None if math.isnan(loss[i]) else loss[i],
            norms[i],
        )
        for i, (s, r) in enumerate(zip(subs, reasons, strict=True))
    )
    return VerificationReport(mode, int(round), subs, verdicts, g_acc, g_loss, threshold)


def majority_vote(reports: Sequence[VerificationReport]) -> np.ndarray:
    """Accept where more than half of V validators' reports accept (top-V validation).

    All reports must cover the same submissions in the same order; returns the boolean
    acceptance mask.
    """
    if not reports:
        raise ValueError("reports: at least one report is needed")
    keys = [tuple(s.transaction.tx_hash for s in r.submissions) for r in reports]
    if any(k != keys[0] for k in keys):
        raise ValueError("reports: every report must cover the same submissions in order")
    votes = np.sum([r.mask for r in reports], axis=0)
    return np.asarray(votes * 2 > len(reports), dtype=bool)


@dataclass(frozen=True)
class AuditResult:
    """The consortium's audit of one block against the honest verification.

    Attributes
    ----------
    round : int
    validator : str
        Who signed the block.
    wrongly_accepted : tuple of int
        Clusters whose transaction is in the block although the honest verification
        rejects their model.
    wrongly_rejected : tuple of int
        Clusters whose model the honest verification accepts but the block leaves out.
    """

    round: int
    validator: str
    wrongly_accepted: tuple[int, ...] = ()
    wrongly_rejected: tuple[int, ...] = ()

    @property
    def failed(self) -> bool:
        """True when the block is proven wrong."""
        return bool(self.wrongly_accepted or self.wrongly_rejected)

    @property
    def overturned(self) -> tuple[int, ...]:
        """Every cluster whose verdict the audit overturns, sorted."""
        return tuple(sorted((*self.wrongly_accepted, *self.wrongly_rejected)))


def audit_block(block: Block, reference: VerificationReport) -> AuditResult:
    """Compare a block's transactions with the honest verification of the same round.

    Parameters
    ----------
    block : Block
        The validator's block, as appended to the chain.
    reference : VerificationReport
        The honest verification of the round's submissions (what every honest member of
        the consortium computes: :func:`verify_submissions` against the chain the validator
        saw).

    Returns
    -------
    AuditResult
        Failed when the block's transaction hashes differ from those the reference accepts.
    """
    if not isinstance(block, Block):
        raise TypeError(f"block: expected a Block, got {type(block).__name__}")
    if not isinstance(reference, VerificationReport):
        raise TypeError(f"reference: expected a VerificationReport, got {type(reference).__name__}")
    if block.round != reference.round:
        raise ValueError(
            f"reference: covers round {reference.round}, the block round {block.round}"
        )
    in_block = {tx.tx_hash for tx in block.transactions}
    honest = {s.transaction.tx_hash for s in reference.accepted}
    cluster = {s.transaction.tx_hash: s.cluster_id for s in reference.submissions}
    cluster.update({tx.tx_hash: tx.cluster_id for tx in block.transactions})
    return AuditResult(
        block.round,
        block.header.validator,
        tuple(sorted(cluster[h] for h in in_block - honest)),
        tuple(sorted(cluster[h] for h in honest - in_block)),
    )
