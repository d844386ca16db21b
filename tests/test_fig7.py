"""Fig. 7 (``agents.figures.fig7``): each scheme on its own allocation, and the quick run.

Latency rules are checked on small clusters with the schemes' and rounds' helpers
(``fig7_schemes``, ``fig7_rounds``; no training); one ``--quick`` run in this process (2
seeds, 3 clusters, 2 rounds, MLP) checks outputs, learning and the shared-curve bookkeeping.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from agents.figures import fig7, fig7_rounds, fig7_schemes, run_figure
from dtfl_env.config import BLDParams, Cluster, Constants
from dtfl_env.fl.config import model_size_bits
from dtfl_env.model import (
    bld_twin_latency_s,
    jamming_lower_bound_w,
    jamming_upper_bound_w,
    secrecy_rate_bps,
    sync_time_s,
)
from dtfl_env.scenarios import classify_and_build, table2_cluster
from solvers import solve

FIGURE = "fig7_accuracy"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OFFSETS = 0.05 + 0.05 + 0.1  # T_agg + T_up + T_MC


@pytest.fixture(scope="module")
def scenarios() -> list:
    rng = np.random.default_rng(3)
    consts = Constants(model_bits=model_size_bits("cnn"))
    return [classify_and_build(rng, 10, constants=consts) for _ in range(4)]


def _args(**kw: object) -> fig7_rounds.Args:
    return dataclasses.replace(fig7_rounds.Args(), **kw)


# ---------------------------------------------------------------------- FedAvg
def test_fedavg_gld_time_is_the_gld_only_optimum() -> None:
    """FedAvg's GLDs get the exact Q = 0 GLD-only optimum, never the proposed y* + tG*."""
    c = table2_cluster()
    prop = fig7_schemes.proposed_latency(c)
    fed = fig7_schemes.fedavg_a_latency(c)
    gld_only = solve(
        Cluster(gld=c.gld, bld=c.bld.subset(np.zeros(0, dtype=np.int64)), constants=c.constants),
        "exact",
    )
    assert gld_only.feasible
    assert fed["gld_path_s"] == pytest.approx(gld_only.y + gld_only.tG, rel=1e-9)
    assert fed["T_s"] == pytest.approx(gld_only.T, rel=1e-9)
    # the proposed GLDs pay for jamming FedAvg never does: their path is longer
    assert prop["y_s"] + prop["tG_s"] > fed["gld_path_s"] * 1.1


def test_fedavg_a_never_trains_blds(scenarios: list) -> None:
    per = [fig7_schemes.fedavg_a_latency(sc.cluster) for sc in scenarios]
    _, members = fig7_rounds.round_times(per, None, 3)
    reqs = fig7_rounds.requests_of(per, members, [sc.cluster for sc in scenarios])
    assert reqs and all(sc.cluster.n_bld for sc in scenarios)
    for r in reqs:
        assert np.asarray(r.bld_participants).size == 0
        assert np.asarray(r.bld_synced).size == 0
        assert np.asarray(r.gld_participants).size == scenarios[r.cluster].cluster.n_gld


def test_fedavg_b_drops_a_bld_whose_energy_exceeds_its_battery(scenarios: list) -> None:
    sc = scenarios[0]
    c = sc.cluster
    hw = fig7_schemes.BLDHardware.of(sc)
    d = fig7_schemes.fedavg_b_blds(c, hw, 20.0)
    # by hand: eq. (4)/(5) on the BLD's own CPU, upload on its own bandwidth
    cycles = 20.0 * c.bld.data_bits
    rate = hw.bandwidth_hz * np.log2(1 + c.bld.power_w * c.bld.gain_coordinator / 1e-9)
    energy = 1e-27 * cycles * hw.cpu_hz**2 + c.bld.power_w * model_size_bits("cnn") / rate
    assert np.allclose(d["energy_j"], energy, rtol=1e-12)
    assert np.allclose(
        d["t_loc_s"] + d["t_up_s"], cycles / hw.cpu_hz + model_size_bits("cnn") / rate, rtol=1e-12
    )
    # battery just above every BLD's energy: all kept; just below BLD 0's: BLD 0 drops
    full = dataclasses.replace(hw, battery_j=energy * 1.001)
    short = dataclasses.replace(
        hw, battery_j=np.where(np.arange(c.n_bld) == 0, energy * 0.999, energy * 1.001)
    )
    g = fig7_schemes.fedavg_gld_path_s(c)
    kept = fig7_schemes.fedavg_b_latency(c, full, 20.0, g)
    dropped = fig7_schemes.fedavg_b_latency(c, short, 20.0, g)
    assert kept["bld"].tolist() == list(range(c.n_bld)) and kept["dropped"] == 0
    assert dropped["bld"].tolist() == list(range(1, c.n_bld)) and dropped["dropped"] == 1
    path = d["t_loc_s"] + d["t_up_s"]
    assert dropped["T_s"] == pytest.approx(max(g, *path[1:]) + OFFSETS, rel=1e-12)


def test_crossover_is_where_fedavg_b_starts_to_outlast_the_proposed_round(scenarios: list) -> None:
    clusters = [sc.cluster for sc in scenarios]
    hws = [fig7_schemes.BLDHardware.of(sc) for sc in scenarios]
    g = [fig7_schemes.fedavg_gld_path_s(c) for c in clusters]
    t_prop = max(t for c in clusters if math.isfinite(t := fig7_schemes.proposed_latency(c)["T_s"]))
    cross = fig7_schemes.crossover_cycles_per_bit(clusters, hws, g, t_prop)
    assert 20 < cross < math.inf

    def round_b(iota: float) -> float:
        ts = [
            fig7_schemes.fedavg_b_latency(c, hw, iota, gp)["T_s"]
            for c, hw, gp in zip(clusters, hws, g, strict=True)
        ]
        return max(t for t in ts if math.isfinite(t))

    assert round_b(0.999 * cross) <= t_prop
    assert round_b(1.001 * cross) > t_prop
    assert round_b(20.0) < t_prop  # at the default iota the on-device BLDs are faster


# ---------------------------------------------------------------------- no jamming
def _sharp_eavesdropper(c: Cluster) -> Cluster:
    """Table II with BLD 0 heard by the eavesdropper better than by the coordinator."""
    b = c.bld
    h_e = b.gain_eavesdropper.copy()
    h_e[0] = 1.5 * b.gain_coordinator[0]
    return Cluster(
        gld=c.gld,
        bld=BLDParams(
            data_bits=b.data_bits,
            gain_coordinator=b.gain_coordinator,
            gain_eavesdropper=h_e,
            power_w=b.power_w,
        ),
        constants=c.constants,
    )


def test_nojam_sitout_drops_unsyncable_twins_wait_keeps_all() -> None:
    c = _sharp_eavesdropper(table2_cluster())
    r0 = secrecy_rate_bps(c, 0.0)
    assert r0[0] == 0 and jamming_lower_bound_w(c) > 0
    sit = fig7_schemes.nojam_sitout_latency(c)
    assert sit["bld"].tolist() == np.flatnonzero(r0 > 0).tolist()
    sub = fig7_schemes.with_blds(c, sit["bld"])
    assert sit["T_s"] >= float(sync_time_s(sub, 0.0)) + bld_twin_latency_s(sub) + OFFSETS
    wait = fig7_schemes.nojam_wait_latency(c, 10.0)
    assert wait["bld"].tolist() == list(range(c.n_bld))
    assert wait["Q_w"] > jamming_lower_bound_w(c)  # the least jamming that lets BLD 0 sync
    assert np.all(secrecy_rate_bps(c, wait["Q_w"]) > 0)
    clean = c.bld.data_bits / (1e6 * np.log2(1 + c.bld.power_w * c.bld.gain_coordinator / 1e-9))
    assert float(sync_time_s(c, wait["Q_w"])) == pytest.approx(10.0 * clean.max(), rel=1e-6)
    prop = fig7_schemes.proposed_latency(c)
    assert wait["T_s"] >= prop["T_s"] * (1 - 1e-9)  # the exact solver optimises over Q
    # the GLDs cannot afford it: that cluster cannot wait
    weak = c.gld.max_jam_power_w * (0.5 * wait["Q_w"] / jamming_upper_bound_w(c))
    poor = Cluster(
        gld=dataclasses.replace(c.gld, max_jam_power_w=weak), bld=c.bld, constants=c.constants
    )
    assert fig7_schemes.nojam_wait_latency(poor, 10.0)["bld"] is None


def test_nojam_wait_uses_no_jamming_where_every_twin_syncs_without() -> None:
    c = table2_cluster()
    b = c.bld
    easy = Cluster(
        gld=c.gld,
        bld=BLDParams(
            data_bits=b.data_bits,
            gain_coordinator=b.gain_coordinator,
            gain_eavesdropper=0.5 * b.gain_coordinator,
            power_w=b.power_w,
        ),
        constants=c.constants,
    )
    assert jamming_lower_bound_w(easy) < 0
    wait = fig7_schemes.nojam_wait_latency(easy, 10.0)
    sit = fig7_schemes.nojam_sitout_latency(easy)
    assert wait["Q_w"] == 0.0
    assert wait["T_s"] == pytest.approx(sit["T_s"], rel=1e-12)
    assert sit["bld"].tolist() == list(range(easy.n_bld))


# ---------------------------------------------------------------------- data and sync
def test_static_mode_charges_the_full_sync_once_then_the_state_update() -> None:
    c = table2_cluster()
    small = fig7_schemes.state_update_cluster(c, 1e4)
    assert np.all(small.bld.data_bits == 1e4)
    assert bld_twin_latency_s(small) == pytest.approx(bld_twin_latency_s(c), rel=1e-12)
    q = fig7_schemes.proposed_latency(c)["Q_w"]
    assert float(sync_time_s(small, q)) < float(sync_time_s(c, q))
    first = [fig7_schemes.proposed_latency(c)]
    later = [fig7_schemes.proposed_latency(small)]
    times, members = fig7_rounds.round_times(first, later, 4)
    assert members == [0]
    assert times[0] == pytest.approx(first[0]["T_s"]) and times[1:] == [later[0]["T_s"]] * 3
    assert later[0]["T_s"] < first[0]["T_s"]
    same = fig7_schemes.state_update_cluster(c, float(c.bld.data_bits[0]))
    assert float(sync_time_s(same, q)) == pytest.approx(
        float(c.bld.data_bits[0] / secrecy_rate_bps(c, q).min()), rel=1e-12
    )


def test_fl_config_matches_the_data_mode() -> None:
    consts = Constants()
    stream = fig7_rounds.fl_config(_args(data_mode="stream", arrival_rounds=5), consts)
    assert (stream.data_stream, stream.data_arrival_rounds) == ("window", 5)
    assert (stream.partition, stream.twin_stale_policy) == ("dirichlet", "skip")
    static = fig7_rounds.fl_config(_args(data_mode="static", arrival_rounds=5), consts)
    assert (static.data_stream, static.data_arrival_rounds) == ("prefix", 1)
    # no ledger in Fig. 7: no validation split, all 4,000 non-test images train
    assert stream.validation_fraction == static.validation_fraction == 0.0


def test_bld_share_rescaling(scenarios: list) -> None:
    clusters = [sc.cluster for sc in scenarios]
    for share in (0.1, 0.5, 0.8):
        scaled = fig7_schemes.rescale_bld_share(clusters, share)
        assert fig7_schemes.bld_share(scaled) == pytest.approx(share, rel=1e-12)
        for a, b in zip(clusters, scaled, strict=True):
            assert np.array_equal(a.gld.data_bits, b.gld.data_bits)
    with pytest.raises(ValueError, match="share"):
        fig7_schemes.rescale_bld_share(clusters, 1.0)


def test_mean_ci_and_bad_arguments() -> None:
    m, h, n = fig7.mean_ci([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3) and h == pytest.approx(4.302652729911275 / math.sqrt(3))
    for flag, kw in (
        ("--data-mode", {"data_mode": "online"}),
        ("--wait-sync-factor", {"wait_sync_factor": 1.0}),
        ("--bld-shares", {"bld_shares": (0.0,)}),
        ("--seeds", {"seeds": ()}),
        ("--iota-sweep", {"iota_sweep": (-1.0,)}),
    ):
        with pytest.raises(SystemExit, match=flag):
            fig7_rounds.check_args(_args(**kw))


# ---------------------------------------------------------------------- the quick run
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fig7")
    record = run_figure("fig7", ["--quick", "--out", str(out)], progress=False)
    summary = json.loads((out / f"{FIGURE}_summary.json").read_text())
    assert record == summary
    return out, summary


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_quick_run_outputs_and_learning(quick_run: tuple[Path, dict]) -> None:
    out, record = quick_run
    assert (out / f"{FIGURE}.png").read_bytes()[:8] == PNG_MAGIC
    s = record["summary"]
    assert s["model_bits"] == model_size_bits("mlp")  # L = the trained model's size
    rows = _csv(out / f"{FIGURE}.csv")
    per_seed = s["per_seed"]
    for seed, info in per_seed.items():
        share = min(float(r["bld_share"]) for r in rows if r["seed"] == seed)
        for scheme, times in info["times"].items():
            mine = [
                r
                for r in rows
                if r["seed"] == seed and r["scheme"] == scheme and float(r["bld_share"]) == share
            ]
            t = np.array([float(r["sim_time_s"]) for r in mine])
            acc = np.array([float(r["accuracy"]) for r in mine])
            assert np.allclose(t, np.concatenate([[0.0], np.cumsum(times)]))
            assert acc[-1] > 0.5 and acc[-1] > acc[0]  # chance is 10 %
        # schemes sharing a participation set reuse its curve on their own time axis
        for scheme, twin in info["reused_curves"].items():
            a = [
                r["accuracy"]
                for r in rows
                if r["seed"] == seed and r["scheme"] == scheme and float(r["bld_share"]) == share
            ]
            b = [
                r["accuracy"]
                for r in rows
                if r["seed"] == seed and r["scheme"] == twin and float(r["bld_share"]) == share
            ]
            assert a == b
    for name, v in s["schemes"].items():
        assert v["seeds"] >= 1, name
    assert set(s["bld_share_sweep"]) == {"drawn", "0.5"}


def test_accuracy_at_a_common_time() -> None:
    def curve(dt: float, accs: list[float]) -> list[dict[str, float]]:
        return [{"sim_time_s": i * dt, "accuracy": a} for i, a in enumerate(accs)]

    curves = {
        "proposed": curve(10.0, [0.1, 0.5, 0.7]),
        "fedavg_a": curve(1.0, [0.1, 0.3, 0.4]),
        "centralized": curve(0.5, [0.1, 0.9]),
    }
    t = fig7.common_time_s(curves)
    assert t == 2.0  # FedAvg (a) ends first; the centralized curve does not count
    assert fig7.accuracy_at(curves["proposed"], t) == 0.1  # no round finished yet
    assert fig7.accuracy_at(curves["fedavg_a"], t) == 0.4
    assert fig7.accuracy_at(curves["centralized"], t) == 0.9
