"""Evaluate any set of policies on identical seeded episodes and write a report.

The environment's cluster sequence does not depend on the actions (topologies, fading and
twin deviations come from their own seeded generators), so every policy sees the same
clusters and the exact solver's T* is computed once per cluster (the oracle of pc-gym style
optimality gaps) and shared by all policies: all clusters of the run in one batch
(:func:`solvers.solve_batch`) after the rollouts.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import dtfl_env  # noqa: F401  (registers the ids)

__all__ = ["EvaluationReport", "evaluate_policies", "mean_ci"]

METRICS = ("latency_s", "reward", "violation", "dropouts", "unsynced", "decision_ms", "gap")


def mean_ci(values: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Mean and half-width of the normal-approximation 95 % confidence interval."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    if v.size == 1:
        return float(v[0]), 0.0
    return float(v.mean()), float(z * v.std(ddof=1) / math.sqrt(v.size))


@dataclass
class EvaluationReport:
    """Per-step records and per-policy summaries of an evaluation run."""

    records: list[dict[str, Any]]
    summary: dict[str, dict[str, float]]
    meta: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
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
            cols.insert(3, ("final_accuracy", "accuracy"))
        if any(s.get("out_of_range_steps", 0) for s in self.summary.values()):
            cols.insert(2, ("gap_in_range", "gap, in-range steps"))
            cols.append(("out_of_range_steps", "out-of-range steps"))
        head = "| policy | " + " | ".join(c[1] for c in cols) + " |"
        lines = [head, "|" + "---|" * (len(cols) + 1)]
        for name, s in self.summary.items():
            cells = []
            for key, _ in cols:
                mean, ci = s.get(key, math.nan), s.get(f"{key}_ci", math.nan)
                if key in ("gap", "gap_in_range"):
                    cells.append(
                        f"{100 * mean:.2f} % ± {100 * ci:.2f}" if math.isfinite(mean) else "n/a"
                    )
                elif key.startswith("violation_rate"):
                    cells.append(f"{100 * mean:.1f} %")
                elif key == "out_of_range_steps":
                    cells.append(f"{mean:.0f}")
                elif math.isfinite(ci):
                    cells.append(f"{mean:.4g} ± {ci:.2g}")
                else:
                    cells.append(f"{mean:.4g}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def save(self, out_dir: str | Path, plots: bool = True) -> list[Path]:
        """Write ``results.json``, ``steps.csv``, ``summary.md`` and plots; return the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "results.json", out / "steps.csv", out / "summary.md"]
        paths[0].write_text(
            json.dumps(
                {"summary": self.summary, "meta": self.meta}, indent=2, default=_json_default
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
            paths += _plots(self, out)
        return paths


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


def evaluate_policies(
    policies: dict[str, Any],
    *,
    env_id: str = "DTFL-v0",
    config: dict[str, Any] | None = None,
    episodes: int = 2,
    seed: int = 0,
    compute_gap: bool = True,
    progress: bool = False,
) -> EvaluationReport:
    """Run every policy on the same ``episodes`` seeded episodes of ``env_id``.

    ``policies`` maps a display name to an object with the SB3 ``predict`` protocol;
    policies with a ``bind(env)`` method are bound to each episode's environment. A step
    whose allocation the action box could not express (the policy played the nearest
    action, ``info["action_clipped"]``) is counted in ``out_of_range_steps``; ``gap_in_range``
    is the gap to the exact optimum without such steps.
    """
    if not policies:
        raise ValueError("policies: give at least one policy")
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    from solvers.batch import solve_batch

    # the oracle: every (episode, step)'s true cluster, solved at the end in one batch
    # (solvers.solve_batch, the exact solver in lockstep) and joined to the records
    oracle_clusters: dict[tuple[int, int], Any] = {}
    records: list[dict[str, Any]] = []
    finals: dict[str, list[float]] = {name: [] for name in policies}
    total = episodes * len(policies)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="evaluating", unit="episode")
    for ep in range(episodes):
        ep_seed = seed + ep
        for name, policy in policies.items():
            env = gym.make(env_id, config=config)
            obs, info = env.reset(seed=ep_seed)
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
                    }
                )
                step += 1
            finals[name].append(float(info.get("global_accuracy", math.nan)))
            env.close()
            if bar is not None:
                bar.update(1)
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
        acc = np.array(finals[name], dtype=float)
        if np.isfinite(acc).any() and config and config.get("fl", {}).get("backend") == "torch":
            s["final_accuracy"], s["final_accuracy_ci"] = mean_ci(acc)
        summary[name] = s
    meta = {
        "env_id": env_id,
        "config": config or {},
        "episodes": episodes,
        "seed": seed,
        "policies": list(policies),
        "versions": _versions(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return EvaluationReport(records=records, summary=summary, meta=meta)


def _plots(report: EvaluationReport, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    names = list(report.summary)
    paths = []
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    data = [[r["latency_s"] for r in report.records if r["policy"] == n] for n in names]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(names) + 1), names, rotation=30, ha="right")
    ax.set_ylabel("round latency T per cluster [s]")
    ax.set_yscale("log")
    ax.set_title("Latency distribution (identical clusters)")
    fig.tight_layout()
    paths.append(out / "latency.png")
    fig.savefig(paths[-1], dpi=100)

    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for n in names:
        gaps = [
            100 * r["gap"] for r in report.records if r["policy"] == n and math.isfinite(r["gap"])
        ]
        ax.plot(range(len(gaps)), gaps, ".", label=n, alpha=0.7)
    ax.set_xlabel("cluster (step, feasible clusters)")
    ax.set_ylabel("gap to exact T* [%]")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.legend(fontsize=7)
    ax.set_title("Optimality gap per cluster")
    fig.tight_layout()
    paths.append(out / "gap.png")
    fig.savefig(paths[-1], dpi=100)
    return paths
