"""Beyond the paper: PPO against Algorithm 2, the exact solver and the heuristics.

What the figure shows, how it is computed and its options: the docstring of
``agents/figures/fig10.py``, which ``dtfl reproduce fig10``
runs too; this script passes its command line to that module's ``main``.

    python examples/fig10_ppo.py                    # -> runs/fig10_ppo/
    python examples/fig10_ppo.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig10_ppo.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig10

if __name__ == "__main__":
    fig10.main(sys.argv[1:])
