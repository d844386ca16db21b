"""The answer of a batched solver: :class:`BatchResult`, arrays indexed by cluster."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np

from dtfl_env.config import Cluster
from solvers._core import finalize
from solvers.result import SolverResult

__all__ = ["STATUS_CODES", "BatchResult"]

STATUS_CODES = ("optimal", "converged", "not_converged", "infeasible")
"""``BatchResult.status_code`` indexes this tuple (the statuses of :class:`SolverResult`
that the batched solvers return)."""
OPTIMAL, CONVERGED, NOT_CONVERGED, INFEASIBLE = range(4)


@dataclass
class BatchResult:
    """Solutions of problem P on B clusters (SI units), arrays indexed by cluster.

    Attributes mirror :class:`solvers.result.SolverResult`, one entry per cluster: ``T``
    (round latency, eq. (11); ``inf`` when infeasible), ``Q`` (aggregate jamming, eq. (20)),
    ``y`` (common local-training time), ``tG`` (NOMA upload time), ``q`` (jamming powers,
    shape (B, M_max), NaN in padded slots and for infeasible clusters), ``tB_up`` (BLD sync
    time, eq. (23)), ``T_GLD`` and ``T_BLD`` (eqs. (12), (13)); ``status`` (strings) and
    ``status_code`` (indices into :data:`STATUS_CODES`), ``message`` (strings),
    ``lower_bound_s`` (the certified lower bound on T*; NaN where the solver certifies
    none, as Algorithm 2), ``iterations`` (outer rounds of the exact solver, dual iterations
    of Algorithm 2, as the per-cluster solvers count them), ``wall_time_s`` (the whole
    batch) and ``solver`` (``exact-batch``, ``algorithm2-batch``). ``T``, ``Q``, ``tB_up``
    are the model's evaluation of (y, tG, q) (eqs. (11), (20), (23)), as
    :func:`solvers._core.finalize` reports them.
    """

    T: np.ndarray
    Q: np.ndarray
    y: np.ndarray
    tG: np.ndarray
    q: np.ndarray
    tB_up: np.ndarray
    T_GLD: np.ndarray
    T_BLD: np.ndarray
    status_code: np.ndarray
    message: np.ndarray
    lower_bound_s: np.ndarray
    iterations: np.ndarray
    wall_time_s: float = 0.0
    solver: str = "exact-batch"
    n_gld: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    @property
    def status(self) -> np.ndarray:
        return np.array(STATUS_CODES, dtype=object)[self.status_code]

    @property
    def success(self) -> np.ndarray:
        return self.status_code <= CONVERGED

    @property
    def feasible(self) -> np.ndarray:
        return (self.status_code != INFEASIBLE) & np.isfinite(self.T)

    @property
    def fun(self) -> np.ndarray:
        return self.T

    @property
    def nit(self) -> np.ndarray:
        return self.iterations

    def __len__(self) -> int:
        return int(self.T.size)

    def jam_power_w(self, i: int) -> np.ndarray:
        """Cluster ``i``'s jamming powers without the padding, shape (M_i,)."""
        return self.q[i, : int(self.n_gld[i])]

    def result(self, i: int, cluster: Cluster) -> SolverResult:
        """Cluster ``i``'s answer as the per-cluster :class:`SolverResult` (``cluster``: the
        ``i``-th cluster of the batch), re-evaluated in the model like :func:`solve_exact`'s.
        ``wall_time_s`` is the batch's share per cluster."""
        if not 0 <= i < len(self):
            raise ValueError(f"i: must be in [0, {len(self)}), got {i}")
        if cluster.n_gld != int(self.n_gld[i]):
            raise ValueError(
                f"cluster: has {cluster.n_gld} GLDs, batch entry {i} has {int(self.n_gld[i])}"
            )
        share = self.wall_time_s / max(len(self), 1)
        status, msg, nit = str(self.status[i]), str(self.message[i]), int(self.iterations[i])
        if status == "infeasible":
            return SolverResult.infeasible(
                cluster.n_gld, msg, solver=self.solver, iterations=nit, wall_time_s=share
            )
        res = finalize(
            cluster,
            y=float(self.y[i]),
            tg=float(self.tG[i]),
            q=self.jam_power_w(i),
            status=status,
            message=msg,
            solver=self.solver,
            iterations=nit,
            t0=time.perf_counter(),
            info=(
                {"lower_bound_s": float(self.lower_bound_s[i])}
                if np.isfinite(self.lower_bound_s[i])
                else {}
            ),
        )
        return dataclasses.replace(res, wall_time_s=share)

    def __repr__(self) -> str:
        counts = {s: int(np.sum(self.status_code == k)) for k, s in enumerate(STATUS_CODES)}
        return f"BatchResult(B={len(self)}, status={counts}, wall_time_s={self.wall_time_s:.3g})"
