"""The batched searches of dtfl_env.model.feasible: rows of a padded batch get, to the last
bit, what each cluster gets alone (the per-cluster functions are their batch of one), in
chunks or not; the shortcuts of the searches agree with the full searches they replace."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import dtfl_env  # noqa: F401  (registers the ids)
from dtfl_env.config import Cluster
from dtfl_env.envs.sites import direct_bounds
from dtfl_env.model import feasible as F
from dtfl_env.model.batch import ClusterBatch, ClusterRow
from dtfl_env.scenarios import table2_cluster

LN50 = math.log(50.0)


def _clusters() -> list[Cluster]:
    """Clusters as the envs draw them (fading, deep fades, 1 to 16 devices: some without
    GLDs or without BLDs, some whose BLDs cannot be synced), Table II with and without BLDs."""
    out = []
    for env_id, cfg, seed in (
        ("DTFL-Random-v0", {"fl": {"backend": "none"}}, 3),
        ("DTFL-Fast-v0", {"devices_per_cluster": [1, 16]}, 5),
        ("DTFL-Fast-v0", {"twin_deviation": 0.2}, 6),
    ):
        env = gym.make(env_id, config=cfg).unwrapped
        env.reset(seed=seed)
        for _ in range(24):
            out.append(env.view.sites[env.view.cluster].seen.cluster())
            env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    env = gym.make("DTFL-TableII-v0", config={"fl": {"backend": "none"}}).unwrapped
    env.reset(seed=3)
    for k in range(79):  # step 78: its BLDs sync only with an upload of 133 tg_lo
        if k % 6 == 0 or k == 78:
            out.append(env.view.sites[env.view.cluster].seen.cluster())
        env.step(np.zeros(env.action_space.shape, dtype=np.float32))
    c = table2_cluster()
    out += [
        c,
        Cluster(c.gld, c.bld.subset([]), c.constants),
        Cluster(c.gld.subset([]), c.bld, c.constants),
    ]
    return out


@pytest.fixture(scope="module")
def mixed() -> tuple[list[Cluster], ClusterBatch, np.ndarray]:
    clusters = _clusters()
    batch = ClusterBatch.from_clusters(clusters)
    assert not batch.dense  # padded in both device axes
    assert (batch.n_gld == 0).any() and (batch.n_bld == 0).any()
    return clusters, batch, direct_bounds(batch)[0]


def _one(c: Cluster) -> ClusterRow:
    return ClusterRow.from_cluster(c)


def test_slot_sums_do_not_depend_on_padding() -> None:
    """_slot_sum adds the slots in order, ((x0 + x1) + x2) + ..., whatever the shape and
    the zeros that pad it (a plain numpy sum along a contiguous axis does not)."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        r, m, k = (int(v) for v in rng.integers(1, 20, 3))
        shape = [(r, m), (r, m, k), (r, m, 1), (r, 3, m, k)][int(rng.integers(4))]
        axis = 2 if len(shape) == 4 else 1
        x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-6, 6, shape)
        want = np.take(x, 0, axis=axis)
        for j in range(1, m):
            want = want + np.take(x, j, axis=axis)
        pad = [(0, 0)] * len(shape)
        pad[axis] = (0, int(rng.integers(0, 9)))
        assert np.array_equal(F._slot_sum(x, axis), want)
        assert np.array_equal(F._slot_sum(np.pad(x, pad), axis), want)


def test_batched_searches_equal_each_cluster_alone(mixed) -> None:
    clusters, batch, tg_lo = mixed
    rows = F.FeasibleRows.from_batch(batch)
    tg_base = F.tg_base_batch_s(rows, tg_lo, LN50)
    bounds = F.safe_bound_features_batch(rows, tg_base)
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (len(clusters), 3))
    actions[::4] = np.sign(actions[::4])  # the box's corners
    allocs = {
        (j, s): F.safe_allocation_batch(rows, tg_base, actions, LN50, LN50, j, math.log(2.0), s)
        for j, s in (("interval", "ratio"), ("sync", "excess"))
    }
    left = batch.gld["energy_budget_j"] * rng.uniform(-0.1, 0.8, batch.gld_mask.shape)
    q_low, q_high, ok = F.jamming_interval_batch(rows, left)
    y_base = F.training_base_batch_s(rows, left)
    searched = 0
    for i, c in enumerate(clusters):
        a, m = _one(c), c.n_gld
        tg = F.sync_upload_time_s(a, float(tg_lo[i]), LN50) if m else 0.0
        assert tg_base[i] == (0.0 if not m else tg_lo[i] if math.isnan(tg) else tg)
        assert np.array_equal(bounds[i], F.safe_bound_features(a, tg_base[i]))
        for (jam, scale), (y, t, q) in allocs.items():
            y1, t1, q1 = F.safe_allocation(
                a, tg_base[i], actions[i], LN50, LN50, jam, math.log(2.0), scale
            )
            assert (y[i], t[i]) == (y1, t1)
            assert np.array_equal(q[i, :m], q1) and not q[i, m:].any()
        iv = F.jamming_interval(a, left[i, :m])
        assert (iv is not None) == ok[i]
        if iv is not None:
            assert iv == (q_low[i], q_high[i])
            searched += iv[1] > 0
        assert y_base[i] == F.training_base_s(a, left[i, :m])
    assert searched >= 10


def test_chunks_reorder_and_trim_without_changing_a_row(mixed, monkeypatch) -> None:
    """Small chunks (rows sorted by size, each chunk cut to its widest row) give the same
    numbers as one chunk."""
    clusters, batch, tg_lo = mixed
    rows = F.FeasibleRows.from_batch(batch)
    actions = np.random.default_rng(2).uniform(-1, 1, (len(clusters), 3))
    whole = F.tg_base_batch_s(rows, tg_lo, LN50)
    want = F.safe_allocation_batch(rows, whole, actions, LN50, LN50)
    bounds = F.safe_bound_features_batch(rows, whole)
    monkeypatch.setattr(F, "_CHUNK_ELEMENTS", 3000)
    chunks = list(F._chunks(rows, 40))
    assert len(chunks) > 5
    assert sorted(np.concatenate([i for i, _ in chunks]).tolist()) == list(range(rows.size))
    assert any(rc.width < rows.width for _, rc in chunks)
    assert np.array_equal(F.tg_base_batch_s(rows, tg_lo, LN50), whole)
    for got, ref in zip(
        F.safe_allocation_batch(rows, whole, actions, LN50, LN50), want, strict=True
    ):
        assert np.array_equal(got, ref)
    assert np.array_equal(F.safe_bound_features_batch(rows, whole), bounds)


def _w_reference(a_k, q_k, gk, g_a, g_q, w_cap, e, u):
    """w(u) of one row at one u by sorting the breakpoints (the prefix formula)."""
    beta = a_k - q_k * u
    order = np.argsort(beta, kind="stable")
    num = np.cumsum((g_a - g_q * u)[order])
    den = np.cumsum(gk[order])
    w = ((e + num) / den)[den > 0].min()
    return min(w, w_cap) if e >= 0 else -math.inf


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the searches' inf and NaN
def test_training_time_search_matches_the_sorted_prefixes(mixed) -> None:
    """w(u) of _sync_w, by one sort per row where the breakpoints keep their order over the
    row's sync times and by pairwise comparison where they do not, against the prefix
    formula at every point."""
    _, batch, _ = mixed
    rows = F.FeasibleRows.from_batch(batch)
    keep = np.flatnonzero((rows.n_gld > 1) & (rows.n_bld > 0))
    r = rows.take(keep)
    rng = np.random.default_rng(3)
    left = np.where(r.g_mask, r.g_e_max * rng.uniform(-0.05, 0.9, r.g_mask.shape), 0.0)
    left[:, 0] = np.abs(left[:, 0]) + 0.1  # every row has a GLD with energy left
    u_lo, s_hi, _ = F._u_grid(r)
    s_hi = np.maximum(s_hi, F._S_MIN + 1.0)
    wide = u_lo[:, None] * (1.0 + np.exp(F._S_MIN + (s_hi - F._S_MIN)[:, None] * F._UNIT))
    narrow = wide[:, 20:21] * (1.0 + 1e-3 * F._ZOOM)
    w_of_u = F._sync_w(r, left)
    ok = (left > 0) & r.g_mask
    k = r.g_kloc
    a_k, q_k = np.where(ok, left / k, np.inf), np.where(ok, r.g_q_max / k, 0.0)
    gk = np.where(ok, r.g_gain_e * k, 0.0)
    g_a, g_q = np.where(ok, r.g_gain_e * left, 0.0), np.where(ok, r.g_gq, 0.0)
    w_cap = np.minimum(a_k.min(1), 1.0 / r.y_min_s**2)
    fast = 0
    for u in (wide, narrow):
        got = w_of_u(u)
        e = F._slot_sum(g_q, 1)[:, None] * u - u * F._need_w(r, u)
        order0 = (a_k - q_k * u[:, :1]).argsort(1, kind="stable")
        order1 = (a_k - q_k * u[:, -1:]).argsort(1, kind="stable")
        fast += int((order0 == order1).all(1).sum())
        for i in range(r.size):
            want = [
                _w_reference(a_k[i], q_k[i], gk[i], g_a[i], g_q[i], w_cap[i], e[i, j], u[i, j])
                for j in range(u.shape[1])
            ]
            # the sums run in another order (and C - D + sum g K beta may cancel)
            np.testing.assert_allclose(got[i], want, rtol=1e-10)
    assert 0 < fast < 2 * r.size  # both ways are exercised


def _full_grid_upload_time(a: ClusterRow, tg_lo: float, ln_tg_range: float) -> float:
    """sync_upload_time_s as it searched before its shortcuts: every grid point, every
    zoom of the peak (the grid's ends and a peak already >= 0 no longer stop it)."""
    r = F.FeasibleRows.from_row(a)
    if not a.g_cd.size or not a.b_data.size:
        return tg_lo
    u_lo, s_hi, _ = F._u_grid(r)
    s_hi = np.maximum(s_hi, F._S_MIN + 1.0)
    lo, hi, it = 0.0, ln_tg_range, 0
    while it < 3:
        x = np.linspace(lo, hi, F._FINE)
        tg = tg_lo * np.exp(x)
        ok = np.array(
            [
                F._peak(
                    lambda u, t=t: F._psi(
                        r,
                        r.g_gain_e
                        * np.clip(r.g_e_max - r.upload_energy_j(np.array([t])), 0.0, None),
                        u,
                    ),
                    u_lo,
                    s_hi,
                )[0]
                >= 0
                for t in tg
            ]
        )
        if not ok.any():
            if it > 0:
                return float(tg_lo * math.exp(hi))
            if lo > 0.0 or ln_tg_range >= math.log(F.SYNC_UPLOAD_MAX_FACTOR):
                return math.nan
            lo, hi = ln_tg_range, math.log(F.SYNC_UPLOAD_MAX_FACTOR)
            continue
        j = int(ok.argmax())
        if j == 0:
            return float(tg[0])
        lo, hi = x[j - 1], x[j]
        it += 1
    return float(tg_lo * math.exp(hi))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the searches' inf and NaN
def test_upload_search_shortcuts_give_the_full_grid_answer(mixed) -> None:
    """sync_upload_time_s checks a grid's ends before its interior and stops a peak once
    it reaches 0: on every cluster (at tg_lo, inside the range, beyond it, none) the answer
    of the full grid search."""
    clusters, _, tg_lo = mixed
    kinds = set()
    for i, c in enumerate(clusters):
        a = _one(c)
        if not c.n_gld:
            continue
        for ln in (LN50, math.log(3.0)):
            got = F.sync_upload_time_s(a, float(tg_lo[i]), ln)
            want = _full_grid_upload_time(a, float(tg_lo[i]), ln)
            assert got == want or (math.isnan(got) and math.isnan(want)), (i, ln)
            kinds.add(
                "none"
                if math.isnan(got)
                else "lo"
                if got == tg_lo[i]
                else "in"
                if got <= tg_lo[i] * math.exp(ln) * (1 + 1e-12)
                else "beyond"
            )
    assert kinds == {"none", "lo", "in", "beyond"}
