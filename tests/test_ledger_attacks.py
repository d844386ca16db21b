"""Attack helpers (dtfl_env.ledger.attacks); the ledger never imports torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dtfl_env.ledger import (
    flip_labels,
    random_update,
    scaled_update,
)


# ---------------------------------------------------------------- attacks
def test_attack_helpers():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(1000).astype(np.float32)
    h = g + np.float32(0.01)
    s = scaled_update(g, h, factor=-10.0)
    np.testing.assert_allclose(s - g, -10.0 * (h - g), rtol=1e-4)
    r = random_update(g, rng)
    assert r.dtype == np.float32 and np.linalg.norm(r - g) > 0.5 * np.linalg.norm(g)
    y = rng.integers(0, 10, 500)
    fy = flip_labels(y, rng)
    assert fy.dtype == y.dtype and np.all(fy != y) and np.all((fy >= 0) & (fy < 10))
    np.testing.assert_array_equal(flip_labels(y, rng, mode="reverse"), 9 - y)
    half = flip_labels(y, rng, fraction=0.5)
    assert 0.4 < np.mean(half != y) < 0.6
    with pytest.raises(ValueError, match="labels must lie"):
        flip_labels(np.array([10]), rng)


def test_flip_labels_draws_selection_then_shifts():
    """The documented draws (the FL side's Fig. 8 attacks depend on them): one uniform per
    label, then one shift per flipped label; the flipped sets are nested in ``fraction``."""
    y = np.random.default_rng(1).integers(0, 10, 300)
    rng = np.random.default_rng(7)
    u = rng.random(y.size)
    sel = u < 0.5
    want = y.copy()
    want[sel] = (y[sel] + rng.integers(1, 10, int(sel.sum()))) % 10
    np.testing.assert_array_equal(flip_labels(y, np.random.default_rng(7), fraction=0.5), want)
    flipped = [flip_labels(y, np.random.default_rng(7), fraction=f) != y for f in (0.2, 0.5, 1)]
    assert np.all(flipped[0] <= flipped[1]) and np.all(flipped[1] <= flipped[2])
    assert np.all(flipped[2]) and np.array_equal(flip_labels(y, rng, fraction=0.0), y)


def test_flip_labels_on_torch():
    torch = pytest.importorskip("torch")
    y = torch.arange(10, dtype=torch.long)
    fy = flip_labels(y, np.random.default_rng(0))
    assert isinstance(fy, torch.Tensor) and fy.dtype == torch.long
    assert bool((fy != y).all())


def test_ledger_does_not_import_torch():
    code = "import sys, dtfl_env.ledger; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
