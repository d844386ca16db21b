"""Train (or take a finished run of) each pretrained agent, export it into this package and
write its card with the gap to Algorithm 2 on held-out seeds.

    python -m agents.pretrained.build                      # train both: 200k steps each
    python -m agents.pretrained.build ppo:tableii          # one of them
    python -m agents.pretrained.build ppo:tableii --from-run runs/ppo_tableii

Training is :func:`agents.training.train_agent` with the shipped defaults
(``agents/ppo_defaults.json``), the spec's steps and seed (:data:`agents.pretrained.
PRETRAINED`) and torch on one thread; a finished run of that same command (``dtfl train ppo
--env ID --timesteps 200000 --seed 0 --out DIR``) can be exported instead with
``--from-run``, and its recorded algorithm, id, steps and seed are checked against the spec.
The export resets the model's Adam state (a fresh optimizer of the same class and settings)
and stores the zip deflated, so that each agent stays under 1 MB, then evaluates the
exported agent on ``eval_episodes`` episodes from ``eval_seed`` against Algorithm 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.pretrained import PRETRAINED, PretrainedSpec, evaluate_gap, load_pretrained
from agents.training import default_hyperparams

__all__ = ["compact_zip", "export_run", "main"]

_HERE = Path(__file__).resolve().parent
#: the most an exported agent may weigh (model, statistics, record and card)
MAX_BYTES = 1_000_000


def compact_zip(src: Path, dst: Path, algo: str) -> None:
    """Write the ``algo`` model of SB3's zip ``src`` to ``dst`` with its optimizer state
    reset and every member deflated (SB3 stores them uncompressed; it reads either)."""
    import stable_baselines3

    from agents.training import ALGOS

    model = getattr(stable_baselines3, ALGOS[algo]).load(src, device="cpu")
    policy = model.policy
    policy.optimizer = policy.optimizer_class(
        policy.parameters(),
        lr=policy.optimizer.param_groups[0]["lr"],
        **policy.optimizer_kwargs,
    )
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.zip"
        model.save(raw)
        with (
            zipfile.ZipFile(raw) as zin,
            zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zout,
        ):
            for item in zin.infolist():
                zout.writestr(item.filename, zin.read(item.filename))


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=_HERE, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _check_run(run: Path, spec: PretrainedSpec) -> dict[str, Any]:
    try:
        record: dict[str, Any] = json.loads((run / "config.json").read_text())
    except FileNotFoundError:
        raise ValueError(f"--from-run: no config.json in {run}") from None
    want = {
        "algo": spec.algo,
        "env_id": spec.env_id,
        "total_timesteps": spec.timesteps,
        "seed": spec.seed,
    }
    for key, value in want.items():
        if record.get(key) != value:
            raise ValueError(
                f"--from-run: {run / 'config.json'}: {key} is {record.get(key)!r}, "
                f"the spec trains with {value!r}"
            )
    shipped = default_hyperparams(spec.algo)
    if record.get("hyperparams") != shipped:
        raise ValueError(
            f"--from-run: {run / 'config.json'}: its hyperparameters are not the shipped "
            f"agents/{spec.algo}_defaults.json"
        )
    return record


def export_run(
    name: str, run: Path, dest_root: Path = _HERE, commit: str | None = None
) -> dict[str, Any]:
    """Export the finished run ``run`` as the pretrained agent ``name`` under ``dest_root``
    and write its card (``commit``: the code it was trained with, default this checkout's
    HEAD); returns the card."""
    spec = PRETRAINED[name]
    record = _check_run(run, spec)
    dest = dest_root / spec.folder
    dest.mkdir(parents=True, exist_ok=True)
    compact_zip(run / "model.zip", dest / "model.zip", spec.algo)
    shutil.copyfile(run / "vecnormalize.pkl", dest / "vecnormalize.pkl")
    shutil.copyfile(run / "config.json", dest / "config.json")
    card: dict[str, Any] = {
        "name": name,
        "env_id": spec.env_id,
        "command": (
            f"dtfl train {spec.algo} --env {spec.env_id} --timesteps {spec.timesteps} "
            f"--seed {spec.seed}"
        ),
        "commit": commit or _commit(),
        "training_minutes": record.get("training_minutes"),
        "vec_env": record.get("vec_env"),
        "held_out": {"seed": spec.eval_seed, "episodes": spec.eval_episodes},
    }
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    card["held_out"].update(
        evaluate_gap(load_pretrained(name), spec.env_id, spec.eval_seed, spec.eval_episodes)
    )
    (dest / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    size = sum(p.stat().st_size for p in dest.iterdir() if p.is_file())
    if size > MAX_BYTES:
        raise ValueError(f"{name}: {dest} weighs {size} bytes, over {MAX_BYTES}")
    return card


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m agents.pretrained.build", description=__doc__)
    ap.add_argument("names", nargs="*", default=list(PRETRAINED), help="agents (default all)")
    ap.add_argument("--from-run", type=Path, help="export this finished run (one name only)")
    ap.add_argument("--commit", help="with --from-run: the commit it was trained at")
    ap.add_argument("--runs", type=Path, default=Path("runs/pretrained"), help="training output")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in PRETRAINED]
    if unknown:
        ap.error(f"unknown agent(s) {', '.join(unknown)} (known: {', '.join(PRETRAINED)})")
    if args.from_run and len(args.names) != 1:
        ap.error("--from-run exports one agent: name it")
    for name in args.names:
        spec = PRETRAINED[name]
        run = args.from_run
        if run is None:
            from agents.training import train_agent

            run = args.runs / spec.folder
            train_agent(
                spec.algo,
                spec.env_id,
                total_timesteps=spec.timesteps,
                seed=spec.seed,
                out_dir=run,
            )
        try:
            card = export_run(name, run, commit=args.commit if args.from_run else None)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
