"""The system model against hand-computed values (eqs. (4)-(13), (20)-(23))."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams
from dtfl_env.model import (
    bld_twin_latency_s,
    evaluate_allocation,
    jamming_lower_bound_w,
    jamming_upper_bound_w,
    local_energy_j,
    local_latency_s,
    min_jamming_for_sync_w,
    min_upload_time_s,
    secrecy_rate_bps,
    sync_time_s,
    upload_power_w,
)


@pytest.fixture
def small() -> Cluster:
    gld = GLDParams(
        data_bits=[1e6, 2e6],
        gain_coordinator=[1e-8, 1e-8],
        gain_eavesdropper=[1e-8, 2e-8],
        max_power_w=[1.0, 1.0],
        max_jam_power_w=[1.0, 1.0],
        max_cpu_hz=[2e9, 2e9],
        energy_budget_j=[5.0, 5.0],
    )
    bld = BLDParams(
        data_bits=[1e6], gain_coordinator=[1e-9], gain_eavesdropper=[0.95e-9], power_w=[1.6]
    )
    return Cluster(gld, bld, Constants())


def test_local_latency_and_energy(small):
    v = np.array([1e9, 1e9])
    # eq. (4): 1 * 20 * 1e6 / 1e9 = 0.02 s; eq. (5): 1e-27 * 20 * 1e6 * 1e18 = 0.02 J
    np.testing.assert_allclose(local_latency_s(small, v), [0.02, 0.04])
    np.testing.assert_allclose(local_energy_j(small, v), [0.02, 0.04])


def test_noma_power_has_sic_factor(small):
    # r = L / (W tG) = 2e6 / (1e6 * 2) = 1; n/g = 0.1; p_1 = 0.1 (2 - 1), p_2 = p_1 * 2^r
    np.testing.assert_allclose(upload_power_w(small, 2.0), [0.1, 0.2])
    ev = evaluate_allocation(small, tg_s=2.0, y_s=1.0, jam_power_w=[0, 0])
    np.testing.assert_allclose(ev.energy_upload_j, [0.2, 0.4])  # eq. (8)


def test_upload_power_overflows_to_inf_not_nan(small):
    p = upload_power_w(small, 1e-6)
    assert np.all(np.isinf(p))


def test_min_upload_time(small):
    t = min_upload_time_s(small)
    p = upload_power_w(small, t)
    assert np.max(p / small.gld.max_power_w) == pytest.approx(1.0, rel=1e-9)
    assert np.all(p <= small.gld.max_power_w * (1 + 1e-12))


def test_secrecy_rate_and_sync_time(small):
    q = 1e-9
    legit = math.log2(1 + 1.6 * 1e-9 / 1e-9)
    eve = math.log2(1 + 1.6 * 0.95e-9 / (1e-9 + q))
    expected = 1e6 * (legit - eve)  # eq. (21)
    assert secrecy_rate_bps(small, q)[0] == pytest.approx(expected, rel=1e-12)
    assert float(sync_time_s(small, q)) == pytest.approx(1e6 / expected, rel=1e-12)  # eq. (23)


def test_secrecy_zero_below_lower_bound(small):
    q_lo = jamming_lower_bound_w(small)
    assert q_lo == pytest.approx(1e-9 * 0.95 - 1e-9)  # eq. (22), negative here
    big_eve = Cluster(
        small.gld,
        BLDParams(
            data_bits=[1e6], gain_coordinator=[1e-9], gain_eavesdropper=[3e-9], power_w=[1.6]
        ),
    )
    q_lo = jamming_lower_bound_w(big_eve)
    assert q_lo == pytest.approx(2e-9)
    assert secrecy_rate_bps(big_eve, q_lo * 0.99)[0] == 0.0
    assert math.isinf(float(sync_time_s(big_eve, q_lo * 0.99)))
    assert secrecy_rate_bps(big_eve, q_lo * 1.01)[0] > 0


def test_min_jamming_inverts_sync_time(table2):
    for u in (3.25, 3.3095, 10.0):
        q = float(min_jamming_for_sync_w(table2, u))
        assert float(sync_time_s(table2, q)) == pytest.approx(u, rel=1e-10)
    # even infinite jamming cannot sync BLD 2 (3.5 Mbit) faster than D / (W log2(1 + p h/n))
    u_lo = 3.5e6 / (1e6 * math.log2(1 + 1.4 * 0.8))
    assert math.isinf(float(min_jamming_for_sync_w(table2, 0.999 * u_lo)))
    assert math.isfinite(float(min_jamming_for_sync_w(table2, 1.001 * u_lo)))


def test_jamming_bounds_table2(table2):
    assert jamming_upper_bound_w(table2) == pytest.approx(8.35e-8)  # docs/MODEL.md
    assert bld_twin_latency_s(table2) == pytest.approx(20 * 11e6 / 1e10)  # eq. (6)


def test_evaluate_reference_allocation(table2):
    # docs/MODEL.md reference: T* = 3.5315 at y = 1.1253, tG = 2.2062, tB_up = 3.3095
    q_ref = float(min_jamming_for_sync_w(table2, 3.3095))
    q = table2.gld.max_jam_power_w * q_ref / jamming_upper_bound_w(table2)
    ev = evaluate_allocation(table2, tg_s=2.2062, y_s=1.1253, jam_power_w=q)
    assert ev.jamming_w == pytest.approx(q_ref)
    assert ev.tb_up_s == pytest.approx(3.3095, rel=1e-9)
    assert ev.t_bld_s == pytest.approx(3.3095 + 0.022)
    assert ev.latency_s == pytest.approx(max(1.1253 + 2.2062, 3.3315) + 0.2)
    assert set(ev.slack) == {"energy", "cpu", "power", "jam_max", "jam_min", "secrecy"}


def test_evaluate_reports_violations(table2):
    ev = evaluate_allocation(table2, tg_s=2.0, cpu_hz=np.full(6, 3e9), jam_power_w=np.full(6, 2.0))
    bad = ev.violated()
    assert {"cpu", "jam_max", "energy"} <= set(bad)
    assert not ev.is_feasible()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"tg_s": 0.0, "y_s": 1.0, "jam_power_w": np.zeros(6)}, "tg_s"),
        ({"tg_s": 1.0, "y_s": float("nan"), "jam_power_w": np.zeros(6)}, "y_s"),
        ({"tg_s": 1.0, "y_s": 1.0, "jam_power_w": np.zeros(5)}, "jam_power_w"),
        ({"tg_s": 1.0, "y_s": 1.0, "jam_power_w": [np.nan] * 6}, "jam_power_w"),
        ({"tg_s": 1.0, "cpu_hz": np.zeros(6), "jam_power_w": np.zeros(6)}, "cpu_hz"),
        ({"tg_s": 1.0, "jam_power_w": np.zeros(6)}, "y_s"),
    ],
)
def test_evaluate_rejects_bad_allocations(table2, kwargs, field):
    with pytest.raises(ValueError, match=field):
        evaluate_allocation(table2, **kwargs)
