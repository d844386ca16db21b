"""Consortium blockchain of DT-assisted FL (Section III-B, Algorithm 1 lines 3-4, 12-14).

Pure numpy + ``cryptography`` (never torch): models arrive as flat float32 vectors, the
validator's quality check as a callable.

- :mod:`~dtfl_env.ledger.identity`: Ed25519 identities and the registry of public keys;
- :mod:`~dtfl_env.ledger.reputation`: eq. (2) scores, running history, validator ranking;
- :mod:`~dtfl_env.ledger.chain`: transactions, blocks, chain verification;
- :mod:`~dtfl_env.ledger.verification`: the validator's checks (modes none/signature/full)
  and the consortium's audit of a block;
- :mod:`~dtfl_env.ledger.attacks`: malicious participants and validators (Figs. 8, 8b);
- :mod:`~dtfl_env.ledger.blocksize`: block size of the proposed scheme and FedAvg (Fig. 9);
- :mod:`~dtfl_env.ledger.storage`: JSON Lines persistence;
- :mod:`~dtfl_env.ledger.consortium`: all of it behind one end-of-round call, with the
  validator selection policy (reputation, random, round robin).
"""

from dtfl_env.ledger.attacks import (
    VALIDATOR_ATTACKS,
    flip_labels,
    malicious_validation,
    random_update,
    scaled_update,
    tamper_submission,
)
from dtfl_env.ledger.blocksize import (
    SMALL_CNN_PARAMS,
    block_size_bytes,
    fedavg_block,
    proposed_block,
    split_devices,
)
from dtfl_env.ledger.chain import (
    Block,
    Blockchain,
    BlockHeader,
    Transaction,
    make_block,
    verify_block,
    verify_blocks,
)
from dtfl_env.ledger.consortium import SELECTION_POLICIES, Consortium, RoundRecord
from dtfl_env.ledger.encoding import (
    ZERO_HASH,
    canonical_json,
    merkle_root,
    params_bytes,
    params_digest,
    params_from_bytes,
    sha256_hex,
)
from dtfl_env.ledger.errors import (
    BlockFormatError,
    BlockHashError,
    BlockLinkError,
    BlockOrderError,
    ChainFileError,
    LedgerError,
    MerkleRootError,
    NonCanonicalError,
    PayloadDigestError,
    ReplayError,
    SignatureError,
    UnknownSignerError,
)
from dtfl_env.ledger.identity import Identity, Registry, make_identities
from dtfl_env.ledger.reputation import (
    HistoryConfig,
    ReputationTracker,
    encryption_capability,
    routing_capability,
)
from dtfl_env.ledger.storage import load_chain, parse_chain, save_chain
from dtfl_env.ledger.verification import (
    AuditResult,
    QualityFn,
    Reason,
    Submission,
    Verdict,
    VerificationMode,
    VerificationReport,
    VerifierConfig,
    audit_block,
    majority_vote,
    make_submission,
    verify_submissions,
)

__all__ = [
    "SELECTION_POLICIES",
    "SMALL_CNN_PARAMS",
    "VALIDATOR_ATTACKS",
    "ZERO_HASH",
    "AuditResult",
    "Block",
    "BlockFormatError",
    "BlockHashError",
    "BlockHeader",
    "BlockLinkError",
    "BlockOrderError",
    "Blockchain",
    "ChainFileError",
    "Consortium",
    "HistoryConfig",
    "Identity",
    "LedgerError",
    "MerkleRootError",
    "NonCanonicalError",
    "PayloadDigestError",
    "QualityFn",
    "Reason",
    "Registry",
    "ReplayError",
    "ReputationTracker",
    "RoundRecord",
    "SignatureError",
    "Submission",
    "Transaction",
    "UnknownSignerError",
    "Verdict",
    "VerificationMode",
    "VerificationReport",
    "VerifierConfig",
    "audit_block",
    "block_size_bytes",
    "canonical_json",
    "encryption_capability",
    "fedavg_block",
    "flip_labels",
    "load_chain",
    "majority_vote",
    "make_block",
    "make_identities",
    "make_submission",
    "malicious_validation",
    "merkle_root",
    "params_bytes",
    "params_digest",
    "params_from_bytes",
    "parse_chain",
    "proposed_block",
    "random_update",
    "routing_capability",
    "save_chain",
    "scaled_update",
    "sha256_hex",
    "split_devices",
    "tamper_submission",
    "verify_block",
    "verify_blocks",
    "verify_submissions",
]
