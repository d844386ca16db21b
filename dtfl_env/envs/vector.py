"""A native vector environment: N independent DTFL episodes stepped as one numpy computation.

:class:`DTFLVectorEnv` is the ``vector_entry_point`` of the latency-only ids
(``DTFL-Fast-v0``, ``DTFL-TableII-v0``, ``DTFL-Random-v0``)::

    gym.make_vec("DTFL-Fast-v0", num_envs=1024, vectorization_mode="vector_entry_point")

Every sub-env is the single :class:`~dtfl_env.envs.dtfl.DTFLEnv` with the same config: sub-env
k reset with seed s_k draws the same sites, fading and twin deviations from the same random
streams and returns the same observations, rewards and infos (tested to 1e-12 over whole
episodes). All episodes have R x S steps, so the sub-envs stay in lockstep: step t handles
cluster t mod S of every sub-env. Each round's channels of all N x S clusters are one
:class:`~dtfl_env.model.batch.ClusterBatch` (rows cluster-major: row c N + k is cluster c of
sub-env k), and a step charges its N clusters with one
:func:`~dtfl_env.model.round.round_outcomes`. In the ``safe`` action mode the feasible-set
searches that map the N actions run as one batch too
(:func:`~dtfl_env.model.feasible.safe_allocation_batch`), and ``observation.safe_bounds``
builds the round's N x S bound features as one batch
(:func:`~dtfl_env.model.feasible.safe_bound_features_batch`).

What still runs per sub-env (Python loops): the topology draws at reset (one generator per
sub-env, as the single env draws them) and each round's random draws (one generator call
per sub-env); with ``compute_optimal`` or ``reward.latency_baseline = "optimum"`` the exact
optimum comes from
:func:`solvers.solve_batch` (the single env's comes from :func:`solvers.exact.solve_exact`:
both are certified to the solver's ``rtol``, not bit for bit). ``DTFL-v0`` (real FL training
and the ledger, torch) is not supported: its clusters train real models at the end of each
round, which does not batch this way; it keeps Gymnasium's ``SyncVectorEnv`` and
``AsyncVectorEnv`` (``vectorization_mode="sync"`` / ``"async"``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dtfl_env.envs.action import SafeAction
from dtfl_env.envs.dtfl import DTFLEnv
from dtfl_env.envs.info import info_defaults, outcome_info, reward_key
from dtfl_env.envs.sites import RoundDraw, Site, SiteLayout, draw_sites
from dtfl_env.model.batch import ClusterBatch, pad_segments
from dtfl_env.model.feasible import FeasibleRows
from dtfl_env.model.round import BatchOutcome, round_outcomes

__all__ = ["DTFLVectorEnv"]


class DTFLVectorEnv(VectorEnv):
    """N sub-envs of :class:`~dtfl_env.envs.dtfl.DTFLEnv`, stepped together (see the module).

    ``config`` and ``base_config`` as for the single env (the registered id's preset, then
    the user's overrides); ``autoreset_mode``: ``NEXT_STEP`` (default: the step after an
    episode ends resets every sub-env and returns the reset observation, reward 0) or
    ``SAME_STEP`` (the ending step resets at once; ``info["final_obs"]`` and
    ``info["final_info"]`` hold what the episode ended with). ``info`` follows Gymnasium's
    vector convention: one array per key, stacked over sub-envs, with a ``_key`` mask.
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": [],
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        config: dict[str, Any] | None = None,
        *,
        base_config: dict[str, Any] | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs: must be an int >= 1, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError(
                "render_mode: the vector env does not render; render a single "
                "DTFLEnv (gym.make) instead"
            )
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ValueError(
                f"autoreset_mode: must be one of "
                f"{[m.value for m in AutoresetMode]}, got {autoreset_mode!r}"
            ) from None
        if self.autoreset_mode == AutoresetMode.DISABLED:
            raise ValueError(
                "autoreset_mode: DISABLED is not supported (every sub-env "
                "resets together); use NEXT_STEP or SAME_STEP"
            )
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.num_envs = int(num_envs)
        self.render_mode = None
        self._base_config = base_config
        self._configure(config)
        n = self.num_envs
        self._np_randoms: list[np.random.Generator | None] = [None] * n
        self._fade_rngs: list[np.random.Generator] = []
        self._topo_rngs: list[np.random.Generator] = []
        self._sites: list[list[Site]] = []
        self._ready = False
        self._prev_done = False

    # ------------------------------------------------------------------ configuration
    def _configure(self, config: dict[str, Any] | None) -> None:
        """Apply a config: a prototype single env validates it and holds the roles."""
        proto = DTFLEnv(config, base_config=self._base_config)
        if proto.learning:
            raise ValueError(
                "fl.backend: the native vector env runs the latency-only ids "
                "(fl.backend = 'none'); real FL training (DTFL-v0) steps through "
                "gymnasium's SyncVectorEnv / AsyncVectorEnv "
                "(vectorization_mode='sync' or 'async')"
            )
        self._proto = proto
        self.config = proto.config
        self.constants = proto.constants
        self.single_action_space = proto.action_space
        self.single_observation_space = proto.observation_space
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._ready = False

    # ------------------------------------------------------------------ episodes
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env: sub-env k with ``seed + k`` (an int), ``seed[k]`` (a list)
        or its own generator's continuation (None). ``options={"config": {...}}`` applies
        overrides to every sub-env, as the single env's reset does."""
        n = self.num_envs
        if seed is None or (isinstance(seed, int | np.integer) and not isinstance(seed, bool)):
            seeds = [None if seed is None else int(seed) + k for k in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(f"seed: expected {n} seeds, got {len(seeds)}")
        options = dict(options or {})
        unknown = set(options) - {"config"}
        if unknown:
            raise ValueError(f"unknown reset option(s): {', '.join(sorted(unknown))}")
        if "config" in options:
            from dtfl_env.envs.config import merge_config

            self._configure(merge_config(self.config, options["config"]))
        # per sub-env, as the single env decides: a new topology when asked for, when seeded
        # and on the first reset
        renew = not self._sites or self.config["new_topology_each_episode"] or not self._ready
        redraw = [renew or s is not None for s in seeds]
        self._fade_rngs, self._topo_rngs = [], []
        for k, s in enumerate(seeds):
            if s is not None or self._np_randoms[k] is None:
                self._np_randoms[k], _ = seeding.np_random(s)
            rng = self._np_randoms[k]
            assert rng is not None
            # independent sub-generators for topology, fading and FL, as the single env
            topo, fade, _fl = (int(x) for x in rng.integers(0, 2**63 - 1, 3))
            self._topo_rngs.append(np.random.default_rng(topo))
            self._fade_rngs.append(np.random.default_rng(fade))
        if any(redraw):
            self._draw_sites(redraw)
        self._ready = True
        self._prev_done = False
        self._round = 0
        self._cluster = 0
        self._clock_s = np.zeros(n)
        self._round_latency_s = np.zeros(n)
        self._draw_round()
        return self._observe(), self._reset_info()

    def _draw_sites(self, redraw: list[bool]) -> None:
        """New S sites for the sub-envs in ``redraw`` (each from its topology generator, as
        the single env), then the layout of all N x S clusters (cluster-major) and the maps
        of each sub-env's draws into it."""
        cfg, proto = self.config, self._proto
        n, s = self.num_envs, cfg["clusters"]
        which = [k for k in range(n) if redraw[k]]
        drawn = draw_sites(proto.settings, [self._topo_rngs[k] for k in which], s)
        if len(self._sites) != n:
            self._sites = [[] for _ in range(n)]
        for k, sites in zip(which, drawn, strict=True):
            self._sites[k] = sites
        self._layouts = [SiteLayout(sites) for sites in self._sites]
        big = [self._sites[k][c] for c in range(s) for k in range(n)]
        self._big = SiteLayout(big)
        # where each device of the big layout finds its draws in its sub-env's draws
        m = np.array([lay.g_site.size for lay in self._layouts])
        nb = np.array([lay.b_site.size for lay in self._layouts])
        f_off = np.concatenate([[0], np.cumsum(2 * (m + nb))])[:-1]
        d_off = np.concatenate([[0], np.cumsum(4 * nb)])[:-1]
        e_g = np.repeat(np.arange(n), m)
        p_g = np.arange(e_g.size) - np.repeat(np.cumsum(m) - m, m)
        c_g = np.concatenate([lay.g_site for lay in self._layouts])
        e_b = np.repeat(np.arange(n), nb)
        p_b = np.arange(e_b.size) - np.repeat(np.cumsum(nb) - nb, nb)
        c_b = np.concatenate([lay.b_site for lay in self._layouts])
        og = np.lexsort((e_g, c_g))  # cluster-major, then sub-env; slot order kept
        ob = np.lexsort((e_b, c_b))
        e_g, p_g, e_b, p_b = e_g[og], p_g[og], e_b[ob], p_b[ob]
        base_g, base_b = f_off[e_g], f_off[e_b] + 2 * m[e_b]
        self._fade_index = np.concatenate(
            [base_g + p_g, base_g + m[e_g] + p_g, base_b + p_b, base_b + nb[e_b] + p_b]
        )
        self._dev_index = (d_off[e_b] + p_b)[None, :] + np.arange(4)[:, None] * nb[e_b]
        battery = np.concatenate([site.bld_battery_j for site in big])
        self._battery = pad_segments({"b": battery}, self._big.b_counts)[0]["b"]

    def _draw_round(self) -> None:
        """The round's channels of every cluster: each sub-env's draws from its own fading
        generator, laid out into one ClusterBatch of N x S rows."""
        cfg = self.config
        fading, dev_sd = cfg["fading"], cfg["twin_deviation"]
        fades, devs = [], []
        for lay, rng in zip(self._layouts, self._fade_rngs, strict=True):
            f, d = lay.draw_noise(rng, fading=fading, twin_deviation=dev_sd)
            fades.append(f)
            devs.append(d)
        fade = np.concatenate(fades)[self._fade_index] if fading else None
        dev = None
        if dev_sd > 0 and self._big.b_site.size:
            dev = np.concatenate([d.ravel() for d in devs if d is not None])[self._dev_index]
        draw = self._big.apply(self.constants, fade, dev, bind=False)
        draw.true.prepare()
        draw.seen.prepare()
        self._draw: RoundDraw = draw
        self._proto.observation_type.new_round(self._big, draw, self.constants, bound=False)

    def _rows(self) -> slice:
        n = self.num_envs
        return slice(self._cluster * n, (self._cluster + 1) * n)

    def _observe(self) -> np.ndarray:
        obs = self._proto.observation_type
        rows = obs.rows[self._rows()].copy()
        g = obs.g_index
        rows[:, g] = self._round / obs.rounds
        rows[:, g + 1] = self._cluster / obs.clusters
        rows[:, g + 2] = 0.0  # global accuracy: no training in the latency-only ids
        return rows

    def _terminal_observe(self) -> np.ndarray:
        obs = self._proto.observation_type
        rows = obs.rows[self._rows()].copy()
        g = obs.g_index
        rows[:, g], rows[:, g + 1], rows[:, g + 2] = 1.0, 0.0, 0.0
        return rows

    # ------------------------------------------------------------------ actions
    def _checked_actions(self, actions: np.ndarray) -> np.ndarray:
        """The actions as an (N, size) float array, validated and clipped to [-1, 1]."""
        size = self._proto.action_type.size
        a = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)
        if a.shape[1] != size:
            raise ValueError(
                f"actions: expected shape ({self.num_envs}, {size}), got {np.shape(actions)}"
            )
        bad = ~np.isfinite(a)
        if bad.any():
            k, i = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(f"actions[{k}, {i}]: must be finite, got {a[k, i]}")
        return np.minimum(np.maximum(a, -1.0), 1.0)  # documented clipping

    def _allocations(
        self, a: np.ndarray, rows: slice | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y, tG, q) of the checked actions ``a`` on the current clusters at ``rows`` (one
        row of ``a`` per row index; an index may repeat)."""
        proto = self._proto
        seen = self._draw.seen
        if proto.action_mode == "direct":
            act = proto.action_type
            has = seen.n_gld[rows] > 0
            tg = np.where(
                has, self._draw.tg_lo_s[rows] * np.exp(0.5 * (a[:, 0] + 1.0) * act.ln_tg_range), 0.0
            )
            y = np.where(
                has, self._draw.y_lo_s[rows] * np.exp(0.5 * (a[:, 1] + 1.0) * act.ln_y_range), 0.0
            )
            width = seen.gld_mask.shape[1]
            q = np.where(
                seen.gld_mask[rows],
                seen.gld["max_jam_power_w"][rows] * (0.5 * (a[:, 2 : 2 + width] + 1.0)),
                0.0,
            )
            return y, tg, q
        # safe mode: the feasible-set searches of the N clusters as one batch, from the
        # round's tg_base (found for all N x S clusters as the round was drawn)
        act = proto.action_type
        assert isinstance(act, SafeAction)
        return act.map_batch(
            FeasibleRows.from_batch(seen, rows), proto.observation_type.tg_base_s[rows], a
        )

    def _charge(self, rows: slice, y: np.ndarray, tg: np.ndarray, q: np.ndarray) -> BatchOutcome:
        cfg = self.config
        return round_outcomes(
            self._draw.true.take(rows),
            y_s=y,
            tg_s=tg,
            jam_power_w=q,
            deadline_s=cfg["round_deadline_s"],
            bld_battery_j=self._battery[rows],
            enforce_bld_energy=cfg["bld_energy"]["enforce"],
        )

    # ------------------------------------------------------------------ step
    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        n = self.num_envs
        if self._prev_done:  # NEXT_STEP: the step after the episodes ended resets them
            obs, info = self.reset()
            return (obs, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), info)
        rows = self._rows()
        a = self._checked_actions(actions)
        reward_fn = self._proto.reward_function
        if reward_fn.config.latency_baseline == "center":
            # the action box's centre beside the actions: one batch of 2N rows (in the safe
            # mode, the searches' fixed cost per call is paid once, not twice)
            both = np.arange(rows.start, rows.stop)
            both = np.concatenate([both, both])
            alloc = self._allocations(np.concatenate([a, np.zeros_like(a)]), both)
            y, tg, q = (v[:n] for v in alloc)
            center = tuple(v[n:] for v in alloc)
        else:
            y, tg, q = self._allocations(a, rows)
            center = None
        out = self._charge(rows, y, tg, q)
        cluster_idx, round_idx = self._cluster, self._round
        self._round_latency_s = np.maximum(self._round_latency_s, out.latency_s)
        optimum = self._step_optimum(rows)
        baseline = reward_fn.baseline_s(
            n,
            optimum,
            lambda: (
                self._charge(
                    rows,
                    *(
                        center
                        or self._allocations(np.zeros((n, self._proto.action_type.size)), rows)
                    ),
                ).latency_s
            ),
        )
        e_max = self._draw.true.gld["energy_budget_j"][rows]
        self._cluster += 1
        if self._cluster == self.config["clusters"]:
            self._clock_s = self._clock_s + self._round_latency_s  # clusters in parallel
            self._round_latency_s = np.zeros(n)
            self._cluster = 0
            self._round += 1
            if self._round < self.config["rounds"]:
                self._draw_round()
        terms = reward_fn.terms(out, e_max, np.zeros(n), baseline)  # no training: no gain
        reward = sum(terms.values())
        terminated = self._round >= self.config["rounds"]
        info = self._step_info(rows, out, terms, cluster_idx, round_idx, optimum, baseline)
        term = np.full(n, terminated)
        trunc = np.zeros(n, dtype=bool)
        if not terminated:
            return self._observe(), reward, term, trunc, info
        final_obs = self._terminal_observe()
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            obs, reset_info = self.reset()
            boxed = np.empty(n, dtype=object)  # Gymnasium's layout: one array per sub-env
            for k in range(n):
                boxed[k] = final_obs[k]
            reset_info["final_obs"] = boxed
            reset_info["_final_obs"] = np.ones(n, dtype=bool)
            reset_info["final_info"] = info
            reset_info["_final_info"] = np.ones(n, dtype=bool)
            return obs, reward, term, trunc, reset_info
        self._prev_done = True
        return final_obs, reward, term, trunc, info

    # ------------------------------------------------------------------ reward and info
    def _step_optimum(self, rows: slice) -> np.ndarray | None:
        """T* of each charged cluster (true values; inf where infeasible), where
        ``compute_optimal`` or the ``optimum`` latency baseline needs it."""
        proto = self._proto
        if not (self.config["compute_optimal"] or proto.reward_function.needs_optimum):
            return None
        from solvers.batch import solve_batch

        res = solve_batch(self._draw.true.take(rows))
        return np.where(res.feasible, res.T, np.inf)

    def _step_info(
        self,
        rows: slice,
        out: BatchOutcome,
        terms: dict[str, np.ndarray],
        cluster_idx: int,
        round_idx: int,
        optimum: np.ndarray | None,
        baseline: np.ndarray,
    ) -> dict[str, Any]:
        """The step's info, stacked over sub-envs (the single env's keys,
        :mod:`dtfl_env.envs.info`)."""
        n = self.num_envs
        info: dict[str, Any] = {
            **{reward_key(name): val for name, val in terms.items()},
            "round": np.full(n, round_idx),
            "cluster_index": np.full(n, cluster_idx),
            **outcome_info(out, self._battery[rows], self.config["max_devices"]),
            "global_accuracy": np.zeros(n),  # no training in the latency-only ids
            "sim_time_s": self._clock_s + self._round_latency_s,
            "next_round": np.full(n, self._round),
            "next_cluster_index": np.full(n, self._cluster),
            "latency_baseline_s": baseline,
            "action_clipped": np.zeros(n, dtype=int),
        }
        if self.config["compute_optimal"]:
            assert optimum is not None
            info["optimal_latency_s"] = optimum
            with np.errstate(invalid="ignore"):
                info["optimality_gap"] = np.where(
                    np.isfinite(optimum), out.latency_s / optimum - 1.0, math.nan
                )
        return _with_masks(info, n)

    def _reset_info(self) -> dict[str, Any]:
        """The single env's reset info (:func:`info_defaults`), stacked over sub-envs."""
        n = self.num_envs
        return _with_masks(
            {
                k: np.stack([v] * n) if isinstance(v, np.ndarray) else np.full(n, v)
                for k, v in info_defaults(self.config).items()
            },
            n,
        )

    # ------------------------------------------------------------------ access
    def clusters(self) -> list[Any]:
        """Each sub-env's current cluster as its policy sees it (validated ``Cluster``s)."""
        if not self._ready:
            raise RuntimeError("call reset() first")
        seen = self._draw.seen
        return [seen.cluster(i) for i in range(self._rows().start, self._rows().stop)]

    def current_batch(self, *, true: bool = False) -> ClusterBatch:
        """The current clusters of every sub-env as one batch (row k: sub-env k); the
        twins' view, or with ``true`` the values the environment charges."""
        if not self._ready:
            raise RuntimeError("call reset() first")
        return (self._draw.true if true else self._draw.seen).take(self._rows())


def _with_masks(info: dict[str, Any], n: int) -> dict[str, Any]:
    """Gymnasium's vector ``info``: every key with its ``_key`` mask (all sub-envs here)."""
    mask = np.ones(n, dtype=bool)
    out: dict[str, Any] = {}
    for key, val in info.items():
        out[key] = val
        out[f"_{key}"] = mask
    return out
