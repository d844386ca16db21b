"""Identities, blocks and chain verification (dtfl_env.ledger.identity, chain)."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from dtfl_env.ledger import (
    ZERO_HASH,
    Block,
    BlockFormatError,
    BlockHeader,
    BlockLinkError,
    BlockOrderError,
    Identity,
    LedgerError,
    MerkleRootError,
    PayloadDigestError,
    ReplayError,
    SignatureError,
    Transaction,
    UnknownSignerError,
    canonical_json,
    make_identities,
    merkle_root,
    params_digest,
    verify_blocks,
)

from _ledger import IDS, flip_hex, make_chain


# ---------------------------------------------------------------- identities, chain
def test_identity_registry(keys):
    ids, reg = keys
    assert set(reg) == set(IDS)
    msg = b"hello"
    assert reg.verify("gc-0", msg, ids["gc-0"].sign(msg))
    assert not reg.verify("gc-1", msg, ids["gc-0"].sign(msg))
    assert not reg.verify("nobody", msg, ids["gc-0"].sign(msg))
    # seeded keys are reproducible; a different key for a known id is refused
    again, _ = make_identities(IDS, np.random.default_rng(7))
    assert again["gc-0"].public_key_hex == ids["gc-0"].public_key_hex
    with pytest.raises(ValueError, match="already registered"):
        reg.register("gc-0", ids["gc-1"].public_key)
    with pytest.raises(ValueError, match="coordinator_id"):
        Identity.generate("has space")


def test_valid_chain_and_block_hash(keys):
    chain = make_chain(keys)
    chain.verify()
    assert chain.height == 3 and chain[0].header.prev_hash == ZERO_HASH
    for prev, blk in zip(chain.blocks, chain.blocks[1:], strict=False):
        assert blk.header.prev_hash == prev.hash
    h = chain[1].header
    assert h.hash == hashlib.sha256(canonical_json(h.to_dict())).hexdigest()
    assert h.merkle_root == merkle_root([tx.tx_hash for tx in chain[1].transactions])
    assert chain.has_slot(2, 1) and not chain.has_slot(3, 1)


HEADER_TAMPER = {
    "index": (lambda h, reg: h.index + 1, BlockLinkError),
    "prev_hash": (lambda h, reg: flip_hex(h.prev_hash), BlockLinkError),
    "round": (lambda h, reg: h.round + 1, SignatureError),
    "validator": (lambda h, reg: next(i for i in reg if i != h.validator), SignatureError),
    "merkle_root": (lambda h, reg: flip_hex(h.merkle_root), SignatureError),
    "timestamp_s": (lambda h, reg: h.timestamp_s + 0.25, SignatureError),
    "signature": (lambda h, reg: flip_hex(h.signature, 10), SignatureError),
}


@pytest.mark.parametrize("position", [1, 2])
@pytest.mark.parametrize("field", list(HEADER_TAMPER))
def test_tampered_header_field_detected(keys, field, position):
    assert set(HEADER_TAMPER) == {f.name for f in dataclasses.fields(BlockHeader)}
    chain = make_chain(keys)
    new_value, err = HEADER_TAMPER[field]
    blocks = list(chain.blocks)
    h = blocks[position].header
    blocks[position] = Block(
        dataclasses.replace(h, **{field: new_value(h, keys[1])}), blocks[position].transactions
    )
    with pytest.raises(err) as info:
        verify_blocks(blocks, keys[1])
    assert isinstance(info.value, LedgerError)
    if field not in ("index",):
        assert f"block {position}" in str(info.value)


def test_unregistered_validator_detected(keys):
    chain = make_chain(keys)
    mallory = Identity.generate("mallory", np.random.default_rng(1))
    forged = chain.propose(mallory, [], round=3, timestamp_s=9.0)
    with pytest.raises(UnknownSignerError, match=r"header\.validator"):
        chain.append(forged)
    # a block re-signed by an outsider under a registered name fails the signature
    fake = Identity.generate("gc-1", np.random.default_rng(2))
    with pytest.raises(SignatureError, match=r"header\.signature"):
        chain.append(chain.propose(fake, [], round=3, timestamp_s=9.0))
    assert chain.height == 3  # refused blocks leave the chain unchanged


TX_TAMPER = {
    "cluster_id": lambda tx: tx.cluster_id + 10,
    "round": lambda tx: tx.round + 1,
    "model_digest": lambda tx: flip_hex(tx.model_digest),
    "global_digest": lambda tx: flip_hex(tx.global_digest),
    "participants": lambda tx: (tx.participants[0] + 100, *tx.participants[1:]),
    "sample_counts": lambda tx: (tx.sample_counts[0] + 1, *tx.sample_counts[1:]),
    "submitter": lambda tx: "gc-2" if tx.submitter != "gc-2" else "gc-1",
    "signature": lambda tx: flip_hex(tx.signature, 20),
    "payload": lambda tx: bytes([tx.payload[0] ^ 1]) + tx.payload[1:],
}


@pytest.mark.parametrize("field", list(TX_TAMPER))
def test_tampered_transaction_field_detected(keys, field):
    assert set(TX_TAMPER) == {f.name for f in dataclasses.fields(Transaction)}
    chain = make_chain(keys)
    blocks = list(chain.blocks)
    txs = list(blocks[1].transactions)
    txs[0] = dataclasses.replace(txs[0], **{field: TX_TAMPER[field](txs[0])})
    blocks[1] = Block(blocks[1].header, tuple(txs))
    err = PayloadDigestError if field == "payload" else SignatureError
    with pytest.raises(err, match="block 1, transaction 0"):
        verify_blocks(blocks, keys[1])


def test_transaction_set_changes_break_merkle_root(keys):
    ids, reg = keys
    chain = make_chain(keys)
    blocks = list(chain.blocks)
    b = blocks[1]
    variants = {
        "dropped": b.transactions[1:],
        "reordered": (b.transactions[1], b.transactions[0], b.transactions[2]),
        "payload stripped": (b.transactions[0].without_payload(), *b.transactions[1:]),
    }
    for name, txs in variants.items():
        blocks[1] = Block(b.header, tuple(txs))
        if name == "payload stripped":  # the payload is a witness: same hashes, still valid
            verify_blocks(blocks, reg)
            continue
        with pytest.raises(MerkleRootError, match=r"header\.merkle_root"):
            verify_blocks(blocks, reg)
    # a submitter that re-signs an altered transaction still breaks the Merkle root
    tx = b.transactions[1]
    resigned = Transaction.create(
        ids[tx.submitter],
        cluster_id=tx.cluster_id,
        round=tx.round,
        model_digest=flip_hex(tx.model_digest),
        global_digest=tx.global_digest,
        participants=tx.participants,
        sample_counts=tx.sample_counts,
    )
    blocks[1] = Block(b.header, (b.transactions[0], resigned, b.transactions[2]))
    with pytest.raises(MerkleRootError):
        verify_blocks(blocks, reg)


def test_forged_signature_rejected(keys):
    ids, _ = keys
    chain = make_chain(keys)
    d = params_digest(np.zeros(4, np.float32))
    # gc-1 signs a record claiming to come from gc-0
    body = Transaction.create(
        ids["gc-1"],
        cluster_id=0,
        round=3,
        model_digest=d,
        global_digest=d,
        participants=[1],
        sample_counts=[5],
    )
    forged = dataclasses.replace(body, submitter="gc-0")
    with pytest.raises(SignatureError, match=r"transaction\.signature"):
        chain.append(chain.propose(ids["gc-0"], [forged], round=3, timestamp_s=9.0))
    outsider = Transaction.create(
        Identity.generate("eve"),
        cluster_id=5,
        round=3,
        model_digest=d,
        global_digest=d,
        participants=[1],
        sample_counts=[5],
    )
    with pytest.raises(UnknownSignerError, match=r"transaction\.submitter"):
        chain.append(chain.propose(ids["gc-0"], [outsider], round=3, timestamp_s=9.0))


def test_replayed_transaction_rejected(keys):
    ids, _ = keys
    chain = make_chain(keys)
    old = chain[1].transactions[2]
    # the very same transaction again
    with pytest.raises(ReplayError, match="replayed transaction") as info:
        chain.append(chain.propose(ids["gc-0"], [old], round=3, timestamp_s=9.0))
    assert info.value.reason == "replay"
    # a new, validly signed transaction for a (cluster, round) already on chain
    d = params_digest(np.zeros(4, np.float32))
    again = Transaction.create(
        ids["gc-2"],
        cluster_id=2,
        round=2,
        model_digest=d,
        global_digest=d,
        participants=[1],
        sample_counts=[5],
    )
    with pytest.raises(ReplayError, match=r"\(cluster_id, round\) = \(2, 2\)"):
        chain.append(chain.propose(ids["gc-0"], [again], round=2, timestamp_s=9.0))
    # twice in one block
    fresh = Transaction.create(
        ids["gc-2"],
        cluster_id=2,
        round=3,
        model_digest=d,
        global_digest=d,
        participants=[1],
        sample_counts=[5],
    )
    with pytest.raises(ReplayError):
        chain.append(chain.propose(ids["gc-0"], [fresh, fresh], round=3, timestamp_s=9.0))
    assert chain.height == 3
    chain.append(chain.propose(ids["gc-0"], [fresh], round=3, timestamp_s=9.0))


def test_order_and_round_consistency(keys):
    ids, _ = keys
    chain = make_chain(keys)
    with pytest.raises(BlockOrderError, match="timestamp_s"):
        chain.append(chain.propose(ids["gc-0"], [], round=3, timestamp_s=0.5))
    with pytest.raises(BlockOrderError, match="round"):
        chain.append(chain.propose(ids["gc-0"], [], round=1, timestamp_s=9.0))
    d = params_digest(np.zeros(4, np.float32))
    tx = Transaction.create(
        ids["gc-0"],
        cluster_id=0,
        round=7,
        model_digest=d,
        global_digest=d,
        participants=[1],
        sample_counts=[5],
    )
    with pytest.raises(BlockFormatError, match=r"transaction\.round 7 differs"):
        chain.append(chain.propose(ids["gc-0"], [tx], round=3, timestamp_s=9.0))


def test_transaction_fields_validated(keys):
    ids, _ = keys
    d = params_digest(np.zeros(4, np.float32))
    good = {
        "cluster_id": 0,
        "round": 0,
        "model_digest": d,
        "global_digest": d,
        "participants": [1, 2],
        "sample_counts": [5, 6],
    }
    Transaction.create(ids["gc-0"], **good)
    bad = {
        "cluster_id": -1,
        "round": 1.5,
        "model_digest": d.upper(),
        "global_digest": "ab",
        "participants": [1, 1],
        "sample_counts": [5],
    }
    for key, value in bad.items():
        with pytest.raises(BlockFormatError, match=f"transaction.{key}"):
            Transaction.create(ids["gc-0"], **{**good, key: value})
