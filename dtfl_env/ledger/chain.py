"""Transactions, blocks and the chain, with full verification.

Transaction
    ``(cluster_id, round, model_digest, global_digest, participants, sample_counts,
    submitter)`` plus ``signature``: the submitter's Ed25519 signature of
    ``TX_DOMAIN + canonical_json(body)``, where ``body`` is the dict of the seven fields
    (participants and sample counts as lists). ``model_digest`` is the SHA-256 of the exact
    float32 little-endian bytes of the cluster model, ``global_digest`` that of the global
    model it was trained from. An optional ``payload`` carries those parameter bytes; it is a
    witness, bound to the transaction through ``model_digest`` (checked on verification)
    and therefore left out of the signature and of the transaction hash.
Transaction hash
    ``SHA-256(canonical_json(body + {"signature": ...}))`` (hex).
Block header
    ``(index, prev_hash, round, validator, merkle_root, timestamp_s)`` plus ``signature``:
    the validator's signature of ``BLOCK_DOMAIN + canonical_json(header body)``.
    ``merkle_root`` is the RFC 6962 Merkle root of the transaction hashes
    (:func:`~dtfl_env.ledger.encoding.merkle_root`); ``timestamp_s`` is simulated time.
Block hash
    ``SHA-256(canonical_json(header body + {"signature": ...}))`` (hex): it covers every
    header field and, through the Merkle root, every transaction.

Domain prefixes keep a transaction signature from ever verifying as a block signature.
Canonical JSON is defined in :mod:`dtfl_env.ledger.encoding`.

Verification (:func:`verify_block`, :meth:`Blockchain.append`, :meth:`Blockchain.verify`)
raises a specific :class:`~dtfl_env.ledger.errors.LedgerError` for each failure: a broken
link (:class:`BlockLinkError`), rounds or timestamps going backwards
(:class:`BlockOrderError`), an unregistered signer (:class:`UnknownSignerError`), a bad
block or transaction signature (:class:`SignatureError`), a transaction whose round is not
the block's (:class:`BlockFormatError`), a payload that does not match its digest
(:class:`PayloadDigestError`), a Merkle root that does not match the transactions
(:class:`MerkleRootError`), a replayed transaction or (cluster, round) slot
(:class:`ReplayError`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from dtfl_env.ledger.encoding import (
    DIGEST_HEX_LEN,
    ZERO_HASH,
    canonical_json,
    is_hex,
    merkle_root,
    params_bytes,
    sha256_hex,
)
from dtfl_env.ledger.errors import (
    BlockFormatError,
    BlockLinkError,
    BlockOrderError,
    LedgerError,
    MerkleRootError,
    PayloadDigestError,
    ReplayError,
    SignatureError,
    UnknownSignerError,
)
from dtfl_env.ledger.identity import SIGNATURE_HEX_LEN, Identity, Registry, check_id

__all__ = [
    "BLOCK_DOMAIN",
    "TX_DOMAIN",
    "Block",
    "BlockHeader",
    "Blockchain",
    "Transaction",
    "make_block",
    "verify_block",
    "verify_blocks",
]

TX_DOMAIN = b"dtfl-ledger/transaction/v1\n"
BLOCK_DOMAIN = b"dtfl-ledger/block/v1\n"


# ---------------------------------------------------------------- field checks
def _int(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise BlockFormatError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise BlockFormatError(f"{name}: must be >= {minimum}, got {value}")
    return int(value)


def _hex(value: object, name: str, n_chars: int) -> str:
    if not is_hex(value, n_chars):
        raise BlockFormatError(
            f"{name}: expected {n_chars} lower-case hex characters, got {value!r:.80}"
        )
    return value  # type: ignore[return-value]


def _ident(value: object, name: str) -> str:
    try:
        return check_id(value, name)
    except ValueError as e:
        raise BlockFormatError(str(e)) from None


def _int_tuple(value: object, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise BlockFormatError(f"{name}: expected a list of integers, got {value!r:.80}")
    return tuple(_int(v, f"{name}[{i}]") for i, v in enumerate(value))


def _fields(
    data: object, name: str, required: Iterable[str], optional: Iterable[str] = ()
) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise BlockFormatError(f"{name}: expected an object, got {type(data).__name__}")
    req, opt = set(required), set(optional)
    for key in data:
        if key not in req and key not in opt:
            raise BlockFormatError(f"{name}.{key}: unknown field")
    for key in sorted(req):
        if key not in data:
            raise BlockFormatError(f"{name}.{key}: missing field")
    return data


# ---------------------------------------------------------------- transaction
_TX_FIELDS = (
    "cluster_id",
    "round",
    "model_digest",
    "global_digest",
    "participants",
    "sample_counts",
    "submitter",
)


@dataclass(frozen=True)
class Transaction:
    """A group coordinator's signed record of its cluster model for one round.

    Parameters
    ----------
    cluster_id : int
        The cluster (one transaction per cluster and round).
    round : int
        The global FL round.
    model_digest : str
        SHA-256 hex of the cluster model's float32 little-endian bytes.
    global_digest : str
        SHA-256 hex of the global model the cluster trained from.
    participants : tuple of int
        Device ids aggregated into the cluster model (unique).
    sample_counts : tuple of int
        Samples per participant, aligned with ``participants``.
    submitter : str
        Coordinator id of the signer.
    signature : str
        Hex Ed25519 signature of :meth:`signing_bytes`.
    payload : bytes or None
        The parameter bytes themselves (optional witness; see the module docstring).

    Build signed transactions with :meth:`create`.
    """

    cluster_id: int
    round: int
    model_digest: str
    global_digest: str
    participants: tuple[int, ...]
    sample_counts: tuple[int, ...]
    submitter: str
    signature: str
    payload: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "cluster_id", _int(self.cluster_id, "transaction.cluster_id"))
        s(self, "round", _int(self.round, "transaction.round"))
        _hex(self.model_digest, "transaction.model_digest", DIGEST_HEX_LEN)
        _hex(self.global_digest, "transaction.global_digest", DIGEST_HEX_LEN)
        s(self, "participants", _int_tuple(self.participants, "transaction.participants"))
        s(self, "sample_counts", _int_tuple(self.sample_counts, "transaction.sample_counts"))
        if len(set(self.participants)) != len(self.participants):
            raise BlockFormatError("transaction.participants: device ids must be unique")
        if len(self.sample_counts) != len(self.participants):
            raise BlockFormatError(
                f"transaction.sample_counts: expected {len(self.participants)} entries "
                f"(one per participant), got {len(self.sample_counts)}"
            )
        _ident(self.submitter, "transaction.submitter")
        _hex(self.signature, "transaction.signature", SIGNATURE_HEX_LEN)
        if self.payload is not None:
            if not isinstance(self.payload, bytes):
                raise BlockFormatError(
                    "transaction.payload: expected bytes or None, "
                    f"got {type(self.payload).__name__}"
                )
            if len(self.payload) % 4:
                raise BlockFormatError(
                    f"transaction.payload: length {len(self.payload)} "
                    "is not a multiple of 4 (float32)"
                )

    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        cluster_id: int,
        round: int,
        model_digest: str,
        global_digest: str,
        participants: Sequence[int],
        sample_counts: Sequence[int],
        payload: bytes | None = None,
    ) -> Transaction:
        """A transaction signed by ``identity`` (its id becomes ``submitter``)."""
        unsigned = cls(
            cluster_id=cluster_id,
            round=round,
            model_digest=model_digest,
            global_digest=global_digest,
            participants=tuple(participants),
            sample_counts=tuple(sample_counts),
            submitter=identity.coordinator_id,
            signature="0" * SIGNATURE_HEX_LEN,
            payload=payload,
        )
        sig = identity.sign(unsigned.signing_bytes()).hex()
        return dataclasses.replace(unsigned, signature=sig)

    def body(self) -> dict[str, Any]:
        """The signed fields as a JSON value."""
        return {
            "cluster_id": self.cluster_id,
            "round": self.round,
            "model_digest": self.model_digest,
            "global_digest": self.global_digest,
            "participants": list(self.participants),
            "sample_counts": list(self.sample_counts),
            "submitter": self.submitter,
        }

    def signing_bytes(self) -> bytes:
        """The message the submitter signs: ``TX_DOMAIN + canonical_json(body)``."""
        return TX_DOMAIN + canonical_json(self.body())

    @cached_property
    def tx_hash(self) -> str:
        """SHA-256 hex of the canonical body plus signature (the payload is excluded)."""
        return sha256_hex(canonical_json({**self.body(), "signature": self.signature}))

    @property
    def slot(self) -> tuple[int, int]:
        """``(cluster_id, round)``: at most one transaction per slot on a chain."""
        return self.cluster_id, self.round

    def signature_valid(self, registry: Registry) -> bool:
        """Whether the submitter is registered and the signature verifies."""
        return registry.verify(self.submitter, self.signing_bytes(), bytes.fromhex(self.signature))

    def payload_valid(self) -> bool:
        """Whether the payload is absent or hashes to ``model_digest``."""
        return self.payload is None or sha256_hex(self.payload) == self.model_digest

    def with_payload(self, params: np.ndarray) -> Transaction:
        """A copy carrying ``params`` (float32 vector) as payload; it must match the digest."""
        data = params_bytes(params)
        if sha256_hex(data) != self.model_digest:
            raise PayloadDigestError(
                "params: SHA-256 of the parameters does not match transaction.model_digest"
            )
        return dataclasses.replace(self, payload=data)

    def without_payload(self) -> Transaction:
        """A copy without payload (same transaction hash)."""
        return dataclasses.replace(self, payload=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON value: body, ``signature`` and, when present, ``payload`` as hex."""
        d = {**self.body(), "signature": self.signature}
        if self.payload is not None:
            d["payload"] = self.payload.hex()
        return d

    @classmethod
    def from_dict(cls, data: object, name: str = "transaction") -> Transaction:
        """Strict inverse of :meth:`to_dict`; errors name the field."""
        d = _fields(data, name, (*_TX_FIELDS, "signature"), ("payload",))
        payload = d.get("payload")
        if payload is not None:
            if not is_hex(payload):
                raise BlockFormatError(f"{name}.payload: expected lower-case hex")
            payload = bytes.fromhex(payload)
        for key in ("participants", "sample_counts"):
            if not isinstance(d[key], list):
                raise BlockFormatError(
                    f"{name}.{key}: expected a list, got {type(d[key]).__name__}"
                )
        try:
            return cls(
                cluster_id=d["cluster_id"],
                round=d["round"],
                model_digest=d["model_digest"],
                global_digest=d["global_digest"],
                participants=tuple(d["participants"]),
                sample_counts=tuple(d["sample_counts"]),
                submitter=d["submitter"],
                signature=d["signature"],
                payload=payload,
            )
        except BlockFormatError as e:
            raise BlockFormatError(str(e).replace("transaction.", f"{name}.", 1)) from None


# ---------------------------------------------------------------- block
_HEADER_FIELDS = ("index", "prev_hash", "round", "validator", "merkle_root", "timestamp_s")


@dataclass(frozen=True)
class BlockHeader:
    """Block header; see the module docstring for what is signed and hashed.

    Parameters
    ----------
    index : int
        Height of the block (the first block has index 0).
    prev_hash : str
        Hash of the previous block (``ZERO_HASH`` for the first).
    round : int
        The FL round whose transactions the block records.
    validator : str
        Coordinator id of the validator that built and signed the block.
    merkle_root : str
        Merkle root of the transaction hashes.
    timestamp_s : float
        Simulated time of the block (s); stored as a float.
    signature : str
        Hex Ed25519 signature of :meth:`signing_bytes` by ``validator``.
    """

    index: int
    prev_hash: str
    round: int
    validator: str
    merkle_root: str
    timestamp_s: float
    signature: str

    def __post_init__(self) -> None:
        s = object.__setattr__
        s(self, "index", _int(self.index, "header.index"))
        _hex(self.prev_hash, "header.prev_hash", DIGEST_HEX_LEN)
        s(self, "round", _int(self.round, "header.round"))
        _ident(self.validator, "header.validator")
        _hex(self.merkle_root, "header.merkle_root", DIGEST_HEX_LEN)
        t = self.timestamp_s
        if (
            isinstance(t, (bool, np.bool_))
            or not isinstance(t, (int, float, np.number))
            or not math.isfinite(t)
            or t < 0
        ):
            raise BlockFormatError(f"header.timestamp_s: expected a finite number >= 0, got {t!r}")
        s(self, "timestamp_s", float(t))
        _hex(self.signature, "header.signature", SIGNATURE_HEX_LEN)

    def body(self) -> dict[str, Any]:
        """The signed fields as a JSON value."""
        return {
            "index": self.index,
            "prev_hash": self.prev_hash,
            "round": self.round,
            "validator": self.validator,
            "merkle_root": self.merkle_root,
            "timestamp_s": self.timestamp_s,
        }

    def signing_bytes(self) -> bytes:
        """The message the validator signs: ``BLOCK_DOMAIN + canonical_json(body)``."""
        return BLOCK_DOMAIN + canonical_json(self.body())

    def to_dict(self) -> dict[str, Any]:
        """JSON value: body plus ``signature``."""
        return {**self.body(), "signature": self.signature}

    @cached_property
    def hash(self) -> str:
        """The block hash: SHA-256 hex of ``canonical_json(self.to_dict())``."""
        return sha256_hex(canonical_json(self.to_dict()))

    @classmethod
    def from_dict(cls, data: object, name: str = "header") -> BlockHeader:
        """Strict inverse of :meth:`to_dict`; errors name the field."""
        d = _fields(data, name, (*_HEADER_FIELDS, "signature"))
        if not isinstance(d["timestamp_s"], float):
            raise BlockFormatError(
                f"{name}.timestamp_s: expected a JSON float, got {d['timestamp_s']!r}"
            )
        try:
            return cls(**{k: d[k] for k in (*_HEADER_FIELDS, "signature")})
        except BlockFormatError as e:
            raise BlockFormatError(str(e).replace("header.", f"{name}.", 1)) from None


@dataclass(frozen=True)
class Block:
    """A header and its transactions (in Merkle order)."""

    header: BlockHeader
    transactions: tuple[Transaction, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.header, BlockHeader):
            raise BlockFormatError(
                f"block.header: expected a BlockHeader, got {type(self.header).__name__}"
            )
        txs = tuple(self.transactions)
        for i, tx in enumerate(txs):
            if not isinstance(tx, Transaction):
                raise BlockFormatError(
                    f"block.transactions[{i}]: expected a Transaction, got {type(tx).__name__}"
                )
        object.__setattr__(self, "transactions", txs)

    @property
    def hash(self) -> str:
        """The block hash (of the header, see :attr:`BlockHeader.hash`)."""
        return self.header.hash

    @property
    def index(self) -> int:
        return self.header.index

    @property
    def round(self) -> int:
        return self.header.round

    def to_dict(self) -> dict[str, Any]:
        """JSON value ``{"hash", "header", "transactions"}`` (one line of a chain file)."""
        return {
            "hash": self.hash,
            "header": self.header.to_dict(),
            "transactions": [tx.to_dict() for tx in self.transactions],
        }

    def serialize(self) -> bytes:
        """Canonical JSON of :meth:`to_dict`: the bytes stored (and counted) for the block."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: object, name: str = "block") -> tuple[Block, str]:
        """Parse :meth:`to_dict`; returns the block and the stored hash (checked by callers)."""
        d = _fields(data, name, ("hash", "header", "transactions"))
        stored = _hex(d["hash"], f"{name}.hash", DIGEST_HEX_LEN)
        header = BlockHeader.from_dict(d["header"], f"{name}.header")
        if not isinstance(d["transactions"], list):
            raise BlockFormatError(f"{name}.transactions: expected a list")
        txs = tuple(
            Transaction.from_dict(t, f"{name}.transactions[{i}]")
            for i, t in enumerate(d["transactions"])
        )
        return cls(header, txs), stored


def make_block(
    validator: Identity,
    transactions: Iterable[Transaction],
    *,
    index: int,
    prev_hash: str,
    round: int,
    timestamp_s: float,
) -> Block:
    """Build and sign a block (no verification; see :meth:`Blockchain.propose`)."""
    txs = tuple(transactions)
    header = BlockHeader(
        index=index,
        prev_hash=prev_hash,
        round=round,
        validator=validator.coordinator_id,
        merkle_root=merkle_root([tx.tx_hash for tx in txs]),
        timestamp_s=timestamp_s,
        signature="0" * SIGNATURE_HEX_LEN,
    )
    sig = validator.sign(header.signing_bytes()).hex()
    return Block(dataclasses.replace(header, signature=sig), txs)


# ---------------------------------------------------------------- verification
def verify_block(
    block: Block,
    registry: Registry,
    *,
    prev: BlockHeader | None = None,
    seen_tx: Mapping[str, int] | None = None,
    seen_slots: Mapping[tuple[int, int], int] | None = None,
) -> None:
    """Check one block against its predecessor and the transactions already on chain.

    Parameters
    ----------
    block : Block
        The block to check.
    registry : Registry
        Public keys of validators and submitters.
    prev : BlockHeader, optional
        Header of the previous block (``None``: ``block`` must be the first).
    seen_tx, seen_slots : mapping, optional
        Transaction hashes and (cluster, round) slots already on chain -> block index.

    Raises
    ------
    LedgerError
        The specific subclass of the first failed check (see the module docstring).
    """
    h = block.header
    where = f"block {h.index}"
    exp_index, exp_prev = (0, ZERO_HASH) if prev is None else (prev.index + 1, prev.hash)
    if h.index != exp_index:
        raise BlockLinkError(f"{where}: header.index: expected {exp_index}, got {h.index}")
    if h.prev_hash != exp_prev:
        raise BlockLinkError(
            f"{where}: header.prev_hash does not match the hash of the "
            f"previous block ({exp_prev[:16]}...)"
        )
    if h.validator not in registry:
        raise UnknownSignerError(
            f"{where}: header.validator {h.validator!r} is not a registered coordinator"
        )
    if not registry.verify(h.validator, h.signing_bytes(), bytes.fromhex(h.signature)):
        raise SignatureError(
            f"{where}: header.signature does not verify for validator {h.validator!r}"
        )
    if prev is not None:
        if h.round < prev.round:
            raise BlockOrderError(
                f"{where}: header.round {h.round} is before the previous block's round {prev.round}"
            )
        if h.timestamp_s < prev.timestamp_s:
            raise BlockOrderError(
                f"{where}: header.timestamp_s {h.timestamp_s} is before the "
                f"previous block's {prev.timestamp_s}"
            )
    seen_tx = seen_tx or {}
    seen_slots = seen_slots or {}
    here_tx: dict[str, int] = {}
    here_slot: dict[tuple[int, int], int] = {}
    for k, tx in enumerate(block.transactions):
        tw = f"{where}, transaction {k} (cluster {tx.cluster_id})"
        if tx.submitter not in registry:
            raise UnknownSignerError(
                f"{tw}: transaction.submitter {tx.submitter!r} is not a registered coordinator"
            )
        if not tx.signature_valid(registry):
            raise SignatureError(
                f"{tw}: transaction.signature does not verify for submitter {tx.submitter!r}"
            )
        if not tx.payload_valid():
            raise PayloadDigestError(
                f"{tw}: SHA-256 of transaction.payload does not match transaction.model_digest"
            )
        if tx.tx_hash in seen_tx or tx.tx_hash in here_tx:
            at = seen_tx.get(tx.tx_hash, h.index)
            raise ReplayError(
                f"{tw}: replayed transaction {tx.tx_hash[:16]}... (already in block {at})"
            )
        if tx.slot in seen_slots or tx.slot in here_slot:
            at = seen_slots.get(tx.slot, h.index)
            raise ReplayError(
                f"{tw}: (cluster_id, round) = {tx.slot} already recorded in block {at}"
            )
        if tx.round != h.round:
            raise BlockFormatError(
                f"{tw}: transaction.round {tx.round} differs from header.round {h.round}"
            )
        here_tx[tx.tx_hash] = k
        here_slot[tx.slot] = k
    root = merkle_root([tx.tx_hash for tx in block.transactions])
    if root != h.merkle_root:
        raise MerkleRootError(
            f"{where}: header.merkle_root does not match the Merkle root "
            "of the block's transactions"
        )


def verify_blocks(blocks: Iterable[Block], registry: Registry) -> None:
    """Verify a whole chain from its first block; raises the first :class:`LedgerError`."""
    Blockchain.from_blocks(registry, blocks)


# ---------------------------------------------------------------- chain
class Blockchain:
    """An append-only, fully verified chain of blocks.

    Parameters
    ----------
    registry : Registry
        Public keys of every coordinator allowed to submit or validate.

    Notes
    -----
    :meth:`append` verifies a block against the tip before adding it, so a
    ``Blockchain`` only ever holds a valid chain; :meth:`verify` re-checks everything (e.g.
    after the blocks were handled elsewhere).
    """

    def __init__(self, registry: Registry) -> None:
        if not isinstance(registry, Registry):
            raise TypeError(f"registry: expected a Registry, got {type(registry).__name__}")
        self.registry = registry
        self._blocks: list[Block] = []
        self._tx: dict[str, int] = {}
        self._slots: dict[tuple[int, int], int] = {}

    @classmethod
    def from_blocks(cls, registry: Registry, blocks: Iterable[Block]) -> Blockchain:
        """A chain built by appending (and so verifying) ``blocks`` in order."""
        chain = cls(registry)
        for block in blocks:
            chain.append(block)
        return chain

    # --- queries
    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(self._blocks)

    @property
    def height(self) -> int:
        """Number of blocks."""
        return len(self._blocks)

    @property
    def tip(self) -> Block | None:
        return self._blocks[-1] if self._blocks else None

    @property
    def tip_hash(self) -> str:
        """Hash of the last block (``ZERO_HASH`` when empty)."""
        return self._blocks[-1].hash if self._blocks else ZERO_HASH

    def has_transaction(self, tx_hash: str) -> bool:
        return tx_hash in self._tx

    def has_slot(self, cluster_id: int, round: int) -> bool:
        """Whether a transaction for ``(cluster_id, round)`` is on chain."""
        return (cluster_id, round) in self._slots

    def transactions(self, round: int | None = None) -> list[Transaction]:
        """All transactions on chain, or those of one round."""
        return [
            tx for b in self._blocks if round is None or b.round == round for tx in b.transactions
        ]

    def __len__(self) -> int:
        return len(self._blocks)

    def __iter__(self) -> Iterator[Block]:
        return iter(tuple(self._blocks))

    def __getitem__(self, i: int) -> Block:
        return self._blocks[i]

    # --- building
    def propose(
        self,
        validator: Identity,
        transactions: Iterable[Transaction],
        *,
        round: int,
        timestamp_s: float,
    ) -> Block:
        """The next block (index, link and Merkle root filled in, signed); not appended."""
        return make_block(
            validator,
            transactions,
            index=len(self._blocks),
            prev_hash=self.tip_hash,
            round=round,
            timestamp_s=timestamp_s,
        )

    def append(self, block: Block) -> str:
        """Verify ``block`` against the tip and add it; returns its hash.

        Raises
        ------
        LedgerError
            The specific subclass of the first failed check; the chain is unchanged.
        """
        if not isinstance(block, Block):
            raise TypeError(f"block: expected a Block, got {type(block).__name__}")
        prev = self._blocks[-1].header if self._blocks else None
        verify_block(block, self.registry, prev=prev, seen_tx=self._tx, seen_slots=self._slots)
        self._blocks.append(block)
        for tx in block.transactions:
            self._tx[tx.tx_hash] = block.index
            self._slots[tx.slot] = block.index
        return block.hash

    def verify(self) -> None:
        """Re-verify the whole chain; raises the first :class:`LedgerError`."""
        Blockchain.from_blocks(self.registry, self._blocks)

    def is_valid(self) -> bool:
        """:meth:`verify` as a boolean."""
        try:
            self.verify()
        except LedgerError:
            return False
        return True

    # --- persistence (see dtfl_env.ledger.storage)
    def save(self, path: str | Path) -> None:
        """Write the chain as JSON Lines (:func:`~dtfl_env.ledger.storage.save_chain`)."""
        from dtfl_env.ledger.storage import save_chain

        save_chain(self, path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        registry: Registry,
        *,
        expected_tip: str | None = None,
        expected_height: int | None = None,
    ) -> Blockchain:
        """Read and verify a chain file (:func:`~dtfl_env.ledger.storage.load_chain`)."""
        from dtfl_env.ledger.storage import load_chain

        return load_chain(
            path, registry, expected_tip=expected_tip, expected_height=expected_height
        )

    def __repr__(self) -> str:
        return f"Blockchain(height={self.height}, tip={self.tip_hash[:16]}...)"
