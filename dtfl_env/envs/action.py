"""Action types of DTFL-v0 (HighwayEnv style): one small class per ``action.mode``.

Each type knows its space and maps an action to an allocation (y, tG, q) of problem P on
a :class:`~dtfl_env.envs.sites.Site` and back. :func:`action_factory` picks the type from
the ``action`` config; the environment holds one per mode (its own and the other, for
``action_to_allocation(..., mode=...)``). The mappings are documented in
docs/ENVIRONMENT.md (Action Space).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from dtfl_env.envs.config import ActionConfig
from dtfl_env.envs.sites import Site
from dtfl_env.model.feasible import (
    FeasibleRows,
    safe_action,
    safe_allocation,
    safe_allocation_batch,
)

__all__ = [
    "ACTION_SIZES",
    "ACTION_TYPES",
    "RANGE_TOLERANCE",
    "ActionRangeError",
    "ActionType",
    "ClipMemo",
    "DirectAction",
    "SafeAction",
    "action_factory",
]

#: how far (relative: tG, y; as a share of Q_max,i: q_i) the allocation of the nearest action
#: may differ from an allocation outside the box for it to count as inside: rounding, e.g. of
#: an optimum exactly on a bound, or the safe mode's bound searches (precise to ~1e-7)
RANGE_TOLERANCE = 1e-6

Allocation = tuple[float, float, np.ndarray]  # (y_s, tg_s, jam_power_w)


class ActionRangeError(ValueError):
    """An allocation that no action of the environment's box expresses (out of range)."""


class ActionType(ABC):
    """An action mode: its space, and action <-> allocation on a site.

    Built from the :class:`~dtfl_env.envs.config.ActionConfig` (ranges as natural logs:
    ``ln_tg_range`` etc.) and the number of device slots. ``to_allocation`` takes keyword
    overrides of the config's ``ln_tg_range``, ``ln_y_range``, ``jamming``, ``ln_sync_range``
    and ``scale`` (a mode ignores those it has no use for); :meth:`to_allocation_as` takes
    them in the config's own units.
    """

    mode: ClassVar[str]

    def __init__(self, config: ActionConfig, max_devices: int) -> None:
        self.config = config
        self.max_devices = max_devices
        self.ln_tg_range = math.log(config.tg_range)
        self.ln_y_range = math.log(config.y_range)
        self.jamming = config.jamming
        self.ln_sync_range = math.log(config.sync_range)
        self.scale = config.scale
        self.size = self.size_for(max_devices)

    @staticmethod
    @abstractmethod
    def size_for(max_devices: int) -> int:
        """The action's length for ``max_devices`` slots."""

    def space(self) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.size,), dtype=np.float32)

    def tg_base(self, site: Site, ln_tg_range: float | None = None) -> float:
        """The site's tg_base for ``ln_tg_range`` (default: the config's, cached per round)."""
        if ln_tg_range is None or ln_tg_range == self.ln_tg_range:
            return site.tg_base(self.ln_tg_range)
        return site.tg_base(ln_tg_range, cached=False)

    def check(self, action: np.ndarray) -> np.ndarray:
        """The action as float64, clipped to [-1, 1]; a wrong size, NaN or inf raise
        ``ValueError`` naming the index."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.size != self.size:
            raise ValueError(f"action: expected {self.size} values, got {a.size}")
        if not np.isfinite(a).all():
            i = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ValueError(f"action[{i}]: must be finite, got {a[i]}")
        return np.minimum(np.maximum(a, -1.0), 1.0)  # documented clipping

    def to_allocation(self, site: Site, action: np.ndarray, **overrides: Any) -> Allocation:
        """(y, tG, q) of ``action`` on ``site`` (docs/ENVIRONMENT.md, Action Space)."""
        return self.map(site, self.check(action), **overrides)

    def to_allocation_as(self, site: Site, action: np.ndarray, **changes: Any) -> Allocation:
        """(y, tG, q) of ``action`` read as an action of this config with ``changes`` (keys
        of :class:`~dtfl_env.envs.config.ActionConfig` but ``mode``, e.g. ``tg_range``;
        ``None``: unchanged), validated like the config (errors name ``action.<key>``)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return self.to_allocation(site, action)
        if "mode" in changes:
            raise ValueError("mode: pick the action type of the mode instead")
        cfg = dataclasses.replace(self.config, **changes)
        return self.to_allocation(
            site,
            action,
            ln_tg_range=math.log(cfg.tg_range),
            ln_y_range=math.log(cfg.y_range),
            jamming=cfg.jamming,
            ln_sync_range=math.log(cfg.sync_range),
            scale=cfg.scale,
        )

    @abstractmethod
    def map(
        self,
        site: Site,
        a: np.ndarray,
        *,
        ln_tg_range: float | None = None,
        ln_y_range: float | None = None,
        jamming: str | None = None,
        ln_sync_range: float | None = None,
        scale: str | None = None,
    ) -> Allocation:
        """(y, tG, q) of a checked action ``a`` (:meth:`check`)."""

    @abstractmethod
    def unmap(
        self, site: Site, y_s: float, tg_s: float, jam_power_w: np.ndarray
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """The unclipped action of (y, tG, q) and the names of its range-checked entries."""

    def mismatch(
        self, site: Site, got: Allocation, y_s: float, tg_s: float, jam_power_w: np.ndarray
    ) -> np.ndarray:
        """The relative differences of ``got`` to (y, tG, q), in :meth:`unmap`'s order."""
        y2, tg2, _ = got
        return np.array([abs(tg2 / tg_s - 1.0), abs(y2 / y_s - 1.0)])

    def to_action(
        self, site: Site, y_s: float, tg_s: float, jam_power_w: np.ndarray, *, clip: bool = False
    ) -> tuple[np.ndarray, bool]:
        """The action whose mapping on ``site`` is (y, tG, q), and whether it was clipped.

        Where the nearest action's allocation differs from (y, tG, q) by more than
        ``RANGE_TOLERANCE`` raises :class:`ActionRangeError` (``clip=True``: returns it)."""
        for name, val in (("y_s", y_s), ("tg_s", tg_s)):
            if not (isinstance(val, (int, float, np.number)) and math.isfinite(val) and val > 0):
                raise ValueError(f"{name}: must be a finite number > 0, got {val!r}")
        if not np.all(np.isfinite(np.asarray(jam_power_w, dtype=float))):
            raise ValueError("jam_power_w: must be finite")
        assert site.seen is not None
        a, names = self.unmap(site, y_s, tg_s, jam_power_w)
        out = np.clip(a, -1.0, 1.0)
        if not np.any(np.abs(a[: len(names)]) > 1.0):
            return out, False
        # outside the box: by rounding (an optimum on a bound, a search's precision), or
        # truly? Compare the clipped action's allocation with the one asked for.
        got = self.to_allocation(site, out)
        bad = np.flatnonzero(self.mismatch(site, got, y_s, tg_s, jam_power_w) > RANGE_TOLERANCE)
        if not bad.size:
            return out, False
        if not clip:
            i = int(bad[0])
            raise ActionRangeError(
                f"{names[i]}: the allocation lies outside the {self.mode} action box on this "
                f"cluster (action[{i}] = {a[i]:.9g}, outside [-1, 1]); widen "
                f"action.{'tg_range' if i == 0 else 'y_range' if i == 1 else 'mode'} "
                "or pass clip=True to play the nearest action"
            )
        return out, True


class DirectAction(ActionType):
    """``Box(-1, 1, (2 + max_devices,))``: tG and y on log scales above (tg_lo, y_lo), one
    jamming power per GLD slot."""

    mode = "direct"

    @staticmethod
    def size_for(max_devices: int) -> int:
        return 2 + max_devices

    def map(
        self,
        site: Site,
        a: np.ndarray,
        *,
        ln_tg_range: float | None = None,
        ln_y_range: float | None = None,
        jamming: str | None = None,
        ln_sync_range: float | None = None,
        scale: str | None = None,
    ) -> Allocation:
        ln_tg = self.ln_tg_range if ln_tg_range is None else ln_tg_range
        ln_y = self.ln_y_range if ln_y_range is None else ln_y_range
        a0, a1 = float(a[0]), float(a[1])
        if not site.m:
            return 0.0, 0.0, np.zeros(0)
        tg = site.tg_lo_s * math.exp(0.5 * (a0 + 1.0) * ln_tg)
        y = site.y_lo_s * math.exp(0.5 * (a1 + 1.0) * ln_y)
        q = site.seen.g_q_max * (0.5 * (a[2 : 2 + site.m] + 1.0))
        return y, tg, q

    def unmap(
        self, site: Site, y_s: float, tg_s: float, jam_power_w: np.ndarray
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        a = np.zeros(self.size)
        if site.m:
            a[0] = 2.0 * math.log(tg_s / site.tg_lo_s) / self.ln_tg_range - 1.0
            a[1] = 2.0 * math.log(y_s / site.y_lo_s) / self.ln_y_range - 1.0
            a[2 : 2 + site.m] = (
                2.0 * np.asarray(jam_power_w, dtype=float) / site.base.gld.max_jam_power_w - 1.0
            )
        return a, ("tG", "y", *(f"q[{i}]" for i in range(site.m)))

    def mismatch(
        self, site: Site, got: Allocation, y_s: float, tg_s: float, jam_power_w: np.ndarray
    ) -> np.ndarray:
        rel = super().mismatch(site, got, y_s, tg_s, jam_power_w)
        if not site.m:
            return rel
        return np.concatenate(
            [
                rel,
                np.abs(got[2] - np.asarray(jam_power_w, dtype=float))
                / site.base.gld.max_jam_power_w,
            ]
        )


class SafeAction(ActionType):
    """``Box(-1, 1, (3,))``: a parametrisation of problem P's feasible set
    (:mod:`dtfl_env.model.feasible`), with the ``jamming`` and ``scale`` options."""

    mode = "safe"

    @staticmethod
    def size_for(max_devices: int) -> int:
        return 3

    def map(
        self,
        site: Site,
        a: np.ndarray,
        *,
        ln_tg_range: float | None = None,
        ln_y_range: float | None = None,
        jamming: str | None = None,
        ln_sync_range: float | None = None,
        scale: str | None = None,
    ) -> Allocation:
        ln_tg = self.ln_tg_range if ln_tg_range is None else ln_tg_range
        return safe_allocation(
            site.seen,
            self.tg_base(site, ln_tg),
            a,
            ln_tg,
            self.ln_y_range if ln_y_range is None else ln_y_range,
            self.jamming if jamming is None else jamming,
            self.ln_sync_range if ln_sync_range is None else ln_sync_range,
            self.scale if scale is None else scale,
        )

    def map_batch(
        self, rows: FeasibleRows, tg_base_s: np.ndarray, a: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(y, tG, q) of checked actions ``a`` (R, 3) on R clusters at once (``rows``, with
        their tg_base ``tg_base_s`` (R,)) in the config's parametrisation: the batch form of
        :meth:`map` (:func:`~dtfl_env.model.feasible.safe_allocation_batch`); q is (R, M)."""
        return safe_allocation_batch(
            rows,
            tg_base_s,
            a,
            self.ln_tg_range,
            self.ln_y_range,
            self.jamming,
            self.ln_sync_range,
            self.scale,
        )

    def unmap(
        self, site: Site, y_s: float, tg_s: float, jam_power_w: np.ndarray
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        a = safe_action(
            site.seen,
            self.tg_base(site),
            y_s,
            tg_s,
            jam_power_w,
            self.ln_tg_range,
            self.ln_y_range,
            self.jamming,
            self.ln_sync_range,
            self.scale,
        )
        return a, ("tG", "y")


#: ``action.mode`` -> its type (add a mode here and to
#: :data:`dtfl_env.envs.config.ACTION_MODES`)
ACTION_TYPES: dict[str, type[ActionType]] = {"direct": DirectAction, "safe": SafeAction}

#: action size per ``action.mode`` for ``max_devices`` slots
ACTION_SIZES: dict[str, Callable[[int], int]] = {m: t.size_for for m, t in ACTION_TYPES.items()}


def action_factory(
    config: ActionConfig | Mapping[str, Any], max_devices: int, mode: str | None = None
) -> ActionType:
    """The action type of ``config.mode`` (or ``mode``) for ``max_devices`` slots; a plain
    ``action`` dict is read by :meth:`ActionConfig.from_dict` (strict)."""
    if not isinstance(config, ActionConfig):
        config = ActionConfig.from_dict(config)
    return ACTION_TYPES[config.mode if mode is None else mode](config, max_devices)


class ClipMemo:
    """The action that ``allocation_to_action(clip=True)`` last clipped in the env's own mode
    and where (round, cluster): the step that plays it there reports
    ``info["action_clipped"] = 1``."""

    def __init__(self) -> None:
        self._at: tuple[int, int, np.ndarray] | None = None

    def remember(self, round_idx: int, cluster_idx: int, action: np.ndarray) -> None:
        self._at = (round_idx, cluster_idx, np.asarray(action).astype(np.float32))

    def forget(self) -> None:
        self._at = None

    def played(self, action: np.ndarray, round_idx: int, cluster_idx: int) -> bool:
        """Whether ``action``, played in (round, cluster), is the clipped action remembered
        there (to float32 precision)."""
        if self._at is None or self._at[:2] != (round_idx, cluster_idx):
            return False
        played = np.asarray(action, dtype=np.float32).reshape(-1)
        saved = self._at[2]
        return played.shape == saved.shape and bool(np.allclose(played, saved, rtol=0, atol=1e-6))
