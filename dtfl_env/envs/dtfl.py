"""The DTFL-v0 Gymnasium environment: one step handles one cluster of one FL round.

:class:`DTFLEnv` is the thin layer that sequences an episode; each role lives in its own
module of :mod:`dtfl_env.envs` (HighwayEnv style: small types chosen by config):

- :mod:`~dtfl_env.envs.sites`: the cluster sites, the scenarios that draw them and each
  round's fading;
- :mod:`~dtfl_env.envs.action`: the action modes (``action.mode``), action <-> allocation;
- :mod:`~dtfl_env.envs.observation`: the observation (slot, global and bound features);
- :mod:`~dtfl_env.envs.reward`: the reward terms and the latency reference;
- :mod:`~dtfl_env.envs.learning`: real FL training, the ledger and the attacks;
- :mod:`~dtfl_env.envs.info`: the step outcome's ``info`` layout;
- :mod:`~dtfl_env.envs.rendering`: ``ansi`` and ``rgb_array`` frames (of ``env.view``).

The physics (latency, energy, secrecy rates, drop-outs) is :mod:`dtfl_env.model`.
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
    action_factory,
)
from dtfl_env.envs.config import EnvConfig, default_config, merge_config, validate_config
from dtfl_env.envs.info import outcome_info, outcome_record
from dtfl_env.envs.learning import LearningRound
from dtfl_env.envs.observation import (
    BOUND_FEATURES,
    GLOBAL_FEATURES,
    OBS_CLIP,
    SLOT_FEATURES,
    ObservationType,
)
from dtfl_env.envs.reward import RewardFunction
from dtfl_env.envs.sites import Site, SiteLayout, cluster_from_arrays, draw_site
from dtfl_env.model.round import ClusterArrays, RoundOutcome, round_outcome
from dtfl_env.scenarios import Topology

if TYPE_CHECKING:
    from solvers.result import SolverResult

__all__ = ["ACTION_SIZES", "BOUND_FEATURES", "GLOBAL_FEATURES", "RANGE_TOLERANCE",
           "SLOT_FEATURES", "ActionRangeError", "DTFLEnv", "EnvView"]


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

    ## Description
    Tang et al.'s multi-tier system: S clusters, each with GLDs (capable devices that
    train locally, upload by NOMA and jam) and BLDs (resource-poor devices whose digital
    twins train at the group coordinator after a sync secured by cooperative jamming). An
    episode is R global FL rounds; **one step handles one cluster** of the current round:
    the agent chooses the cluster's allocation of problem P (common local-training time y,
    NOMA upload time tG, jamming powers q), the environment charges latency (eq. (11)),
    energies (14a) and secrecy rates (eq. (21)), applies drop-out rules, runs the cluster's
    FL round, and after the last cluster of a round the ledger's verification and the global
    aggregation. Devices are classified by eq. (3) when an episode's topology is drawn.

    ## Action Space
    ``Box(-1, 1, (2 + max_devices,))``, mapped to problem P's variables:

    - ``a[0]`` -> tG = tg_lo * tg_range ** ((a[0] + 1) / 2), log-scale in
      [tg_lo, tg_range * tg_lo]; tg_lo: the shortest upload time that every GLD can pay
      from its budget on its own (never below the power bound (24c));
    - ``a[1]`` -> y = y_lo * y_range ** ((a[1] + 1) / 2) in [y_lo, y_range * y_lo]; y_lo =
      max(y_min, max_i sqrt(K_i / E_max,i)): the shortest common training time every GLD
      can pay on its own, never below the CPU bound (19); v_i = eta iota D_i / y (eq. (17));
    - ``a[2 + i]`` -> q_i = Q_max,i (a[2 + i] + 1) / 2 for the GLD in slot i; ignored for
      BLD and empty slots.

    By construction (14b)-(14d) always hold; only the energy budget (14a) can break (no
    single term breaks it alone). Values outside [-1, 1] are clipped; NaN or inf raise
    ``ValueError`` naming the index. ``env.direct_bounds`` is (tg_lo, y_lo). With the
    default ranges (1000) the exact optimum of every feasible cluster is an action, in both
    modes (tested on 20 episodes of every id; the largest optimum seen was 136 tg_lo).
    :meth:`allocation_to_action` maps a solver's allocation to the action that reproduces it
    and raises :class:`ActionRangeError` where none does (``clip=True``: the nearest action,
    and the step reports ``info["action_clipped"] = 1``).

    With ``action.mode = "safe"`` the action is ``Box(-1, 1, (3,))``, a parametrisation of
    the feasible set of problem P (:mod:`dtfl_env.model.feasible`): on every cluster that
    has a feasible allocation, every action keeps every energy budget and syncs every BLD
    (tested), and the latency-optimal allocation is a point of the box:

    - ``a[0]`` -> tG = tg_base * tg_range ** ((a[0] + 1) / 2), tg_base: the shortest upload
      time at which the BLDs can still be synced within the budgets;
    - ``a[1]`` -> y = y_base(tG) * y_range ** ((a[1] + 1) / 2), y_base(tG): the shortest
      common training time at which the jamming that syncs every BLD is still affordable
      (never below the CPU bound (19) or any GLD's training budget);
    - ``a[2]`` -> the aggregate jamming Q in the interval [Q_low, Q_high] the GLDs can pay
      from the energy left (every BLD synced), split in proportion to what each GLD can
      give; Q_high is the fastest sync they can afford. ``action.jamming = "interval"``
      (default): Q = Q_low + (a[2] + 1) / 2 (Q_high - Q_low). ``"sync"``: the least such Q
      at which the BLDs finish (sync plus twin training) within rho (y + tG), rho =
      sync_range ** a[2] (default range 2: rho in [1/2, 2]), Q_high where none does; every
      a[2] <= 0 then jams as fast as the round needs (the latency-optimal jamming for the
      chosen tG and y), which makes the action easier to learn;
    - ``action.scale = "excess"`` (default ``"ratio"``): a[0] and a[1] set the excess of tG
      and y over their lower bounds on a log scale, tG = tg_base (1 + e^s) with s uniform
      in [log 1e-3, log(tg_range - 1)] (y likewise), finer just above the bounds, where
      the sync limits are steep and most optima lie.

    On a cluster with no feasible allocation the bounds fall back to what every GLD can
    pay (tg_base: the shortest upload with a 1e-6 share of every budget to spare; y_base: the
    training energy floor) and the jamming to none where no level is affordable: a GLD that
    cannot pay even an endless upload (a deep fade) drops out whatever the action, and BLDs
    that need jamming may not sync. A safe step costs about 1 ms (four small searches);
    the exact optimum round-trips within 1e-6 in T whenever it lies inside the ranges. Both
    modes share the observation; ``action_to_allocation`` / ``allocation_to_action`` take a
    ``mode`` argument to translate between them.

    ## Observation Space
    ``Box(-5, 5, (max_devices * 9 + 11,))``: per device slot (GLDs first in NOMA order,
    then BLDs, then empty slots of zeros) ``is_gld, is_bld`` masks, channel gains to the
    coordinator and the eavesdropper in dB ((10 log10 g + 70) / 20), data size (GLD: / 50
    Mbit, BLD: / 5 Mbit), power (P_max or p_j, / 2 W), Q_max (/ 1 W), V_max (/ 2 GHz),
    E_max (/ 4 J); then round and cluster progress, global accuracy, GLD and BLD shares of
    the slots, and the cluster's time scales in log10 seconds: tG_min (24c), y_min (19),
    tg_lo (the shortest upload every GLD can pay), the fastest sync (infinite jamming),
    the sync at full jamming (Q = sum_i Q_max,i g_iE; 5 where some BLD cannot sync even
    then) and the twins' training time tB_loc (6) (0 where a cluster has no GLD or no BLD,
    clipped to [-5, 5]); ``GLOBAL_FEATURES`` names them. With ``observation.safe_bounds``
    (default off) ``BOUND_FEATURES`` follow (4 more values): the safe mode's lower bounds
    in log10 seconds, tg_base and y_base(tG) at tG = 1.01, 1.1 and 2 tg_base (computed in
    either action mode, with ``action.tg_range``; about 1 ms per step). They describe how
    steeply the training time falls as the upload slows down, the trade-off the optimum
    balances; in supervised fits of the optimal safe action they cut the held-out latency
    loss three- to fourfold (docs/PPO.md). BLD entries are the digital
    twin's estimates (``twin_deviation``); the environment charges the true values. The
    raw cluster (as the policy sees it) is in ``info["cluster"]`` and
    ``env.unwrapped.cluster``.

    ## Rewards
    Named terms, summed (also in ``info["rewards"]``):
    ``latency = -w_latency * T / latency_reference_s`` (``reward.latency_form = "log"``:
    ``-w_latency * log(T / latency_reference_s)``, the same per-cluster optimum with
    relative rather than absolute differences, better scaled for learning;
    ``"log_weighted"``: ``-w_latency * min(T_ref / latency_reference_s,
    latency_weight_max) * log(T / T_ref)`` with ``T_ref`` the reference below, so that
    each cluster weighs in proportion to its latency: near ``T_ref`` the term's slope in T
    is the linear form's, and a learner minimises the summed (mean) latency, as the
    evaluation measures it, rather than the mean of the log-ratios; the cap (default 10)
    keeps the rare clusters a hundred times slower than the rest (Table II has them) from
    dominating a batch; with the fixed reference it equals ``"log"``). With
    ``reward.latency_baseline = "center"`` the reference is not the constant
    ``latency_reference_s`` but the latency the centre of the action box (the action 0 of
    the env's own action config) would give on the same cluster, charged the same way:
    ``info["latency_baseline_s"]``. A per-cluster reference leaves every cluster's
    optimal action unchanged (exactly so for a learner with discount 0, PPO's default
    here: the clusters' states do not depend on the actions of a latency-only id) and
    removes most of the spread of the latency term across clusters (log T* spreads by
    0.74 over Table II clusters; its difference to the centre's by 0.24), which a
    critic would otherwise have to learn as a baseline. ``"optimum"`` goes further: the
    reference is the exact solver's T* on the true cluster (an oracle used only in the
    reward, never in the observation; about 2.5 ms per step; the centre's latency where a
    cluster has no feasible allocation), so the latency term is minus the log of the
    step's optimality ratio, 0 at the optimum;
    ``accuracy = w_accuracy * (global accuracy gain)`` at the end of a round;
    ``violation = -w_violation * (sum_i energy excess_i / E_max,i + unsynced BLD share)``
    (``reward.violation_measure = "count"``: the share of GLDs that dropped out instead of
    their summed relative excess).

    Rules (docs/MODEL.md): a GLD whose assignment breaks its energy budget (by more than
    1e-5 E_max, the rounding of float32 actions: ``dtfl_env.model.ENERGY_TOLERANCE``) drops
    out: it refuses the assignment whole, so it neither trains, uploads nor jams, and the
    round is charged on the GLDs that remain (less jamming can push another over its budget;
    refusals repeat until the rest can pay; :func:`dtfl_env.model.round.round_outcome`); a
    BLD with zero secrecy rate under the remaining jamming cannot sync securely (its twin is
    not updated; the sync time covers the BLDs that do sync); with ``round_deadline_s``,
    devices that finish later are stragglers and the round closes at the deadline. Each
    BLD's sync energy p_j D_j / R_j is reported against its battery (``bld_sync_energy_j``,
    ``bld_battery_j``, ``bld_energy_short``: the device's drawn battery, Table II's
    ``bld_energy.table2_battery_j``); with ``bld_energy.enforce`` a BLD that cannot pay
    does not sync (off by default: problem P has no BLD energy constraint). With real
    training the upload size L (``constants.model_bits``) defaults to the trained model's
    size (:func:`dtfl_env.fl.config.model_size_bits`; the CNN: 0.70 Mbit).

    ## Starting State
    ``reset`` draws S cluster sites (``scenario="random"``: k devices each, k uniform in
    ``devices_per_cluster``, classified by eq. (3); ``"table2"``: Table II every time) and the
    first round's fading (Rayleigh around the path-loss means, fresh every round when
    ``fading``). A site's GLD slots follow the NOMA decoding order, fixed for the episode:
    ascending mean gain to the coordinator. With a round deadline, jammers stop at the
    deadline (jamming energy q_i min(tB_up, deadline)).

    ## Episode End
    ``terminated`` after the last cluster of round R (the FL process is complete);
    ``truncated`` is never set by the environment (use a ``TimeLimit`` wrapper for that).

    ## Arguments
    ``gym.make("DTFL-v0", config={...}, render_mode=None | "ansi" | "rgb_array")``; the
    config keys and defaults are :func:`dtfl_env.envs.config.default_config`, each
    registered id applies its preset first (``dtfl_env.registration.ENV_IDS``); a different
    config can also be passed at ``reset(options={"config": {...}})``. Unknown keys are
    errors naming their dotted path.

    ## Learning and ledger
    With ``fl.backend="torch"`` (``DTFL-v0``) the clusters of a round train for real (batched
    at the round's end), the ledger (``ledger.*``) verifies the signed cluster models and only
    verified ones are aggregated; ``info["ledger"]`` (last step of a round) holds the block.
    ``ledger.malicious_clusters`` coordinators (clusters 0, 1, ...) attack with
    ``ledger.attack``: ``random`` or ``scaled`` models, ``tamper`` (changed after signing),
    ``label_flip`` (all their devices) or ``tampered_sync`` (their BLDs' synced data).

    The validators' quality check scores models on ``ledger.validation_samples`` images of
    the validation split (``fl.validation_fraction`` of the training data, which no client
    trains on); ``global_accuracy`` is measured on the untouched test set only. Each round's
    validator is chosen by ``ledger.validator_selection``: ``"reputation"`` (eq. (2), the
    paper's), ``"random"`` or ``"round_robin"``. A malicious coordinator chosen as validator
    verifies with ``ledger.validator_attack``: ``"none"`` (honest), ``"accept_poisoned"``
    (lets its allies' models in), ``"reject_honest"`` (keeps honest models out) or
    ``"both"``. The other coordinators audit every block against the honest verification;
    a block proven wrong stands for its round (the main coordinator aggregates what the
    validator accepted) and costs the validator its eq. (2) reputation.
    ``info["ledger"]`` also holds ``validator_cluster``, ``validator_malicious`` (0/1),
    ``audit_failed`` (0/1) and ``audit_overturned`` (a mask over the clusters whose verdict
    the audit overturned).

    ## Version History
    - v0: initial version. Since then (same id, results change): a dropped GLD no longer
      jams (its q_i used to count towards Q); the direct box starts at tg_lo and y_lo
      (was tG_min and y_min) with ranges of 1000 (was 50); the ``excess`` scale reaches its
      bound exactly; L follows the trained model with real training.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, config: dict[str, Any] | None = None,
                 render_mode: str | None = None,
                 base_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: must be one of {self.metadata['render_modes']}, "
                             f"got {render_mode!r}")
        self.render_mode = render_mode
        # the registered id's preset (``base_config``), then the user's overrides
        self._base_config = merge_config(default_config(), base_config)
        self.learner = LearningRound()  # the FL process and the ledger (torch backend)
        self.configure(config)
        self._sites: list[Site] = []
        self._round = 0
        self._cluster = 0
        self._accuracy = 0.0
        self._loss = math.nan
        self._last_step: tuple[Any, ...] | None = None
        self._clock_s = 0.0
        self._round_latency_s = 0.0
        # (round, cluster, action) of the last clipped allocation_to_action(clip=True) in the
        # env's own mode: the step that plays that action reports action_clipped
        self._clipped_at: tuple[int, int, np.ndarray] | None = None
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
        self._action_types = {m: action_factory(s.action, s.max_devices, m)
                              for m in ACTION_TYPES}
        self.action_type: ActionType = self._action_types[self.action_mode]
        self.action_space = self.action_type.space()
        self.observation_type = ObservationType(s, self.action_type.ln_tg_range)
        self.observation_space = self.observation_type.space()
        self.reward_function = RewardFunction(s.reward)
        self.learner.configure(s)
        self._episode_ready = False

    # ------------------------------------------------------------------ episode
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
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
        if (not self._sites or self.settings.new_topology_each_episode or seed is not None
                or not self._episode_ready):
            self._sites = [draw_site(self.config, self.constants, self.settings.random,
                                     self._topo_rng) for _ in range(self.settings.clusters)]
            self._layout = SiteLayout(self._sites)
        self._episode_ready = True
        self._round = 0
        self._cluster = 0
        self._accuracy = 0.0
        self._loss = math.nan
        self._last_step = None
        self._clipped_at = None
        self._clock_s = 0.0
        self._round_latency_s = 0.0
        with self.learner.threads():
            start = self.learner.reset(self._sites, self._fl_rng)
        if start is not None:
            self._accuracy, self._loss = start
        self._draw_round()
        return self._observation(), self._info_reset()

    @property
    def learning(self) -> bool:
        """True when the FL round trains real models (``fl.backend == "torch"``)."""
        return self.settings.fl.backend == "torch"

    def _draw_round(self) -> None:
        """Fresh fading (and twin deviations) for every site; the observations of the round."""
        s = self.settings
        draw = self._layout.draw_round(self.constants, self._fade_rng, fading=s.fading,
                                       twin_deviation=s.twin_deviation)
        self.observation_type.new_round(self._layout, draw, self.constants)

    def _observation(self) -> np.ndarray:
        return self.observation_type.observe(self._cluster, self._round, self._accuracy)

    # ------------------------------------------------------------------ actions
    def action_to_allocation(self, action: np.ndarray, mode: str | None = None, *,
                             tg_range: float | None = None, y_range: float | None = None,
                             jamming: str | None = None, sync_range: float | None = None,
                             scale: str | None = None) -> tuple[float, float, np.ndarray]:
        """Map an action to (y, tG, q) on the current cluster (see the Action Space).

        ``mode``, ``tg_range``, ``y_range``, ``jamming``, ``sync_range`` and ``scale``
        (default: the env's ``action`` config) read the action as one of another action
        config, e.g. to replay an agent trained there (bad values name ``action.<key>``).
        """
        return self._action_type(mode).to_allocation_as(
            self._sites[self._cluster], action, tg_range=tg_range, y_range=y_range,
            jamming=jamming, sync_range=sync_range, scale=scale)

    def allocation_to_action(self, y_s: float, tg_s: float, jam_power_w: np.ndarray,
                             mode: str | None = None, *, clip: bool = False) -> np.ndarray:
        """The action whose mapping on the current cluster is (y, tG, q).

        In ``"safe"`` mode the jamming is matched through Q = sum_i q_i g_iE (the latency
        depends on the split only through Q), and a Q outside the affordable interval maps
        to its nearest end. Where tG, y (or, in ``"direct"`` mode, a q_i) lies outside the
        action box (the nearest action's allocation differs by more than ``RANGE_TOLERANCE``,
        relative), raises :class:`ActionRangeError` naming the variable and its range; with
        ``clip=True`` it is clipped instead, and the next :meth:`step` on this cluster
        reports ``info["action_clipped"] = 1`` (the evaluation counts such steps apart).
        """
        act = self._action_type(mode)
        out, clipped = act.to_action(self._sites[self._cluster], y_s, tg_s, jam_power_w,
                                     clip=clip)
        if clipped and act is self.action_type:
            self._clipped_at = (self._round, self._cluster, out.astype(np.float32))
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
        if not self._episode_ready:
            raise RuntimeError("call reset() first")
        site = self._sites[self._cluster]
        return site.tg_lo_s, site.y_lo_s

    @property
    def cluster(self) -> Cluster:
        """The current cluster as the policy sees it (for analytical policies)."""
        if not self._episode_ready:
            raise RuntimeError("call reset() first")
        return self._sites[self._cluster].cluster(self.constants)

    @property
    def cluster_arrays(self) -> ClusterArrays:
        """The current cluster (as the policy sees it) as the fast-path arrays of
        :mod:`dtfl_env.model.round`, for policies that use :mod:`dtfl_env.model.feasible`."""
        if not self._episode_ready:
            raise RuntimeError("call reset() first")
        arr = self._sites[self._cluster].seen
        assert arr is not None
        return arr

    @property
    def true_cluster(self) -> Cluster:
        """The current cluster with the true values the environment charges (for oracles)."""
        if not self._episode_ready:
            raise RuntimeError("call reset() first")
        site = self._sites[self._cluster]
        assert site.true is not None
        return cluster_from_arrays(site.true, self.constants)

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
        out = self._charge(site, y, tg, q)
        cluster_idx, round_idx = self._cluster, self._round
        self._round_latency_s = max(self._round_latency_s, out.latency_s)
        optimum = self._step_optimum(site)  # before the round's fading is redrawn
        baseline_s = self.reward_function.baseline_s(site, optimum, self._center_latency_s)
        self.learner.submit(cluster_idx, out)  # who trains follows the step
        self._cluster += 1
        acc_gain = 0.0
        if self._cluster == self.settings.clusters:
            acc_gain = self._end_of_round()
            self._cluster = 0
            self._round += 1
            if self._round < self.settings.rounds:
                self._draw_round()
        rewards = self.reward_function.terms(site, out, acc_gain, baseline_s)
        reward = float(sum(rewards.values()))
        terminated = self._is_terminated()
        info = self._info(site, out, rewards, cluster_idx, round_idx, optimum)
        info["latency_baseline_s"] = baseline_s
        info["action_clipped"] = int(self._played_clipped(action, round_idx, cluster_idx))
        self._clipped_at = None
        self._last_step = (site, out, rewards, cluster_idx, round_idx)
        obs = (self._observation() if not terminated
               else self.observation_type.terminal(self._cluster, self._accuracy))
        return obs, reward, terminated, False, info

    def _played_clipped(self, action: np.ndarray, round_idx: int, cluster_idx: int) -> bool:
        """Whether ``action`` is the clipped answer of this cluster's last
        ``allocation_to_action(clip=True)`` (to float32 precision)."""
        if self._clipped_at is None or self._clipped_at[:2] != (round_idx, cluster_idx):
            return False
        played = np.asarray(action, dtype=np.float32).reshape(-1)
        saved = self._clipped_at[2]
        return played.shape == saved.shape and bool(np.allclose(played, saved, rtol=0,
                                                                atol=1e-6))

    def _charge(self, site: Site, y: float, tg: float, q: np.ndarray) -> RoundOutcome:
        """The round's outcome on the site's true values (:func:`round_outcome`)."""
        assert site.true is not None
        return round_outcome(site.true, y_s=y, tg_s=tg, jam_power_w=q,
                             deadline_s=self.settings.round_deadline_s,
                             bld_battery_j=site.bld_battery_j,
                             enforce_bld_energy=self.settings.bld_energy.enforce)

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

    def _center_latency_s(self, site: Site) -> float:
        """The latency of the action box's centre (the action 0) on ``site``, charged like
        a step (the latency reference of ``latency_baseline = "center"``)."""
        y, tg, q = self.action_type.to_allocation(site, np.zeros(self.action_type.size))
        return self._charge(site, y, tg, q).latency_s

    def _is_terminated(self) -> bool:
        return self._round >= self.settings.rounds

    def _info_reset(self) -> dict[str, Any]:
        info: dict[str, Any] = {"round": self._round, "cluster_index": self._cluster,
                                "global_accuracy": self._accuracy}
        if self.settings.cluster_in_info:
            info["cluster"] = self.cluster
        return info

    def _info(self, site: Site, out: RoundOutcome, rewards: dict[str, float],
              cluster_idx: int, round_idx: int, optimum: SolverResult | None
              ) -> dict[str, Any]:
        """The step's info. Per-device entries are arrays of length ``max_devices`` in slot
        order (GLDs, then BLDs, then empty slots), so that vector environments can stack
        them: 0 where a quantity does not apply (GLD quantities in slots < n_gld, BLD ones in
        slots n_gld .. n_gld + n_bld - 1), masks instead of index lists."""
        info: dict[str, Any] = {
            "rewards": rewards,
            "round": round_idx,
            "cluster_index": cluster_idx,
            **outcome_info(site, out, self.settings.max_devices),
            "global_accuracy": self._accuracy,
            "sim_time_s": self._clock_s + self._round_latency_s,
            "next_round": self._round, "next_cluster_index": self._cluster,
        }
        if self.learning:
            info["global_loss"] = self._loss
        if self.learner.round_record is not None and self._cluster == 0:
            info["ledger"] = self.learner.round_record  # the round just ended
        if self.settings.compute_optimal:
            ref = optimum  # solved on the cluster just charged, before any redraw
            assert ref is not None
            info["optimal_latency_s"] = ref.T
            info["optimality_gap"] = (out.latency_s / ref.T - 1.0) if ref.feasible else math.nan
        if self.settings.cluster_in_info and not self._is_terminated():
            info["cluster"] = self.cluster
        return info

    @property
    def view(self) -> EnvView:
        """A read-only view of the episode's progress (what the renderer reads)."""
        return EnvView(ready=self._episode_ready, round=self._round, cluster=self._cluster,
                       global_accuracy=self._accuracy, sites=tuple(self._sites),
                       last_step=self._last_step_record())

    def _last_step_record(self) -> dict[str, Any] | None:
        """The last step in device order (for the renderer): per-GLD and per-BLD arrays."""
        if self._last_step is None:
            return None
        _, out, rewards, cluster_idx, round_idx = self._last_step
        return {"rewards": rewards, "round": round_idx, "cluster": cluster_idx,
                **outcome_record(out)}

    # ------------------------------------------------------------------ rendering
    def render(self) -> str | np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        from dtfl_env.envs.rendering import render_ansi, render_rgb

        if self.render_mode == "ansi":
            return render_ansi(self)
        return render_rgb(self)
