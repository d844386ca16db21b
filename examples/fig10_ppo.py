"""Beyond the paper: PPO against Algorithm 2, the exact solver and the heuristics.

PPO (stable-baselines3, the safe action mode) is trained on each latency-only id and run
with Algorithm 2, the exact solver and every heuristic on the same seeded evaluation
episodes; reported per policy: mean latency over the feasible clusters, the gap to
Algorithm 2 and to the exact optimum, and the share of clusters with a violation.

The figure's code is ``agents/figures/fig10.py`` (its docstring has the details), which
``dtfl reproduce fig10`` runs too; this script passes its command line to that module's
``main``.

    python examples/fig10_ppo.py                    # -> runs/fig10_ppo/
    python examples/fig10_ppo.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig10_ppo.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig10

if __name__ == "__main__":
    fig10.main(sys.argv[1:])
