"""Ledger encoding: canonical JSON, digests, Merkle roots (dtfl_env.ledger.encoding)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from dtfl_env.ledger import (
    canonical_json,
    merkle_root,
    params_bytes,
    params_digest,
    params_from_bytes,
    sha256_hex,
)


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
