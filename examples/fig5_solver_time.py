"""Fig. 5: computation time of Algorithm 2 and the exact solver against a generic solver.

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig5.py``, which ``dtfl reproduce fig5`` runs too; this script passes its
command line to that module's ``main``.

    python examples/fig5_solver_time.py                    # -> runs/fig5_solver_time/
    python examples/fig5_solver_time.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig5_solver_time.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig5

if __name__ == "__main__":
    fig5.main(sys.argv[1:])
