"""Fig. 7: accuracy of the global model against simulated time, each scheme on its own
optimised allocation, over several topology seeds.

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig7.py``, which ``dtfl reproduce fig7``
runs too; this script passes its command line to that module's ``main``.

    python examples/fig7_accuracy.py                    # -> runs/fig7_accuracy/
    python examples/fig7_accuracy.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig7_accuracy.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig7

if __name__ == "__main__":
    fig7.main(sys.argv[1:])
