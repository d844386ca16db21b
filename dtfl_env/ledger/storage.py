"""Chain persistence as JSON Lines: one block per line, each the canonical JSON of
:meth:`Block.to_dict` (``{"hash", "header", "transactions"}``) followed by ``"\\n"``.

:func:`load_chain` never returns a silently shortened or altered chain. It refuses, naming
the line:

- a last line without its terminating newline (a truncated write), a blank line, a line
  that is not JSON (:class:`ChainFileError`);
- a field of the wrong type or range (:class:`BlockFormatError`);
- any failed chain check: link, order, signature, payload, Merkle root, replay (the
  specific :class:`LedgerError` subclass, see :mod:`dtfl_env.ledger.chain`);
- a stored ``hash`` that differs from the recomputed block hash (:class:`BlockHashError`);
- a line that parses to a valid block but is not its canonical serialisation, e.g. a
  digest in upper case or extra whitespace (:class:`NonCanonicalError`).

Together these make a change to any byte of a stored block an error. Losing whole lines at
the end of the file leaves a valid, shorter chain; pass ``expected_tip`` (or
``expected_height``) from a trusted record to detect that too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from dtfl_env.ledger.chain import Block, Blockchain
from dtfl_env.ledger.errors import (
    BlockHashError,
    ChainFileError,
    LedgerError,
    NonCanonicalError,
)
from dtfl_env.ledger.identity import Registry

__all__ = ["load_chain", "parse_chain", "save_chain"]


def save_chain(chain: Blockchain | Iterable[Block], path: str | Path) -> None:
    """Write blocks as JSON Lines, atomically (temporary file, then rename).

    Parameters
    ----------
    chain : Blockchain or iterable of Block
        The blocks, in order.
    path : str or Path
        Destination file; its folder must exist.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        for block in chain:
            fh.write(block.serialize())
            fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_chain(
    path: str | Path,
    registry: Registry,
    *,
    expected_tip: str | None = None,
    expected_height: int | None = None,
) -> Blockchain:
    """Read a JSON Lines chain file and verify every block.

    Parameters
    ----------
    path : str or Path
        The file written by :func:`save_chain`.
    registry : Registry
        Trusted public keys (never read from the file).
    expected_tip : str, optional
        Hash the last block must have (detects lost trailing lines).
    expected_height : int, optional
        Number of blocks the file must hold.

    Returns
    -------
    Blockchain
        The verified chain.

    Raises
    ------
    ChainFileError
        Unreadable, truncated, blank or non-JSON line, or tip/height not as expected.
    LedgerError
        The specific subclass for a block that fails verification; the message starts with
        ``"<path>, line <n>:"``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ChainFileError(f"{path}: cannot read the chain file ({e})") from e
    return parse_chain(
        data, registry, source=str(path), expected_tip=expected_tip, expected_height=expected_height
    )


def parse_chain(
    data: bytes,
    registry: Registry,
    *,
    source: str = "<bytes>",
    expected_tip: str | None = None,
    expected_height: int | None = None,
) -> Blockchain:
    """:func:`load_chain` on the bytes of a chain file; ``source`` names it in errors."""
    if not isinstance(data, bytes):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    chain = Blockchain(registry)
    lines = data.split(b"\n")
    tail = lines.pop()  # the text after the last newline: empty for a complete file
    if tail:
        raise ChainFileError(
            f"{source}, line {len(lines) + 1}: truncated: the last line has "
            f"no terminating newline ({len(tail)} bytes)"
        )
    for n, raw in enumerate(lines, 1):
        where = f"{source}, line {n}"
        if not raw.strip():
            raise ChainFileError(f"{where}: blank line")
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ChainFileError(f"{where}: not valid JSON ({e})") from None
        try:
            block, stored_hash = Block.from_dict(obj)
            chain.append(block)
            if stored_hash != block.hash:
                raise BlockHashError(
                    f"block {block.index}: stored hash {stored_hash[:16]}... "
                    f"differs from the header's hash {block.hash[:16]}..."
                )
            if block.serialize() != raw:
                raise NonCanonicalError(
                    f"block {block.index}: the line is not the canonical "
                    "serialisation of the block (case, spacing, key "
                    "order or number format changed)"
                )
        except LedgerError as e:
            raise type(e)(f"{where}: {e}") from e
    if expected_height is not None and chain.height != expected_height:
        raise ChainFileError(f"{source}: expected {expected_height} blocks, found {chain.height}")
    if expected_tip is not None and chain.tip_hash != expected_tip:
        raise ChainFileError(
            f"{source}: the last block's hash {chain.tip_hash[:16]}... is not "
            f"the expected tip {expected_tip[:16]}..."
        )
    return chain
