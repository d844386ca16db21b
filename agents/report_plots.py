"""The plots of a ``dtfl compare`` report (:class:`agents.evaluation.EvaluationReport`):
latency per policy, the gap to the exact optimum per cluster, accuracy against simulated time
and the seed groups' performance profiles, drawn without pyplot's global state."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from agents.evaluation import accuracy_over_time

if TYPE_CHECKING:
    from agents.evaluation import EvaluationReport

__all__ = ["accuracy_plot", "profile_plot", "save_plots"]


def save_plots(report: EvaluationReport, out: Path) -> list[Path]:
    """Write the report's plots into ``out``: ``latency.png``, ``gap.png``, on ids with FL
    training ``accuracy_time.png``, with seed groups ``profile.png``; return the paths."""
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
    if any("final_accuracy" in s for s in report.summary.values()):
        paths.append(accuracy_plot(report, out / "accuracy_time.png"))
    if report.groups:
        paths.append(profile_plot(report, out / "profile.png"))
    return paths


def accuracy_plot(report: EvaluationReport, path: Path) -> Path:
    """Global accuracy against simulated time: per policy the mean over episodes and its
    95 % band clipped to [0, 100] % (each episode's accuracy held from one step to the
    next and after its end), on a log time axis from the first step to the longest episode."""
    from matplotlib.figure import Figure

    episodes = sorted({r["episode"] for r in report.records})
    clock = np.array([r["sim_time_s"] for r in report.records], dtype=float)
    clock = clock[np.isfinite(clock) & (clock > 0)]
    t_lo, t_hi = (float(clock.min()), float(clock.max())) if clock.size else (1.0, 10.0)
    grid = np.geomspace(t_lo, max(t_hi, 1.0001 * t_lo), 200)
    initial = report.meta.get("initial_accuracy", {})
    target = report.meta.get("target_accuracy")
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for n in report.summary:
        curves = []
        for ep in episodes:
            mine = [r for r in report.records if r["policy"] == n and r["episode"] == ep]
            if mine:
                at_reset = initial.get(n, [])
                start = at_reset[ep] if ep < len(at_reset) else mine[0]["global_accuracy"]
                t = [r["sim_time_s"] for r in mine]
                a = [r["global_accuracy"] for r in mine]
                curves.append(accuracy_over_time(t, a, grid, start))
        c = 100 * np.array(curves)
        mean = c.mean(axis=0)
        half = 1.96 * c.std(axis=0, ddof=1) / math.sqrt(len(c)) if len(c) > 1 else 0 * mean
        (line,) = ax.step(grid, mean, where="post", label=n)
        ax.fill_between(
            grid,
            np.clip(mean - half, 0, 100),
            np.clip(mean + half, 0, 100),
            step="post",
            alpha=0.2,
            lw=0,
            color=line.get_color(),
        )
    if target is not None:
        ax.axhline(100 * target, color="k", ls=":", lw=1, label=f"target {100 * target:g} %")
    ax.set_xscale("log")
    ax.set_xlabel("simulated time [s]")
    ax.set_ylabel("global test accuracy [%]")
    ax.legend(fontsize=7)
    ax.set_title("Accuracy against simulated time (mean, 95 % CI over episodes)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def profile_plot(report: EvaluationReport, path: Path) -> Path:
    """Performance profiles of the seed groups: the fraction of runs (seeds x episodes)
    whose score exceeds tau, with stratified bootstrap 95 % bands."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for name, g in report.groups.items():
        prof = g.get("profile")
        if not prof:
            continue
        (line,) = ax.step(prof["tau"], prof["fraction"], where="post", label=name)
        ax.fill_between(
            prof["tau"],
            prof["low"],
            prof["high"],
            step="post",
            alpha=0.2,
            lw=0,
            color=line.get_color(),
        )
    scores = {g["score"] for g in report.groups.values()}
    ax.set_xlabel(f"score tau ({', '.join(sorted(scores))})")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title("Performance profile across training seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path
