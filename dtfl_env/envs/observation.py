"""The observation of DTFL-v0 (HighwayEnv style ``ObservationType``): per-slot device
features, the cluster's global features and, with ``observation.safe_bounds``, the safe
box's lower bounds. The layout is documented in docs/ENVIRONMENT.md (Observation Space).

The rows of every site are built once per round in one vectorised pass
(:meth:`ObservationType.new_round`); a step's observation is its cluster's row with the
round, cluster and accuracy filled in (:meth:`ObservationType.observe`).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from dtfl_env.config import Constants
from dtfl_env.envs.config import EnvConfig
from dtfl_env.envs.sites import RoundDraw, Site, SiteLayout
from dtfl_env.model.batch import segment_max
from dtfl_env.model.feasible import (
    BOUND_EXCESS,
    FeasibleRows,
    safe_bound_features,
    safe_bound_features_batch,
    tg_base_batch_s,
)

__all__ = [
    "BOUND_FEATURES",
    "GLOBAL_FEATURES",
    "OBS_CLIP",
    "SLOT_FEATURES",
    "ObservationType",
    "db",
]

SLOT_FEATURES = (
    "is_gld",
    "is_bld",
    "gain_coordinator_db",
    "gain_eavesdropper_db",
    "data",
    "power",
    "max_jam_power",
    "max_cpu",
    "energy_budget",
)
GLOBAL_FEATURES = (
    "round_progress",
    "cluster_progress",
    "global_accuracy",
    "gld_share",
    "bld_share",
    "log10_tg_min_s",
    "log10_y_min_s",
    "log10_tg_lo_s",
    "log10_sync_min_s",
    "log10_sync_full_jam_s",
    "log10_tb_loc_s",
)
#: appended with ``observation.safe_bounds``: the safe box's lower bounds (log10 seconds)
BOUND_FEATURES = (
    "log10_tg_base_s",
    *(f"log10_y_base_at_{1 + e:g}_tg_base_s" for e in BOUND_EXCESS),
)
#: every observed value is clipped to [-OBS_CLIP, OBS_CLIP]
OBS_CLIP = 5.0


def db(x: np.ndarray) -> np.ndarray:
    """A channel gain as observed: (10 log10 g + 70) / 20."""
    return (10.0 * np.log10(x) + 70.0) / 20.0


class ObservationType:
    """The observation of the env's config (``max_devices``, ``rounds``, ``clusters`` and the
    ``observation`` block): its space, and the rows of a round.

    ``ln_tg_range`` (the config's ``action.tg_range``, as a natural log) bounds the search
    for the safe box's tg_base in the bound features, whatever the action mode.

    Where the bound features or the ``safe`` action mode need it, each round's tg_base of
    every site is found in one batched search (:attr:`tg_base_s`).
    """

    def __init__(self, config: EnvConfig, ln_tg_range: float) -> None:
        self.max_devices = config.max_devices
        self.rounds, self.clusters = config.rounds, config.clusters
        self.safe_bounds = config.observation.safe_bounds
        self.needs_tg_base = self.safe_bounds or config.action.mode == "safe"
        self.ln_tg_range = ln_tg_range
        self.g_index = self.max_devices * len(SLOT_FEATURES)  # where GLOBAL_FEATURES start
        self.size = (
            self.g_index + len(GLOBAL_FEATURES) + (len(BOUND_FEATURES) if self.safe_bounds else 0)
        )
        self.rows = np.zeros((0, self.size), dtype=np.float32)
        #: the round's tg_base per site (the safe box's lower end of tG, for
        #: ``ln_tg_range``) where :attr:`needs_tg_base`; empty otherwise
        self.tg_base_s = np.zeros(0)

    def space(self) -> spaces.Box:
        return spaces.Box(-OBS_CLIP, OBS_CLIP, (self.size,), dtype=np.float32)

    def bound_features(self, site: Site, ln_tg_range: float) -> np.ndarray:
        """The site's ``BOUND_FEATURES`` (unclipped); tg_base searched with ``ln_tg_range``."""
        if not site.m:
            return np.zeros(len(BOUND_FEATURES))
        assert site.seen is not None
        tg_base = site.tg_base(ln_tg_range, cached=ln_tg_range == self.ln_tg_range)
        return safe_bound_features(site.seen, tg_base)

    def new_round(
        self, layout: SiteLayout, draw: RoundDraw, constants: Constants, *, bound: bool = True
    ) -> None:
        """Build the rows of every site for the round just drawn (the twin's view).

        Where :attr:`needs_tg_base`, the tg_base of all sites is one batched search
        (:func:`~dtfl_env.model.feasible.tg_base_batch_s`), and with ``safe_bounds`` so are
        their bound features (:func:`~dtfl_env.model.feasible.safe_bound_features_batch`);
        ``bound``: the layout's sites hold this draw (:meth:`SiteLayout.apply` with
        ``bind``), and each site keeps its tg_base (:meth:`Site.tg_base` reuses it)."""
        lay, k = layout, constants
        gld, seen_bld, seen, tg_lo = draw.gld, draw.seen_bld, draw.seen, draw.tg_lo_s
        m_all, n_all = lay.g_site.size, lay.b_site.size
        # the BLD path's scales (twin estimates): fastest sync (infinite jamming, eq. (23)),
        # sync at full jamming Q = sum_i Q_max,i g_iE (eq. (22)), twin training tB_loc (6)
        n_sites = len(lay.sites)
        sync_min = sync_full = np.zeros(n_sites)
        if n_all:
            legit = np.log2(
                1.0 + seen_bld["power_w"] * seen_bld["gain_coordinator"] / k.noise_bld_w
            )
            q_full = np.zeros(n_sites)
            if m_all:
                np.add.at(
                    q_full, lay.g_site, gld["max_jam_power_w"] * gld["gain_eavesdropper"]
                )  # (22)
            eve = np.log2(
                1.0
                + seen_bld["power_w"]
                * seen_bld["gain_eavesdropper"]
                / (k.noise_eavesdropper_w + q_full[lay.b_site])
            )
            with np.errstate(divide="ignore"):
                rate = np.maximum(legit - eve, 0.0)
                sync_min = segment_max(
                    seen_bld["data_bits"] / (k.bandwidth_hz * legit), lay.b_counts
                )
                sync_full = segment_max(
                    seen_bld["data_bits"] / (k.bandwidth_hz * rate), lay.b_counts
                )
        tb_loc = seen.tb_loc_s
        # observation rows of every site (the twin's view of the BLDs), one vectorised pass
        d = self.max_devices
        feats = np.zeros((n_sites, d, len(SLOT_FEATURES)))
        gi, gs = lay.g_site, lay.g_slot
        feats[gi, gs, 0] = 1.0
        feats[gi, gs, 2] = db(gld["gain_coordinator"])
        feats[gi, gs, 3] = db(gld["gain_eavesdropper"])
        feats[gi, gs, 4] = gld["data_bits"] / 50e6
        feats[gi, gs, 5] = gld["max_power_w"] / 2.0
        feats[gi, gs, 6] = gld["max_jam_power_w"]
        feats[gi, gs, 7] = gld["max_cpu_hz"] / 2e9
        feats[gi, gs, 8] = gld["energy_budget_j"] / 4.0
        bi, bs = lay.b_site, lay.b_slot
        feats[bi, bs, 1] = 1.0
        feats[bi, bs, 2] = db(seen_bld["gain_coordinator"])
        feats[bi, bs, 3] = db(seen_bld["gain_eavesdropper"])
        feats[bi, bs, 4] = seen_bld["data_bits"] / 5e6
        feats[bi, bs, 5] = seen_bld["power_w"] / 2.0
        tg_min, y_min = seen.tg_min_s, seen.y_min_s
        has_gld = lay.g_counts > 0
        has_bld = lay.b_counts > 0

        def log10(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
            with np.errstate(divide="ignore"):
                return np.where(mask, np.log10(np.where(mask, x, 1.0)), 0.0)

        extra = np.column_stack(
            [
                np.zeros((n_sites, 3)),
                lay.g_counts / d,
                lay.b_counts / d,
                log10(tg_min, has_gld),
                log10(y_min, has_gld),
                log10(tg_lo, has_gld),
                log10(sync_min, has_bld),
                log10(sync_full, has_bld),
                log10(tb_loc, has_bld),
            ]
        )
        rows = np.concatenate([feats.reshape(n_sites, -1), extra], axis=1)
        if self.needs_tg_base:
            feasible = FeasibleRows.from_batch(seen)
            self.tg_base_s = tg_base_batch_s(feasible, tg_lo, self.ln_tg_range)
            if bound:
                for i in np.flatnonzero(has_gld):
                    lay.sites[i].tg_base_s = float(self.tg_base_s[i])
            if self.safe_bounds:
                rows = np.concatenate(
                    [rows, safe_bound_features_batch(feasible, self.tg_base_s)], axis=1
                )
        self.rows = np.clip(rows, -OBS_CLIP, OBS_CLIP).astype(np.float32)

    def observe(self, cluster: int, round_idx: int, accuracy: float) -> np.ndarray:
        """The observation of ``cluster`` in round ``round_idx`` (float32, clipped)."""
        row = self.rows[cluster].copy()  # float32, already clipped
        g = self.g_index
        row[g] = round_idx / self.rounds
        row[g + 1] = cluster / self.clusters
        row[g + 2] = min(max(accuracy, -OBS_CLIP), OBS_CLIP)
        return row

    def terminal(self, cluster: int, accuracy: float) -> np.ndarray:
        """The observation after the last step: round progress 1, cluster progress 0."""
        row = self.rows[cluster].copy()
        g = self.g_index
        row[g], row[g + 1], row[g + 2] = 1.0, 0.0, accuracy
        return np.clip(row, -OBS_CLIP, OBS_CLIP).astype(np.float32)
