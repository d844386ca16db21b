"""Solvers of problem P (one cluster): the paper's Algorithm 2, an exact solver and a
generic cvxpy cross-check. Each returns a scipy-style :class:`SolverResult`.
:func:`solve_batch` runs the exact solver or corrected Algorithm 2 on many clusters at once
(:class:`BatchResult`)."""

from __future__ import annotations

from typing import Any

from dtfl_env.config import Cluster
from solvers.batch import BatchResult, ClusterBatch, solve_batch
from solvers.exact import solve_exact
from solvers.fixed_q import allocation_at_q
from solvers.result import SolverResult

__all__ = [
    "SOLVERS",
    "BatchResult",
    "ClusterBatch",
    "SolverResult",
    "allocation_at_q",
    "solve",
    "solve_batch",
    "solve_exact",
]

SOLVERS = ("exact", "algorithm2", "algorithm2-paper", "cvxpy")


def solve(cluster: Cluster, method: str = "exact", **options: Any) -> SolverResult:
    """Solve problem P on ``cluster`` with ``method`` (one of :data:`SOLVERS`)."""
    if method == "exact":
        return solve_exact(cluster, **options)
    if method == "algorithm2":
        from solvers.algorithm2 import solve_algorithm2

        return solve_algorithm2(cluster, **options)
    if method == "algorithm2-paper":
        from solvers.algorithm2 import solve_algorithm2

        return solve_algorithm2(cluster, mode="paper", **options)
    if method == "cvxpy":
        from solvers.cvx import solve_cvxpy

        return solve_cvxpy(cluster, **options)
    raise ValueError(f"method: unknown solver {method!r} (known: {', '.join(SOLVERS)})")
