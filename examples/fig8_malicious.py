"""Fig. 8: global model accuracy with malicious nodes: the proposed ledger against a
signature-only ledger (the paper's ref. [39]) and plain FedAvg.

``DTFL-v0`` with real training on the embedded 5k MNIST and 3 malicious group coordinators
(clusters 0-2), each attack in turn: ``random`` (poisoned models of random noise),
``label_flip`` (their devices train on wrong labels) and ``scaled`` (the honest update x -10).
The ledger modes:

- ``full`` (proposed): signatures, digests, provenance, quality on the validator's held-out
  data and update norms; only verified cluster models reach the global model;
- ``signature``: signatures and digests only, so a signed poisoned model passes;
- ``none``: plain FedAvg, everything is aggregated.

Every run uses the same seed (same clusters, partition and initial model) and the exact
solver's allocation in each step.

The figure's code is ``agents/figures/fig8.py``, which ``dtfl reproduce fig8`` runs too;
this script passes its command line to that module's ``main``.

    python examples/fig8_malicious.py                    # -> runs/fig8_malicious/
    python examples/fig8_malicious.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig8_malicious.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig8

if __name__ == "__main__":
    fig8.main(sys.argv[1:])
