"""One object for the end of each FL round: identities, reputation, verification, chain.

Usage (Algorithm 1, lines 3-4 and 12-14)::

    cons = Consortium(cluster_ids=range(S), mode="full", rng=rng)
    cons.set_twin_proportion({c: n_bld[c] / n_devices[c] for c in range(S)})
    lead = cons.select_validators()[0]                       # lines 3-4
    subs = [cons.submit(c, round=t, params=w[c], global_params=g,
                        participants=ids[c], sample_counts=n[c]) for c in range(S)]
    rec = cons.end_round(t, subs, global_params=g, quality=q, timestamp_s=clock)  # 12-13
    verified = rec.report.accepted                          # line 14: aggregate these

In mode ``"none"`` nothing is checked and no block is written (FedAvg without ledger).

Validator selection and behaviour
---------------------------------
Each round one group coordinator is the validator V (``selection``): ``"reputation"``, the
highest eq. (2) score (Algorithm 1, lines 3-4); ``"random"``, uniformly at random;
``"round_robin"``, coordinator ``round mod S``. The validator verifies with its own
behaviour: an honest one runs :func:`~dtfl_env.ledger.verification.verify_submissions`; a
malicious one (a coordinator of ``malicious``) starts from those verdicts and applies
``validator_attack`` (:func:`~dtfl_env.ledger.attacks.malicious_validation`: accept its
allies' poisoned models, reject honest ones, or both), then signs its block.

Audit: the block is shared with every member (Section III-B), and the other members re-run
the honest verification on the round's submissions and compare
(:func:`~dtfl_env.ledger.verification.audit_block`). The verification is deterministic, so
their re-run is the honest report, computed once per round against the chain the validator
saw. What a failed audit does (our reading of the paper): **the wrong block stands for its
round** (the chain is append-only and the main coordinator aggregates the models V verified,
Algorithm 1, lines 12-14) and **the validator pays through eq. (2)**: its block-quality
history records a failure with weight ``HistoryConfig.audit_weight``, and the submitters'
success history follows the audit's verdicts, not the validator's (a colluding validator
cannot launder its allies' record, a lying one cannot smear honest coordinators). This is
what makes the selection matter, as the paper argues: under reputation-based selection a
caught validator loses score (and, once the audit has also rejected its own poisoned
models, its rank), while random or round-robin selection keep handing blocks to malicious
coordinators. The block-quality term alone is bounded: with equal eq. (2) weights it costs
at most about 0.03 of score, less than a 0.12 lead in the twin share is worth.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtfl_env.ledger.attacks import VALIDATOR_ATTACKS, malicious_validation
from dtfl_env.ledger.blocksize import block_size_bytes
from dtfl_env.ledger.chain import Block, Blockchain
from dtfl_env.ledger.encoding import params_digest
from dtfl_env.ledger.identity import Identity, Registry, make_identities
from dtfl_env.ledger.reputation import HistoryConfig, ReputationTracker
from dtfl_env.ledger.verification import (
    AuditResult,
    QualityFn,
    Submission,
    VerificationMode,
    VerificationReport,
    VerifierConfig,
    audit_block,
    make_submission,
    verify_submissions,
)
from dtfl_env.model.scoring import ReputationWeights

__all__ = ["SELECTION_POLICIES", "Consortium", "RoundRecord"]

#: how the validator of a round is chosen (see the module docstring)
SELECTION_POLICIES = ("reputation", "random", "round_robin")


@dataclass(frozen=True)
class RoundRecord:
    """What the ledger did at the end of a round.

    ``block``, ``block_hash``, ``block_size_bytes`` and ``audit`` are None in mode
    ``"none"``; ``report`` holds the validator's verdicts (what the block records and the
    main coordinator aggregates), ``reference`` the honest verification the audit compared
    them with; ``scores`` are the eq. (2) reputations after the round's history update.
    """

    round: int
    validator: str
    report: VerificationReport
    block: Block | None
    block_hash: str | None
    block_size_bytes: int | None
    scores: dict[str, float] = field(default_factory=dict)
    reference: VerificationReport | None = None
    audit: AuditResult | None = None
    validator_malicious: bool = False

    @property
    def audit_failed(self) -> bool:
        """Whether the consortium's audit proved the block wrong."""
        return self.audit is not None and self.audit.failed

    @property
    def accepted_clusters(self) -> list[int]:
        return [v.cluster_id for v in self.report.verdicts if v.accepted]


class Consortium:
    """The consortium blockchain of one FL run.

    Parameters
    ----------
    cluster_ids : iterable of int
        Clusters; cluster ``c`` has group coordinator ``"gc-c"``.
    mode : {"none", "signature", "full"}
        Verification mode (see :mod:`dtfl_env.ledger.verification`).
    rng : np.random.Generator, optional
        Seeds the key pairs (reproducible runs).
    weights : ReputationWeights, optional
        Weights of eq. (2).
    history : HistoryConfig, optional
        History term of eq. (2).
    verifier : VerifierConfig, optional
        Tolerances of the ``"full"`` checks.
    store_payload : bool
        Put the cluster models' parameters in the blocks (else only their digests).
    encryption, routing : float or sequence or mapping
        Cap^Enc and Cap^Rou per coordinator (see :class:`ReputationTracker`).
    main_id : str
        Id of the main coordinator (registered; never a validator candidate).
    selection : {"reputation", "random", "round_robin"}
        How each round's validator is chosen (see the module docstring).
    malicious : iterable of int
        Clusters whose group coordinator is malicious (as a validator it applies
        ``validator_attack``).
    validator_attack : {"none", "accept_poisoned", "reject_honest", "both"}
        What a malicious validator does (:func:`~dtfl_env.ledger.attacks.malicious_validation`).
    selection_rng : np.random.Generator, optional
        Draws of ``selection="random"``; default: a child of ``rng`` (``rng.spawn``).
    """

    def __init__(
        self,
        cluster_ids: Iterable[int],
        *,
        mode: VerificationMode | str = "full",
        rng: np.random.Generator | None = None,
        weights: ReputationWeights | None = None,
        history: HistoryConfig | None = None,
        verifier: VerifierConfig | None = None,
        store_payload: bool = False,
        encryption: float | Sequence[float] | Mapping[str, float] = 1.0,
        routing: float | Sequence[float] | Mapping[str, float] = 1.0,
        main_id: str = "main",
        selection: str = "reputation",
        malicious: Iterable[int] = (),
        validator_attack: str = "none",
        selection_rng: np.random.Generator | None = None,
    ) -> None:
        self.mode = VerificationMode(mode)
        self.cluster_ids = tuple(int(c) for c in cluster_ids)
        if not self.cluster_ids or len(set(self.cluster_ids)) != len(self.cluster_ids):
            raise ValueError("cluster_ids: need at least one cluster, ids unique")
        if selection not in SELECTION_POLICIES:
            raise ValueError(
                f"selection: must be one of {list(SELECTION_POLICIES)}, got {selection!r}"
            )
        if validator_attack not in VALIDATOR_ATTACKS:
            raise ValueError(
                f"validator_attack: must be one of {list(VALIDATOR_ATTACKS)}, "
                f"got {validator_attack!r}"
            )
        bad = sorted(set(int(c) for c in malicious) - set(self.cluster_ids))
        if bad:
            raise ValueError(f"malicious: unknown cluster id(s) {bad}")
        self.selection = selection
        self.validator_attack = validator_attack
        self.cluster_owner = {c: self.coordinator_id(c) for c in self.cluster_ids}
        gcs = list(self.cluster_owner.values())
        if main_id in gcs:
            raise ValueError(f"main_id: {main_id!r} clashes with a group coordinator id")
        self.main_id = main_id
        self.identities: dict[str, Identity]
        self.registry: Registry
        self.identities, self.registry = make_identities([*gcs, main_id], rng)
        self.malicious_ids = frozenset(self.cluster_owner[int(c)] for c in malicious)
        if selection_rng is None:  # a child stream: ``rng``'s own draws are unchanged
            selection_rng = np.random.default_rng() if rng is None else rng.spawn(1)[0]
        self._selection_rng = selection_rng
        self.tracker = ReputationTracker(
            gcs, encryption=encryption, routing=routing, weights=weights, history=history
        )
        self.verifier = verifier or VerifierConfig()
        self.store_payload = bool(store_payload)
        self.chain = Blockchain(self.registry)
        self.records: list[RoundRecord] = []
        self._reference_norms: list[float] = []

    @staticmethod
    def coordinator_id(cluster_id: int) -> str:
        """Group coordinator id of a cluster: ``"gc-<cluster_id>"``."""
        return f"gc-{int(cluster_id)}"

    def set_twin_proportion(self, proportion: Mapping[int, float] | Sequence[float]) -> None:
        """Prop_Cs of eq. (2): the share of each cluster's devices that need a twin."""
        if isinstance(proportion, Mapping):
            self.tracker.set_capabilities(
                twin_proportion={self.coordinator_id(c): float(p) for c, p in proportion.items()}
            )
        else:
            self.tracker.set_capabilities(twin_proportion=proportion)

    def select_validators(self, top_v: int = 1) -> list[str]:
        """The ``top_v`` highest eq. (2) scores, best first."""
        return self.tracker.select_validators(top_v)

    def choose_validator(self, round: int) -> str:
        """This round's validator under the ``selection`` policy (Algorithm 1, lines 3-4 for
        ``"reputation"``); ``"random"`` draws from ``selection_rng`` once per call."""
        if isinstance(round, bool) or not isinstance(round, (int, np.integer)) or round < 0:
            raise ValueError(f"round: expected an integer >= 0, got {round!r}")
        cands = self.tracker.coordinator_ids
        if self.selection == "random":
            return cands[int(self._selection_rng.integers(len(cands)))]
        if self.selection == "round_robin":
            return cands[int(round) % len(cands)]
        return self.select_validators(1)[0]  # eq. (2)

    def submit(
        self,
        cluster_id: int,
        *,
        round: int,
        params: np.ndarray,
        global_params: np.ndarray,
        participants: Sequence[int],
        sample_counts: Sequence[int],
    ) -> Submission:
        """The cluster's group coordinator signs its model (digest of ``global_params``)."""
        return make_submission(
            self.identities[self.cluster_owner[int(cluster_id)]],
            cluster_id=cluster_id,
            round=round,
            params=params,
            global_digest=params_digest(global_params, "global_params"),
            participants=participants,
            sample_counts=sample_counts,
        )

    def end_round(
        self,
        round: int,
        submissions: Sequence[Submission],
        *,
        global_params: np.ndarray,
        quality: QualityFn | None,
        timestamp_s: float,
        validator: str | None = None,
        block_quality: float = 1.0,
    ) -> RoundRecord:
        """Verify, write the block, update reputations (Algorithm 1, lines 12-13).

        Parameters
        ----------
        round : int
            The round that ends.
        submissions : sequence of Submission
            The clusters' signed models (:meth:`submit`, possibly attacked).
        global_params : np.ndarray
            The global model the clusters trained from.
        quality : callable or None
            ``quality(params) -> (accuracy, loss)`` on the validator's held-out data
            (``"full"`` mode).
        timestamp_s : float
            Simulated time of the block (non-decreasing).
        validator : str, optional
            Override the ``selection`` policy's choice.
        block_quality : float
            Quality credited to the validator's block in its history, in [0, 1], when the
            audit does not prove it wrong.

        Returns
        -------
        RoundRecord
            ``record.report.accepted`` are the models the validator verified, for the main
            coordinator (the block stands even when ``record.audit_failed``; see the module
            docstring).
        """
        lead = validator or self.choose_validator(round)
        if lead not in self.tracker.coordinator_ids:
            raise ValueError(f"validator: {lead!r} is not a group coordinator")
        # the honest verification: what an honest validator and every auditor compute
        reference = verify_submissions(
            submissions,
            registry=self.registry,
            round=round,
            global_params=global_params,
            quality=quality,
            mode=self.mode,
            config=self.verifier,
            chain=self.chain,
            cluster_owner=self.cluster_owner,
            reference_norms=self._reference_norms,
        )
        bad_validator = lead in self.malicious_ids
        report = reference
        if bad_validator and self.mode is not VerificationMode.NONE:
            report = malicious_validation(
                reference, attack=self.validator_attack, allies=self.malicious_ids
            )
        block = audit = None
        if self.mode is not VerificationMode.NONE:
            block = self.chain.propose(
                self.identities[lead],
                report.transactions(self.store_payload),
                round=round,
                timestamp_s=timestamp_s,
            )
            self.chain.append(block)
            audit = audit_block(block, reference)  # the other members' check
        known = set(self.tracker.coordinator_ids)
        submitted = {s.submitter for s in reference.submissions} & known
        accepted = {s.submitter for s in reference.accepted} & known  # the audited verdicts
        self.tracker.record_round(
            submitted=submitted,
            accepted=accepted,
            block_quality={lead: block_quality} if block is not None else None,
            audit_failed=[lead] if audit is not None and audit.failed else (),
        )
        norms = [v.update_norm for v in reference.verdicts if v.accepted and v.update_norm]
        if norms:
            self._reference_norms = [float(n) for n in norms]
        rec = RoundRecord(
            int(round),
            lead,
            report,
            block,
            None if block is None else block.hash,
            None if block is None else block_size_bytes(block),
            self.tracker.score_table(),
            reference,
            audit,
            bad_validator,
        )
        self.records.append(rec)
        return rec

    def save(self, path: str | Path) -> None:
        """Write the chain as JSON Lines."""
        self.chain.save(path)
