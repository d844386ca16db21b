"""Config validation: errors name the field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dtfl_env.config import BLDParams, Cluster, Constants, GLDParams
from dtfl_env.scenarios import get_preset


def test_table2_values(table2):
    assert table2.n_gld == 6 and table2.n_bld == 4
    assert table2.gld.max_cpu_hz.tolist() == [1.0e9, 1.2e9, 1.4e9, 1.6e9, 1.8e9, 2.0e9]
    assert table2.gld.energy_budget_j.tolist() == [3.8, 4.0, 3.4, 3.6, 3.8, 3.2]
    assert table2.constants == Constants()


def test_arrays_are_read_only(table2):
    with pytest.raises(ValueError):
        table2.gld.data_bits[0] = 1.0


def test_roundtrip_json(tmp_path, table2):
    path = tmp_path / "c.json"
    table2.save(path)
    assert Cluster.load(path) == table2
    data = json.loads(path.read_text())
    del data["constants"]
    assert Cluster.from_dict(data) == table2  # constants optional


def test_constants_partial_override():
    data = get_preset("table2").to_dict()
    data["constants"] = {"model_bits": 3e6}
    c = Cluster.from_dict(data)
    assert c.constants.model_bits == 3e6 and c.constants.bandwidth_hz == 1e6


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d["gld"].update(max_power_w=[1, 2]), r"gld\.max_power_w"),
        (
            lambda d: d["gld"].update(energy_budget_j=[3.8, 4, 3.4, -1, 3.8, 3.2]),
            r"gld\.energy_budget_j\[3\]",
        ),
        (
            lambda d: d["bld"].update(gain_coordinator=[1e-9, float("nan"), 1e-9, 1e-9]),
            r"bld\.gain_coordinator\[1\]",
        ),
        (lambda d: d["bld"].update(power_w=[[1, 2], [3, 4]]), r"bld\.power_w"),
        (lambda d: d["gld"].update(gain_coordinatr=[1]), r"gld\.gain_coordinatr"),
        (lambda d: d.update(extra=1), r"extra"),
        (lambda d: d["constants"].update(bandwith_hz=1e6), r"constants\.bandwith_hz"),
        (lambda d: d["constants"].update(bandwidth_hz=0), r"constants\.bandwidth_hz"),
        (lambda d: d["constants"].update(model_bits="big"), r"constants\.model_bits"),
        (lambda d: d["gld"].pop("max_cpu_hz"), r"gld\.max_cpu_hz"),
        (lambda d: d.pop("bld"), r"bld"),
    ],
)
def test_bad_fields_are_named(table2, mutate, match):
    data = table2.to_dict()
    mutate(data)
    with pytest.raises(ValueError, match=match):
        Cluster.from_dict(data)


def test_load_errors_name_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        Cluster.load(p)
    with pytest.raises(ValueError, match="no such file"):
        Cluster.load(tmp_path / "missing.json")


def test_empty_cluster_rejected():
    empty_g = GLDParams(**{k: [] for k in GLDParams().to_dict()})
    empty_b = BLDParams(**{k: [] for k in BLDParams().to_dict()})
    with pytest.raises(ValueError, match="at least one device"):
        Cluster(empty_g, empty_b)
    assert Cluster(empty_g, get_preset("table2").bld).n_gld == 0


def test_subset(table2):
    sub = table2.gld.subset(np.array([0, 2]))
    assert len(sub) == 2 and sub.data_bits.tolist() == [30e6, 40e6]


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset"):
        get_preset("nope")


def test_the_project_documents_itself():
    """docs/MODEL.md is in the repository and nothing points at files outside it."""
    import re
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    model = (root / "docs" / "MODEL.md").read_text()
    for needle in ("Eq. (7)", "SIC", "T* = 3.5315 s", "1e-27", "Drop-outs", "21,840"):
        assert needle in model
    files = subprocess.run(
        ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"\.\./shared|\bshared/(MODEL|STYLE|paper|hooks)")
    hits = [
        f
        for f in files
        if f.endswith((".py", ".md", ".json", ".toml", ".sh", ".txt"))
        and outside.search((root / f).read_text(errors="ignore"))
    ]
    assert hits == []
