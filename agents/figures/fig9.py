"""Fig. 9: block size against the number of participating devices, proposed scheme vs FedAvg.

Builds and signs (real Ed25519 keys) the block of one FL round with ``dtfl_env.ledger`` and
measures its real serialised size (the stored canonical JSON line, model parameters as hex
payload: 8 characters per float32 parameter of the MNIST CNN):

- proposed, 10 devices per cluster: one transaction per group coordinator carrying the
  cluster model (the paper's clusters have 10 devices, Table II); coordinators grow with
  the devices;
- proposed, S fixed coordinators (default 5): the devices spread over S clusters;
- FedAvg on chain: one transaction per participating device carrying its own model.

    dtfl reproduce fig9                   # 10..100 devices -> runs/fig9_block_size/
    dtfl reproduce fig9 --quick           # 10, 20, 30 devices
    python -m agents.figures.fig9 --help  # every option (the example script takes the same)
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.figures.common import (
    finish,
    new_figure,
    parse_args,
    prepare_out,
    progress_bar,
    save_figure,
    write_csv,
)
from dtfl_env.ledger import (
    SMALL_CNN_PARAMS,
    block_size_bytes,
    fedavg_block,
    proposed_block,
    split_devices,
)

FIGURE = "fig9_block_size"
SERIES = {
    "proposed_per_cluster_bytes": "proposed, {dpc} devices per coordinator",
    "proposed_fixed_bytes": "proposed, {s} coordinators",
    "fedavg_bytes": "FedAvg on chain (one model per device)",
}


@dataclass
class Args:
    devices: tuple[int, ...] = field(
        default=tuple(range(10, 101, 10)), metadata={"help": "participating device counts"}
    )
    devices_per_cluster: int = field(
        default=10, metadata={"help": "cluster size of the growing series"}
    )
    clusters: int = field(default=5, metadata={"help": "coordinators of the fixed series"})
    params: int = field(
        default=SMALL_CNN_PARAMS, metadata={"help": "model size in float32 parameters (MNIST CNN)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of keys, parameters, sample counts"})
    quick: bool = field(default=False, metadata={"help": "tiny budget (10, 20, 30 devices)"})
    out: str = field(default=f"runs/{FIGURE}", metadata={"help": "output folder"})


def slope(x: list[int], y: list[int]) -> float:
    """Least-squares growth in bytes per added device."""
    if len(x) < 2:
        return math.nan
    return float(np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)[0])


def main(argv: Sequence[str] | None = None, *, progress: bool | None = None) -> dict[str, Any]:
    """Run the figure with the command-line arguments ``argv`` (``None``: ``sys.argv[1:]``)
    and return its summary record (also written to ``<out>/<FIGURE>_summary.json``).
    ``progress``: a progress bar on stderr where it is a terminal (``None``), never
    (``False``) or always (``True``)."""
    args = parse_args(Args, argv, __doc__.split("\n")[0])
    t0 = time.perf_counter()
    devices = (10, 20, 30) if args.quick else tuple(args.devices)
    if min(devices) < 1 or args.devices_per_cluster < 1 or args.clusters < 1 or args.params < 1:
        raise SystemExit("--devices, --devices-per-cluster, --clusters, --params: must be >= 1")
    out = prepare_out(args.out)

    rows = []
    for n in progress_bar(devices, progress, desc=FIGURE):
        rng = np.random.default_rng([args.seed, n])
        per = split_devices(n, math.ceil(n / args.devices_per_cluster))
        fixed = split_devices(n, args.clusters)
        rows.append(
            {
                "devices": n,
                "coordinators_per_cluster_series": len(per),
                "coordinators_fixed_series": len(fixed),
                "proposed_per_cluster_bytes": block_size_bytes(
                    proposed_block(per, args.params, rng=rng)
                ),
                "proposed_fixed_bytes": block_size_bytes(
                    proposed_block(fixed, args.params, rng=rng)
                ),
                "fedavg_bytes": block_size_bytes(fedavg_block(n, args.params, rng=rng)),
            }
        )
    for r in rows:
        r["fedavg_over_proposed"] = r["fedavg_bytes"] / r["proposed_per_cluster_bytes"]
    path_csv = write_csv(out / f"{FIGURE}.csv", rows)
    x = [r["devices"] for r in rows]
    slopes = {k: slope(x, [r[k] for r in rows]) for k in SERIES}

    fig, axes = new_figure(1, 1, width=6.4, height=4.4)
    ax = axes[0]
    for (key, label), mark in zip(SERIES.items(), ("o-", "s--", "^-"), strict=True):
        ax.plot(
            x,
            [r[key] / 1e6 for r in rows],
            mark,
            label=label.format(dpc=args.devices_per_cluster, s=args.clusters)
            + f" (+{slopes[key] / 1e3:,.1f} kB/device)",
        )
    ax.set_xlabel("number of participating local devices")
    ax.set_ylabel("block size (MB, serialised)")
    ax.set_title(
        f"Fig. 9: block size of one round, model of {args.params:,} float32 parameters", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path_png = save_figure(fig, out / f"{FIGURE}.png")

    print(f"Fig. 9: serialised block size (bytes), model P = {args.params:,} float32 parameters")
    print(
        f"  {'devices':>7} {'proposed/' + str(args.devices_per_cluster) + ' per GC':>20} "
        f"{'proposed/' + str(args.clusters) + ' GCs':>16} {'FedAvg':>12} {'FedAvg/prop.':>12}"
    )
    for r in rows:
        print(
            f"  {r['devices']:>7} {r['proposed_per_cluster_bytes']:>20,} "
            f"{r['proposed_fixed_bytes']:>16,} {r['fedavg_bytes']:>12,} "
            f"{r['fedavg_over_proposed']:>12.1f}"
        )
    print(
        "  growth, bytes per added device: "
        + ", ".join(f"{k.removesuffix('_bytes')} {v:,.0f}" for k, v in slopes.items())
    )
    summary = {
        "rows": rows,
        "slope_bytes_per_device": slopes,
        "encoding": "canonical JSON line, hex payload (8 chars per float32)",
    }
    return finish(out, FIGURE, args, summary, t0, [path_csv, path_png], argv=argv)


if __name__ == "__main__":
    main()
