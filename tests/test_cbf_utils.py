"""Pair averaging, M0 conventions, masked CBF and smoothing on tiny arrays."""

import numpy as np
import pytest

from aslproc import kinetics
from aslproc.utils import cbf as cbfu

PCASL = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)


def _series(values):
    return np.stack([np.full((2, 2, 2), v, dtype=np.float32) for v in values], axis=-1)


def test_pairs_any_order_and_deltam():
    d = _series([100, 98, 97, 100, 3])
    out = cbfu.pairwise_delta_m(d, ['control', 'label', 'label', 'control', 'deltam'])
    assert out.shape == (2, 2, 2, 3)
    assert out[0, 0, 0].tolist() == [2.0, 3.0, 3.0]
    assert cbfu.mean_delta_m(d, ['control', 'label', 'label', 'control', 'deltam'])[0, 0, 0] == \
        pytest.approx(8 / 3)


def test_no_pairs_is_an_error():
    with pytest.raises(kinetics.AslMetadataError, match='no control/label pairs'):
        cbfu.pairwise_delta_m(_series([1, 2]), ['m0scan', 'noRF'])


@pytest.mark.parametrize('m0_type,expected', [
    ('Included', 1000 / (1 - np.exp(-5 / 1.33)) * 2),
    ('Absent', 990 / (1 - np.exp(-5 / 1.33)) * 2),
    ('Estimate', 1234.0 * 2),
])
def test_m0_types(m0_type, expected):
    d = _series([1000, 990, 980])
    m0 = dict(m0_type=m0_type, m0_estimate=1234.0, m0_tr=5.0, t1_tissue=1.33, m0_scale=2.0)
    out = cbfu.m0_map(d, ['m0scan', 'control', 'label'], m0)
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_m0_separate_uses_image():
    d = _series([990, 980])
    m0 = dict(m0_type='Separate', m0_estimate=None, m0_tr=100.0, t1_tissue=1.33, m0_scale=1.0)
    sep = np.full((2, 2, 2, 2), 500.0)
    np.testing.assert_allclose(cbfu.m0_map(d, ['control', 'label'], m0, sep), 500.0, rtol=1e-6)
    with pytest.raises(kinetics.AslMetadataError, match='Separate'):
        cbfu.m0_map(d, ['control', 'label'], m0)


def test_constant_dm_and_m0_give_known_cbf():
    # ΔM = 1 % of M0 at PLD = τ = 1.8 s gives 86.30 ml/100 g/min (see kinetics.pcasl_cbf).
    dm = np.full((3, 3, 3), 10.0)
    m0 = np.full((3, 3, 3), 1000.0)
    mask = np.zeros((3, 3, 3))
    mask[1:, 1:, 1:] = 1
    out = cbfu.cbf_map(dm, m0, PCASL, mask)
    assert out[2, 2, 2] == pytest.approx(86.30, abs=0.01)
    assert out[0, 0, 0] == 0
    assert np.count_nonzero(out) == 8


def test_cbf_zero_where_m0_void_inside_mask():
    dm = np.full((4, 1, 1), 10.0)
    m0 = np.array([1000.0, 1000.0, 1000.0, 1.0]).reshape(4, 1, 1)
    out = cbfu.cbf_map(dm, m0, PCASL, np.ones((4, 1, 1)))
    assert out[3, 0, 0] == 0 and out[0, 0, 0] > 0


def test_smoothing_preserves_constant_and_reduces_noise():
    rng = np.random.default_rng(0)
    mask = np.zeros((16, 16, 8))
    mask[3:13, 3:13, 2:6] = 1
    flat = np.where(mask > 0, 50.0, 0.0)
    np.testing.assert_allclose(cbfu.smooth_in_mask(flat, mask, 6.0, (2, 2, 2))[mask > 0], 50.0,
                               rtol=1e-5)
    noisy = flat + rng.normal(0, 10, flat.shape) * mask
    sm = cbfu.smooth_in_mask(noisy, mask, 6.0, (2, 2, 2))
    assert sm[mask > 0].std() < 0.5 * noisy[mask > 0].std()
    assert np.all(sm[mask == 0] == 0)
