"""Block sizes of Fig. 9 (dtfl_env.ledger.blocksize)."""

from __future__ import annotations

import numpy as np

from dtfl_env.ledger import (
    block_size_bytes,
    fedavg_block,
    make_identities,
    proposed_block,
    split_devices,
    verify_blocks,
)


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
