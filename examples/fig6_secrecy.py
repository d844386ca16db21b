"""Fig. 6: secrecy throughput of each BLD with and without cooperative jamming (Table II).

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig6.py``, which ``dtfl reproduce fig6`` runs too; this script passes its
command line to that module's ``main``.

    python examples/fig6_secrecy.py                    # -> runs/fig6_secrecy/
    python examples/fig6_secrecy.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig6_secrecy.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig6

if __name__ == "__main__":
    fig6.main(sys.argv[1:])
