"""Fig. 8: global model accuracy with malicious nodes: the proposed ledger against a
signature-only ledger (the paper's ref. [39]) and plain FedAvg.

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig8.py``, which ``dtfl reproduce fig8`` runs too; this script passes its
command line to that module's ``main``.

    python examples/fig8_malicious.py                    # -> runs/fig8_malicious/
    python examples/fig8_malicious.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig8_malicious.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig8

if __name__ == "__main__":
    fig8.main(sys.argv[1:])
