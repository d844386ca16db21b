"""The scipy-style result object every solver returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SolverResult"]

STATUSES = ("optimal", "converged", "not_converged", "primal_infeasible", "infeasible")


@dataclass
class SolverResult:
    """Solution of problem P on one cluster (SI units).

    Attributes follow the paper's symbols: ``T`` (round latency, eq. (11); ``inf`` when
    infeasible), ``Q`` (aggregate jamming, eq. (20)), ``y`` (common local-training time),
    ``v`` (CPU rates, eq. (17)), ``tG`` (NOMA upload time), ``q`` (jamming powers),
    ``tB_up`` (BLD sync time, eq. (23)), ``T_GLD`` and ``T_BLD`` (eqs. (12), (13)).
    ``status`` is one of ``optimal`` (certified), ``converged``, ``not_converged``,
    ``primal_infeasible`` (the returned allocation breaks a constraint: only the
    paper-faithful Algorithm 2 does this) or ``infeasible`` (the cluster has no solution);
    ``message`` says why. ``info`` holds solver-specific traces (e.g. the
    lambda trajectories and T(Q) curve of Algorithm 2).
    """

    T: float
    Q: float
    y: float
    v: np.ndarray
    tG: float
    q: np.ndarray
    tB_up: float
    T_GLD: float
    T_BLD: float
    status: str
    message: str
    iterations: int = 0
    wall_time_s: float = 0.0
    solver: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status: must be one of {STATUSES}, got {self.status!r}")

    # scipy.optimize.OptimizeResult-style aliases
    @property
    def success(self) -> bool:
        return self.status in ("optimal", "converged")

    @property
    def fun(self) -> float:
        return self.T

    @property
    def nit(self) -> int:
        return self.iterations

    @property
    def feasible(self) -> bool:
        return self.status != "infeasible" and math.isfinite(self.T)

    @classmethod
    def infeasible(
        cls,
        m: int,
        message: str,
        *,
        solver: str = "",
        iterations: int = 0,
        wall_time_s: float = 0.0,
        info: dict[str, Any] | None = None,
    ) -> SolverResult:
        nan = math.nan
        return cls(
            T=math.inf,
            Q=nan,
            y=nan,
            v=np.full(m, nan),
            tG=nan,
            q=np.full(m, nan),
            tB_up=nan,
            T_GLD=nan,
            T_BLD=nan,
            status="infeasible",
            message=message,
            iterations=iterations,
            wall_time_s=wall_time_s,
            solver=solver,
            info=info or {},
        )

    def to_json_dict(self) -> dict[str, Any]:
        """The CLI's JSON record: non-finite numbers become ``null``."""

        def num(x: float) -> float | None:
            x = float(x)
            return x if math.isfinite(x) else None

        feasible = self.feasible
        return {
            "T": num(self.T) if feasible else None,
            "Q": num(self.Q) if feasible else None,
            "y": num(self.y) if feasible else None,
            "v": [num(x) for x in self.v] if feasible else None,
            "tG": num(self.tG) if feasible else None,
            "q": [num(x) for x in self.q] if feasible else None,
            "tB_up": num(self.tB_up) if feasible else None,
            "T_GLD": num(self.T_GLD) if feasible else None,
            "T_BLD": num(self.T_BLD) if feasible else None,
            "status": self.status,
            "message": self.message,
            "solver": self.solver,
            "iterations": int(self.iterations),
            "wall_time_s": float(self.wall_time_s),
        }

    def __repr__(self) -> str:
        return (
            f"SolverResult(solver={self.solver!r}, status={self.status!r}, T={self.T:.6g}, "
            f"Q={self.Q:.6g}, y={self.y:.6g}, tG={self.tG:.6g}, tB_up={self.tB_up:.6g}, "
            f"nit={self.iterations}, message={self.message!r})"
        )
