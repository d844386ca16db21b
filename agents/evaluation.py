"""Evaluate any set of policies on identical seeded episodes and write a report.

The environment's cluster sequence does not depend on the actions (topologies, fading and
twin deviations come from their own seeded generators), so every policy sees the same
clusters and the exact solver's T* is computed once per cluster (the oracle of pc-gym style
optimality gaps) and shared by all policies: all clusters of the run in one batch
(:func:`solvers.solve_batch`) after the rollouts.

On ids that train real models (``fl.backend = "torch"``, ``DTFL-v0``) the report adds, per
policy, the final global accuracy, the simulated time to reach a target accuracy and the
accuracy against simulated time. Groups of agents of one kind trained with different seeds
are summarised across seeds and episodes by the interquartile mean with stratified bootstrap
intervals and a performance profile (:mod:`agents.statistics`). Every column:
``docs/EVALUATION.md``.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import dtfl_env  # noqa: F401  (registers the ids)

__all__ = [
    "DEFAULT_TARGET_ACCURACY",
    "EvaluationReport",
    "accuracy_over_time",
    "accuracy_summary",
    "evaluate_policies",
    "mean_ci",
    "time_to_accuracy",
]

METRICS = ("latency_s", "reward", "violation", "dropouts", "unsynced", "decision_ms", "gap")
#: the test accuracy whose simulated time ``dtfl compare`` reports on ids with FL training
#: (``--target-accuracy``): the default ``DTFL-v0`` episode (CNN, 10 clusters, 10 rounds on
#: the embedded MNIST) ends at 77-85 % (docs/REPRODUCTION.md, Fig. 8b) and passes 75 % in
#: its last rounds, so the time to it separates policies that keep devices in the rounds
#: and keep the rounds short
DEFAULT_TARGET_ACCURACY = 0.75
#: bootstrap resamples of the seed groups' confidence intervals
BOOTSTRAP_REPS = 2000
#: the reference policy of the seed groups' score on latency-only ids
REFERENCE_POLICY = "algorithm2"


def mean_ci(values: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Mean and half-width of the normal-approximation 95 % confidence interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(z * v.std(ddof=1) / math.sqrt(v.size))


def time_to_accuracy(
    sim_time_s: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    target: float,
    initial_accuracy: float = math.nan,
) -> float:
    """The simulated time at which an episode's global accuracy first reaches ``target``.

    ``sim_time_s`` and ``accuracy`` are the episode's steps in order (``info["sim_time_s"]``
    and ``info["global_accuracy"]`` after each step). 0 where ``initial_accuracy`` (the
    model at reset) already reaches it; NaN where no step does (not reached).
    """
    t = np.asarray(sim_time_s, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    if t.shape != a.shape or t.ndim != 1:
        raise ValueError(
            f"sim_time_s, accuracy: must be 1-d and of one length, got {t.shape} and {a.shape}"
        )
    if initial_accuracy >= target:
        return 0.0
    hit = np.flatnonzero(a >= target)
    return float(t[hit[0]]) if hit.size else math.nan


def accuracy_over_time(
    sim_time_s: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    grid_s: np.ndarray,
    initial_accuracy: float,
) -> np.ndarray:
    """An episode's global accuracy at the simulated times ``grid_s``: the accuracy after
    the last step finished by then (``initial_accuracy`` before the first); after the
    episode's end its final accuracy (the model no longer changes)."""
    t = np.asarray(sim_time_s, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    idx = np.searchsorted(t, np.asarray(grid_s, dtype=float), side="right")  # steps done
    return np.where(idx > 0, a[np.maximum(idx - 1, 0)], initial_accuracy)


@dataclass
class EvaluationReport:
    """Per-step records, per-policy summaries and per-group (several training seeds of one
    agent) statistics of an evaluation run (the columns: ``docs/EVALUATION.md``)."""

    records: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    def markdown(self) -> str:
        """The per-policy table, and below it the seed groups' table if there are groups."""
        cols = [
            ("latency_feasible_s", "latency, feasible [s]"),
            ("gap", "gap to exact"),
            ("latency_s", "latency, all [s]"),
            ("reward", "reward"),
            ("violation_rate_feasible", "violations, feasible"),
            ("violation_rate", "violations, all"),
            ("dropouts", "drop-outs/step"),
            ("decision_ms", "decision [ms]"),
        ]
        if any("final_accuracy" in s for s in self.summary.values()):
            target = self.meta.get("target_accuracy", math.nan)
            cols[3:3] = [
                ("final_accuracy", "final accuracy"),
                ("time_to_target_s", f"time to {100 * target:g} % [s]"),
                ("target_reached", "reached"),
                ("episode_sim_time_s", "simulated time [s]"),
            ]
        if any(s.get("out_of_range_steps", 0) for s in self.summary.values()):
            cols.insert(2, ("gap_in_range", "gap, in-range steps"))
            cols.append(("out_of_range_steps", "out-of-range steps"))
        head = "| policy | " + " | ".join(c[1] for c in cols) + " |"
        lines = [head, "|" + "---|" * (len(cols) + 1)]
        for name, s in self.summary.items():
            cells = [_cell(key, s) for key, _ in cols]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if self.groups:
            lines += ["", *self._group_lines()]
        return "\n".join(lines)

    def _group_lines(self) -> list[str]:
        lines = [
            "| seed group | seeds x episodes | score | IQM [95 % CI] | mean [95 % CI] |",
            "|---|---|---|---|---|",
        ]
        for name, g in self.groups.items():
            cells = [
                f"{len(g['members'])} x {g['episodes']}",
                g["score"],
                _interval(g["iqm"], g["iqm_ci"]),
                _interval(g["mean"], g["mean_ci"]),
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return lines

    def save(self, out_dir: str | Path, plots: bool = True) -> list[Path]:
        """Write ``results.json``, ``steps.csv``, ``summary.md`` and plots; return the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "results.json", out / "steps.csv", out / "summary.md"]
        paths[0].write_text(
            json.dumps(
                {"summary": self.summary, "groups": self.groups, "meta": self.meta},
                indent=2,
                default=_json_default,
            )
            + "\n"
        )
        keys = sorted({k for r in self.records for k in r})
        with paths[1].open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.records)
        paths[2].write_text(self.markdown() + "\n")
        if plots:
            from agents.report_plots import save_plots

            paths += save_plots(self, out)
        return paths


def _interval(point: float, ci: Sequence[float]) -> str:
    if not math.isfinite(point):
        return "n/a"
    return f"{point:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"


def _cell(key: str, s: dict[str, float]) -> str:
    """One cell of the per-policy table: the mean, ± the half-width of its 95 % CI."""
    mean, ci = s.get(key, math.nan), s.get(f"{key}_ci", math.nan)
    if key in ("gap", "gap_in_range"):
        return f"{100 * mean:.2f} % ± {100 * ci:.2f}" if math.isfinite(mean) else "n/a"
    if key.startswith("violation_rate"):
        return f"{100 * mean:.1f} %"
    if key == "out_of_range_steps":
        return f"{mean:.0f}"
    if key == "final_accuracy":
        return f"{100 * mean:.1f} % ± {100 * ci:.1f}" if math.isfinite(mean) else "n/a"
    if key == "target_reached":
        return f"{mean:.0f}/{s.get('target_episodes', math.nan):.0f}"
    if key == "time_to_target_s" and not s.get("target_reached", 0):
        return "not reached"
    if math.isfinite(ci):
        return f"{mean:.4g} ± {ci:.2g}"
    return f"{mean:.4g}"


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("dtfl-gym", "numpy", "scipy", "gymnasium", "stable-baselines3", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _check_groups(groups: dict[str, list[str]] | None, names: Sequence[str]) -> None:
    for group, members in (groups or {}).items():
        if not members:
            raise ValueError(f"groups: {group!r} has no members")
        missing = [m for m in members if m not in names]
        if missing:
            raise ValueError(f"groups: {group!r} names {missing} that are not among the policies")


def evaluate_policies(
    policies: dict[str, Any],
    *,
    env_id: str = "DTFL-v0",
    config: dict[str, Any] | None = None,
    episodes: int = 2,
    seed: int = 0,
    compute_gap: bool = True,
    progress: bool = False,
    target_accuracy: float = DEFAULT_TARGET_ACCURACY,
    groups: dict[str, list[str]] | None = None,
) -> EvaluationReport:
    """Run every policy on the same ``episodes`` seeded episodes of ``env_id``.

    ``policies`` maps a display name to an object with the SB3 ``predict`` protocol;
    policies with a ``bind(env)`` method are bound to each episode's environment. A step
    whose allocation the action box could not express (the policy played the nearest
    action, ``info["action_clipped"]``) is counted in ``out_of_range_steps``; ``gap_in_range``
    is the gap to the exact optimum without such steps.

    Where the env trains real models, each policy's summary adds the final accuracy, the
    simulated time to ``target_accuracy`` (over the episodes that reach it; how many do:
    ``target_reached`` of ``target_episodes``) and the episodes' simulated duration.

    ``groups`` maps a group name to the names of several policies, the same agent trained
    with different seeds; the report's ``groups`` then holds, for each, the interquartile
    mean of a score over seeds x episodes with stratified bootstrap 95 % intervals and the
    performance profile (the score: the final accuracy where the env trains models, else
    Algorithm 2's mean latency on the episode's feasible clusters over the agent's;
    ``algorithm2`` is added to the policies as the reference where it is missing).
    ``progress``: a progress bar of the steps on stderr.
    """
    if not policies:
        raise ValueError("policies: give at least one policy")
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    if not 0.0 < target_accuracy <= 1.0:
        raise ValueError(f"target_accuracy: must lie in (0, 1], got {target_accuracy!r}")
    _check_groups(groups, list(policies))
    from solvers.batch import solve_batch

    probe = gym.make(env_id, config=config)  # validates the id and the config
    try:
        learning = bool(getattr(probe.unwrapped, "learning", False))
        settings = getattr(probe.unwrapped, "settings", None)
        ep_steps = settings.clusters * settings.rounds if settings is not None else None
    finally:
        probe.close()
    policies = dict(policies)
    if groups and not learning and REFERENCE_POLICY not in policies:
        from agents.policies import make_policy

        policies[REFERENCE_POLICY] = make_policy(REFERENCE_POLICY)
    # the oracle: every (episode, step)'s true cluster, solved at the end in one batch
    # (solvers.solve_batch, the exact solver in lockstep) and joined to the records
    oracle_clusters: dict[tuple[int, int], Any] = {}
    records: list[dict[str, Any]] = []
    initial: dict[tuple[str, int], float] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        total = episodes * len(policies) * ep_steps if ep_steps else None
        bar = tqdm(total=total, desc="evaluating", unit="step", dynamic_ncols=True)
    for ep in range(episodes):
        ep_seed = seed + ep
        for name, policy in policies.items():
            if bar is not None:
                bar.set_postfix_str(f"episode {ep + 1}/{episodes}, {name}")
            env = gym.make(env_id, config=config)
            obs, info = env.reset(seed=ep_seed)
            initial[(name, ep)] = float(info.get("global_accuracy", math.nan))
            if hasattr(policy, "bind"):
                policy.bind(env)
            if hasattr(policy, "reset"):
                policy.reset(seed=ep_seed)
            base = env.unwrapped
            step, done = 0, False
            state, start = None, np.ones(1, dtype=bool)
            while not done:
                key = (ep, step)
                if compute_gap and key not in oracle_clusters:
                    oracle_clusters[key] = base.true_cluster
                t0 = time.perf_counter()
                action, state = policy.predict(
                    obs, state=state, episode_start=start, deterministic=True
                )
                decision = time.perf_counter() - t0
                start = np.zeros(1, dtype=bool)
                obs, reward, term, trunc, info = env.step(action)
                done = term or trunc
                records.append(
                    {
                        "policy": name,
                        "episode": ep,
                        "seed": ep_seed,
                        "step": step,
                        "round": info["round"],
                        "cluster": info["cluster_index"],
                        "latency_s": info["latency_s"],
                        "reward": reward,
                        "violation": info["reward_violation"],
                        "dropouts": info["n_dropouts"],
                        "unsynced": info["n_unsynced"],
                        "decision_ms": 1e3 * decision,
                        "optimal_latency_s": math.nan,
                        "gap": math.nan,
                        "out_of_range": int(info.get("action_clipped", 0)),
                        "global_accuracy": info.get("global_accuracy", math.nan),
                        "sim_time_s": info.get("sim_time_s", math.nan),
                    }
                )
                step += 1
                if bar is not None:
                    bar.update(1)
            env.close()
    if bar is not None:
        bar.close()
    if oracle_clusters:
        res = solve_batch(list(oracle_clusters.values()))
        oracle = dict(
            zip(oracle_clusters, np.where(res.feasible, res.T, math.inf).tolist(), strict=True)
        )
        for r in records:
            t_star = oracle[(r["episode"], r["step"])]
            r["optimal_latency_s"] = t_star
            r["gap"] = r["latency_s"] / t_star - 1.0 if math.isfinite(t_star) else math.nan
    summary: dict[str, dict[str, float]] = {}
    for name in policies:
        rows = [r for r in records if r["policy"] == name]
        s: dict[str, float] = {"steps": float(len(rows))}
        for key in METRICS:
            s[key], s[f"{key}_ci"] = mean_ci(np.array([r[key] for r in rows], dtype=float))
        s["violation_rate"] = float(np.mean([r["violation"] < 0 for r in rows]))
        feasible = [r for r in rows if math.isfinite(r["optimal_latency_s"])]
        s["latency_feasible_s"], s["latency_feasible_s_ci"] = mean_ci(
            np.array([r["latency_s"] for r in feasible], dtype=float)
        )
        s["violation_rate_feasible"] = (
            float(np.mean([r["violation"] < 0 for r in feasible])) if feasible else math.nan
        )
        s["infeasible_share"] = 1.0 - len(feasible) / max(len(rows), 1)
        # steps whose allocation the action box could not express (played clipped): counted
        # apart, and the gap also given without them
        s["out_of_range_steps"] = float(sum(r["out_of_range"] for r in rows))
        s["gap_in_range"], s["gap_in_range_ci"] = mean_ci(
            np.array([r["gap"] for r in rows if not r["out_of_range"]], dtype=float)
        )
        if learning:
            start = {ep: a for (n, ep), a in initial.items() if n == name}
            s.update(accuracy_summary(rows, target_accuracy, start))
        summary[name] = s
    meta = {
        "env_id": env_id,
        "config": config or {},
        "episodes": episodes,
        "seed": seed,
        "policies": list(policies),
        "learning": learning,
        "versions": _versions(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if learning:
        meta["target_accuracy"] = target_accuracy
        meta["initial_accuracy"] = {
            n: [initial[(n, ep)] for ep in range(episodes)] for n in policies
        }
    report = EvaluationReport(records=records, summary=summary, meta=meta)
    if groups:
        meta["groups"] = {g: list(m) for g, m in groups.items()}
        report.groups = {
            g: _group_statistics(records, members, learning, episodes)
            for g, members in groups.items()
        }
    return report


def accuracy_summary(
    records: Sequence[dict[str, Any]],
    target: float,
    initial_accuracy: dict[int, float] | None = None,
) -> dict[str, float]:
    """The accuracy metrics of one policy over its episodes, from its step records (keys
    ``episode``, ``global_accuracy``, ``sim_time_s``, in step order; ``initial_accuracy``:
    episode -> accuracy at reset).

    Returns ``final_accuracy`` (the last step's accuracy; mean and ``_ci`` over episodes),
    ``time_to_target_s`` (:func:`time_to_accuracy`; mean and ``_ci`` over the episodes that
    reach ``target`` only, NaN where none does), ``target_reached`` (how many reach it) of
    ``target_episodes``, and ``episode_sim_time_s`` (the episodes' simulated duration).
    """
    initial_accuracy = initial_accuracy or {}
    finals, times, durations = [], [], []
    for ep in sorted({r["episode"] for r in records}):
        mine = [r for r in records if r["episode"] == ep]
        acc = [r["global_accuracy"] for r in mine]
        clock = [r["sim_time_s"] for r in mine]
        finals.append(acc[-1])
        durations.append(clock[-1])
        times.append(time_to_accuracy(clock, acc, target, initial_accuracy.get(ep, math.nan)))
    out: dict[str, float] = {}
    out["final_accuracy"], out["final_accuracy_ci"] = mean_ci(np.array(finals))
    out["time_to_target_s"], out["time_to_target_s_ci"] = mean_ci(np.array(times))
    out["target_reached"] = float(np.isfinite(times).sum())
    out["target_episodes"] = float(len(times))
    out["episode_sim_time_s"], out["episode_sim_time_s_ci"] = mean_ci(np.array(durations))
    return out


def _episode_scores(
    records: list[dict[str, Any]], name: str, learning: bool, episodes: int
) -> np.ndarray:
    """Per-episode scores of one policy (higher is better): the final accuracy where the env
    trains models, else Algorithm 2's mean latency on the episode's feasible clusters (all
    clusters without the oracle) over the policy's on the same clusters; NaN where an
    episode has no such cluster."""
    out = np.full(episodes, math.nan)
    for ep in range(episodes):
        mine = [r for r in records if r["policy"] == name and r["episode"] == ep]
        if learning:
            out[ep] = mine[-1]["global_accuracy"]
            continue
        ref = [r for r in records if r["policy"] == REFERENCE_POLICY and r["episode"] == ep]
        steps = {
            r["step"]
            for r in ref
            if math.isfinite(r["optimal_latency_s"]) or math.isnan(r["optimal_latency_s"])
        }
        ours = [r["latency_s"] for r in mine if r["step"] in steps]
        theirs = [r["latency_s"] for r in ref if r["step"] in steps]
        if ours:
            out[ep] = float(np.mean(theirs)) / float(np.mean(ours))
    return out


def _group_statistics(
    records: list[dict[str, Any]], members: list[str], learning: bool, episodes: int
) -> dict[str, Any]:
    """IQM and mean of the members' (seeds') x episodes' scores, their stratified bootstrap
    95 % intervals, and the performance profile with its pointwise interval."""
    from agents.statistics import iqm, performance_profile, stratified_bootstrap_ci

    scores = np.array([_episode_scores(records, m, learning, episodes) for m in members])
    used = np.isfinite(scores).all(axis=0)  # episodes with a score for every seed
    out: dict[str, Any] = {
        "members": list(members),
        "score": "final accuracy" if learning else f"{REFERENCE_POLICY}'s latency / the agent's",
        "episodes": int(used.sum()),
        "scores": scores.tolist(),
    }
    kept = scores[:, used]
    if kept.size == 0:
        nan2 = [math.nan, math.nan]
        return {**out, "iqm": math.nan, "iqm_ci": nan2, "mean": math.nan, "mean_ci": nan2}
    out["iqm"] = iqm(kept)
    out["iqm_ci"] = list(stratified_bootstrap_ci(kept, iqm, reps=BOOTSTRAP_REPS))
    out["mean"] = float(kept.mean())
    out["mean_ci"] = list(
        stratified_bootstrap_ci(kept, lambda x: x.mean(axis=(-2, -1)), reps=BOOTSTRAP_REPS)
    )
    lo, hi = float(kept.min()), float(kept.max())
    pad = 0.05 * (hi - lo) or 0.05 * max(abs(hi), 1e-9)
    taus = np.linspace(lo - pad, hi + pad, 101)
    low, high = stratified_bootstrap_ci(
        kept, lambda x: performance_profile(x, taus), reps=BOOTSTRAP_REPS
    )
    out["profile"] = {
        "tau": taus.tolist(),
        "fraction": performance_profile(kept, taus).tolist(),
        "low": np.asarray(low).tolist(),
        "high": np.asarray(high).tolist(),
    }
    return out
