"""Fig. 4: round latency T against the aggregate jamming Q for model sizes L = 1-4 Mbit.

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig4.py``, which ``dtfl reproduce fig4`` runs too; this script passes its
command line to that module's ``main``.

    python examples/fig4_latency_vs_q.py                    # -> runs/fig4_latency_vs_q/
    python examples/fig4_latency_vs_q.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig4_latency_vs_q.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig4

if __name__ == "__main__":
    fig4.main(sys.argv[1:])
