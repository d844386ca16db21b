"""Fig. 9: block size against the number of participating devices, proposed scheme vs FedAvg.

Builds and signs (real Ed25519 keys) the block of one FL round with ``dtfl_env.ledger`` and
measures its real serialised size (the stored canonical JSON line, model parameters as hex
payload: 8 characters per float32 parameter of the MNIST CNN):

- proposed, 10 devices per cluster: one transaction per group coordinator carrying the
  cluster model (the paper's clusters have 10 devices, Table II); coordinators grow with
  the devices;
- proposed, S fixed coordinators (default 5): the devices spread over S clusters;
- FedAvg on chain: one transaction per participating device carrying its own model.

The figure's code is ``agents/figures/fig9.py``, which ``dtfl reproduce fig9`` runs too;
this script passes its command line to that module's ``main``.

    python examples/fig9_block_size.py                    # -> runs/fig9_block_size/
    python examples/fig9_block_size.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig9_block_size.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig9

if __name__ == "__main__":
    fig9.main(sys.argv[1:])
