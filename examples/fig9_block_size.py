"""Fig. 9: block size against the number of participating devices, proposed scheme vs FedAvg.

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig9.py``, which ``dtfl reproduce fig9`` runs too; this script passes its
command line to that module's ``main``.

    python examples/fig9_block_size.py                    # -> runs/fig9_block_size/
    python examples/fig9_block_size.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig9_block_size.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig9

if __name__ == "__main__":
    fig9.main(sys.argv[1:])
