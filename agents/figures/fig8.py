"""Fig. 8: global model accuracy with malicious nodes: the proposed ledger against a
signature-only ledger (the paper's ref. [39]) and plain FedAvg.

``DTFL-v0`` with real training on the embedded 5k MNIST and 3 malicious group coordinators
(clusters 0-2), each attack in turn: ``random`` (poisoned models of random noise),
``label_flip`` (their devices train on wrong labels) and ``scaled`` (the honest update x -10).
The ledger modes:

- ``full`` (proposed): signatures, digests, provenance, quality on the validator's held-out
  data and update norms; only verified cluster models reach the global model;
- ``signature``: signatures and digests only, so a signed poisoned model passes;
- ``none``: plain FedAvg, everything is aggregated.

Every run uses the same seed (same clusters, partition and initial model) and the exact
solver's allocation in each step.

    dtfl reproduce fig8                   # -> runs/fig8_malicious/
    python -m agents.figures.fig8 --help  # every option (the example script takes the same)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

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

FIGURE = "fig8_malicious"
MODES = ("full", "signature", "none")
LABELS = {
    "full": "proposed (full verification)",
    "signature": "signature-only ledger [39]",
    "none": "FedAvg, no ledger",
}


@dataclass
class Args:
    clusters: int = field(default=10, metadata={"help": "clusters S"})
    rounds: int = field(default=10, metadata={"help": "FL rounds R"})
    malicious: int = field(default=3, metadata={"help": "malicious coordinators"})
    attacks: tuple[str, ...] = field(
        default=("random", "label_flip", "scaled"), metadata={"help": "attack types to run"}
    )
    model: str = field(default="cnn", metadata={"help": "cnn or mlp"})
    seed: int = field(default=0, metadata={"help": "episode seed"})
    quick: bool = field(default=False, metadata={"help": "3 clusters, 2 rounds, MLP"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def run(args: Args, attack: str, mode: str) -> list[dict]:  # type: ignore[type-arg]
    cfg = {
        "clusters": args.clusters,
        "rounds": args.rounds,
        "fl": {"model": args.model, "device": "cpu"},
        "ledger": {"mode": mode, "malicious_clusters": args.malicious, "attack": attack},
    }
    env = gym.make("DTFL-v0", config=cfg)
    policy = make_policy("exact").bind(env)
    obs, info = env.reset(seed=args.seed)
    rows = [
        {
            "attack": attack,
            "mode": mode,
            "round": 0,
            "accuracy": info["global_accuracy"],
            "rejected": 0,
            "rejected_malicious": 0,
            "sim_time_s": 0.0,
        }
    ]
    done = False
    while not done:
        action, _ = policy.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        done = term or trunc
        if info["ledger_round_closed"]:
            rej = info["ledger_rejected_clusters"]
            rows.append(
                {
                    "attack": attack,
                    "mode": mode,
                    "round": info["round"] + 1,
                    "accuracy": info["global_accuracy"],
                    "rejected": int(rej.sum()),
                    "rejected_malicious": int(rej[: args.malicious].sum()),
                    "sim_time_s": info["sim_time_s"],
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
        args.clusters, args.rounds, args.model = 3, 2, "mlp"
        args.malicious = min(args.malicious, 1)
    if not 0 <= args.malicious <= args.clusters:
        raise SystemExit("--malicious: must lie in [0, clusters]")
    t0 = time.perf_counter()
    out = prepare_out(args.out)
    rows = []
    runs = [(attack, mode) for attack in args.attacks for mode in MODES]
    for attack, mode in progress_bar(runs, progress, desc=FIGURE):
        rows += run(args, attack, mode)
    path_csv = write_csv(out / f"{FIGURE}.csv", rows)
    fig, axes = new_figure(ncols=len(args.attacks), width=4.5)
    final: dict[str, dict[str, float]] = {}
    for ax, attack in zip(axes, args.attacks, strict=False):
        for mode in MODES:
            r = [x for x in rows if x["attack"] == attack and x["mode"] == mode]
            ax.plot(
                [x["round"] for x in r],
                [100 * x["accuracy"] for x in r],
                marker="o",
                ms=3,
                label=LABELS[mode],
            )
            final.setdefault(attack, {})[mode] = r[-1]["accuracy"]
        ax.set_title(f"attack: {attack}", fontsize=9)
        ax.set_xlabel("FL round")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"Fig. 8: accuracy with {args.malicious} malicious coordinators "
        f"({args.clusters} clusters, embedded MNIST, {args.model})",
        fontsize=10,
    )
    path_png = save_figure(fig, out / f"{FIGURE}.png")
    print(
        f"Fig. 8: final accuracy after {args.rounds} rounds, {args.malicious} malicious "
        f"of {args.clusters} coordinators"
    )
    print(f"  {'attack':12s}" + "".join(f"{m:>12s}" for m in MODES))
    for attack, acc in final.items():
        print(f"  {attack:12s}" + "".join(f"{100 * acc[m]:>11.2f}%" for m in MODES))
    caught = {
        a: sum(x["rejected_malicious"] for x in rows if x["attack"] == a and x["mode"] == "full")
        for a in args.attacks
    }
    honest = {
        a: sum(
            x["rejected"] - x["rejected_malicious"]
            for x in rows
            if x["attack"] == a and x["mode"] == "full"
        )
        for a in args.attacks
    }
    for a in args.attacks:
        print(
            f"  full verification, {a}: {caught[a]} of {args.malicious * args.rounds} "
            f"malicious submissions rejected, {honest[a]} honest ones rejected"
        )
    summary = {"final_accuracy": final, "malicious_rejected": caught, "honest_rejected": honest}
    return finish(out, FIGURE, args, summary, t0, [path_csv, path_png], argv=argv)


if __name__ == "__main__":
    main()
