"""Fig. 5: computation time of Algorithm 2 and the exact solver against a generic solver.

The paper times Algorithm 2 against CVX (Gurobi) and LINGO's global solver on 1-10 clusters
of 10 devices and reports identical answers at a fraction of the time. Here the generic
solver is the cvxpy cross-check (``solve(..., "cvxpy")``: a search over Q with each convex
subproblem solved by cvxpy). The same seeded random clusters (6 GLDs + 4 BLDs, as Table II)
are solved by every method; the total time for S clusters is the time to solve the first S
of them one after another (the prefix sum of the per-cluster times, each the best of
``--repeats`` runs after one untimed warm-up call per method). Agreement is reported as the
largest relative difference in T to the exact solver over those S clusters ("at equal T").
Clusters the exact solver proves infeasible are skipped (with ``--keep-infeasible`` they are
kept: every method must report them infeasible).

The figure's code is ``agents/figures/fig5.py``, which ``dtfl reproduce fig5`` runs too;
this script passes its command line to that module's ``main``.

    python examples/fig5_solver_time.py                    # -> runs/fig5_solver_time/
    python examples/fig5_solver_time.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig5_solver_time.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig5

if __name__ == "__main__":
    fig5.main(sys.argv[1:])
