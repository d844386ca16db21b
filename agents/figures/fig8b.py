"""Fig. 8b: why the validator is chosen by reputation (eq. (2)): reputation-based selection
against random and round-robin selection, with malicious coordinators among the candidates.

``DTFL-v0`` with real training (embedded MNIST) and the full ledger. The first
``--malicious`` group coordinators (clusters 0, 1, ...) are malicious twice over: they
submit poisoned cluster models (``--attack``, default ``random``) and, when chosen as the
round's validator, verify with ``--validator-attack`` (default ``both``: they accept their
allies' poisoned models and reject the honest ones). The other coordinators audit every
block against the honest verification; a block proven wrong stands for its round (the main
coordinator aggregates what the validator accepted) and costs its validator eq. (2)
reputation. Policies (``ledger.validator_selection``):

- ``reputation`` (the paper's, Algorithm 1 lines 3-4): the highest eq. (2) score;
- ``random``: a coordinator uniformly at random each round;
- ``round_robin``: coordinator ``round mod S``;
- ``honest`` (reference): reputation-based selection with honest validators (every
  validator verifies honestly: Fig. 8's full verification).

Each policy runs on the same seeds (same clusters, partition, initial model and attacks
per seed) with the exact solver's allocation every step. Reported: how often a malicious
coordinator was the validator, how often the audit proved a block wrong, and the test
accuracy over rounds (mean over seeds).

    dtfl reproduce fig8b                   # -> runs/fig8b_validator/
    python -m agents.figures.fig8b --help  # every option (the example script takes the same)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

import dtfl_env  # noqa: F401  (registers the ids)
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

FIGURE = "fig8b_validator"
POLICIES = ("reputation", "random", "round_robin", "honest")
LABELS = {
    "reputation": "reputation, eq. (2) (proposed)",
    "random": "random validator",
    "round_robin": "round-robin validator",
    "honest": "honest validators (reference)",
}


@dataclass
class Args:
    clusters: int = field(default=10, metadata={"help": "clusters S"})
    rounds: int = field(default=10, metadata={"help": "FL rounds R"})
    malicious: int = field(default=3, metadata={"help": "malicious coordinators"})
    attack: str = field(default="random", metadata={"help": "their cluster models' attack"})
    validator_attack: str = field(
        default="both",
        metadata={
            "help": "what a malicious validator does: accept_poisoned, reject_honest or both"
        },
    )
    seeds: tuple[int, ...] = field(default=tuple(range(10)), metadata={"help": "episode seeds"})
    model: str = field(default="cnn", metadata={"help": "cnn or mlp"})
    seed: int = field(default=0, metadata={"help": "added to every episode seed"})
    quick: bool = field(default=False, metadata={"help": "3 clusters, 3 rounds, MLP, 2 seeds"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def run(args: Args, policy: str, seed: int) -> list[dict]:  # type: ignore[type-arg]
    led = {
        "mode": "full",
        "malicious_clusters": args.malicious,
        "attack": args.attack,
        "validator_selection": "reputation" if policy == "honest" else policy,
        "validator_attack": "none" if policy == "honest" else args.validator_attack,
    }
    cfg = {
        "clusters": args.clusters,
        "rounds": args.rounds,
        "fl": {"model": args.model, "device": "cpu"},
        "ledger": led,
    }
    env = gym.make("DTFL-v0", config=cfg)
    pol = make_policy("exact").bind(env)
    obs, info = env.reset(seed=seed)
    rows = [
        {
            "policy": policy,
            "seed": seed,
            "round": 0,
            "accuracy": info["global_accuracy"],
            "validator_cluster": -1,
            "validator_malicious": 0,
            "audit_failed": 0,
            "poisoned_accepted": 0,
            "honest_rejected": 0,
        }
    ]
    done = False
    while not done:
        action, _ = pol.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        done = term or trunc
        if info["ledger_round_closed"]:
            acc = info["ledger_accepted_clusters"]
            rows.append(
                {
                    "policy": policy,
                    "seed": seed,
                    "round": info["round"] + 1,
                    "accuracy": info["global_accuracy"],
                    "validator_cluster": info["ledger_validator_cluster"],
                    "validator_malicious": info["ledger_validator_malicious"],
                    "audit_failed": info["ledger_audit_failed"],
                    "poisoned_accepted": int(acc[: args.malicious].sum()),
                    "honest_rejected": int(
                        info["ledger_rejected_clusters"][args.malicious :].sum()
                    ),
                }
            )
    env.close()
    return rows


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    if args.quick:
        args.clusters, args.rounds, args.model, args.seeds = 3, 3, "mlp", (0, 1)
        args.malicious = min(args.malicious, 1)
    if not 1 <= args.malicious < args.clusters:
        raise SystemExit("--malicious: must lie in [1, clusters - 1]")
    if args.validator_attack not in ("accept_poisoned", "reject_honest", "both"):
        raise SystemExit("--validator-attack: must be accept_poisoned, reject_honest or both")
    if not args.seeds:
        raise SystemExit("--seeds: need at least one seed")
    t0 = time.perf_counter()
    out = prepare_out(args.out)
    rows = []
    runs = [(policy, s) for policy in POLICIES for s in args.seeds]
    for policy, s in progress_bar(runs, progress, desc=FIGURE):
        rows += run(args, policy, args.seed + s)
    path_csv = write_csv(out / f"{FIGURE}.csv", rows)

    n_rounds = args.rounds * len(args.seeds)
    table: dict[str, dict[str, float]] = {}
    curves: dict[str, np.ndarray] = {}
    for policy in POLICIES:
        r = [x for x in rows if x["policy"] == policy]
        played = [x for x in r if x["round"] > 0]
        acc = np.array(
            [[x["accuracy"] for x in r if x["seed"] == args.seed + s] for s in args.seeds]
        )
        curves[policy] = acc.mean(axis=0)
        finals = acc[:, -1]
        table[policy] = {
            "malicious_validator_rounds": sum(x["validator_malicious"] for x in played),
            "malicious_validator_share": sum(x["validator_malicious"] for x in played) / n_rounds,
            "malicious_validator_after_round_0": sum(
                x["validator_malicious"] for x in played if x["round"] > 1
            ),
            "audit_failures": sum(x["audit_failed"] for x in played),
            "poisoned_accepted": sum(x["poisoned_accepted"] for x in played),
            "honest_rejected": sum(x["honest_rejected"] for x in played),
            "final_accuracy_mean": float(finals.mean()),
            "final_accuracy_min": float(finals.min()),
            "final_accuracy_per_seed": [float(a) for a in finals],
            "mean_accuracy_over_rounds": float(acc[:, 1:].mean()),
        }

    fig, axes = new_figure(ncols=2, width=5.0)
    rounds = np.arange(args.rounds + 1)
    for policy in POLICIES:
        axes[0].plot(
            rounds,
            100 * curves[policy],
            marker="o",
            ms=3,
            label=LABELS[policy],
            ls="--" if policy == "honest" else "-",
        )
        mal = np.array(
            [
                [
                    x["validator_malicious"]
                    for x in rows
                    if x["policy"] == policy and x["seed"] == args.seed + s and x["round"] > 0
                ]
                for s in args.seeds
            ]
        )
        if policy != "honest":
            axes[1].plot(
                rounds[1:], np.cumsum(mal.mean(axis=0)), marker="o", ms=3, label=LABELS[policy]
            )
    axes[0].set_xlabel("FL round")
    axes[0].set_ylabel(f"test accuracy (%), mean of {len(args.seeds)} seeds")
    axes[1].set_xlabel("FL round")
    axes[1].set_ylabel("malicious validators so far (mean per run)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Fig. 8b: validator selection with {args.malicious} malicious of "
        f"{args.clusters} coordinators (attack {args.attack}, malicious validator: "
        f"{args.validator_attack}; {args.model})",
        fontsize=9,
    )
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    print(
        f"Fig. 8b: {args.malicious} malicious of {args.clusters} coordinators, "
        f"{args.rounds} rounds x {len(args.seeds)} seeds"
    )
    print(
        f"  {'policy':12s} {'malicious V':>12s} {'audit fails':>12s} {'final acc':>10s} {'min':>7s}"
    )
    for policy, t in table.items():
        print(
            f"  {policy:12s} {t['malicious_validator_rounds']:5d} / {n_rounds:<4d}"
            f" {t['audit_failures']:12d} {100 * t['final_accuracy_mean']:9.2f}%"
            f" {100 * t['final_accuracy_min']:6.2f}%"
        )
    summary = {"rounds_per_policy": n_rounds, "policies": table}
    return finish(out, FIGURE, args, summary, t0, [path_csv, path_png], argv=argv)


if __name__ == "__main__":
    main()
