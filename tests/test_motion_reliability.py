"""Voxels that motion left without a usable ΔM: found by their variance, filled from around."""

from __future__ import annotations

import numpy as np
import pytest

from aslproc.utils import motion_reliability as mrel
from aslproc.utils.quantify import unreliable_and_filled

TYPES = ['control', 'label'] * 8


def _series(shape=(24, 24, 4), edge_sd=0.0, seed=0):
    """Static 100 + noise SD 1, label − 1 (ΔM 1); the first ``shape[0] // 4`` rows are an
    edge whose static value swings by ``edge_sd`` from volume to volume (a moving border)."""
    rng = np.random.default_rng(seed)
    n = len(TYPES)
    data = 100 + rng.normal(0, 1.0, (*shape, n))
    data[..., 1::2] -= 1.0
    rows = shape[0] // 4
    data[:rows] += rng.normal(0, edge_sd, (rows, 1, 1, n)) * np.ones((rows, *shape[1:], 1))
    return data.astype(np.float32), rows


def test_noise_only_series_is_noise_like_everywhere():
    data, _ = _series()
    ratio = mrel.instability_ratio(data, TYPES, np.ones(data.shape[:3], bool))
    assert np.median(ratio) == pytest.approx(1.0, abs=0.08)
    bad = mrel.unreliable_voxels(ratio, TYPES, np.ones(data.shape[:3], bool))
    assert bad.mean() < 0.005  # alpha = 0.001, up to a noisier noise estimate


def test_a_swinging_edge_is_unreliable_and_the_rest_is_not():
    data, rows = _series(edge_sd=20.0)
    mask = np.ones(data.shape[:3], bool)
    ratio = mrel.instability_ratio(data, TYPES, mask)
    bad = mrel.unreliable_voxels(ratio, TYPES, mask)
    assert bad[:rows].all()
    assert bad[rows:].mean() < 0.005
    assert np.median(ratio[rows:]) == pytest.approx(1.0, abs=0.1)  # noise level not inflated


def test_too_few_volumes_are_not_assessed():
    data, _ = _series(edge_sd=20.0)
    types = TYPES[:mrel.MIN_VOLUMES - 1]
    ratio = mrel.instability_ratio(data[..., :len(types)], types, np.ones(data.shape[:3]))
    assert not ratio.any()
    assert not mrel.unreliable_voxels(ratio, types, np.ones(data.shape[:3])).any()


def test_fill_restores_the_level_and_leaves_reliable_voxels_alone():
    rng = np.random.default_rng(1)
    cbf = (50 + rng.normal(0, 2, (20, 20, 3))).astype(np.float32)
    ratio = np.ones_like(cbf)
    bad = np.zeros(cbf.shape, bool)
    bad[5:8, 5:8] = True
    ratio[bad] = 300.0  # each such voxel's CBF is √300 times noisier than noise alone
    cbf[bad] = 50 + rng.normal(0, 2 * np.sqrt(300.0), bad.sum())
    m0 = np.full(cbf.shape, 60.0)
    out = mrel.fill_unreliable(cbf, ratio, m0, bad, np.ones(cbf.shape, bool))
    assert np.array_equal(out[~bad], cbf[~bad])
    assert np.abs(cbf[bad] - 50).max() > 40
    assert np.abs(out[bad] - 50).max() < 6  # the residue is gone, the level kept


def test_fill_reaches_a_voxel_far_from_any_reliable_one():
    cbf = np.full((30, 3, 1), 40.0, np.float32)
    bad = np.zeros(cbf.shape, bool)
    bad[:20] = True
    cbf[bad] = 1000.0
    ratio = np.where(bad, 1e6, 1.0)
    out = mrel.fill_unreliable(cbf, ratio, np.ones_like(cbf), bad, np.ones(cbf.shape, bool))
    assert np.isfinite(out).all() and abs(out[0, 1, 0] - 40) < 5


def test_a_focal_lesion_in_reliable_voxels_keeps_its_contrast():
    """The fill touches only voxels that fail the variance test; a hypoperfused region whose
    series are noise-like is a measurement, and stays."""
    data, rows = _series(shape=(32, 32, 4), edge_sd=20.0)
    data[14:20, 14:20, :, 1::2] += 0.6  # ΔM 0.4 instead of 1 in a 6 × 6 patch
    mask = np.ones(data.shape[:3], bool)
    ratio = mrel.instability_ratio(data, TYPES, mask)
    dm = data[..., 0::2].mean(-1) - data[..., 1::2].mean(-1)
    cbf = 50.0 * dm
    m0 = data[..., 0::2].mean(-1)
    out, bad = unreliable_and_filled(cbf, ratio, m0, mask, TYPES)
    assert bad[:rows].mean() > 0.99
    lesion = out[14:20, 14:20].mean() / out[rows + 2:12].mean()
    truth = 0.4
    assert abs(lesion / truth - 1) < 0.15
    assert np.array_equal(out[14:20, 14:20], cbf[14:20, 14:20])
