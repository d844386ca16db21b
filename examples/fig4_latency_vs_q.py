"""Fig. 4: round latency T against the aggregate jamming Q for model sizes L = 1-4 Mbit.

On the Table II cluster, for each L, T(Q) is computed exactly on a dense grid: at each Q the
best (y, tG, q) is found by ``agents.policies.allocation_at_q`` (problem P-GLD solved
exactly) and charged by ``dtfl_env.model.evaluate_allocation``, i.e.
T(Q) = max(y + tG, tB_up(Q) + tB_loc) + T_agg + T_up + T_MC (eqs. (11)-(13), (23)).
The grid is log-spaced in Q - Q_lo (the latency blows up at the lower bound of eq. (22))
plus a linear grid over the whole interval. Q values with no feasible allocation (the GLDs
cannot pay for the jamming) are gaps. Each optimum from ``solve(..., "exact")`` is marked.

The figure's code is ``agents/figures/fig4.py``, which ``dtfl reproduce fig4`` runs too;
this script passes its command line to that module's ``main``.

    python examples/fig4_latency_vs_q.py                    # -> runs/fig4_latency_vs_q/
    python examples/fig4_latency_vs_q.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig4_latency_vs_q.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig4

if __name__ == "__main__":
    fig4.main(sys.argv[1:])
