"""The DTFL-v0 Gymnasium environment: one step handles one cluster of one FL round.

:class:`DTFLEnv` is the thin layer that sequences an episode; each role lives in its own
module of :mod:`dtfl_env.envs` (HighwayEnv style: small types chosen by config):
:mod:`~dtfl_env.envs.config` (typed, validated settings behind the plain-dict config),
:mod:`~dtfl_env.envs.sites` (the cluster sites and each round's fading),
:mod:`~dtfl_env.envs.action` (the action modes), :mod:`~dtfl_env.envs.observation`,
:mod:`~dtfl_env.envs.reward`, :mod:`~dtfl_env.envs.learning` (real FL training, the ledger
and the attacks), :mod:`~dtfl_env.envs.info` (the step's ``info``) and
:mod:`~dtfl_env.envs.rendering`. The physics is :mod:`dtfl_env.model`; the reference of the
environment is docs/ENVIRONMENT.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from dtfl_env.config import Cluster
from dtfl_env.envs.action import (
    ACTION_SIZES,
    ACTION_TYPES,
    RANGE_TOLERANCE,
    ActionRangeError,
    ActionType,
    ClipMemo,
    action_factory,
)
from dtfl_env.envs.config import EnvConfig, default_config, merge_config, validate_config
from dtfl_env.envs.info import (
    has_ledger,
    info_defaults,
    info_row,
    ledger_info,
    outcome_info,
    outcome_record,
    reward_info,
)
from dtfl_env.envs.learning import LearningRound
from dtfl_env.envs.observation import (
    BOUND_FEATURES,
    GLOBAL_FEATURES,
    OBS_CLIP,
    SLOT_FEATURES,
    ObservationType,
)
from dtfl_env.envs.reward import RewardFunction
from dtfl_env.envs.sites import Site, SiteLayout, cluster_from_arrays, draw_sites
from dtfl_env.model.batch import ClusterRow
from dtfl_env.model.round import BatchOutcome, round_outcomes
from dtfl_env.scenarios import Topology

if TYPE_CHECKING:
    from solvers.result import SolverResult

__all__ = [
    "ACTION_SIZES",
    "BOUND_FEATURES",
    "GLOBAL_FEATURES",
    "RANGE_TOLERANCE",
    "SLOT_FEATURES",
    "ActionRangeError",
    "DTFLEnv",
    "EnvView",
]


@dataclass(frozen=True)
class EnvView:
    """A read-only view of a :class:`DTFLEnv`'s progress (``env.view``), for renderers."""

    ready: bool  # reset() was called since the last configure()
    round: int  # the round the next step belongs to (``rounds`` once the episode ended)
    cluster: int  # the cluster the next step handles
    global_accuracy: float
    sites: tuple[Site, ...]  # the episode's cluster sites
    last_step: dict[str, Any] | None  # the last step in device order; None after reset


class DTFLEnv(gym.Env):
    """Resource allocation for DT-assisted, blockchain-verified federated learning.

    Each section is a summary; docs/ENVIRONMENT.md is the full reference.

    ## Description
    Tang et al.'s multi-tier system: S clusters of GLDs (capable devices that train locally,
    upload by NOMA and jam) and BLDs (resource-poor devices whose digital twins train at the
    group coordinator after a sync secured by cooperative jamming). An episode is R global
    FL rounds; **one step handles one cluster** of the current round: the agent chooses the
    cluster's allocation of problem P (training time y, upload time tG, jamming powers q),
    the environment charges latency (eq. (11)), energies (14a) and secrecy rates (eq. (21)),
    applies the drop-out rules, runs the cluster's FL round and, after the last cluster of a
    round, the ledger's verification and the global aggregation.

    ## Action Space
    ``action.mode = "direct"`` (default): ``Box(-1, 1, (2 + max_devices,))``, tG and y on log
    scales above what every GLD can pay on its own and one jamming power per GLD slot; only
    the energy budgets (14a) can break. ``"safe"``: ``Box(-1, 1, (3,))``, a parametrisation
    of problem P's feasible set (every action keeps every budget and syncs every BLD where
    some allocation can). :meth:`action_to_allocation` and :meth:`allocation_to_action`
    translate between actions and allocations.

    ## Observation Space
    ``Box(-5, 5, (max_devices * 9 + 11,))``: ``SLOT_FEATURES`` per device slot (GLDs in NOMA
    order, then BLDs, then zeros) and the cluster's ``GLOBAL_FEATURES``;
    ``observation.safe_bounds`` appends ``BOUND_FEATURES``. BLD entries are the digital
    twins' estimates; the environment charges the true values.

    ## Rewards
    Named terms, summed, also in ``info`` as ``reward_<term>``: ``latency`` (minus T relative to a
    reference, ``reward.latency_form`` and ``reward.latency_baseline``), ``accuracy`` (the
    global accuracy gain at the end of a round) and ``violation`` (energy excess or
    drop-outs, and unsynced BLDs).

    ## Starting State
    ``reset`` draws S cluster sites (``scenario``) and the first round's fading.

    ## Episode End
    ``terminated`` after the last cluster of round R; ``truncated`` never (use ``TimeLimit``).

    ## Arguments
    ``gym.make("DTFL-v0", config={...}, render_mode=None | "ansi" | "rgb_array")``: overrides
    of :func:`~dtfl_env.envs.config.default_config` after the registered id's preset, also
    at ``reset(options={"config": {...}})``; unknown keys and bad values are errors naming
    their dotted path. ``env.config`` is the plain dict, ``env.settings`` its typed
    :class:`~dtfl_env.envs.config.EnvConfig`.

    ## Info
    Numbers and fixed-shape numeric arrays only, the same keys at reset (with defaults) and
    at every step: ``docs/INFO.md`` lists them, :func:`dtfl_env.envs.info.info_defaults`
    builds them. The raw cluster is ``env.unwrapped.cluster``.

    ## Version History
    - v0: initial version. Since then (same id, results change): a dropped GLD no longer
      jams (its q_i used to count towards Q); the direct box starts at tg_lo and y_lo
      (was tG_min and y_min) with ranges of 1000 (was 50); the ``excess`` scale reaches its
      bound exactly; L follows the trained model with real training.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        render_mode: str | None = None,
        base_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode: must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.render_mode = render_mode
        # the registered id's preset (``base_config``), then the user's overrides
        self._base_config = merge_config(default_config(), base_config)
        self.learner = LearningRound()  # the FL process and the ledger (torch backend)
        self.configure(config)
        self._sites: list[Site] = []
        self._clipped = ClipMemo()  # the last allocation_to_action(clip=True) in own mode
        self._clear_episode()
        self._topo_rng = self._fade_rng = self._fl_rng = np.random.default_rng()
        self._episode_ready = False

    # ------------------------------------------------------------------ configuration
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return default_config()

    def configure(self, config: dict[str, Any] | None) -> None:
        """Apply overrides to the defaults (strict); rebuilds the roles and the spaces."""
        cfg = merge_config(self._base_config, config)
        self.settings: EnvConfig = validate_config(cfg)  # typed; the roles read it
        self.config = cfg  # the plain dict users read
        s = self.settings
        self.constants = s.constants  # L follows the trained model (EnvConfig.from_dict)
        self.action_mode = s.action.mode
        # one action type per mode (the env's own, and the others for ``mode=`` arguments)
        self._action_types = {m: action_factory(s.action, s.max_devices, m) for m in ACTION_TYPES}
        self.action_type: ActionType = self._action_types[self.action_mode]
        self.action_space = self.action_type.space()
        self.observation_type = ObservationType(s, self.action_type.ln_tg_range)
        self.observation_space = self.observation_type.space()
        self.reward_function = RewardFunction(s.reward)
        self.learner.configure(s)
        self._episode_ready = False

    # ------------------------------------------------------------------ episode
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"config"}
        if unknown:
            raise ValueError(f"unknown reset option(s): {', '.join(sorted(unknown))}")
        if "config" in options:
            self.configure(merge_config(self.config, options["config"]))
        # independent sub-generators for topology, fading and FL, derived from the env seed
        topo, fade, fl = (int(s) for s in self.np_random.integers(0, 2**63 - 1, 3))
        self._topo_rng = np.random.default_rng(topo)
        self._fade_rng = np.random.default_rng(fade)
        self._fl_rng = np.random.default_rng(fl)
        if (
            not self._sites
            or self.settings.new_topology_each_episode
            or seed is not None
            or not self._episode_ready
        ):
            self._sites = draw_sites(self.settings, [self._topo_rng], self.settings.clusters)[0]
            self._layout = SiteLayout(self._sites)
        self._episode_ready = True
        self._clear_episode()
        with self.learner.threads():
            start = self.learner.reset(self._sites, self._fl_rng)
        if start is not None:
            self._accuracy, self._loss = start
        self._draw_round()
        return self._observation(), self._info_reset()

    def _clear_episode(self) -> None:
        """The progress of a new episode: round 0, cluster 0, nothing charged or learned."""
        self._round = self._cluster = 0
        self._accuracy, self._loss = 0.0, math.nan
        self._last_step: tuple[Any, ...] | None = None
        self._clock_s = self._round_latency_s = 0.0
        self._clipped.forget()

    @property
    def learning(self) -> bool:
        """True when the FL round trains real models (``fl.backend == "torch"``)."""
        return self.settings.fl.backend == "torch"

    def _draw_round(self) -> None:
        """Fresh fading (and twin deviations) for every site; the observations of the round."""
        s = self.settings
        draw = self._layout.draw_round(
            self.constants, self._fade_rng, fading=s.fading, twin_deviation=s.twin_deviation
        )
        self.observation_type.new_round(self._layout, draw, self.constants)

    def _observation(self) -> np.ndarray:
        return self.observation_type.observe(self._cluster, self._round, self._accuracy)

    # ------------------------------------------------------------------ actions
    def action_to_allocation(
        self,
        action: np.ndarray,
        mode: str | None = None,
        *,
        tg_range: float | None = None,
        y_range: float | None = None,
        jamming: str | None = None,
        sync_range: float | None = None,
        scale: str | None = None,
    ) -> tuple[float, float, np.ndarray]:
        """Map an action to (y, tG, q) on the current cluster (docs/ENVIRONMENT.md, Action Space).

        ``mode``, ``tg_range``, ``y_range``, ``jamming``, ``sync_range`` and ``scale``
        (default: the env's ``action`` config) read the action as one of another action
        config, e.g. to replay an agent trained there (bad values name ``action.<key>``).
        """
        return self._action_type(mode).to_allocation_as(
            self._sites[self._cluster],
            action,
            tg_range=tg_range,
            y_range=y_range,
            jamming=jamming,
            sync_range=sync_range,
            scale=scale,
        )

    def allocation_to_action(
        self,
        y_s: float,
        tg_s: float,
        jam_power_w: np.ndarray,
        mode: str | None = None,
        *,
        clip: bool = False,
    ) -> np.ndarray:
        """The action whose mapping on the current cluster is (y, tG, q); outside the action
        box raises :class:`ActionRangeError` naming the variable, or with ``clip=True``
        returns the nearest action, and the step that plays it here reports
        ``info["action_clipped"] = 1`` (docs/ENVIRONMENT.md, Action Space)."""
        act = self._action_type(mode)
        out, clipped = act.to_action(self._sites[self._cluster], y_s, tg_s, jam_power_w, clip=clip)
        if clipped and act is self.action_type:
            self._clipped.remember(self._round, self._cluster, out)
        return out

    def _action_type(self, mode: str | None) -> ActionType:
        """The action type of ``mode`` (``None``: the env's own)."""
        if mode is not None and mode not in ACTION_TYPES:
            raise ValueError(f"mode: must be one of {list(ACTION_TYPES)}, got {mode!r}")
        return self._action_types[self.action_mode if mode is None else mode]

    def bound_features(self, tg_range: float | None = None) -> np.ndarray:
        """The current cluster's ``BOUND_FEATURES`` (the safe box's lower bounds in log10
        seconds, clipped to [-5, 5]), as ``observation.safe_bounds`` appends them;
        ``tg_range`` (default: the config's) bounds the search for tg_base, e.g. to build
        the observation of an agent trained with another range."""
        obs = self.observation_type
        ln_tg = obs.ln_tg_range if tg_range is None else math.log(tg_range)
        feats = obs.bound_features(self._sites[self._cluster], ln_tg)
        return np.clip(feats, -OBS_CLIP, OBS_CLIP).astype(np.float32)

    @property
    def direct_bounds(self) -> tuple[float, float]:
        """(tg_lo, y_lo) of the current cluster: the lower ends of the direct mode's tG and y
        ranges, the shortest upload time and the shortest common training time that every
        GLD can pay from its budget on its own (NaN where the cluster has no GLD)."""
        site = self._site()
        return site.tg_lo_s, site.y_lo_s

    @property
    def cluster(self) -> Cluster:
        """The current cluster as the policy sees it (for analytical policies)."""
        return self._site().cluster(self.constants)

    @property
    def cluster_arrays(self) -> ClusterRow:
        """The current cluster (as the policy sees it) as the fast-path arrays of
        :mod:`dtfl_env.model.round`, for policies that use :mod:`dtfl_env.model.feasible`."""
        arr = self._site().seen
        assert arr is not None
        return arr

    @property
    def true_cluster(self) -> Cluster:
        """The current cluster with the true values the environment charges (for oracles)."""
        site = self._site()
        assert site.true is not None
        return cluster_from_arrays(site.true, self.constants)

    def _site(self) -> Site:
        """The current cluster's site (after reset)."""
        if not self._episode_ready:
            raise RuntimeError("call reset() first")
        return self._sites[self._cluster]

    @property
    def topology(self) -> Topology | None:
        return self._sites[self._cluster].topology if self._sites else None

    # ------------------------------------------------------------------ step
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._episode_ready:
            raise RuntimeError("call reset() before step()")
        if self._round >= self.settings.rounds:
            raise RuntimeError("the episode has ended: call reset()")
        site = self._sites[self._cluster]
        y, tg, q = self.action_type.to_allocation(site, action)
        assert site.true is not None
        charged = self._charge(site, y, tg, q)
        out = charged.item(0)
        cluster_idx, round_idx = self._cluster, self._round
        self._round_latency_s = max(self._round_latency_s, out.latency_s)
        optimum = self._step_optimum(site)  # before the round's fading is redrawn
        opt_s = None if optimum is None else np.array([optimum.T if optimum.feasible else np.inf])
        baseline = self.reward_function.baseline_s(1, opt_s, lambda: self._center_latency_s(site))
        baseline_s = float(baseline[0])
        self.learner.submit(cluster_idx, out)  # who trains follows the step
        self._cluster += 1
        acc_gain = 0.0
        if self._cluster == self.settings.clusters:
            acc_gain = self._end_of_round()
            self._cluster = 0
            self._round += 1
            if self._round < self.settings.rounds:
                self._draw_round()
        rewards = {
            name: float(v[0])
            for name, v in self.reward_function.terms(
                charged, site.true.g_e_max.reshape(1, -1), np.array([acc_gain]), baseline
            ).items()
        }
        reward = float(sum(rewards.values()))
        terminated = self._is_terminated()
        info = self._info(site, charged, rewards, cluster_idx, round_idx, optimum)
        info["latency_baseline_s"] = baseline_s
        info["action_clipped"] = int(self._clipped.played(action, round_idx, cluster_idx))
        self._clipped.forget()
        self._last_step = (site, out, rewards, cluster_idx, round_idx)
        obs = (
            self._observation()
            if not terminated
            else self.observation_type.terminal(self._cluster, self._accuracy)
        )
        return obs, reward, terminated, False, info

    def _charge(self, site: Site, y: float, tg: float, q: np.ndarray) -> BatchOutcome:
        """The round's outcome on the site's true values: :func:`round_outcomes` on the
        site as a batch of one."""
        assert site.true is not None
        return round_outcomes(
            site.true.one(),
            y_s=np.array([y]),
            tg_s=np.array([tg]),
            jam_power_w=np.asarray(q, dtype=float).reshape(1, -1),
            deadline_s=self.settings.round_deadline_s,
            bld_battery_j=site.bld_battery_j.reshape(1, -1),
            enforce_bld_energy=self.settings.bld_energy.enforce,
        )

    def _end_of_round(self) -> float:
        """Close the round: the clock advances by its slowest cluster, the clusters train,
        the ledger verifies and the global model aggregates (:class:`LearningRound`);
        returns the global accuracy gain."""
        self._clock_s += self._round_latency_s  # clusters run in parallel
        self._round_latency_s = 0.0
        with self.learner.threads():
            result = self.learner.end_round(self._round, self._sites, self._clock_s)
        if result is None:
            return 0.0
        acc, self._loss = result
        gain = acc - self._accuracy
        self._accuracy = acc
        return gain

    def _step_optimum(self, site: Site) -> SolverResult | None:
        """The exact optimum (a ``SolverResult``) of the cluster being charged, on its true
        values, where ``compute_optimal`` or ``latency_baseline = "optimum"`` needs it, else
        None. Call it before the step moves on: the end of a round redraws every site's
        fading."""
        if not (self.settings.compute_optimal or self.reward_function.needs_optimum):
            return None
        from solvers.exact import solve_exact

        assert site.true is not None
        return solve_exact(cluster_from_arrays(site.true, self.constants))

    def _center_latency_s(self, site: Site) -> np.ndarray:
        """The latency of the action box's centre (the action 0) on ``site``, charged like
        a step (the latency reference of ``latency_baseline = "center"``), shape (1,)."""
        y, tg, q = self.action_type.to_allocation(site, np.zeros(self.action_type.size))
        return self._charge(site, y, tg, q).latency_s

    def _is_terminated(self) -> bool:
        return self._round >= self.settings.rounds

    def _info_reset(self) -> dict[str, Any]:
        """The info at reset: a step's keys with their defaults (:func:`info_defaults`)."""
        info = info_defaults(self.config)
        info["global_accuracy"] = self._accuracy
        if self.learning:
            info["global_loss"] = self._loss
        return info

    def _info(
        self,
        site: Site,
        out: BatchOutcome,
        rewards: dict[str, float],
        cluster_idx: int,
        round_idx: int,
        optimum: SolverResult | None,
    ) -> dict[str, Any]:
        """The step's info: numbers and fixed-shape numeric arrays only, the keys of
        :func:`info_defaults` (docs/INFO.md). Per-device entries are arrays of length
        ``max_devices`` in slot order (GLDs, then BLDs, then empty slots): 0 where a
        quantity does not apply, masks instead of index lists."""
        info: dict[str, Any] = {
            **reward_info(rewards),
            "round": round_idx,
            "cluster_index": cluster_idx,
            **info_row(
                outcome_info(out, site.bld_battery_j.reshape(1, -1), self.settings.max_devices), 0
            ),
            "global_accuracy": self._accuracy,
            "sim_time_s": self._clock_s + self._round_latency_s,
            "next_round": self._round,
            "next_cluster_index": self._cluster,
        }
        if self.learning:
            info["global_loss"] = self._loss
        if has_ledger(self.config):  # the block of the round this step closed, or defaults
            closed = self._cluster == 0 and self.learner.round_record is not None
            info.update(
                ledger_info(self.learner.round_record if closed else None, self.settings.clusters)
            )
        if self.settings.compute_optimal:
            ref = optimum  # solved on the cluster just charged, before any redraw
            assert ref is not None
            info["optimal_latency_s"] = float(ref.T)
            info["optimality_gap"] = (
                float(out.latency_s[0] / ref.T - 1.0) if ref.feasible else math.nan
            )
        return info

    @property
    def view(self) -> EnvView:
        """A read-only view of the episode's progress (what the renderer reads)."""
        return EnvView(
            ready=self._episode_ready,
            round=self._round,
            cluster=self._cluster,
            global_accuracy=self._accuracy,
            sites=tuple(self._sites),
            last_step=self._last_step_record(),
        )

    def _last_step_record(self) -> dict[str, Any] | None:
        """The last step in device order (for the renderer): per-GLD and per-BLD arrays."""
        if self._last_step is None:
            return None
        _, out, rewards, cluster_idx, round_idx = self._last_step
        return {
            "rewards": rewards,
            "round": round_idx,
            "cluster": cluster_idx,
            **outcome_record(out),
        }

    # ------------------------------------------------------------------ rendering
    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        from dtfl_env.envs.rendering import render_ansi, render_rgb

        if self.render_mode == "ansi":
            return render_ansi(self)
        return render_rgb(self)
