"""Fig. 8b: why the validator is chosen by reputation (eq. (2)): reputation-based selection
against random and round-robin selection, with malicious coordinators among the candidates.

``DTFL-v0`` with real training and the full ledger; malicious coordinators submit poisoned
models and, when chosen as validator, verify dishonestly. Each policy runs on the same
seeds; reported: how often a malicious coordinator validated, how often the audit proved a
block wrong, and the test accuracy over rounds.

The figure's code is ``agents/figures/fig8b.py`` (its docstring has the details), which
``dtfl reproduce fig8b`` runs too; this script passes its command line to that module's
``main``.

    python examples/fig8b_validator.py                    # -> runs/fig8b_validator/
    python examples/fig8b_validator.py --quick --out DIR  # tiny budget -> DIR/
    python examples/fig8b_validator.py --help             # every option (--seed, ...)
"""

import sys

from agents.figures import fig8b

if __name__ == "__main__":
    fig8b.main(sys.argv[1:])
