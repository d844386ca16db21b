#!/usr/bin/env bash
# Run every figure script (examples/fig*.py) from the repository root, in order.
#
#   examples/reproduce_all.sh            # full budgets, outputs in runs/<figure>/
#   examples/reproduce_all.sh --quick    # tiny budgets (a smoke test)
#
# Arguments are passed to every script unchanged (meant for --quick; every script also
# accepts --seed N). New figure scripts named examples/fig*.py are picked up automatically.
# All scripts run even if one fails; the exit status is non-zero if any failed. Each script
# calls its module in agents/figures/; `dtfl reproduce all [--quick] [--out DIR]` runs the
# same figures in one process, without a checkout.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
export MPLBACKEND=Agg
failed=()
for script in examples/fig*.py; do
    [ -e "$script" ] || continue
    echo "=== $script $*"
    start=$(date +%s)
    if "$PY" "$script" "$@"; then
        echo "=== $script done in $(( $(date +%s) - start )) s"
    else
        echo "=== $script FAILED (exit $?)" >&2
        failed+=("$script")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
echo "all figure scripts finished; outputs under runs/"
