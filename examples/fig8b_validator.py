"""Fig. 8b: why the validator is chosen by reputation (eq. (2)): reputation-based selection
against random and round-robin selection, with malicious coordinators among the candidates.

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig8b.py``, which ``dtfl reproduce fig8b``
runs too; this script passes its command line to that module's ``main``.

    python examples/fig8b_validator.py                    # -> runs/fig8b_validator/
    python examples/fig8b_validator.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig8b_validator.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig8b

if __name__ == "__main__":
    fig8b.main(sys.argv[1:])
