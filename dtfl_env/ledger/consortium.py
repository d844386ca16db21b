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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtfl_env.ledger.blocksize import block_size_bytes
from dtfl_env.ledger.chain import Block, Blockchain
from dtfl_env.ledger.encoding import params_digest
from dtfl_env.ledger.identity import Identity, Registry, make_identities
from dtfl_env.ledger.reputation import HistoryConfig, ReputationTracker
from dtfl_env.ledger.verification import (
    QualityFn,
    Submission,
    VerificationMode,
    VerificationReport,
    VerifierConfig,
    make_submission,
    verify_submissions,
)
from dtfl_env.model.scoring import ReputationWeights

__all__ = ["Consortium", "RoundRecord"]


@dataclass(frozen=True)
class RoundRecord:
    """What the ledger did at the end of a round.

    ``block``, ``block_hash`` and ``block_size_bytes`` are None in mode ``"none"``;
    ``scores`` are the eq. (2) reputations after the round's history update.
    """

    round: int
    validator: str
    report: VerificationReport
    block: Block | None
    block_hash: str | None
    block_size_bytes: int | None
    scores: dict[str, float] = field(default_factory=dict)

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
    """

    def __init__(self, cluster_ids: Iterable[int], *, mode: VerificationMode | str = "full",
                 rng: np.random.Generator | None = None,
                 weights: ReputationWeights | None = None,
                 history: HistoryConfig | None = None,
                 verifier: VerifierConfig | None = None, store_payload: bool = False,
                 encryption: float | Sequence[float] | Mapping[str, float] = 1.0,
                 routing: float | Sequence[float] | Mapping[str, float] = 1.0,
                 main_id: str = "main") -> None:
        self.mode = VerificationMode(mode)
        self.cluster_ids = tuple(int(c) for c in cluster_ids)
        if not self.cluster_ids or len(set(self.cluster_ids)) != len(self.cluster_ids):
            raise ValueError("cluster_ids: need at least one cluster, ids unique")
        self.cluster_owner = {c: self.coordinator_id(c) for c in self.cluster_ids}
        gcs = list(self.cluster_owner.values())
        if main_id in gcs:
            raise ValueError(f"main_id: {main_id!r} clashes with a group coordinator id")
        self.main_id = main_id
        self.identities: dict[str, Identity]
        self.registry: Registry
        self.identities, self.registry = make_identities([*gcs, main_id], rng)
        self.tracker = ReputationTracker(gcs, encryption=encryption, routing=routing,
                                         weights=weights, history=history)
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
            self.tracker.set_capabilities(twin_proportion={
                self.coordinator_id(c): float(p) for c, p in proportion.items()})
        else:
            self.tracker.set_capabilities(twin_proportion=proportion)

    def select_validators(self, top_v: int = 1) -> list[str]:
        """The ``top_v`` highest eq. (2) scores, best first."""
        return self.tracker.select_validators(top_v)

    def submit(self, cluster_id: int, *, round: int, params: np.ndarray,
               global_params: np.ndarray, participants: Sequence[int],
               sample_counts: Sequence[int]) -> Submission:
        """The cluster's group coordinator signs its model (digest of ``global_params``)."""
        return make_submission(self.identities[self.cluster_owner[int(cluster_id)]],
                               cluster_id=cluster_id, round=round, params=params,
                               global_digest=params_digest(global_params, "global_params"),
                               participants=participants, sample_counts=sample_counts)

    def end_round(self, round: int, submissions: Sequence[Submission], *,
                  global_params: np.ndarray, quality: QualityFn | None,
                  timestamp_s: float, validator: str | None = None,
                  block_quality: float = 1.0) -> RoundRecord:
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
            Override the reputation choice.
        block_quality : float
            Quality credited to the validator's block in its history, in [0, 1].

        Returns
        -------
        RoundRecord
            ``record.report.accepted`` are the verified models for the main coordinator.
        """
        lead = validator or self.select_validators(1)[0]
        report = verify_submissions(submissions, registry=self.registry, round=round,
                                    global_params=global_params, quality=quality,
                                    mode=self.mode, config=self.verifier, chain=self.chain,
                                    cluster_owner=self.cluster_owner,
                                    reference_norms=self._reference_norms)
        block = None
        if self.mode is not VerificationMode.NONE:
            block = self.chain.propose(self.identities[lead],
                                       report.transactions(self.store_payload),
                                       round=round, timestamp_s=timestamp_s)
            self.chain.append(block)
        known = set(self.tracker.coordinator_ids)
        submitted = {s.submitter for s in report.submissions} & known
        accepted = {s.submitter for s in report.accepted} & known
        self.tracker.record_round(
            submitted=submitted, accepted=accepted,
            block_quality={lead: block_quality} if block is not None else None)
        norms = [v.update_norm for v in report.verdicts if v.accepted and v.update_norm]
        if norms:
            self._reference_norms = [float(n) for n in norms]
        rec = RoundRecord(int(round), lead, report, block,
                          None if block is None else block.hash,
                          None if block is None else block_size_bytes(block),
                          self.tracker.score_table())
        self.records.append(rec)
        return rec

    def save(self, path: str | Path) -> None:
        """Write the chain as JSON Lines."""
        self.chain.save(path)
