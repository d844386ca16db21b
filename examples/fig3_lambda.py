"""Fig. 3: convergence of the dual multipliers lambda_i of Algorithm 2 (Table II).

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig3.py``, which ``dtfl reproduce fig3`` runs too; this script passes its
command line to that module's ``main``.

    python examples/fig3_lambda.py                    # -> runs/fig3_lambda/
    python examples/fig3_lambda.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig3_lambda.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig3

if __name__ == "__main__":
    fig3.main(sys.argv[1:])
