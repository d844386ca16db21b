"""Without cvxpy (an optional dependency: the ``cvx`` extra), choosing the cvxpy solver says
how to install it; the other solvers and the CLI's other paths do not need it."""

from __future__ import annotations

import sys

import pytest

from agents.cli import main
from dtfl_env.scenarios import table2_cluster
from solvers import solve
from solvers.cvx import solve_cvxpy

INSTALL = r"pip install 'dtfl-gym\[cvx\]'"


@pytest.fixture
def no_cvxpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import cvxpy`` fails as it does where cvxpy is not installed."""
    monkeypatch.setitem(sys.modules, "cvxpy", None)


@pytest.mark.usefixtures("no_cvxpy")
def test_the_cvxpy_solver_says_how_to_install_cvxpy() -> None:
    with pytest.raises(ImportError, match=INSTALL):
        solve_cvxpy(table2_cluster())
    with pytest.raises(ImportError, match=INSTALL):
        solve(table2_cluster(), "cvxpy")


@pytest.mark.usefixtures("no_cvxpy")
def test_the_cli_says_it_as_an_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", "--preset", "table2", "--solver", "cvxpy"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "pip install 'dtfl-gym[cvx]'" in err


@pytest.mark.usefixtures("no_cvxpy")
def test_the_other_solvers_do_not_need_cvxpy(capsys: pytest.CaptureFixture[str]) -> None:
    assert solve(table2_cluster(), "exact").T == pytest.approx(3.531505, rel=1e-6)
    assert main(["solve", "--preset", "table2", "--solver", "algorithm2", "--json"]) == 0
    assert '"status": "converged"' in capsys.readouterr().out
