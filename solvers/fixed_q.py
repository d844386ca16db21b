"""Problem P at a fixed aggregate jamming Q: the best (y, tG, q) for that Q, exactly.

The inner problem of the exact solver and of Algorithm 2's Q grid (for fixed Q the sync time
tB_up(Q) is fixed, eq. (23), and the GLDs' part is convex in (y, tG)); heuristics and the
figures use it to price one jamming level (no jamming, the least jamming that syncs, a tuned
fixed Q).
"""

from __future__ import annotations

import math

import numpy as np

from dtfl_env.config import Cluster
from solvers._core import Prepared

__all__ = ["allocation_at_q"]


def allocation_at_q(
    cluster: Cluster | Prepared, q_w: float
) -> tuple[float, float, np.ndarray] | None:
    """Best (y, tG, q) for a fixed aggregate jamming Q (problem P-GLD solved exactly).

    Returns ``None`` where Q admits no feasible allocation.
    """
    p = cluster if isinstance(cluster, Prepared) else Prepared(cluster)
    if p.m == 0:
        return None
    with np.errstate(all="ignore"):
        u = float(p.sync_time(np.array(q_w)))
    if not math.isfinite(u):
        return None
    dem = p.jam_demand(np.array([q_w]), np.array([u]))
    v, y, tg = p.gld_time(dem, np.array([u]))
    if not np.isfinite(v[0]):
        return None
    q = p.jam_split(float(y[0]), float(tg[0]), float(q_w), u)
    return float(y[0]), float(tg[0]), q
