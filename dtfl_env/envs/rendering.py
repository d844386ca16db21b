"""Rendering of :class:`dtfl_env.envs.dtfl.DTFLEnv`: a text table (``"ansi"``) and a topology
picture (``"rgb_array"``).

Both read the unwrapped environment only (never change it):

- the cluster the agent acts on next (``env.cluster``; its twin's view of the BLDs);
- the last step's ``info`` (``env.view.last_step``; ``None`` right after ``reset``), which
  belongs to the cluster the last step handled, one before the current one.

The picture draws the cluster of the last step with its outcome (jamming powers q, drop-outs,
synced BLDs), or the current cluster right after ``reset``. Matplotlib runs headless (Agg
canvas, no pyplot state), so rendering works in worker processes and on servers. The
``table2`` scenario has no positions; :func:`synthetic_topology` places its devices by
inverting the path loss of :class:`dtfl_env.scenarios.RandomClusterConfig` (said so in the
figure title).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.scenarios import RandomClusterConfig, Topology

if TYPE_CHECKING:
    from dtfl_env.envs.dtfl import DTFLEnv, EnvView

__all__ = ["FRAME_SIZE_PX", "render_ansi", "render_rgb", "synthetic_topology"]

#: (height, width) of every ``rgb_array`` frame
FRAME_SIZE_PX = (480, 480)
_DPI = 100


# ----------------------------------------------------------------------------- helpers
def _last_site_index(env: DTFLEnv, view: EnvView) -> int:
    """Index of the cluster the last step handled (each step advances the cluster by one)."""
    return (view.cluster - 1) % env.config["clusters"]


def _ended(env: DTFLEnv, view: EnvView) -> bool:
    return view.round >= env.config["rounds"]


def _fmt(x: float, unit: str = "") -> str:
    """A number in 4 significant digits with its SI unit."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}{unit and ' ' + unit}"
    return f"{x:.4g}{unit and ' ' + unit}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Right-aligned plain-text table."""
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=False))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return out


# ----------------------------------------------------------------------------- ansi
def _cluster_lines(cluster: Cluster) -> list[str]:
    g, b = cluster.gld, cluster.bld
    header = ["dev", "kind", "g_C", "g_E", "data Mbit", "P/p W", "Qmax W", "Vmax GHz", "Emax J"]
    rows = [
        [
            f"G{i}",
            "GLD",
            f"{g.gain_coordinator[i]:.3e}",
            f"{g.gain_eavesdropper[i]:.3e}",
            f"{g.data_bits[i] / 1e6:.2f}",
            f"{g.max_power_w[i]:.2f}",
            f"{g.max_jam_power_w[i]:.2f}",
            f"{g.max_cpu_hz[i] / 1e9:.2f}",
            f"{g.energy_budget_j[i]:.2f}",
        ]
        for i in range(cluster.n_gld)
    ]
    rows += [
        [
            f"B{j}",
            "BLD",
            f"{b.gain_coordinator[j]:.3e}",
            f"{b.gain_eavesdropper[j]:.3e}",
            f"{b.data_bits[j] / 1e6:.2f}",
            f"{b.power_w[j]:.2f}",
            "-",
            "-",
            "-",
        ]
        for j in range(cluster.n_bld)
    ]
    return _table(header, rows)


def _step_lines(env: DTFLEnv, view: EnvView, last: dict[str, Any]) -> list[str]:
    site = view.sites[_last_site_index(env, view)]
    budget = site.base.gld.energy_budget_j
    q_max = site.base.gld.max_jam_power_w
    rw = last["rewards"]
    out = [
        f"latency T = {_fmt(last['latency_s'], 's')}  (T_GLD = y + tG = "
        f"{_fmt(last['y'], 's')} + {_fmt(last['tG'], 's')} = {_fmt(last['T_GLD'], 's')}; "
        f"T_BLD = {_fmt(last['T_BLD'], 's')} with tB_up = {_fmt(last['tB_up'], 's')})",
        f"jamming at the eavesdropper Q = {_fmt(last['Q'], 'W')}",
        "reward = "
        + " + ".join(f"{k} {v:.4g}" for k, v in rw.items())
        + f" = {sum(rw.values()):.4g}",
    ]
    drop = set(np.asarray(last["dropouts"]).tolist())
    late_g = set(np.asarray(last.get("stragglers", {}).get("gld", [])).tolist())
    rows = []
    for i in range(len(last["q"])):
        state = "dropped" if i in drop else ("late" if i in late_g else "in")
        rows.append(
            [
                f"G{i}",
                f"{last['q'][i]:.3f}",
                f"{last['q'][i] / q_max[i]:.0%}",
                f"{last['cpu_hz'][i] / 1e9:.3f}",
                f"{last['energy_j'][i]:.3f}",
                f"{budget[i]:.2f}",
                f"{last['energy_excess_j'][i]:.3f}",
                state,
            ]
        )
    if rows:
        out += [
            "",
            *_table(["GLD", "q W", "q/Qmax", "v GHz", "E J", "Emax J", "excess J", "status"], rows),
        ]
    unsynced = set(np.asarray(last["unsynced_blds"]).tolist())
    late_b = set(np.asarray(last.get("stragglers", {}).get("bld", [])).tolist())
    rate = np.asarray(last["secrecy_rate_bps"])
    rows = [
        [
            f"B{j}",
            f"{rate[j] / 1e6:.3f}",
            "no" if j in unsynced else ("late" if j in late_b else "yes"),
        ]
        for j in range(rate.size)
    ]
    if rows:
        out += ["", *_table(["BLD", "secrecy Mbit/s", "synced"], rows)]
    out.append(f"drop-outs: {len(drop)} GLD(s); unsynced: {len(unsynced)} BLD(s)")
    return out


def render_ansi(env: DTFLEnv) -> str:
    """A plain-text report: the last step's outcome, then the cluster the agent acts on next.

    Parameters
    ----------
    env : DTFLEnv
        The unwrapped environment, after ``reset``.

    Returns
    -------
    str
        Lines separated by ``\\n`` (no colour codes).
    """
    cfg, view = env.config, env.view
    if not view.ready:
        return "DTFL: call reset() first\n"
    lines = [
        f"DTFL [{env.settings.scenario_name}]  round {view.round}/{cfg['rounds']}  "
        f"cluster {view.cluster}/{cfg['clusters']}  "
        f"global accuracy {view.global_accuracy:.4f}"
    ]
    last = view.last_step
    if last is not None:
        lines += [
            "",
            f"== last step: round {last['round']}, cluster {_last_site_index(env, view)} ==",
            *_step_lines(env, view, last),
        ]
    else:
        lines += ["", "== no step yet (after reset) =="]
    if _ended(env, view):
        lines += ["", "== episode ended: call reset() =="]
    else:
        c = env.cluster
        lines += [
            "",
            f"== next: cluster {view.cluster} ({c.n_gld} GLDs, {c.n_bld} BLDs; "
            "BLD entries are the twin's estimates) ==",
            *_cluster_lines(c),
        ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- rgb
def _distance(gain: np.ndarray, cfg: RandomClusterConfig, penalty_db: float) -> np.ndarray:
    """Invert the mean path loss g = G0 10^(-penalty/10) d^-alpha for d (m)."""
    g0 = cfg.reference_gain * 10.0 ** (-penalty_db / 10.0)
    d = (np.asarray(gain, dtype=float) / g0) ** (-1.0 / cfg.path_loss_exponent)
    return np.maximum(d, cfg.min_distance_m)


@lru_cache(maxsize=32)
def _synthetic(gains: tuple[tuple[float, ...], ...]) -> Topology:
    gc, ge, hc, he = (np.asarray(x, dtype=float) for x in gains)
    cfg = RandomClusterConfig()
    m, n = gc.size, hc.size
    centre = np.full(2, cfg.area_m / 2)
    radius = np.concatenate([_distance(gc, cfg, 0.0), _distance(hc, cfg, cfg.bld_gain_penalty_db)])
    angle = 2 * np.pi * np.arange(m + n) / max(m + n, 1) + np.pi / 2
    xy = centre + radius[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    # eavesdropper: the grid point, at least eavesdropper_min_distance_m from the
    # coordinator (the generator's rule), whose distances best match those implied by the
    # device -> eavesdropper gains (least squares)
    d_e = np.concatenate([_distance(ge, cfg, 0.0), _distance(he, cfg, cfg.bld_gain_penalty_db)])
    span = float(
        max(radius.max(initial=0.0), d_e.max(initial=0.0), 2 * cfg.eavesdropper_min_distance_m)
    )
    grid = np.linspace(-span, span, 121)
    gx, gy = np.meshgrid(grid, grid)
    offset = np.column_stack([gx.ravel(), gy.ravel()])
    pts = centre + offset[np.hypot(offset[:, 0], offset[:, 1]) >= cfg.eavesdropper_min_distance_m]
    err = np.sum((np.linalg.norm(pts[:, None, :] - xy[None], axis=2) - d_e) ** 2, axis=1)
    eve = pts[int(np.argmin(err))]
    topo = Topology(
        coordinator_xy=centre, gld_xy=xy[:m], bld_xy=xy[m:], eavesdropper_xy=eve, area_m=cfg.area_m
    )
    for a in (topo.coordinator_xy, topo.gld_xy, topo.bld_xy, topo.eavesdropper_xy):
        a.setflags(write=False)  # cached and shared
    return topo


def synthetic_topology(
    gld_gain_coordinator: np.ndarray,
    gld_gain_eavesdropper: np.ndarray,
    bld_gain_coordinator: np.ndarray,
    bld_gain_eavesdropper: np.ndarray,
) -> Topology:
    """A deterministic layout for a cluster given only its (mean) channel gains.

    Each device sits at the distance d = (g / G0')^(-1/alpha) from a coordinator at the
    centre of the area (G0' = G0 for GLDs, G0 minus the BLD penalty for BLDs; G0, alpha and
    the penalty are :class:`RandomClusterConfig`'s defaults), at evenly spread angles (GLDs
    first, counter-clockwise from the top). The eavesdropper sits at the point of a grid, at
    least ``eavesdropper_min_distance_m`` from the coordinator, whose distances to the
    devices best match (least squares) those the device -> eavesdropper gains imply. Used
    for the ``table2`` scenario, which has no positions; the result is cached (read-only).
    """
    key = tuple(
        tuple(float(v) for v in np.asarray(a, dtype=float).ravel())
        for a in (
            gld_gain_coordinator,
            gld_gain_eavesdropper,
            bld_gain_coordinator,
            bld_gain_eavesdropper,
        )
    )
    return _synthetic(key)


def _site_topology(view: EnvView, idx: int) -> tuple[Topology, bool]:
    """The topology of cluster site ``idx`` and whether it was synthesised."""
    site = view.sites[idx]
    if site.topology is not None:
        return site.topology, False
    return synthetic_topology(site.mean_gc, site.mean_ge, site.mean_hc, site.mean_he), True


def render_rgb(env: DTFLEnv) -> np.ndarray:
    """Draw a cluster's topology as an RGB frame of :data:`FRAME_SIZE_PX`.

    After a step, the cluster that step handled, with its outcome: GLD marker size and
    colour by q_i / Q_max,i, a dropped GLD (energy budget broken) outlined in red, BLD sync
    links green (synced) or red (zero secrecy rate), the jamming links GLD -> eavesdropper
    as thin orange lines. Right after ``reset``, the current cluster (grey, no outcome).

    Parameters
    ----------
    env : DTFLEnv
        The unwrapped environment, after ``reset``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(480, 480, 3)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    h, w = FRAME_SIZE_PX
    fig = Figure(figsize=(w / _DPI, h / _DPI), dpi=_DPI)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.08, 0.76, 0.78))
    view = env.view
    if not view.ready:
        ax.text(0.5, 0.5, "call reset() first", ha="center", va="center")
        return _to_rgb(canvas)

    last = view.last_step
    idx = _last_site_index(env, view) if last is not None else view.cluster
    site = view.sites[idx]
    topo, synthetic = _site_topology(view, idx)
    c, e = np.asarray(topo.coordinator_xy), np.asarray(topo.eavesdropper_xy)
    gxy, bxy = np.asarray(topo.gld_xy).reshape(-1, 2), np.asarray(topo.bld_xy).reshape(-1, 2)
    m, n = gxy.shape[0], bxy.shape[0]

    if last is not None:
        share = np.clip(np.asarray(last["q"]) / site.base.gld.max_jam_power_w, 0.0, 1.0)
        dropped = np.zeros(m, dtype=bool)
        dropped[np.asarray(last["dropouts"], dtype=int)] = True
        synced = np.ones(n, dtype=bool)
        synced[np.asarray(last["unsynced_blds"], dtype=int)] = False
    else:
        share = np.zeros(m)
        dropped = np.zeros(m, dtype=bool)
        synced = np.ones(n, dtype=bool)

    # links: uploads (GLD -> coordinator), syncs (BLD -> coordinator), jamming (-> eve)
    for p in gxy:
        ax.plot([p[0], c[0]], [p[1], c[1]], color="0.75", lw=0.8, zorder=1)
    for j, p in enumerate(bxy):
        col = "0.75" if last is None else ("tab:green" if synced[j] else "tab:red")
        ax.plot([p[0], c[0]], [p[1], c[1]], color=col, lw=1.0, ls="--", zorder=1)
    if last is not None:
        for i, p in enumerate(gxy):
            if share[i] > 0.02:
                ax.plot(
                    [p[0], e[0]],
                    [p[1], e[1]],
                    color="tab:orange",
                    lw=0.4 + 1.6 * share[i],
                    alpha=0.5,
                    zorder=1,
                )

    sc = ax.scatter(
        gxy[:, 0],
        gxy[:, 1],
        s=60 + 240 * share,
        c=share,
        cmap="plasma",
        vmin=0.0,
        vmax=1.0,
        edgecolors=np.where(dropped, "red", "black").tolist() if m else "black",
        linewidths=np.where(dropped, 2.5, 0.8) if m else 0.8,
        zorder=3,
    )
    if n:
        face = ["0.6"] * n if last is None else ["tab:green" if s else "tab:red" for s in synced]
        ax.scatter(
            bxy[:, 0],
            bxy[:, 1],
            s=70,
            marker="^",
            c=face,
            edgecolors="black",
            linewidths=0.8,
            zorder=3,
        )
    ax.scatter([c[0]], [c[1]], s=160, marker="s", c="black", zorder=4)
    ax.scatter([e[0]], [e[1]], s=180, marker="X", c="tab:red", edgecolors="black", zorder=4)
    for i, p in enumerate(gxy):
        ax.annotate(f"G{i}", p, xytext=(5, 5), textcoords="offset points", fontsize=7)
    for j, p in enumerate(bxy):
        ax.annotate(f"B{j}", p, xytext=(5, 5), textcoords="offset points", fontsize=7)

    # view: the cluster and its eavesdropper, square, with a margin
    pts = np.vstack([c[None], e[None], gxy, bxy])
    half = 0.5 * float(np.max(pts.max(axis=0) - pts.min(axis=0))) * 1.15 + 10.0
    mid = 0.5 * (pts.max(axis=0) + pts.min(axis=0))
    ax.set_xlim(mid[0] - half, mid[0] + half)
    ax.set_ylim(mid[1] - half, mid[1] + half)
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("x (m)", fontsize=8, labelpad=1)
    ax.set_ylabel("y (m)", fontsize=8, labelpad=1)
    cax = fig.add_axes((0.89, 0.08, 0.025, 0.78))
    cb = fig.colorbar(sc, cax=cax)
    cb.ax.tick_params(labelsize=6)
    cb.set_label("GLD jamming power q / Q_max", fontsize=7, labelpad=2)
    handles = [
        Line2D([], [], marker="s", color="black", ls="", label="coordinator"),
        Line2D([], [], marker="o", mfc="0.8", mec="black", ls="", label="GLD"),
        Line2D([], [], marker="^", mfc="tab:green", mec="black", ls="", label="BLD synced"),
        Line2D([], [], marker="^", mfc="tab:red", mec="black", ls="", label="BLD unsynced"),
        Line2D([], [], marker="X", mfc="tab:red", mec="black", ls="", label="eavesdropper"),
        Line2D([], [], marker="o", mfc="none", mec="red", mew=2, ls="", label="GLD dropped"),
    ]
    ax.legend(handles=handles, loc="upper left", fontsize=6, framealpha=0.8, ncol=2)

    name = env.settings.scenario_name
    where = name
    if synthetic:
        where = f"synthetic layout from {'Table II' if name == 'table2' else 'the instance'} gains"
    if last is not None:
        title = f"round {last['round']}, cluster {idx} (last step) - {where}"
        sub = (
            f"T = {last['latency_s']:.3g} s (GLD {last['T_GLD']:.3g} s, BLD "
            f"{last['T_BLD']:.3g} s)  Q = {last['Q']:.2e} W\n"
            f"drop-outs {len(last['dropouts'])}/{m}, unsynced BLDs "
            f"{len(last['unsynced_blds'])}/{n}"
        )
    else:
        title = f"round {view.round}, cluster {idx} (after reset) - {where}"
        sub = f"{m} GLDs, {n} BLDs; no step yet"
    fig.text(0.5, 0.975, title, ha="center", va="top", fontsize=8.5, weight="bold")
    fig.text(0.5, 0.935, sub, ha="center", va="top", fontsize=7.5)
    return _to_rgb(canvas)


def _to_rgb(canvas: Any) -> np.ndarray:
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3], dtype=np.uint8)
