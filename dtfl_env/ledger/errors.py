"""Exception types of the ledger; each carries a stable ``reason`` code.

Every check that can fail raises its own subclass of :class:`LedgerError`, so a caller can
tell a broken link from a forged signature or a replayed transaction by type (``except
ReplayError``) or by code (``err.reason == "replay"``). Messages name the block, the
transaction and the field concerned.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BlockFormatError",
    "BlockHashError",
    "BlockLinkError",
    "BlockOrderError",
    "ChainFileError",
    "LedgerError",
    "MerkleRootError",
    "NonCanonicalError",
    "PayloadDigestError",
    "ReplayError",
    "SignatureError",
    "UnknownSignerError",
]


class LedgerError(Exception):
    """Base class of every ledger error; ``reason`` is a short, stable code."""

    reason: ClassVar[str] = "ledger-error"


class BlockFormatError(LedgerError, ValueError):
    """A field of a block or transaction has the wrong type, shape or range."""

    reason: ClassVar[str] = "bad-format"


class BlockLinkError(LedgerError):
    """``index`` or ``prev_hash`` does not continue the chain."""

    reason: ClassVar[str] = "broken-link"


class BlockOrderError(LedgerError):
    """A block's round or timestamp goes backwards."""

    reason: ClassVar[str] = "out-of-order"


class SignatureError(LedgerError):
    """A block or transaction signature does not verify."""

    reason: ClassVar[str] = "bad-signature"


class UnknownSignerError(SignatureError):
    """The signer (validator or submitter) is not in the registry."""

    reason: ClassVar[str] = "unknown-signer"


class MerkleRootError(LedgerError):
    """The header's Merkle root does not match the block's transactions."""

    reason: ClassVar[str] = "merkle-mismatch"


class PayloadDigestError(LedgerError):
    """A transaction's parameter payload does not hash to its ``model_digest``."""

    reason: ClassVar[str] = "payload-mismatch"


class ReplayError(LedgerError):
    """A transaction is already on the chain, or its (cluster, round) slot is taken."""

    reason: ClassVar[str] = "replay"


class BlockHashError(LedgerError):
    """The block hash stored in a file differs from the hash of the stored header."""

    reason: ClassVar[str] = "hash-mismatch"


class NonCanonicalError(LedgerError):
    """A stored line parses, but is not the canonical serialisation of its content."""

    reason: ClassVar[str] = "non-canonical"


class ChainFileError(LedgerError):
    """A chain file is unreadable: truncated, not JSON, or not the expected chain."""

    reason: ClassVar[str] = "bad-file"
