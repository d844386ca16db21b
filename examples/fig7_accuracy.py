"""Fig. 7: accuracy of the global model against simulated time, each scheme on its own
optimised allocation, over several topology seeds.

Per seed, S random clusters of k devices (``classify_and_build``: eq. (3) splits each into
GLDs and BLDs) share the embedded MNIST training set in proportion to their data sizes D,
label-skewed (Dirichlet, ``--alpha``). The model upload L of eq. (7) is the trained model's
serialised size (``model_size_bits``: the CNN's 21,840 float32 parameters, 0.70 Mbit). Time
is the latency model's seconds (eq. (11)), never CPU time. Clusters run in parallel: a round
lasts the maximum of the per-cluster times T_s of the clusters that take part; a cluster
with no feasible allocation sits out (its devices' data never reaches the model).

The figure's code is ``agents/figures/fig7.py`` (its docstring has the details), which
``dtfl reproduce fig7`` runs too; this script passes its command line to that module's
``main``.

    python examples/fig7_accuracy.py                    # -> runs/fig7_accuracy/
    python examples/fig7_accuracy.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig7_accuracy.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig7

if __name__ == "__main__":
    fig7.main(sys.argv[1:])
