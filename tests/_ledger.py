"""Test helpers of the ledger test modules."""

from __future__ import annotations

import numpy as np

from dtfl_env.ledger import Blockchain, make_submission, params_digest

#: identities of three group coordinators and the main coordinator
IDS = ["gc-0", "gc-1", "gc-2", "main"]


def flip_hex(h: str, pos: int = 5) -> str:
    """``h`` with one hex digit changed."""
    return h[:pos] + ("1" if h[pos] != "1" else "2") + h[pos + 1 :]


def make_chain(
    keys,
    n_blocks: int = 3,
    n_tx: int = 3,
    n_params: int = 16,  # type: ignore[no-untyped-def]
    seed: int = 0,
) -> Blockchain:
    """A valid chain; the first transaction of each block carries its parameters."""
    ids, reg = keys
    rng = np.random.default_rng(seed)
    chain = Blockchain(reg)
    g = rng.standard_normal(n_params).astype(np.float32)
    for r in range(n_blocks):
        txs = []
        for c in range(n_tx):
            w = rng.standard_normal(n_params).astype(np.float32)
            sub = make_submission(
                ids[f"gc-{c}"],
                cluster_id=c,
                round=r,
                params=w,
                global_digest=params_digest(g),
                participants=[10 * c, 10 * c + 1],
                sample_counts=[50, 70],
            )
            txs.append(sub.to_transaction(include_payload=(c == 0)))
        chain.append(chain.propose(ids[f"gc-{r % n_tx}"], txs, round=r, timestamp_s=1.5 * r))
        g = w
    return chain
