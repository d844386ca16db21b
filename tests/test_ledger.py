"""The consortium blockchain: identities, chain verification, persistence, reputation (eq. (2)),
the validator's verification modes, attacks (Fig. 8) and block size (Fig. 9)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from dtfl_env.ledger import (
    SELECTION_POLICIES,
    VALIDATOR_ATTACKS,
    ZERO_HASH,
    Block,
    Blockchain,
    BlockFormatError,
    BlockHashError,
    BlockHeader,
    BlockLinkError,
    BlockOrderError,
    ChainFileError,
    Consortium,
    HistoryConfig,
    Identity,
    LedgerError,
    MerkleRootError,
    NonCanonicalError,
    PayloadDigestError,
    Reason,
    ReplayError,
    ReputationTracker,
    SignatureError,
    Transaction,
    UnknownSignerError,
    VerifierConfig,
    block_size_bytes,
    canonical_json,
    encryption_capability,
    fedavg_block,
    flip_labels,
    load_chain,
    make_identities,
    make_submission,
    malicious_validation,
    merkle_root,
    params_bytes,
    params_digest,
    params_from_bytes,
    parse_chain,
    proposed_block,
    random_update,
    routing_capability,
    save_chain,
    scaled_update,
    sha256_hex,
    split_devices,
    tamper_submission,
    verify_blocks,
    verify_submissions,
)
from dtfl_env.model import ReputationWeights, reputation_score

IDS = ["gc-0", "gc-1", "gc-2", "main"]


def _flip_hex(h: str, pos: int = 5) -> str:
    return h[:pos] + ("1" if h[pos] != "1" else "2") + h[pos + 1:]


@pytest.fixture(scope="module")
def keys():
    return make_identities(IDS, np.random.default_rng(7))


def _chain(keys, n_blocks: int = 3, n_tx: int = 3, n_params: int = 16, seed: int = 0):
    """A valid chain; the first transaction of each block carries its parameters."""
    ids, reg = keys
    rng = np.random.default_rng(seed)
    chain = Blockchain(reg)
    g = rng.standard_normal(n_params).astype(np.float32)
    for r in range(n_blocks):
        txs = []
        for c in range(n_tx):
            w = rng.standard_normal(n_params).astype(np.float32)
            sub = make_submission(ids[f"gc-{c}"], cluster_id=c, round=r, params=w,
                                  global_digest=params_digest(g), participants=[10 * c, 10 * c + 1],
                                  sample_counts=[50, 70])
            txs.append(sub.to_transaction(include_payload=(c == 0)))
        chain.append(chain.propose(ids[f"gc-{r % n_tx}"], txs, round=r, timestamp_s=1.5 * r))
        g = w
    return chain


# ---------------------------------------------------------------- encoding
def test_canonical_json_and_digests():
    assert canonical_json({"b": 1, "a": [1, 2.5], "c": "x"}) == b'{"a":[1,2.5],"b":1,"c":"x"}'
    with pytest.raises(ValueError):
        canonical_json({"a": float("nan")})
    # the exact float32 little-endian bytes: 1.0f = 00 00 80 3f
    one = np.array([1.0], np.float32)
    assert params_bytes(one) == b"\x00\x00\x80\x3f"
    assert params_digest(one) == hashlib.sha256(b"\x00\x00\x80\x3f").hexdigest()
    big = np.array([1.0, -2.5], dtype=">f4")  # byte order does not change the digest
    assert params_digest(big) == params_digest(big.astype("<f4"))
    np.testing.assert_array_equal(params_from_bytes(params_bytes(big)), [1.0, -2.5])
    with pytest.raises(TypeError, match="float32"):
        params_digest(np.ones(3))
    with pytest.raises(ValueError, match="1-D"):
        params_digest(np.ones((2, 2), np.float32))


def test_merkle_root_by_hand():
    a, b, c = (sha256_hex(x) for x in (b"a", b"b", b"c"))

    def leaf(h):
        return hashlib.sha256(b"\x00" + bytes.fromhex(h)).digest()

    def node(x, y):
        return hashlib.sha256(b"\x01" + x + y).digest()

    assert merkle_root([]) == sha256_hex(b"")
    assert merkle_root([a]) == leaf(a).hex()
    assert merkle_root([a, b]) == node(leaf(a), leaf(b)).hex()
    assert merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c)).hex()
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, c])  # no duplication ambiguity


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
    chain = _chain(keys)
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
    "prev_hash": (lambda h, reg: _flip_hex(h.prev_hash), BlockLinkError),
    "round": (lambda h, reg: h.round + 1, SignatureError),
    "validator": (lambda h, reg: next(i for i in reg if i != h.validator), SignatureError),
    "merkle_root": (lambda h, reg: _flip_hex(h.merkle_root), SignatureError),
    "timestamp_s": (lambda h, reg: h.timestamp_s + 0.25, SignatureError),
    "signature": (lambda h, reg: _flip_hex(h.signature, 10), SignatureError),
}


@pytest.mark.parametrize("position", [1, 2])
@pytest.mark.parametrize("field", list(HEADER_TAMPER))
def test_tampered_header_field_detected(keys, field, position):
    assert set(HEADER_TAMPER) == {f.name for f in dataclasses.fields(BlockHeader)}
    chain = _chain(keys)
    new_value, err = HEADER_TAMPER[field]
    blocks = list(chain.blocks)
    h = blocks[position].header
    blocks[position] = Block(dataclasses.replace(h, **{field: new_value(h, keys[1])}),
                             blocks[position].transactions)
    with pytest.raises(err) as info:
        verify_blocks(blocks, keys[1])
    assert isinstance(info.value, LedgerError)
    if field not in ("index",):
        assert f"block {position}" in str(info.value)


def test_unregistered_validator_detected(keys):
    chain = _chain(keys)
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
    "model_digest": lambda tx: _flip_hex(tx.model_digest),
    "global_digest": lambda tx: _flip_hex(tx.global_digest),
    "participants": lambda tx: (tx.participants[0] + 100, *tx.participants[1:]),
    "sample_counts": lambda tx: (tx.sample_counts[0] + 1, *tx.sample_counts[1:]),
    "submitter": lambda tx: "gc-2" if tx.submitter != "gc-2" else "gc-1",
    "signature": lambda tx: _flip_hex(tx.signature, 20),
    "payload": lambda tx: bytes([tx.payload[0] ^ 1]) + tx.payload[1:],
}


@pytest.mark.parametrize("field", list(TX_TAMPER))
def test_tampered_transaction_field_detected(keys, field):
    assert set(TX_TAMPER) == {f.name for f in dataclasses.fields(Transaction)}
    chain = _chain(keys)
    blocks = list(chain.blocks)
    txs = list(blocks[1].transactions)
    txs[0] = dataclasses.replace(txs[0], **{field: TX_TAMPER[field](txs[0])})
    blocks[1] = Block(blocks[1].header, tuple(txs))
    err = PayloadDigestError if field == "payload" else SignatureError
    with pytest.raises(err, match="block 1, transaction 0"):
        verify_blocks(blocks, keys[1])


def test_transaction_set_changes_break_merkle_root(keys):
    ids, reg = keys
    chain = _chain(keys)
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
    resigned = Transaction.create(ids[tx.submitter], cluster_id=tx.cluster_id, round=tx.round,
                                  model_digest=_flip_hex(tx.model_digest),
                                  global_digest=tx.global_digest,
                                  participants=tx.participants, sample_counts=tx.sample_counts)
    blocks[1] = Block(b.header, (b.transactions[0], resigned, b.transactions[2]))
    with pytest.raises(MerkleRootError):
        verify_blocks(blocks, reg)


def test_forged_signature_rejected(keys):
    ids, _ = keys
    chain = _chain(keys)
    d = params_digest(np.zeros(4, np.float32))
    # gc-1 signs a record claiming to come from gc-0
    body = Transaction.create(ids["gc-1"], cluster_id=0, round=3, model_digest=d,
                              global_digest=d, participants=[1], sample_counts=[5])
    forged = dataclasses.replace(body, submitter="gc-0")
    with pytest.raises(SignatureError, match=r"transaction\.signature"):
        chain.append(chain.propose(ids["gc-0"], [forged], round=3, timestamp_s=9.0))
    outsider = Transaction.create(Identity.generate("eve"), cluster_id=5, round=3,
                                  model_digest=d, global_digest=d, participants=[1],
                                  sample_counts=[5])
    with pytest.raises(UnknownSignerError, match=r"transaction\.submitter"):
        chain.append(chain.propose(ids["gc-0"], [outsider], round=3, timestamp_s=9.0))


def test_replayed_transaction_rejected(keys):
    ids, _ = keys
    chain = _chain(keys)
    old = chain[1].transactions[2]
    # the very same transaction again
    with pytest.raises(ReplayError, match="replayed transaction") as info:
        chain.append(chain.propose(ids["gc-0"], [old], round=3, timestamp_s=9.0))
    assert info.value.reason == "replay"
    # a new, validly signed transaction for a (cluster, round) already on chain
    d = params_digest(np.zeros(4, np.float32))
    again = Transaction.create(ids["gc-2"], cluster_id=2, round=2, model_digest=d,
                               global_digest=d, participants=[1], sample_counts=[5])
    with pytest.raises(ReplayError, match=r"\(cluster_id, round\) = \(2, 2\)"):
        chain.append(chain.propose(ids["gc-0"], [again], round=2, timestamp_s=9.0))
    # twice in one block
    fresh = Transaction.create(ids["gc-2"], cluster_id=2, round=3, model_digest=d,
                               global_digest=d, participants=[1], sample_counts=[5])
    with pytest.raises(ReplayError):
        chain.append(chain.propose(ids["gc-0"], [fresh, fresh], round=3, timestamp_s=9.0))
    assert chain.height == 3
    chain.append(chain.propose(ids["gc-0"], [fresh], round=3, timestamp_s=9.0))


def test_order_and_round_consistency(keys):
    ids, _ = keys
    chain = _chain(keys)
    with pytest.raises(BlockOrderError, match="timestamp_s"):
        chain.append(chain.propose(ids["gc-0"], [], round=3, timestamp_s=0.5))
    with pytest.raises(BlockOrderError, match="round"):
        chain.append(chain.propose(ids["gc-0"], [], round=1, timestamp_s=9.0))
    d = params_digest(np.zeros(4, np.float32))
    tx = Transaction.create(ids["gc-0"], cluster_id=0, round=7, model_digest=d,
                            global_digest=d, participants=[1], sample_counts=[5])
    with pytest.raises(BlockFormatError, match=r"transaction\.round 7 differs"):
        chain.append(chain.propose(ids["gc-0"], [tx], round=3, timestamp_s=9.0))


def test_transaction_fields_validated(keys):
    ids, _ = keys
    d = params_digest(np.zeros(4, np.float32))
    good = {"cluster_id": 0, "round": 0, "model_digest": d, "global_digest": d,
            "participants": [1, 2], "sample_counts": [5, 6]}
    Transaction.create(ids["gc-0"], **good)
    bad = {"cluster_id": -1, "round": 1.5, "model_digest": d.upper(), "global_digest": "ab",
           "participants": [1, 1], "sample_counts": [5]}
    for key, value in bad.items():
        with pytest.raises(BlockFormatError, match=f"transaction.{key}"):
            Transaction.create(ids["gc-0"], **{**good, key: value})


# ---------------------------------------------------------------- persistence
def test_persistence_round_trip(keys, tmp_path):
    chain = _chain(keys)
    path = tmp_path / "chain.jsonl"
    chain.save(path)
    lines = path.read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[-1] == b""  # one block per line, newline-terminated
    assert json.loads(lines[0])["hash"] == chain[0].hash
    loaded = load_chain(path, keys[1], expected_tip=chain.tip_hash, expected_height=3)
    assert [b.hash for b in loaded] == [b.hash for b in chain]
    assert loaded[2].transactions[0].payload == chain[2].transactions[0].payload
    assert loaded.blocks == chain.blocks
    empty = tmp_path / "empty.jsonl"
    save_chain([], empty)
    assert load_chain(empty, keys[1]).height == 0


def test_truncated_and_corrupt_files_rejected(keys, tmp_path):
    chain = _chain(keys)
    path = tmp_path / "chain.jsonl"
    chain.save(path)
    data = path.read_bytes()
    lines = data.split(b"\n")

    def write(b: bytes):
        p = tmp_path / "bad.jsonl"
        p.write_bytes(b)
        return p

    with pytest.raises(ChainFileError, match="line 3: truncated"):
        load_chain(write(data[:-40]), keys[1])
    with pytest.raises(ChainFileError, match="line 3: truncated"):
        load_chain(write(data[:-1]), keys[1])
    with pytest.raises(ChainFileError, match="line 2: not valid JSON"):
        load_chain(write(lines[0] + b"\n" + lines[1][:-5] + b"\n" + lines[2] + b"\n"), keys[1])
    with pytest.raises(ChainFileError, match="line 2: blank line"):
        load_chain(write(lines[0] + b"\n\n" + lines[1] + b"\n"), keys[1])
    with pytest.raises(BlockLinkError, match="line 2"):  # a block lost in the middle
        load_chain(write(lines[0] + b"\n" + lines[2] + b"\n"), keys[1])
    # whole trailing lines lost: only a trusted tip or height can tell
    short = write(lines[0] + b"\n" + lines[1] + b"\n")
    assert load_chain(short, keys[1]).height == 2
    with pytest.raises(ChainFileError, match="expected tip"):
        load_chain(short, keys[1], expected_tip=chain.tip_hash)
    with pytest.raises(ChainFileError, match="expected 3 blocks"):
        load_chain(short, keys[1], expected_height=3)
    # stored hash, canonical form, field types
    obj = json.loads(lines[1])
    obj["hash"] = _flip_hex(obj["hash"])
    with pytest.raises(BlockHashError, match="line 2"):
        load_chain(write(lines[0] + b"\n" + canonical_json(obj) + b"\n"), keys[1])
    spaced = lines[1].replace(b'"round":', b'"round": ', 1)
    with pytest.raises(NonCanonicalError, match="line 2"):
        load_chain(write(lines[0] + b"\n" + spaced + b"\n"), keys[1])
    obj = json.loads(lines[1])
    obj["header"]["round"] = "1"
    with pytest.raises(BlockFormatError, match=r"line 2: .*block.header.round"):
        load_chain(write(lines[0] + b"\n" + canonical_json(obj) + b"\n"), keys[1])
    obj = json.loads(lines[1])
    obj["transactions"][1]["extra"] = 1
    with pytest.raises(BlockFormatError, match=r"block.transactions\[1\].extra: unknown field"):
        load_chain(write(lines[0] + b"\n" + canonical_json(obj) + b"\n"), keys[1])
    with pytest.raises(ChainFileError, match="cannot read"):
        load_chain(tmp_path / "missing.jsonl", keys[1])


def test_every_byte_of_a_chain_file_is_protected(keys, tmp_path):
    chain = _chain(keys, n_blocks=2, n_tx=2, n_params=4, seed=3)
    path = tmp_path / "chain.jsonl"
    chain.save(path)
    data = path.read_bytes()
    assert parse_chain(data, keys[1]).height == 2
    undetected = []
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        try:
            parse_chain(bytes(flipped), keys[1], expected_tip=chain.tip_hash)
        except LedgerError:
            continue
        undetected.append(i)
    assert not undetected, f"byte changes at {undetected[:10]} went undetected"


# ---------------------------------------------------------------- reputation (eq. (2))
def test_reputation_scores_and_selection():
    tr = ReputationTracker(["a", "b", "c"], encryption=[1.0, 0.5, 0.8], routing={"b": 0.25},
                           twin_proportion=[0.2, 0.0, 0.5])
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
    assert ReputationTracker(["a", "b"], twin_proportion=[0.5, 0.1], weights=w) \
        .select_validators() == ["b"]
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
    tr3.record_round(submitted=[], accepted=[], block_quality={"a": 1.0, "b": 1.0},
                     audit_failed=["a"])
    q3 = {c: v["block_quality"] for c, v in tr3.history_components().items()}
    assert q3 == pytest.approx({"a": 1 / 6, "b": 2 / 3})
    np.testing.assert_allclose(routing_capability([0, 1, 3]), [1.0, 0.5, 0.25])
    np.testing.assert_allclose(encryption_capability([0.01, 0.02], [1.0, 0.5]), [1.0, 0.5])


# ---------------------------------------------------------------- verification modes
K, D = 10, 20
P = K * D + K


def _logp(params, X):
    W = params[: K * D].reshape(K, D).astype(np.float64)
    z = X @ W.T + params[K * D:].astype(np.float64)
    z -= z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def _gd(params, X, y, steps, lr=0.5):
    p = params.astype(np.float64)
    for _ in range(steps):
        g = np.exp(_logp(p, X))
        g[np.arange(len(y)), y] -= 1
        g /= len(y)
        p = p - lr * np.concatenate([(g.T @ X).ravel(), g.sum(0)])
    return p.astype(np.float32)


@pytest.fixture(scope="module")
def fl_trials():
    """Synthetic FL rounds: a 10-class softmax model; 5 clusters with mildly non-IID data
    train 5 GD steps from the global model (plus noise); 1-2 of them attack."""
    rng = np.random.default_rng(11)
    ids, reg = make_identities([f"gc-{c}" for c in range(5)], rng)
    mu = rng.normal(0.0, 1.0, (K, D))

    def sample(n, probs):
        y = rng.choice(K, size=n, p=probs)
        return mu[y] + rng.normal(0.0, 1.0, (n, D)), y

    Xv, yv = sample(1000, np.full(K, 1 / K))

    def quality(params):
        lp = _logp(params, Xv)
        return float(np.mean(lp.argmax(1) == yv)), float(-lp[np.arange(len(yv)), yv].mean())

    trials = []
    for t in range(120):
        Xg, yg = sample(500, np.full(K, 1 / K))
        g = _gd(np.zeros(P, np.float32), Xg, yg, int(rng.integers(3, 30)))
        kinds = ["honest"] * 5
        for a in rng.choice(5, size=int(rng.integers(1, 3)), replace=False):
            kinds[a] = ("random", "scaled", "flip", "tamper")[int(rng.integers(4))]
        subs = []
        for c, kind in enumerate(kinds):
            X, y = sample(200, rng.dirichlet(np.full(K, 5.0)))
            if kind == "flip":
                y = flip_labels(y, rng)
            w = (_gd(g, X, y, 5) + 0.01 * rng.standard_normal(P)).astype(np.float32)
            if kind == "random":
                w = random_update(g, rng)
            elif kind == "scaled":
                w = scaled_update(g, w, factor=-10.0)
            sub = make_submission(ids[f"gc-{c}"], cluster_id=c, round=t, params=w,
                                  global_digest=params_digest(g), participants=[c],
                                  sample_counts=[200])
            subs.append(tamper_submission(sub, rng) if kind == "tamper" else sub)
        trials.append((t, g, kinds, subs))
    return reg, quality, trials


def _rates(fl_trials, mode, config=None):
    reg, quality, trials = fl_trials
    rejected: dict[str, list[bool]] = {}
    for t, g, kinds, subs in trials:
        rep = verify_submissions(subs, registry=reg, round=t, global_params=g, quality=quality,
                                 mode=mode, config=config)
        for kind, v in zip(kinds, rep.verdicts, strict=True):
            rejected.setdefault(kind, []).append(not v.accepted)
    return {k: float(np.mean(v)) for k, v in rejected.items()}


def test_verification_modes_detection_and_false_rejection(fl_trials):
    full = _rates(fl_trials, "full")
    sig = _rates(fl_trials, "signature")
    none = _rates(fl_trials, "none")
    print("rejection rates full", full, "signature", sig, "none", none)
    # ours: attacks caught, honest noisy updates pass
    assert full["random"] >= 0.95
    assert full["scaled"] == 1.0
    assert full["flip"] >= 0.95
    assert full["tamper"] == 1.0
    assert full["honest"] <= 0.02
    # ref. [39]: signatures and integrity only: tampering caught, poisoned models pass
    assert sig["tamper"] == 1.0
    assert sig["random"] == sig["scaled"] == sig["flip"] == sig["honest"] == 0.0
    # FedAvg without ledger: everything passes
    assert all(v == 0.0 for v in none.values())


def test_norm_check_alone_catches_scaled_updates(fl_trials):
    norm_only = _rates(fl_trials, "full", VerifierConfig(check_quality=False))
    assert norm_only["scaled"] == 1.0
    assert norm_only["honest"] <= 0.02


def test_verification_reasons(keys):
    ids, reg = keys
    rng = np.random.default_rng(5)
    g = rng.standard_normal(50).astype(np.float32)
    gd = params_digest(g)

    def q(p):
        loss = float(np.mean((p - g) ** 2))
        return 1.0 - min(loss, 1.0), loss

    def sub(c, w, *, rnd=4, gdig=gd, who=None):
        return make_submission(ids[who or f"gc-{c}"], cluster_id=c, round=rnd, params=w,
                               global_digest=gdig, participants=[c], sample_counts=[1])

    ok = [(g + 0.01 * rng.standard_normal(50)).astype(np.float32) for _ in range(3)]
    honest = sub(0, ok[0])
    cases = {
        "ok": honest,
        "tampered": tamper_submission(sub(1, ok[1]), rng),
        "stale": sub(2, ok[2], gdig=params_digest(ok[0])),
        "late": sub(1, ok[1], rnd=3),
        "scaled": sub(2, scaled_update(g, ok[2], factor=-100.0)),
        "short": sub(1, ok[1][:10]),
        "nan": sub(2, np.full(50, np.nan, np.float32)),
        "forged": dataclasses.replace(sub(0, ok[0], who="gc-1"),
                                      transaction=dataclasses.replace(
                                          sub(0, ok[0], who="gc-1").transaction,
                                          submitter="gc-0")),
    }
    owner = {0: "gc-0", 1: "gc-1", 2: "gc-2"}
    for name, s in cases.items():
        rep = verify_submissions([honest, s] if name != "ok" else [s], registry=reg, round=4,
                                 global_params=g, quality=q, cluster_owner=owner,
                                 reference_norms=[0.07] * 5)
        v = rep.verdicts[-1]
        assert v.accepted == (name == "ok"), (name, v.reasons)
        expect = {"tampered": Reason.DIGEST_MISMATCH, "stale": Reason.WRONG_GLOBAL,
                  "late": Reason.WRONG_ROUND, "scaled": Reason.UPDATE_NORM,
                  "short": Reason.SHAPE_MISMATCH, "nan": Reason.NON_FINITE,
                  "forged": Reason.BAD_SIGNATURE}.get(name)
        if expect is not None:
            assert expect in v.reasons, (name, v.reasons, v.messages)
    # equivocation: two different records for one cluster in a round; replay of one on chain
    rep = verify_submissions([honest, sub(0, ok[1])], registry=reg, round=4, global_params=g,
                             quality=q)
    assert all(Reason.EQUIVOCATION in v.reasons for v in rep.verdicts)
    chain = Blockchain(reg)
    chain.append(chain.propose(ids["main"], [honest.transaction], round=4, timestamp_s=0.0))
    rep = verify_submissions([honest], registry=reg, round=4, global_params=g, quality=q,
                             chain=chain, mode="signature")
    assert rep.verdicts[0].reasons == (Reason.REPLAY,)
    with pytest.raises(ValueError, match="quality"):
        verify_submissions([honest], registry=reg, round=4, global_params=g)


# ---------------------------------------------------------------- attacks
def test_attack_helpers():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(1000).astype(np.float32)
    h = g + np.float32(0.01)
    s = scaled_update(g, h, factor=-10.0)
    np.testing.assert_allclose(s - g, -10.0 * (h - g), rtol=1e-4)
    r = random_update(g, rng)
    assert r.dtype == np.float32 and np.linalg.norm(r - g) > 0.5 * np.linalg.norm(g)
    y = rng.integers(0, 10, 500)
    fy = flip_labels(y, rng)
    assert fy.dtype == y.dtype and np.all(fy != y) and np.all((fy >= 0) & (fy < 10))
    np.testing.assert_array_equal(flip_labels(y, rng, mode="reverse"), 9 - y)
    half = flip_labels(y, rng, fraction=0.5)
    assert 0.4 < np.mean(half != y) < 0.6
    with pytest.raises(ValueError, match="labels must lie"):
        flip_labels(np.array([10]), rng)


def test_flip_labels_on_torch():
    torch = pytest.importorskip("torch")
    y = torch.arange(10, dtype=torch.long)
    fy = flip_labels(y, np.random.default_rng(0))
    assert isinstance(fy, torch.Tensor) and fy.dtype == torch.long
    assert bool((fy != y).all())


def test_ledger_does_not_import_torch():
    code = "import sys, dtfl_env.ledger; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- block size (Fig. 9)
def test_block_size_proposed_below_fedavg_and_grows_slower():
    n_params = 2000
    sizes = {}
    for n in (10, 20, 40):
        rng = np.random.default_rng(n)
        fixed = proposed_block(split_devices(n, 5), n_params, rng=rng)
        grows = proposed_block(split_devices(n, n // 10), n_params, rng=rng)
        fed = fedavg_block(n, n_params, rng=rng)
        sizes[n] = (block_size_bytes(fixed), block_size_bytes(grows), block_size_bytes(fed))
        assert block_size_bytes(fed) == len(fed.serialize())
        assert sizes[n][0] < sizes[n][2] and sizes[n][1] < sizes[n][2]
    # realistic payloads: each model costs at least its 8 hex characters per float32
    assert sizes[10][2] > 10 * 8 * n_params
    d_fixed, d_grows, d_fed = (sizes[40][k] - sizes[10][k] for k in range(3))
    assert d_fed > 5 * d_grows and d_fed > 100 * d_fixed
    # a block built by the helper verifies once its keys are registered
    reg = make_identities([], None)[1]
    verify_blocks([proposed_block([3, 2], 10, rng=np.random.default_rng(1), registry=reg)], reg)


# ---------------------------------------------------------------- end to end
def test_consortium_rounds(tmp_path):
    rng = np.random.default_rng(3)
    cons = Consortium(range(4), rng=rng, store_payload=True)
    target = rng.standard_normal(64)
    g = np.zeros(64, np.float32)

    def q(p):
        loss = float(np.mean((p - target) ** 2))
        return float(np.exp(-loss)), loss

    validators = []
    for t in range(4):
        cons.set_twin_proportion({c: 0.1 * c for c in range(4)})
        subs = []
        for c in range(4):
            w = (g + 0.3 * (target - g) + 0.02 * rng.standard_normal(64)).astype(np.float32)
            if c == 0 and t >= 1:  # the initially best coordinator turns malicious
                w = scaled_update(g, w)
            subs.append(cons.submit(c, round=t, params=w, global_params=g,
                                    participants=[10 * c, 10 * c + 1], sample_counts=[3, 4]))
        rec = cons.end_round(t, subs, global_params=g, quality=q, timestamp_s=2.0 * t)
        validators.append(rec.validator)
        assert rec.block is not None and rec.block_size_bytes == block_size_bytes(rec.block)
        assert (0 in rec.accepted_clusters) == (t == 0)
        g = np.mean([s.params for s in rec.report.accepted], axis=0).astype(np.float32)
    assert validators[0] == "gc-0" and "gc-0" not in validators[2:]
    scores = cons.tracker.score_table()
    success = {c: v["success"] for c, v in cons.tracker.history_components().items()}
    assert min(success, key=success.get) == "gc-0"
    assert scores["gc-0"] < min(scores["gc-1"], cons.records[0].scores["gc-0"])
    cons.chain.verify()
    path = tmp_path / "run.jsonl"
    cons.save(path)
    assert load_chain(path, cons.registry, expected_tip=cons.chain.tip_hash).height == 4
    none = Consortium(range(2), mode="none", rng=rng)
    rec = none.end_round(0, [], global_params=g, quality=None, timestamp_s=0.0)
    assert rec.block is None and none.chain.height == 0



# ---------------------------------------------------------------- validator behaviour
def _round_models(cons, t, g, target, rng, poisoned=()):
    """Every cluster's signed model for round t: a step towards ``target``; the clusters in
    ``poisoned`` send a random model instead."""
    subs = []
    for c in cons.cluster_ids:
        w = (g + 0.3 * (target - g) + 0.02 * rng.standard_normal(g.size)).astype(np.float32)
        if c in poisoned:
            w = random_update(g, rng, scale=30.0)
        subs.append(cons.submit(c, round=t, params=w, global_params=g,
                                participants=[10 * c], sample_counts=[5]))
    return subs


def _quality_fn(target):
    def q(p):
        loss = float(np.mean((p - target) ** 2))
        return float(np.exp(-loss)), loss
    return q


@pytest.mark.parametrize("attack", ["none", "accept_poisoned", "reject_honest", "both"])
def test_malicious_validator_and_the_audit(attack):
    """A malicious validator verifies with its own behaviour; the audit proves its block
    wrong, the block stands (it is what was aggregated) and its reputation drops."""
    rng = np.random.default_rng(5)
    target = rng.standard_normal(64)
    g = (0.1 * rng.standard_normal(64)).astype(np.float32)
    cons = Consortium(range(5), rng=rng, malicious=[0, 1], validator_attack=attack,
                      selection="round_robin")  # round 0: gc-0, a malicious coordinator
    before = cons.tracker.score_table()["gc-0"]
    subs = _round_models(cons, 0, g, target, rng, poisoned=(0, 1))
    rec = cons.end_round(0, subs, global_params=g, quality=_quality_fn(target), timestamp_s=0.0)
    assert rec.validator == "gc-0" and rec.validator_malicious
    assert rec.block is not None and rec.block.header.validator == "gc-0"
    assert sorted(rec.reference.summary()["accepted"]) == [2, 3, 4]  # the honest verdicts
    block_clusters = sorted(tx.cluster_id for tx in rec.block.transactions)
    assert block_clusters == sorted(rec.accepted_clusters)  # the block records the report
    expected = {"none": [2, 3, 4], "accept_poisoned": [0, 1, 2, 3, 4], "reject_honest": [],
                "both": [0, 1]}[attack]
    assert block_clusters == expected
    assert rec.audit is not None and rec.audit_failed == (attack != "none")
    lets_in, keeps_out = attack in ("accept_poisoned", "both"), attack in ("reject_honest",
                                                                              "both")
    assert rec.audit.wrongly_accepted == ((0, 1) if lets_in else ())
    assert rec.audit.wrongly_rejected == ((2, 3, 4) if keeps_out else ())
    hist = cons.tracker.history_components()
    if attack == "none":
        assert hist["gc-0"]["block_quality"] == pytest.approx(2 / 3)
    else:  # a block proven wrong: quality 0 with weight 3, (0 + 1) / (3 + 2)
        assert hist["gc-0"]["block_quality"] == pytest.approx(1 / 5)
        assert rec.scores["gc-0"] < before
    # the submitters' record follows the audit, not the validator: the colluders' rejection
    # counts, the honest coordinators' acceptance counts
    assert hist["gc-1"]["success"] == pytest.approx(1 / 5)
    assert hist["gc-2"]["success"] == hist["gc-4"]["success"] == pytest.approx(2 / 3)
    cons.chain.verify()  # a wrong block is still a well-formed, signed block


def test_malicious_validation_cannot_forge_what_the_chain_checks(keys):
    ids, reg = keys
    g = np.zeros(8, np.float32)
    subs = [make_submission(ids[f"gc-{c}"], cluster_id=c, round=0, params=g + 0.1 * c,
                            global_digest=params_digest(g), participants=[c],
                            sample_counts=[1]) for c in range(3)]
    subs[1] = tamper_submission(subs[1], np.random.default_rng(0))
    honest = verify_submissions(subs, registry=reg, round=0, mode="signature")
    assert honest.mask.tolist() == [True, False, True]
    bad = malicious_validation(honest, attack="both", allies=["gc-1"])
    # the ally's tampered model stays out (its digest does not match), honest ones are out
    assert bad.mask.tolist() == [False, False, False]
    assert bad.verdicts[0].reasons == (Reason.VALIDATOR_OVERRIDE,)
    assert malicious_validation(honest, attack="none", allies=["gc-1"]) == honest
    with pytest.raises(ValueError, match="attack"):
        malicious_validation(honest, attack="lie", allies=[])


def test_validator_selection_policies():
    rng = np.random.default_rng(2)
    prop = {c: 0.1 * c for c in range(5)}  # gc-0 has the fewest twins: the best eq. (2)
    picks = {}
    for policy in SELECTION_POLICIES:
        cons = Consortium(range(5), rng=np.random.default_rng(9), selection=policy)
        cons.set_twin_proportion(prop)
        picks[policy] = [cons.choose_validator(t) for t in range(400)]
    assert picks["reputation"] == ["gc-0"] * 400  # = select_validators(1)[0]
    assert picks["round_robin"][:7] == ["gc-0", "gc-1", "gc-2", "gc-3", "gc-4", "gc-0", "gc-1"]
    counts = {c: picks["random"].count(c) for c in (f"gc-{i}" for i in range(5))}
    assert all(50 <= n <= 110 for n in counts.values()), counts  # about 80 each
    again = Consortium(range(5), rng=np.random.default_rng(9), selection="random")
    assert [again.choose_validator(t) for t in range(400)] == picks["random"]  # seeded
    with pytest.raises(ValueError, match="selection"):
        Consortium(range(3), selection="lottery", rng=rng)
    with pytest.raises(ValueError, match="validator_attack"):
        Consortium(range(3), validator_attack="lie", rng=rng)
    with pytest.raises(ValueError, match="malicious"):
        Consortium(range(3), malicious=[5], rng=rng)
    with pytest.raises(ValueError, match="validator"):
        Consortium(range(3), rng=rng).end_round(0, [], global_params=np.zeros(2, np.float32),
                                                quality=None, timestamp_s=0.0,
                                                validator="main")


def _malicious_validator_rounds(policy, seed, rounds=20):
    """10 coordinators, 3 malicious (0-2: they submit random models and, as validators,
    accept each other's and reject honest ones); the malicious ones have the fewest twins,
    so eq. (2) ranks them first before any history exists."""
    rng = np.random.default_rng(seed)
    target = rng.standard_normal(32)
    g = (0.1 * rng.standard_normal(32)).astype(np.float32)
    cons = Consortium(range(10), rng=rng, malicious=[0, 1, 2], validator_attack="both",
                      selection=policy)
    cons.set_twin_proportion([0.1, 0.1, 0.1, *([0.3] * 7)])
    q = _quality_fn(target)
    chosen = []
    for t in range(rounds):
        subs = _round_models(cons, t, g, target, rng, poisoned=(0, 1, 2))
        rec = cons.end_round(t, subs, global_params=g, quality=q, timestamp_s=float(t))
        chosen.append(rec.validator_malicious)
        assert rec.audit_failed == rec.validator_malicious  # every wrong block is caught
        kept = [s.params for s in rec.report.accepted] or [g]
        g = np.mean(kept, axis=0).astype(np.float32)
    return chosen


def test_reputation_selection_avoids_malicious_validators():
    rep = [_malicious_validator_rounds("reputation", s) for s in range(3)]
    rnd = [_malicious_validator_rounds("random", s) for s in range(3)]
    rr = _malicious_validator_rounds("round_robin", 0)
    # eq. (2) starts with a malicious coordinator (fewest twins) and drops it once its
    # submissions and its block are proven wrong; random and round robin keep picking them
    assert all(r[0] for r in rep)
    assert all(not any(r[2:]) for r in rep)
    assert sum(map(sum, rep)) < sum(map(sum, rnd))
    assert sum(map(sum, rnd)) >= 6  # about 30 % of 60 rounds
    assert sum(rr) == 6  # 3 of every 10 rounds
    assert tuple(SELECTION_POLICIES) == ("reputation", "random", "round_robin")
    assert tuple(VALIDATOR_ATTACKS) == ("none", "accept_poisoned", "reject_honest", "both")
