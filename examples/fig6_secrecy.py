"""Fig. 6: secrecy throughput of each BLD with and without cooperative jamming (Table II).

Three jamming choices on the Table II cluster (6 GLDs jam, 4 BLDs sync their twins):

- ``optimal``: the exact solver's jamming powers q* (aggregate Q* at the eavesdropper);
- ``fixed``: every GLD jams at ``--fixed-fraction`` (default half) of its Q_max;
- ``none``: no jamming, Q = 0.

For each: the secrecy rate R_j of every BLD (eqs. (9), (21)), its sync time D_jB / R_j, the
DT sync time tB_up = max_j D_jB / R_j (eq. (23); infinite, i.e. sync impossible, when some
R_j = 0) and, where defined, the round latency T (eq. (11)) with the best (y, tG) for that
jamming: for ``optimal`` the exact T*; for ``fixed`` the jamming powers are held and (y, tG)
minimise y + tG under the energy budgets left after jamming (a 1-D search over tG).

The figure's code is ``agents/figures/fig6.py``, which ``dtfl reproduce fig6`` runs too;
this script passes its command line to that module's ``main``.

    python examples/fig6_secrecy.py                    # -> runs/fig6_secrecy/
    python examples/fig6_secrecy.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig6_secrecy.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig6

if __name__ == "__main__":
    fig6.main(sys.argv[1:])
