"""Adaptive partial-volume regression (aslproc.utils.pvreg) on small phantoms."""

import numpy as np
import pytest
from scipy import ndimage

from aslproc.utils import pvreg


@pytest.fixture(scope='module')
def phantom():
    """Two tissues with partial-volume borders, a focal hypoperfusion inside GM that the
    fractions do not show, and white noise of known SD."""
    rng = np.random.default_rng(7)
    shape = (40, 40, 12)
    gm = ndimage.gaussian_filter(np.float64(rng.random(shape) > 0.5), 1.0)
    gm = np.clip((gm - gm.min()) / (gm.max() - gm.min()), 0, 1)
    wm = 1.0 - gm
    truth = 0.6 * gm + 0.2 * wm
    lesion = np.zeros(shape, bool)
    lesion[8:18, 8:18, 3:9] = True
    truth[lesion] *= 0.4
    sd = 0.15
    y = truth + rng.normal(0, sd, shape)
    # a stand-in for the CNN: less noisy than y, keeps the lesion, blurs the tissue borders
    reference = ndimage.gaussian_filter(truth, 1.0) + rng.normal(0, sd / 4, shape)
    return dict(gm=gm, wm=wm, truth=truth, lesion=lesion, y=y, sd=sd, reference=reference,
                mask=np.ones(shape), zooms=(3.0, 3.0, 3.0))


def _rmse(a, b, where):
    return float(np.sqrt(np.mean((a[where] - b[where]) ** 2)))


def _lesion_ratio(x, p):
    core = ndimage.binary_erosion(p['lesion'], iterations=1) & (p['gm'] > 0.5)
    rest = ~ndimage.binary_dilation(p['lesion'], iterations=4) & (p['gm'] > 0.5)
    return x[core].mean() / x[rest].mean()


def test_local_fit_removes_noise_and_keeps_tissue_borders(phantom):
    p = phantom
    healthy = ~ndimage.binary_dilation(p['lesion'], iterations=6)
    fit = pvreg.local_tissue_fit(p['y'], p['gm'], p['wm'], p['mask'], (2.0, 2.0, 2.0))
    assert _rmse(fit, p['truth'], healthy) < 0.25 * _rmse(p['y'], p['truth'], healthy)
    # the tissue contrast is the truth's, not smoothed away as by a Gaussian of that width
    blur = ndimage.gaussian_filter(p['y'], 2.0)
    assert _rmse(fit, p['truth'], healthy) < 0.6 * _rmse(blur, p['truth'], healthy)


def test_adaptive_fit_keeps_a_lesion_that_a_wide_fit_flattens(phantom):
    p = phantom
    truth_ratio = _lesion_ratio(p['truth'], p)
    wide = pvreg.local_tissue_fit(p['y'], p['gm'], p['wm'], p['mask'], (4.0, 4.0, 4.0))
    est, chosen = pvreg.adaptive_tissue_fit(p['y'], p['gm'], p['wm'], p['mask'], p['zooms'],
                                            p['reference'], p['sd'])
    assert _lesion_ratio(wide, p) > 1.3 * truth_ratio  # the fixed 12 mm fit fills it in
    assert _lesion_ratio(est, p) == pytest.approx(truth_ratio, rel=0.15)
    # ... while healthy tissue still gets the widest fits and beats the reference there
    healthy = ~ndimage.binary_dilation(p['lesion'], iterations=6)
    assert np.median(chosen[healthy]) == len(pvreg.WIDTHS_MM)
    assert _rmse(est, p['truth'], healthy) < 0.7 * _rmse(p['reference'], p['truth'], healthy)
    in_lesion = chosen[ndimage.binary_erosion(p['lesion'], iterations=1)]
    assert np.mean(in_lesion < len(pvreg.WIDTHS_MM)) > 0.9


def test_adaptive_fit_outside_mask_and_units(phantom):
    """Outside the mask the reference is returned; scaling every map scales the result."""
    p = phantom
    mask = p['mask'].copy()
    mask[:, :, :2] = 0
    est, _ = pvreg.adaptive_tissue_fit(p['y'], p['gm'], p['wm'], mask, p['zooms'],
                                       p['reference'], p['sd'])
    np.testing.assert_array_equal(est[:, :, :2], p['reference'][:, :, :2])
    est10, _ = pvreg.adaptive_tissue_fit(10 * p['y'], p['gm'], p['wm'], mask, p['zooms'],
                                         10 * p['reference'], 10 * p['sd'])
    np.testing.assert_allclose(est10, 10 * est, rtol=1e-6, atol=1e-9)
