"""How well can the observation predict the optimal safe action? A supervised probe.

PPO on a latency-only id is a contextual bandit: it must learn the map from a cluster's
observation to the latency-optimal ``safe`` action. This script measures how far that map
can be learned from a given observation at all, without PPO's exploration noise: it
collects the exact solver's optimum (as a safe action) on Table II clusters of training
seeds, fits an MLP (PPO's policy network: 256-256 tanh) by least squares, and plays the fit
on held-out seeds, for the default observation and with ``observation.safe_bounds`` (the
safe box's lower bounds; all four, or tg_base alone). It reports the gap of the mean
latency and the mean per-cluster gap to the optimum on the held-out clusters with a
feasible allocation, and the median and 90th percentile of the action error.

    python benchmarks/ppo_features.py                  # about 1 min on a CPU core
    python benchmarks/ppo_features.py --train-episodes 80 --epochs 600
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import dtfl_env  # noqa: E402,F401  (registers the ids)
from solvers import solve  # noqa: E402

ACTION = {
    "mode": "safe",
    "tg_range": 20.0,
    "y_range": 20.0,
    "jamming": "sync",
    "scale": "excess",
}  # agents/ppo_long.json's action config
#: feature sets: how many of the BOUND_FEATURES to keep (0: the default observation)
FEATURE_SETS = {"default observation": 0, "+ tg_base": 1, "+ all four bounds": 4}


def _env() -> Any:
    return gym.make(
        "DTFL-TableII-v0",
        config={"action": ACTION, "fl": {"backend": "none"}, "observation": {"safe_bounds": True}},
    ).unwrapped


def collect(seeds: range) -> tuple[np.ndarray, np.ndarray]:
    """Observations (with the 4 bound features last) and optimal safe actions."""
    env = _env()
    obs_rows, acts = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            res = solve(env.cluster, "exact")
            act = np.zeros(3)
            if res.feasible:
                act = env.allocation_to_action(res.y, res.tG, res.q, clip=True)
                obs_rows.append(obs)
                acts.append(act)
            obs, _, term, trunc, _ = env.step(act.astype(np.float32))
            done = term or trunc
    return np.array(obs_rows), np.array(acts)


def _columns(obs: np.ndarray, keep: int) -> np.ndarray:
    return obs[..., : obs.shape[-1] - 4 + keep]


def fit(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> Any:
    """An MLP 256-256 tanh on standardised inputs, Adam, MSE on a[0] and a[1] (a[2] <= 0 is
    the optimal jamming in the sync parametrisation; the probe plays a[2] = 0)."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.tensor((x - mu) / sd, dtype=torch.float32)
    yt = torch.tensor(y[:, :2], dtype=torch.float32)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, 256),
        torch.nn.Tanh(),
        torch.nn.Linear(256, 2),
    )
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 if e < 0.75 * epochs else 0.2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 128):
            b = perm[i : i + 128]
            loss = ((net(xt[b]) - yt[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()

    def predict(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = net(torch.tensor((obs - mu) / sd, dtype=torch.float32)[None])[0].numpy()
        return np.clip(np.append(out, 0.0), -1.0, 1.0)

    return predict


def play(predict: Any, keep: int, seeds: range) -> dict[str, float]:
    env = _env()
    t_opt, t_fit, err = [], [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            res = solve(env.cluster, "exact")
            act = predict(_columns(obs, keep))
            if res.feasible:
                best = env.allocation_to_action(res.y, res.tG, res.q, clip=True)
                err.append(np.abs(act[:2] - best[:2]))
            obs, _, term, trunc, info = env.step(act.astype(np.float32))
            if res.feasible:
                t_fit.append(info["T"])
                t_opt.append(res.T)
            done = term or trunc
    t_opt, t_fit, e = np.array(t_opt), np.array(t_fit), np.array(err)
    return {
        "clusters": int(t_opt.size),
        "mean_gap": float(t_fit.sum() / t_opt.sum() - 1),
        "per_cluster_gap": float(np.mean(t_fit / t_opt - 1)),
        "abs_error_median": np.median(e, 0).round(4).tolist(),
        "abs_error_p90": np.percentile(e, 90, 0).round(4).tolist(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-episodes", type=int, default=40, help="training seeds 0..N-1")
    ap.add_argument("--test-seed", type=int, default=2000)
    ap.add_argument("--test-episodes", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(_HERE / "results" / "ppo_features.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    x, y = collect(range(args.train_episodes))
    test = range(args.test_seed, args.test_seed + args.test_episodes)
    print(
        f"{len(x)} training clusters (seeds 0-{args.train_episodes - 1}); held out: seeds "
        f"{test.start}-{test.stop - 1}"
    )
    rows = {}
    for name, keep in FEATURE_SETS.items():
        predict = fit(_columns(x, keep), y, args.epochs, args.seed)
        rows[name] = r = play(predict, keep, test)
        print(
            f"{name:20s} held-out mean-latency gap {100 * r['mean_gap']:5.2f} %, per cluster "
            f"{100 * r['per_cluster_gap']:5.2f} % ({r['clusters']} clusters); |action "
            f"error| median {r['abs_error_median']}, p90 {r['abs_error_p90']}"
        )
    result = {"args": vars(args), "action": ACTION, "training_clusters": len(x), "results": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
