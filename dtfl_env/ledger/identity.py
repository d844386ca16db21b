"""Ed25519 identities of the coordinators and the registry of their public keys.

Every group coordinator and the main coordinator holds an :class:`Identity` (an Ed25519 key
pair); the consortium's :class:`Registry` maps coordinator ids to public keys and is the
only trust anchor: signatures are checked against it, and a chain file is loaded against
it (the registry is never read from the chain file, so rewriting the file cannot swap a
key).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from dtfl_env.ledger.encoding import is_hex

__all__ = ["SIGNATURE_HEX_LEN", "Identity", "Registry", "check_id", "make_identities"]

#: an Ed25519 signature (64 bytes) as hex
SIGNATURE_HEX_LEN = 128
_MAX_ID_LEN = 128


def check_id(value: object, name: str) -> str:
    """Check a coordinator id: a non-empty printable ASCII string without spaces."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > _MAX_ID_LEN
        or not value.isascii()
        or not value.isprintable()
        or " " in value
    ):
        raise ValueError(
            f"{name}: expected a non-empty printable ASCII id without spaces "
            f"(at most {_MAX_ID_LEN} characters), got {value!r}"
        )
    return value


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Identity:
    """A coordinator's Ed25519 key pair.

    Parameters
    ----------
    coordinator_id : str
        The id under which the public key is registered.
    private_key : Ed25519PrivateKey
        The signing key.
    """

    def __init__(self, coordinator_id: str, private_key: Ed25519PrivateKey) -> None:
        self.coordinator_id = check_id(coordinator_id, "coordinator_id")
        if not isinstance(private_key, Ed25519PrivateKey):
            raise TypeError(
                f"private_key: expected an Ed25519PrivateKey, got {type(private_key).__name__}"
            )
        self._key = private_key
        self.public_key: Ed25519PublicKey = private_key.public_key()

    @classmethod
    def generate(cls, coordinator_id: str, rng: np.random.Generator | None = None) -> Identity:
        """A new key pair; with ``rng`` the 32-byte seed is drawn from it (reproducible runs).

        Seeding from a simulation ``rng`` is for reproducible experiments only; without
        ``rng`` the key comes from the operating system's CSPRNG.
        """
        if rng is None:
            return cls(coordinator_id, Ed25519PrivateKey.generate())
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
        return cls(coordinator_id, Ed25519PrivateKey.from_private_bytes(rng.bytes(32)))

    @property
    def public_key_hex(self) -> str:
        """The raw 32-byte public key as hex."""
        return _raw_public(self.public_key).hex()

    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Identity({self.coordinator_id!r}, public_key={self.public_key_hex[:16]}...)"


class Registry:
    """Coordinator id -> Ed25519 public key: the consortium's membership list."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey | bytes | str] | None = None) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for cid, key in (keys or {}).items():
            self.register(cid, key)

    def register(self, coordinator_id: str, public_key: Ed25519PublicKey | bytes | str) -> None:
        """Register a public key (object, 32 raw bytes or their hex).

        Registering the same key twice is a no-op; a different key for a known id is an
        error (keys are never silently replaced).
        """
        check_id(coordinator_id, "coordinator_id")
        if isinstance(public_key, str):
            if not is_hex(public_key, 64):
                raise ValueError(f"public_key[{coordinator_id!r}]: expected 64 hex characters")
            public_key = bytes.fromhex(public_key)
        if isinstance(public_key, bytes):
            if len(public_key) != 32:
                raise ValueError(
                    f"public_key[{coordinator_id!r}]: expected 32 bytes, got {len(public_key)}"
                )
            public_key = Ed25519PublicKey.from_public_bytes(public_key)
        if not isinstance(public_key, Ed25519PublicKey):
            raise TypeError(
                f"public_key[{coordinator_id!r}]: expected an Ed25519 public key, "
                f"got {type(public_key).__name__}"
            )
        old = self._keys.get(coordinator_id)
        if old is not None and _raw_public(old) != _raw_public(public_key):
            raise ValueError(
                f"coordinator_id: {coordinator_id!r} is already registered with a different key"
            )
        self._keys[coordinator_id] = public_key

    def add(self, identity: Identity) -> None:
        """Register an identity's public key."""
        self.register(identity.coordinator_id, identity.public_key)

    def public_key(self, coordinator_id: str) -> Ed25519PublicKey:
        """The registered key; ``KeyError`` naming the id if unknown."""
        try:
            return self._keys[coordinator_id]
        except KeyError:
            raise KeyError(f"coordinator_id: {coordinator_id!r} is not registered") from None

    def verify(self, coordinator_id: str, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is a valid signature of ``message`` by a registered id."""
        key = self._keys.get(coordinator_id)
        if key is None:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    @property
    def ids(self) -> tuple[str, ...]:
        """Registered ids in registration order."""
        return tuple(self._keys)

    def to_dict(self) -> dict[str, str]:
        """``{id: public key hex}`` (e.g. to publish the membership list)."""
        return {cid: _raw_public(k).hex() for cid, k in self._keys.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> Registry:
        """Inverse of :meth:`to_dict`."""
        return cls(dict(data))

    def __contains__(self, coordinator_id: object) -> bool:
        return coordinator_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __repr__(self) -> str:
        return f"Registry({list(self._keys)})"


def make_identities(
    coordinator_ids: Iterable[str],
    rng: np.random.Generator | None = None,
) -> tuple[dict[str, Identity], Registry]:
    """Key pairs for ``coordinator_ids`` and a registry holding their public keys.

    Parameters
    ----------
    coordinator_ids : iterable of str
        Group coordinators and the main coordinator; ids must be unique.
    rng : np.random.Generator, optional
        Seeds the keys for reproducible runs (see :meth:`Identity.generate`).

    Returns
    -------
    identities : dict
        ``{id: Identity}`` (private keys: each coordinator keeps its own).
    registry : Registry
        The public keys.
    """
    identities: dict[str, Identity] = {}
    registry = Registry()
    for cid in coordinator_ids:
        if cid in identities:
            raise ValueError(f"coordinator_ids: duplicate id {cid!r}")
        identities[cid] = Identity.generate(cid, rng)
        registry.add(identities[cid])
    return identities, registry
