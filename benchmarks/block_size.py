"""Block size vs number of participating devices (Fig. 9): proposed scheme vs FedAvg on chain.

For each device count, builds and signs (with real Ed25519 keys) the block of one round:

- proposed, fixed S: the devices spread over ``--clusters`` group coordinators, one
  transaction per cluster carrying the cluster model;
- proposed, per-cluster: one cluster per ``--devices-per-cluster`` devices (the number of
  coordinators grows with the devices);
- FedAvg on chain: one transaction per device carrying the device's model.

The size is the real length of the stored block (canonical JSON line, hex payloads: 8
characters per float32 parameter). Results are saved as JSON.

    python benchmarks/block_size.py --params 21840 --devices 10:100:10
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

# run as a script, this file's folder comes first on sys.path and its name would shadow the
# `solvers` package: drop it before importing the project
_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from dtfl_env import __version__  # noqa: E402
from dtfl_env.ledger import (  # noqa: E402
    SMALL_CNN_PARAMS,
    block_size_bytes,
    fedavg_block,
    proposed_block,
    split_devices,
)


def _range(spec: str) -> list[int]:
    try:
        if ":" in spec:
            lo, hi, step = (int(x) for x in spec.split(":"))
            values = list(range(lo, hi + 1, step))
        else:
            values = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--devices: expected lo:hi:step or a comma list, got {spec!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("--devices: need device counts >= 1")
    return values


def _slope(x: list[int], y: list[int]) -> float:
    return (
        float(np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)[0])
        if len(x) > 1
        else math.nan
    )


def main(argv: list[str] | None = None) -> dict:  # type: ignore[type-arg]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--params",
        type=int,
        default=SMALL_CNN_PARAMS,
        help=f"model size P in float32 parameters (default {SMALL_CNN_PARAMS}, the MNIST CNN)",
    )
    ap.add_argument(
        "--devices",
        type=_range,
        default=_range("10:100:10"),
        help="device counts, lo:hi:step or comma list (default 10:100:10)",
    )
    ap.add_argument("--clusters", type=int, default=5, help="S for the fixed-S series")
    ap.add_argument(
        "--devices-per-cluster", type=int, default=10, help="cluster size for the growing-S series"
    )
    ap.add_argument(
        "--no-payload", action="store_true", help="digests only (no parameters in the blocks)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "block_size.json"))
    args = ap.parse_args(argv)
    if args.params < 1 or args.clusters < 1 or args.devices_per_cluster < 1:
        ap.error("--params, --clusters, --devices-per-cluster: must be >= 1")
    payload = not args.no_payload

    rows = []
    t0 = time.perf_counter()
    print(
        f"block size (bytes) vs devices, P = {args.params} float32 parameters, payload = {payload}"
    )
    print(
        f"{'devices':>8} {'S':>3} {'proposed S fixed':>17} {'S':>4} "
        f"{'proposed S grows':>17} {'FedAvg on chain':>16} {'FedAvg/prop':>11}"
    )
    for n in args.devices:
        rng = np.random.default_rng([args.seed, n])
        fixed = split_devices(n, args.clusters)
        grows = split_devices(n, math.ceil(n / args.devices_per_cluster))
        b_fixed = block_size_bytes(
            proposed_block(fixed, args.params, rng=rng, with_payload=payload)
        )
        b_grows = block_size_bytes(
            proposed_block(grows, args.params, rng=rng, with_payload=payload)
        )
        b_fed = block_size_bytes(fedavg_block(n, args.params, rng=rng, with_payload=payload))
        rows.append(
            {
                "devices": n,
                "clusters_fixed": len(fixed),
                "clusters_growing": len(grows),
                "proposed_fixed_bytes": b_fixed,
                "proposed_growing_bytes": b_grows,
                "fedavg_bytes": b_fed,
            }
        )
        print(
            f"{n:>8} {len(fixed):>3} {b_fixed:>17,} {len(grows):>4} {b_grows:>17,} "
            f"{b_fed:>16,} {b_fed / b_fixed:>11.1f}"
        )
    x = [r["devices"] for r in rows]
    slopes = {
        k: _slope(x, [r[k] for r in rows])
        for k in ("proposed_fixed_bytes", "proposed_growing_bytes", "fedavg_bytes")
    }
    print(
        "growth, bytes per added device: "
        + ", ".join(f"{k[:-6]} {v:,.0f}" for k, v in slopes.items())
    )
    result = {
        "benchmark": "block_size",
        "config": {
            "params": args.params,
            "devices": args.devices,
            "clusters": args.clusters,
            "devices_per_cluster": args.devices_per_cluster,
            "payload": payload,
            "seed": args.seed,
            "encoding": "canonical JSON line, hex payload (8 chars per float32)",
        },
        "versions": {
            "dtfl_gym": __version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
        "rows": rows,
        "slope_bytes_per_device": slopes,
        "wall_s": time.perf_counter() - t0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {out}")
    return result


if __name__ == "__main__":
    main()
