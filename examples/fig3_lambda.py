"""Fig. 3: convergence of the dual multipliers lambda_i of Algorithm 2 (Table II).

Runs the dual subgradient loop of Algorithm 2 (lines 2-6: Sub-Y (29), Sub-T (32), Sub-Q (35),
step (36)) at a fixed aggregate jamming Q = 3e-8 W on the Table II cluster, once as the paper
writes it (``mode="paper"``: raw step alpha_0 / sqrt(n) in s/J^2) and once with the corrected,
unit-free step (``mode="corrected"``), and plots one lambda trajectory per GLD.

The paper's Fig. 3(b) uses Q = 3e-7 W. At Table II that value is infeasible: eq. (22) caps Q
at sum_i Q_max,i g_iE = 8.35e-8 W (every GLD jamming at full power), so it is checked and
reported, not plotted.

The figure's code is ``agents/figures/fig3.py``, which ``dtfl reproduce fig3`` runs too;
this script passes its command line to that module's ``main``.

    python examples/fig3_lambda.py                    # -> runs/fig3_lambda/
    python examples/fig3_lambda.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig3_lambda.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig3

if __name__ == "__main__":
    fig3.main(sys.argv[1:])
