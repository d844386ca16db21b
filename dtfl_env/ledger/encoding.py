"""Canonical serialisation, hashing and Merkle roots.

Canonical serialisation
-----------------------
Everything that is hashed or signed is first turned into a JSON value (dicts with string
keys, lists, strings, integers, finite floats, booleans, null) and serialised by
:func:`canonical_json`:

- ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
  allow_nan=False)`` encoded as ASCII: keys sorted, no whitespace, non-ASCII characters
  escaped, NaN and infinities refused;
- floats are written by Python's shortest round-trip ``repr`` (so a float read back is the
  same float and re-serialises to the same bytes); integers are plain decimal;
- bytes (digests, signatures, public keys, parameter payloads) are lower-case hex strings.

Model parameters are hashed as the exact bytes of the flat float32 little-endian vector
(:func:`params_bytes`), so the digest does not depend on the host's byte order.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "DIGEST_HEX_LEN",
    "ZERO_HASH",
    "canonical_json",
    "is_hex",
    "merkle_root",
    "params_bytes",
    "params_digest",
    "params_from_bytes",
    "sha256_hex",
]

#: a SHA-256 digest as lower-case hex
DIGEST_HEX_LEN = 64
#: ``prev_hash`` of the first block
ZERO_HASH = "0" * DIGEST_HEX_LEN

_HEX = re.compile(r"[0-9a-f]*")


def canonical_json(value: Any) -> bytes:
    """The canonical serialisation of a JSON value (see the module docstring)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def is_hex(value: object, n_chars: int | None = None) -> bool:
    """Whether ``value`` is a lower-case hex string (of ``n_chars`` characters if given)."""
    if not isinstance(value, str) or len(value) % 2:
        return False
    if n_chars is not None and len(value) != n_chars:
        return False
    return _HEX.fullmatch(value) is not None


def params_bytes(params: np.ndarray, name: str = "params") -> bytes:
    """The exact bytes of a flat float32 parameter vector, little-endian.

    Parameters
    ----------
    params : np.ndarray
        1-D array of dtype float32 (either byte order).
    name : str
        Argument name used in error messages.

    Raises
    ------
    TypeError
        If ``params`` is not a numpy float32 array.
    ValueError
        If ``params`` is not 1-D.
    """
    if not isinstance(params, np.ndarray):
        raise TypeError(f"{name}: expected a numpy float32 vector, got {type(params).__name__}")
    if params.dtype.kind != "f" or params.dtype.itemsize != 4:
        raise TypeError(f"{name}: expected dtype float32, got {params.dtype}")
    if params.ndim != 1:
        raise ValueError(f"{name}: expected a flat (1-D) vector, got shape {params.shape}")
    return params.astype("<f4", copy=False).tobytes()


def params_digest(params: np.ndarray, name: str = "params") -> str:
    """SHA-256 (hex) of :func:`params_bytes` of ``params``: the model digest of a transaction."""
    return sha256_hex(params_bytes(params, name))


def params_from_bytes(data: bytes) -> np.ndarray:
    """Inverse of :func:`params_bytes`: a new native float32 vector."""
    if len(data) % 4:
        raise ValueError(f"data: length {len(data)} is not a multiple of 4 (float32)")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def merkle_root(leaf_hashes: Sequence[str]) -> str:
    """Merkle root (hex) of transaction hashes, RFC 6962 style.

    Leaves are ``SHA-256(0x00 || h)`` and inner nodes ``SHA-256(0x01 || left || right)``;
    an odd node at the end of a level is promoted unchanged (no duplication, so two
    different transaction lists cannot share a root). The root of no transactions is
    ``SHA-256(b"")``.
    """
    if not leaf_hashes:
        return sha256_hex(b"")
    level = [hashlib.sha256(b"\x00" + bytes.fromhex(h)).digest() for h in leaf_hashes]
    while len(level) > 1:
        nxt = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()
