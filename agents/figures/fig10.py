"""Beyond the paper: PPO against Algorithm 2, the exact solver and the heuristics.

For each environment id (default ``DTFL-TableII-v0`` and ``DTFL-Random-v0``, latency only):

1. train PPO (stable-baselines3, ``agents.ppo.train_ppo`` with the defaults of
   ``agents/ppo_defaults.json``: the ``safe`` action mode, a log-latency reward weighted
   by each cluster's latency, gamma 0) for
   ``--timesteps`` steps, recording its learning curve against Algorithm 2;
2. run PPO, Algorithm 2, the exact solver and every heuristic on the same ``--episodes``
   seeded evaluation episodes (seeds 1000, 1001, ...; training used other seeds), each in
   its own action mode: PPO in the ``safe`` mode it was trained in, with Algorithm 2 and the
   exact solver beside it (their allocations map to the actions that reproduce them), and
   the heuristics in the id's ``direct`` mode (in the safe mode a heuristic's allocation
   would be projected into the feasible set, which changes what it is). The clusters do not
   depend on the action mode, so every policy sees the same ones. Reported per policy: the
   mean latency over the clusters that have a feasible allocation, its gap to Algorithm 2,
   the mean per-cluster gap to the exact optimum, and the share of feasible clusters with a
   violation (a GLD over budget or a BLD that could not sync).

Clusters with no feasible allocation (about half of Table II's under fresh Rayleigh fading)
are reported apart: every policy breaks something there.

    dtfl reproduce fig10                   # 200k steps per id (~10 min on 2 cores)
    dtfl reproduce fig10 --quick           # 2k steps, 1 episode (a smoke test)
    python -m agents.figures.fig10 --help  # every option (the example script takes the same)

A saved agent of the same id, budget and seed under ``--out`` is reused (``--retrain``
trains again), so a second run only re-evaluates.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.evaluation import EvaluationReport, evaluate_policies
from agents.figures.common import (
    finish,
    new_figure,
    parse_args,
    prepare_out,
    progress_bar,
    save_figure,
    write_csv,
)
from agents.policies import make_policy
from agents.ppo import load_ppo, resolve_hyperparams, train_ppo

FIGURE = "fig10_ppo"
BASELINES = (
    "algorithm2",
    "exact",
    "best-fixed-q",
    "equal-energy",
    "no-jamming",
    "max-jamming",
    "greedy-local",
    "random",
)


@dataclass
class Args:
    envs: tuple[str, ...] = field(
        default=("DTFL-TableII-v0", "DTFL-Random-v0"),
        metadata={"help": "environment ids (latency only)"},
    )
    timesteps: int = field(default=200_000, metadata={"help": "PPO training steps per id"})
    episodes: int = field(default=5, metadata={"help": "evaluation episodes per id"})
    eval_freq: int = field(default=25_000, metadata={"help": "learning-curve spacing"})
    seed: int = field(default=0, metadata={"help": "training seed"})
    eval_seed: int = field(default=1000, metadata={"help": "first evaluation episode seed"})
    retrain: bool = field(
        default=False, metadata={"help": "train even where a matching agent is saved"}
    )
    quick: bool = field(default=False, metadata={"help": "tiny budget (2k steps, 1 episode)"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


PPO_MODE = {"action": {"mode": "safe"}}  # the mode PPO is trained in (ppo_defaults.json)
#: the solvers act in the safe mode beside PPO: their allocations map to the actions that
#: reproduce them (T within 1e-6), while the direct mode's fixed ranges (tG <= 50 tG_min,
#: y <= 50 y_min) cut off the optimum of a few deep-fade clusters (1 of 500 on Table II)
SAFE_MODE_POLICIES = ("algorithm2", "exact")
QUICK_CONFIG = {"clusters": 3, "rounds": 2}


def _trained(
    ppo_dir,
    env_id: str,
    args: Args,  # type: ignore[no-untyped-def]
    hp: dict | None,
) -> bool:
    """A saved agent of this id, budget, seed and hyperparameters (so that a rerun only
    re-evaluates; changed defaults train again)."""
    try:
        rec = json.loads((ppo_dir / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return (
        (ppo_dir / "model.zip").is_file()
        and rec.get("env_id") == env_id
        and rec.get("total_timesteps") == args.timesteps
        and rec.get("seed") == args.seed
        and rec.get("hyperparams") == resolve_hyperparams(None, hp)
        and "training_minutes" in rec
    )


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
    args = parse_args(Args, argv, __doc__.split("\n\n")[0])
    if args.quick:
        args.timesteps, args.episodes, args.eval_freq = 2_048, 1, 1_024
    t0 = time.perf_counter()
    out = prepare_out(args.out)
    rows, curves, summary = [], {}, {}
    for env_id in progress_bar(args.envs, progress, desc=FIGURE):
        extra = QUICK_CONFIG if args.quick else {}
        ppo_dir = out / f"ppo_{env_id}"
        hp = (
            {"n_steps": 256, "batch_size": 256, "n_envs": 2, "vec_env": "dummy"}
            if args.quick
            else None
        )
        if args.retrain or not _trained(ppo_dir, env_id, args, hp):
            train_ppo(
                env_id,
                total_timesteps=args.timesteps,
                config=extra or None,
                overrides=hp,
                out_dir=ppo_dir,
                seed=args.seed,
                eval_freq=args.eval_freq,
                eval_episodes=1 if args.quick else 2,
            )
        else:
            print(f"{env_id}: reusing the agent in {ppo_dir} (--retrain to train again)")
        record = json.loads((ppo_dir / "config.json").read_text())
        curves[env_id] = (ppo_dir / "evaluations.csv").read_text()
        heuristics = [n for n in BASELINES if n not in SAFE_MODE_POLICIES]
        native = evaluate_policies(
            {n: make_policy(n) for n in heuristics},
            env_id=env_id,
            config=extra or None,
            episodes=args.episodes,
            seed=args.eval_seed,
        )
        safe = evaluate_policies(
            {"ppo": load_ppo(ppo_dir)} | {n: make_policy(n) for n in SAFE_MODE_POLICIES},
            env_id=env_id,
            config={**PPO_MODE, **extra},
            episodes=args.episodes,
            seed=args.eval_seed,
        )
        report = EvaluationReport(
            records=safe.records + native.records,
            summary=safe.summary | native.summary,
            meta={
                **native.meta,
                "safe_mode_config": safe.meta["config"],
                "safe_mode_policies": list(safe.summary),
                "policies": ["ppo", *BASELINES],
            },
        )
        report.save(out / f"compare_{env_id}")
        ref = report.summary["algorithm2"]["latency_feasible_s"]
        for name, s in report.summary.items():
            rows.append(
                {
                    "env": env_id,
                    "policy": name,
                    "latency_feasible_s": s["latency_feasible_s"],
                    "latency_feasible_ci_s": s["latency_feasible_s_ci"],
                    "gap_to_algorithm2": s["latency_feasible_s"] / ref - 1.0,
                    "gap_to_exact_mean": s["gap"],
                    "violation_rate_feasible": s["violation_rate_feasible"],
                    "violation_rate_all": s["violation_rate"],
                    "infeasible_share": s["infeasible_share"],
                    "decision_ms": s["decision_ms"],
                }
            )
        ppo = report.summary["ppo"]
        summary[env_id] = {
            "ppo_training_minutes": record.get("training_minutes"),
            "ppo_timesteps": args.timesteps,
            "ppo_latency_feasible_s": ppo["latency_feasible_s"],
            "algorithm2_latency_feasible_s": ref,
            "ppo_gap_to_algorithm2": ppo["latency_feasible_s"] / ref - 1.0,
            "ppo_violation_rate_feasible": ppo["violation_rate_feasible"],
            "infeasible_share": ppo["infeasible_share"],
        }
    csv_path = write_csv(out / f"{FIGURE}.csv", rows)

    fig, (ax_bar, ax_curve) = new_figure(2, width=6.5)
    names = ["ppo", *BASELINES]
    width = 0.8 / max(len(args.envs), 1)
    for k, env_id in enumerate(args.envs):
        vals = [next(r for r in rows if r["env"] == env_id and r["policy"] == n) for n in names]
        x = np.arange(len(names)) + k * width
        ax_bar.bar(
            x,
            [v["latency_feasible_s"] for v in vals],
            width,
            yerr=[v["latency_feasible_ci_s"] for v in vals],
            label=env_id,
            capsize=2,
        )
    ax_bar.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=35, ha="right")
    ax_bar.set_yscale("log")
    ax_bar.set_ylabel("mean latency on feasible clusters [s]")
    ax_bar.set_title("PPO against Algorithm 2 and heuristics")
    ax_bar.legend(fontsize=8)
    for env_id, text in curves.items():
        lines = text.strip().splitlines()
        keys = lines[0].split(",")
        data = [dict(zip(keys, map(float, ln.split(",")), strict=True)) for ln in lines[1:]]
        steps = [d["timesteps"] for d in data]
        ax_curve.plot(steps, [100 * d["gap_to_algorithm2"] for d in data], "o-", label=env_id)
    ax_curve.axhline(0.0, color="k", lw=0.8)
    ax_curve.axhline(5.0, color="k", ls=":", lw=0.8, label="5 % target")
    ax_curve.set_xlabel("PPO training steps")
    ax_curve.set_ylabel("latency gap to Algorithm 2 [%] (evaluation seeds)")
    ax_curve.set_yscale("symlog", linthresh=10)
    ax_curve.legend(fontsize=8)
    png = save_figure(fig, out / f"{FIGURE}.png")
    for env_id, s in summary.items():
        gap = s["ppo_gap_to_algorithm2"]
        print(
            f"{env_id}: PPO {s['ppo_latency_feasible_s']:.4g} s vs Algorithm 2 "
            f"{s['algorithm2_latency_feasible_s']:.4g} s on feasible clusters "
            f"({100 * gap:+.1f} %), violations {100 * s['ppo_violation_rate_feasible']:.1f} %"
            f", trained {s['ppo_training_minutes']:.1f} min"
            if math.isfinite(gap)
            else f"{env_id}: no feasible cluster"
        )
    return finish(out, FIGURE, args, summary, t0, [csv_path, png], argv=argv)


if __name__ == "__main__":
    main()
