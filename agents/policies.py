"""Reference policies (Algorithm 2, exact solver) and heuristic baselines.

All act on the raw cluster the environment exposes (``env.unwrapped.cluster``; for BLDs the
digital twins' estimates) and return the action that the environment maps back to their
allocation (``allocation_to_action``). Where a policy finds no feasible allocation it falls
back to :func:`fallback_action`: the slowest local training and upload the action range
allows (least energy) and as much jamming as every GLD can pay, so that no GLD drops out for
its own sake (some BLDs may then fail to sync). Policies work in either action mode of the
environment (``action.mode``: ``direct`` or ``safe``), through ``allocation_to_action``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from agents.base import EnvPolicy
from dtfl_env.config import Cluster
from dtfl_env.envs.dtfl import ACTION_SIZES
from dtfl_env.model.feasible import (
    jamming_interval,
    jamming_split,
    training_energy_j,
)
from dtfl_env.model.round import round_outcome
from solvers import allocation_at_q, solve
from solvers._core import Prepared

__all__ = [
    "POLICIES",
    "BestFixedQPolicy",
    "EqualEnergyPolicy",
    "ExactPolicy",
    "GreedyLocalPolicy",
    "MaxJammingPolicy",
    "NoJammingPolicy",
    "RandomPolicy",
    "SolverPolicy",
    "allocation_at_q",
    "fallback_action",
    "fallback_allocation",
    "gld_optimal_allocations",
    "least_energy_allocation",
    "make_policy",
]


def _max_affordable_jamming(env: Any, left_j: np.ndarray) -> np.ndarray:
    """Jamming powers for the largest aggregate Q that every GLD can pay from ``left_j``
    joules over the sync time tB(Q) it buys (q_i tB(Q) <= left_i, q_i <= Q_max,i), split in
    proportion to what each can give (exact: :func:`dtfl_env.model.feasible.jamming_interval`);
    no jamming when no Q that syncs every BLD is affordable."""
    arr = env.cluster_arrays
    left = np.clip(np.asarray(left_j, dtype=float), 0.0, None)
    iv = jamming_interval(arr, left)
    return np.zeros(arr.g_cd.size) if iv is None else jamming_split(arr, iv[1], left)


def least_energy_allocation(env: Any) -> tuple[float, float, np.ndarray]:
    """Train and upload as slowly as the direct action range allows (least energy) and jam
    with what is left, as much as every GLD can pay over the sync time it buys."""
    a = np.full(ACTION_SIZES["direct"](env.config["max_devices"]), -1.0)
    a[0] = a[1] = 1.0
    y, tg, q = env.action_to_allocation(a, mode="direct")
    arr = env.cluster_arrays
    if arr.g_cd.size == 0 or arr.b_data.size == 0:
        return y, tg, q
    left = arr.g_e_max - training_energy_j(arr, y) - arr.upload_energy_j(tg)
    return y, tg, _max_affordable_jamming(env, left)


def gld_optimal_allocations(
    env: Any, least_energy: tuple[float, float, np.ndarray] | None = None
) -> list[tuple[float, float, np.ndarray]]:
    """The GLDs' fastest round within their budgets without the BLDs (problem P on the GLDs
    alone, solved exactly), with no jamming and with the jamming their leftover energy pays
    (where it syncs every BLD). Where the GLDs alone have no feasible allocation, the same
    for the GLDs that can pay the least-energy allocation (the others drop out whatever is
    played; ``least_energy``: :func:`least_energy_allocation`'s, where the caller has it);
    none where no GLD is left."""
    cluster = env.cluster
    if cluster.n_gld == 0:
        return []
    no_bld = cluster.bld.subset(np.zeros(0, dtype=np.int64))
    keep = np.arange(cluster.n_gld)
    res = solve(Cluster(gld=cluster.gld, bld=no_bld, constants=cluster.constants), "exact")
    if not res.feasible:  # drop those who cannot pay even the least energy
        y, tg, q = least_energy or least_energy_allocation(env)
        low = round_outcome(env.cluster_arrays, y_s=y, tg_s=tg, jam_power_w=np.zeros_like(q))
        keep = np.flatnonzero(~low.gld_dropped)
        if keep.size in (0, cluster.n_gld):
            return []
        gld = cluster.gld.subset(keep)
        res = solve(Cluster(gld=gld, bld=no_bld, constants=cluster.constants), "exact")
        if not res.feasible:
            return []
    y, tg = float(res.y), float(res.tG)
    out = [(y, tg, np.zeros(cluster.n_gld))]
    if cluster.n_bld:
        arr = env.cluster_arrays
        left = arr.g_e_max - training_energy_j(arr, y) - arr.upload_energy_j(tg)
        left[np.setdiff1d(np.arange(cluster.n_gld), keep)] = 0.0  # the drop-outs jam nothing
        q = _max_affordable_jamming(env, left)
        if q.any():
            out.append((y, tg, q))
    return out


def fallback_allocation(env: Any) -> tuple[float, float, np.ndarray]:
    """For a cluster with no feasible allocation (some rule must break): of a few
    candidates, the one with the fewest GLD drop-outs, then the fewest unsynced BLDs, then
    the lowest latency, as the model charges them on the cluster the policy sees (each as
    the action box lets it be played: clipped where it lies outside). The
    candidates: the least-energy allocation (the slowest training and upload of the direct
    range, jamming with what is left) and the GLDs' fastest round without the BLDs (with no
    jamming, and with the jamming their leftover energy pays). The least-energy one alone
    would keep the same rules broken at hundreds of times the latency where the BLDs cannot
    be synced anyway (docs/EVALUATION.md, "Clusters with no feasible allocation")."""
    # each candidate as it will be played: through the action box (clipped where outside)
    least = least_energy_allocation(env)
    candidates = [
        env.action_to_allocation(env.allocation_to_action(*alloc, clip=True))
        for alloc in (least, *gld_optimal_allocations(env, least))
    ]
    arr = env.cluster_arrays

    def key(alloc: tuple[float, float, np.ndarray]) -> tuple[int, int, float]:
        y, tg, q = alloc
        out = round_outcome(arr, y_s=y, tg_s=tg, jam_power_w=q)
        return (
            int(np.count_nonzero(out.gld_dropped)),
            int(np.count_nonzero(~out.bld_synced)),
            float(out.latency_s),
        )

    return min(candidates, key=key)


def fallback_action(env: Any) -> np.ndarray:
    """:func:`fallback_allocation` as an action of the environment's action mode."""
    return env.allocation_to_action(*fallback_allocation(env), clip=True)


class RandomPolicy(EnvPolicy):
    """Uniform random actions: the floor any allocation rule must beat."""

    name = "random"

    def __init__(self, seed: int | None = 0) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self._seed = seed

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, env: Any) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, env.action_space.shape[0])


class SolverPolicy(EnvPolicy):
    """Solve problem P on each cluster with a solver of :mod:`solvers` and play its answer."""

    def __init__(self, method: str = "algorithm2", **options: Any) -> None:
        super().__init__()
        self.method, self.options = method, options
        self.name = method
        self.last_result: Any = None

    def act(self, env: Any) -> np.ndarray:
        res = solve(env.cluster, self.method, **self.options)
        self.last_result = res
        if not res.feasible:
            return fallback_action(env)
        return env.allocation_to_action(res.y, res.tG, res.q, clip=True)


class ExactPolicy(SolverPolicy):
    """The exact solver: the oracle every optimality gap is measured against."""

    def __init__(self, **options: Any) -> None:
        super().__init__("exact", **options)


class NoJammingPolicy(EnvPolicy):
    """No jamming, or the least that makes every secrecy rate positive (smallest feasible Q).

    The rest of the allocation is optimal for that Q. Shows what cooperative jamming buys:
    without it the BLDs' sync takes far longer (or cannot be secured at all).
    """

    name = "no-jamming"

    def act(self, env: Any) -> np.ndarray:
        p = Prepared(env.cluster)
        if p.m == 0:
            return fallback_action(env)
        candidates = (
            [0.0] if p.q_lo < 0 else list(p.q_lo + (p.q_hi - p.q_lo) * np.geomspace(1e-6, 1.0, 40))
        )
        for q_w in candidates:
            alloc = allocation_at_q(p, q_w)
            if alloc is not None:
                return env.allocation_to_action(*alloc, clip=True)
        return fallback_action(env)


class MaxJammingPolicy(EnvPolicy):
    """Every GLD jams at Q_max; local training and upload as fast as the energy left allows."""

    name = "max-jamming"

    def act(self, env: Any) -> np.ndarray:
        p = Prepared(env.cluster)
        if p.m == 0:
            return fallback_action(env)
        alloc = allocation_at_q(p, p.q_hi)
        if alloc is None:  # cannot pay for full jamming: keep it and relax the rest
            alloc = fallback_allocation(env)
        y, tg, _ = alloc
        return env.allocation_to_action(y, tg, env.cluster.gld.max_jam_power_w, clip=True)


class EqualEnergyPolicy(EnvPolicy):
    """Each GLD splits its budget equally between training, upload and jamming (1/3 each).

    y is the smallest time whose training energy fits the share, tG the smallest upload time
    whose energy fits, and the jamming powers spend the last third over the sync time.
    """

    name = "equal-energy"

    def act(self, env: Any) -> np.ndarray:
        p = Prepared(env.cluster)
        if p.m == 0:
            return fallback_action(env)
        share = p.e_max / 3.0
        y = max(float(np.max(np.sqrt(p.k_loc / share))), p.y_min)  # K_i / y^2 <= E_i / 3
        lo, hi = math.log(p.tg_min), math.log(p.tg_min) + 40.0
        if np.all(p.upload_energy(np.array(p.tg_min)) <= share):
            tg = p.tg_min
        else:
            for _ in range(80):  # smallest tG whose upload energy fits every share
                mid = 0.5 * (lo + hi)
                ok = np.all(p.upload_energy(np.array(math.exp(mid))) <= share)
                hi, lo = (mid, lo) if ok else (hi, mid)
            tg = math.exp(hi)
        # largest Q whose sync time lets every GLD pay q_i tB(Q) from its last third
        return env.allocation_to_action(y, tg, _max_affordable_jamming(env, share), clip=True)


class BestFixedQPolicy(EnvPolicy):
    """One aggregate jamming level Q for every cluster (tuned on training seeds), the rest
    of the allocation optimal for it. ``q_w=None`` tunes at the first call on 20 clusters of
    the bound environment's configuration (seeds 10_000...)."""

    name = "best-fixed-q"

    def __init__(self, q_w: float | None = None, tune_clusters: int = 20) -> None:
        super().__init__()
        self.q_w = q_w
        self.tune_clusters = tune_clusters

    def tune(self, env: Any) -> float:
        import gymnasium as gym

        # the same scenario without training (the clusters do not depend on it) and the
        # bound env's constants (with training, L is the trained model's size)
        cfg = {
            **env.config,
            "clusters": self.tune_clusters,
            "rounds": 1,
            "compute_optimal": False,
            "constants": env.constants.to_dict(),
            "fl": {"backend": "none"},
            "ledger": {**env.config["ledger"], "enabled": False},
        }
        probe = gym.make("dtfl_env:DTFL-v0", config=cfg).unwrapped
        probe.reset(seed=10_000)
        clusters = []
        for _ in range(self.tune_clusters):  # the clusters of round 0, one per step
            clusters.append(probe.cluster)
            probe.step(np.zeros(probe.action_space.shape[0]))
        preps = [Prepared(c) for c in clusters]
        hi = max(pp.q_hi for pp in preps)
        grid = np.geomspace(hi * 1e-4, hi, 60)
        best, best_score = grid[0], math.inf
        for q_w in grid:
            score = 0.0
            for pp in preps:
                alloc = allocation_at_q(pp, q_w) if q_w <= pp.q_hi else None
                if alloc is None:
                    score += 1e3  # an infeasible cluster counts as a very slow one
                    continue
                y, tg, _ = alloc
                score += max(y + tg, float(pp.sync_time(np.array(q_w))) + pp.tb_loc)
            if score < best_score:
                best, best_score = float(q_w), score
        return best

    def act(self, env: Any) -> np.ndarray:
        if self.q_w is None:
            self.q_w = self.tune(env)
        p = Prepared(env.cluster)
        alloc = allocation_at_q(p, min(self.q_w, p.q_hi)) if p.m else None
        if alloc is None:
            return fallback_action(env)
        return env.allocation_to_action(*alloc, clip=True)


class GreedyLocalPolicy(EnvPolicy):
    """Each resource alone at its fastest: train as fast as the CPUs and every GLD's budget
    allow, upload as fast as the powers and every budget allow (each as if it had the whole
    budget: the direct action box's lower ends, ``env.direct_bounds``), and jam with
    whatever energy each GLD has left, assuming the sync finishes as fast as full jamming
    would make it. No coordination: training and upload together overspend and the sync
    takes longer than assumed, so GLDs drop out. The contrast shows what the joint
    optimisation is worth. In the ``safe`` action mode, whose box holds only allocations
    that keep every budget, these allocations lie outside it: they are played clipped and
    counted as out-of-range steps."""

    name = "greedy-local"

    def act(self, env: Any) -> np.ndarray:
        p = Prepared(env.cluster)
        if p.m == 0:
            return fallback_action(env)
        tg, y = env.direct_bounds
        left = p.e_max - p.k_loc / y**2 - p.upload_energy(np.array(tg))
        with np.errstate(all="ignore"):
            tb_guess = float(p.sync_time(np.array(p.q_hi)))
        q = np.clip(left / tb_guess, 0.0, p.q_max) if math.isfinite(tb_guess) else p.q_max
        return env.allocation_to_action(y, tg, q, clip=True)


POLICIES: dict[str, type[EnvPolicy]] = {
    "random": RandomPolicy,
    "algorithm2": SolverPolicy,
    "exact": ExactPolicy,
    "no-jamming": NoJammingPolicy,
    "max-jamming": MaxJammingPolicy,
    "equal-energy": EqualEnergyPolicy,
    "best-fixed-q": BestFixedQPolicy,
    "greedy-local": GreedyLocalPolicy,
}


def make_policy(name: str, **kwargs: Any) -> EnvPolicy:
    """A built-in policy by name (see :data:`POLICIES`); ``algorithm2-paper`` also works."""
    if name == "algorithm2-paper":
        return SolverPolicy("algorithm2-paper", **kwargs)
    if name == "algorithm2":
        return SolverPolicy("algorithm2", **kwargs)
    try:
        return POLICIES[name](**kwargs)
    except KeyError:
        raise ValueError(
            f"policy: unknown policy {name!r} (known: {', '.join([*POLICIES, 'algorithm2-paper'])})"
        ) from None
