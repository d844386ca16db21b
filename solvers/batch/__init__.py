"""Solvers of problem P for a batch of clusters at once (numpy, vectorised over clusters).

:func:`solve_batch` runs a solver on B clusters in lockstep and returns a
:class:`BatchResult` (arrays indexed by cluster). By role:

- :mod:`solvers.batch.result`: :class:`BatchResult` and :data:`STATUS_CODES`;
- :mod:`solvers.batch._core`: a :class:`~dtfl_env.model.batch.ClusterBatch`'s constants of
  problem P, the batched tG search, the closed-form feasibility test and the cases every
  solver settles without a search (the batched counterpart of :mod:`solvers._core`);
- :mod:`solvers.batch.exact`: the exact solver (:func:`solvers.exact.solve_exact` in
  lockstep);
- :mod:`solvers.batch.algorithm2`: the paper's Algorithm 2, corrected mode
  (:func:`solvers.algorithm2.solve_algorithm2` in lockstep).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.model.batch import ClusterBatch
from solvers.batch.result import INFEASIBLE, STATUS_CODES, BatchResult

__all__ = ["METHODS", "STATUS_CODES", "BatchResult", "ClusterBatch", "solve_batch"]

METHODS = ("exact", "algorithm2")
"""The solvers :func:`solve_batch` runs: ``exact`` (:func:`solvers.exact.solve_exact`) and
``algorithm2`` (:func:`solvers.algorithm2.solve_algorithm2`, corrected mode)."""


def solve_batch(
    clusters: Sequence[Cluster] | ClusterBatch,
    method: str = "exact",
    *,
    rtol: float | None = None,
    max_rounds: int | None = None,
    chunk: int = 512,
) -> BatchResult:
    """Solve problem P on B clusters at once with ``method`` (one of :data:`METHODS`).

    ``exact``: the batched :func:`solvers.exact.solve_exact` (same algorithm, numpy over the
    batch, :mod:`solvers.batch.exact`): per cluster the closed-form feasibility test of
    docs/MODEL.md (erratum 5), then the 1-D convex search over the sync time u = tB_up with
    T(u) = max(V(u), u + tB_loc) + const (eqs. (11)-(13)), V(u) = min_tG y + tG each a 1-D
    convex search with the smallest feasible y in closed form (eqs. (14a), (18), (19),
    (24c)), all clusters in lockstep; each T* certified to ``rtol`` relative.

    ``algorithm2``: the batched :func:`solvers.algorithm2.solve_algorithm2` in corrected
    mode with its default settings (:mod:`solvers.batch.algorithm2`: the dual subgradient
    method (eqs. (29)-(36)) for all clusters and all their Q values at once, primal recovery
    by the batched tG search, the refinement rounds in lockstep with per-cluster stops).

    Parameters
    ----------
    clusters : sequence of Cluster or ClusterBatch
        The B clusters (B = 0 allowed). A sequence is padded once
        (:meth:`ClusterBatch.from_clusters`).
    method : str
        ``"exact"`` (default) or ``"algorithm2"``.
    rtol : float, optional
        ``exact`` only (default 1e-7). Relative certificate: a cluster is ``optimal`` once
        the convexity lower bound is within ``rtol`` of T. Other statuses: ``converged``
        (the search interval collapsed to machine precision first), ``not_converged``
        (``max_rounds`` refinement rounds), ``infeasible`` (T = inf, as
        :func:`solvers.exact.solve_exact`).
    max_rounds : int, optional
        ``exact`` only (default 80): refinement rounds of the search over u.
    chunk : int
        Clusters solved together (memory: about chunk x 20 x 12 x M_max floats per
        temporary for ``exact``, chunk x 250 x M_max per array for ``algorithm2``);
        clusters are grouped by M so that little padding is computed.

    Returns
    -------
    BatchResult
        Arrays of shape (B,) (``q``: (B, M_max)).
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method: must be one of {METHODS}, got {method!r}")
    if method != "exact" and (rtol is not None or max_rounds is not None):
        raise ValueError(f"rtol, max_rounds: options of the exact solver, not of {method!r}")
    rtol = 1e-7 if rtol is None else rtol
    max_rounds = 80 if max_rounds is None else max_rounds
    if not (0 < rtol < 1):
        raise ValueError(f"rtol: must be in (0, 1), got {rtol}")
    if not (isinstance(max_rounds, int | np.integer) and max_rounds >= 1):
        raise ValueError(f"max_rounds: must be an int >= 1, got {max_rounds!r}")
    if not (isinstance(chunk, int | np.integer) and chunk >= 1):
        raise ValueError(f"chunk: must be an int >= 1, got {chunk!r}")
    if isinstance(clusters, ClusterBatch):
        cb = clusters
    elif isinstance(clusters, Cluster) or not isinstance(clusters, Sequence):
        raise ValueError("clusters: expected a sequence of dtfl_env.Cluster or a ClusterBatch")
    else:
        cb = ClusterBatch.from_clusters(clusters)
    if method == "exact":
        from solvers.batch.exact import solve_chunk

        def run(sub: ClusterBatch) -> dict[str, np.ndarray]:
            return solve_chunk(sub, rtol, max_rounds)
    else:
        from solvers.batch.algorithm2 import solve_chunk as run
    b = cb.size
    m_all = cb.n_gld
    out = {
        name: np.full(b, np.nan)
        for name in ("T", "Q", "y", "tG", "tB_up", "T_GLD", "T_BLD", "lower_bound_s")
    }
    q_all = np.full((b, cb.gld_mask.shape[1]), np.nan)
    code = np.full(b, INFEASIBLE)
    msg = np.full(b, "", dtype=object)
    nit = np.zeros(b, dtype=int)
    order = np.argsort(m_all, kind="stable")  # similar M together: little padding
    for s0 in range(0, b, chunk):
        idx = order[s0 : s0 + chunk]
        res = run(cb.subset(idx))
        for name in out:
            out[name][idx] = res[name]
        q_all[idx, : res["q"].shape[1]] = res["q"]
        code[idx] = res["code"]
        msg[idx] = res["message"]
        nit[idx] = res["nit"]
    out["T"] = np.where(code == INFEASIBLE, np.inf, out["T"])
    return BatchResult(
        T=out["T"],
        Q=out["Q"],
        y=out["y"],
        tG=out["tG"],
        q=q_all,
        tB_up=out["tB_up"],
        T_GLD=out["T_GLD"],
        T_BLD=out["T_BLD"],
        status_code=code,
        message=msg,
        lower_bound_s=out["lower_bound_s"],
        iterations=nit,
        wall_time_s=time.perf_counter() - t0,
        n_gld=m_all,
        solver=f"{method}-batch",
    )
