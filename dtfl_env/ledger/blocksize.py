"""Block size (Fig. 9): the proposed scheme against FedAvg on chain.

- Proposed scheme: one transaction per cluster, signed by its group coordinator and
  carrying the cluster model (the FedAvg of its devices' models) as payload.
- FedAvg on chain: one transaction per participating device, each carrying that device's
  model (every device signs as a cluster of one).

:func:`block_size_bytes` is the real size of the stored block: the length of its canonical
JSON line (:meth:`Block.serialize`), payloads included. A payload is the float32 parameter
vector, 4 bytes per parameter, hex-encoded in the JSON (8 characters per parameter).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dtfl_env.ledger.chain import Block, Transaction, make_block
from dtfl_env.ledger.encoding import ZERO_HASH, params_bytes, sha256_hex
from dtfl_env.ledger.identity import Identity, Registry

__all__ = [
    "SMALL_CNN_PARAMS",
    "block_size_bytes",
    "fedavg_block",
    "proposed_block",
    "split_devices",
]

#: parameters of the MNIST CNN of PyTorch's example (conv 1->10 k5, conv 10->20 k5, fc 320->50,
#: fc 50->10): 260 + 5,020 + 16,050 + 510
SMALL_CNN_PARAMS = 21_840


def block_size_bytes(block: Block) -> int:
    """Size of the serialised block in bytes (its canonical JSON line, no newline)."""
    return len(block.serialize())


def split_devices(n_devices: int, n_clusters: int) -> list[int]:
    """Cluster sizes for ``n_devices`` spread as evenly as possible over ``n_clusters``."""
    if n_devices < 1 or n_clusters < 1:
        raise ValueError("n_devices, n_clusters: must be >= 1")
    n_clusters = min(n_clusters, n_devices)
    base, extra = divmod(n_devices, n_clusters)
    return [base + (1 if k < extra else 0) for k in range(n_clusters)]


def _tx(
    identity: Identity,
    cluster_id: int,
    round: int,
    participants: Sequence[int],
    counts: Sequence[int],
    n_params: int,
    global_digest: str,
    rng: np.random.Generator,
    with_payload: bool,
) -> Transaction:
    params = rng.standard_normal(n_params, dtype=np.float32)
    data = params_bytes(params)
    return Transaction.create(
        identity,
        cluster_id=cluster_id,
        round=round,
        model_digest=sha256_hex(data),
        global_digest=global_digest,
        participants=participants,
        sample_counts=counts,
        payload=data if with_payload else None,
    )


def _check(n_params: int) -> None:
    if isinstance(n_params, bool) or not isinstance(n_params, (int, np.integer)) or n_params < 1:
        raise ValueError(f"n_params: must be an integer >= 1, got {n_params!r}")


def proposed_block(
    cluster_sizes: Sequence[int],
    n_params: int,
    *,
    rng: np.random.Generator,
    round: int = 0,
    with_payload: bool = True,
    registry: Registry | None = None,
) -> Block:
    """The proposed scheme's block: one transaction per cluster (cluster model as payload).

    Parameters
    ----------
    cluster_sizes : sequence of int
        Devices per cluster (device ids are numbered consecutively across clusters).
    n_params : int
        Model size P (float32 parameters).
    rng : np.random.Generator
        Seeds keys, parameters and sample counts.
    round : int
        Round of the block.
    with_payload : bool
        Carry the parameters (True) or only their digest.
    registry : Registry, optional
        If given, the generated coordinator and validator keys are registered in it (so the
        block can be verified).
    """
    _check(n_params)
    sizes = [int(s) for s in cluster_sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError("cluster_sizes: need at least one cluster, each with >= 1 device")
    global_digest = sha256_hex(rng.bytes(32))
    validator = Identity.generate("validator", rng)
    txs, first = [], 0
    for c, size in enumerate(sizes):
        gc = Identity.generate(f"gc-{c}", rng)
        if registry is not None:
            registry.add(gc)
        devices = list(range(first, first + size))
        first += size
        counts = rng.integers(100, 1000, size=size).tolist()
        txs.append(_tx(gc, c, round, devices, counts, n_params, global_digest, rng, with_payload))
    if registry is not None:
        registry.add(validator)
    return make_block(validator, txs, index=0, prev_hash=ZERO_HASH, round=round, timestamp_s=0.0)


def fedavg_block(
    n_devices: int,
    n_params: int,
    *,
    rng: np.random.Generator,
    round: int = 0,
    with_payload: bool = True,
    registry: Registry | None = None,
) -> Block:
    """FedAvg on chain: one transaction per participating device (its model as payload).

    Parameters are as in :func:`proposed_block`; device ``d`` signs as ``"device-d"`` with
    ``cluster_id = d`` and itself as the only participant.
    """
    _check(n_params)
    if isinstance(n_devices, bool) or not isinstance(n_devices, (int, np.integer)) or n_devices < 1:
        raise ValueError(f"n_devices: must be an integer >= 1, got {n_devices!r}")
    global_digest = sha256_hex(rng.bytes(32))
    validator = Identity.generate("validator", rng)
    txs = []
    for d in range(int(n_devices)):
        dev = Identity.generate(f"device-{d}", rng)
        if registry is not None:
            registry.add(dev)
        count = int(rng.integers(100, 1000))
        txs.append(_tx(dev, d, round, [d], [count], n_params, global_digest, rng, with_payload))
    if registry is not None:
        registry.add(validator)
    return make_block(validator, txs, index=0, prev_hash=ZERO_HASH, round=round, timestamp_s=0.0)
