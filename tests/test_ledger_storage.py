"""Chain persistence: every byte of a chain file is protected (dtfl_env.ledger.storage)."""

from __future__ import annotations

import json

import pytest

from dtfl_env.ledger import (
    BlockFormatError,
    BlockHashError,
    BlockLinkError,
    ChainFileError,
    LedgerError,
    NonCanonicalError,
    canonical_json,
    load_chain,
    parse_chain,
    save_chain,
)

from _ledger import flip_hex, make_chain


# ---------------------------------------------------------------- persistence
def test_persistence_round_trip(keys, tmp_path):
    chain = make_chain(keys)
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
    chain = make_chain(keys)
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
    obj["hash"] = flip_hex(obj["hash"])
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
    chain = make_chain(keys, n_blocks=2, n_tx=2, n_params=4, seed=3)
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
