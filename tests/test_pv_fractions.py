"""Partial-volume GM/WM fractions from the T1w intensity (the SR's detail regressors)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from aslproc.training import sr_fit
from aslproc.utils import superres
from aslproc.utils.pv_fractions import intensity_fractions
from tests.test_sr_fit import acquire_4mm

CSF_I, GM_I, WM_I = 20.0, 60.0, 100.0


def layered(shape=(20, 48, 4)):
    """Hard posteriors of CSF | GM | WM slabs along x (CSF x < 8, GM 8-13, WM x ≥ 14)."""
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    csf, gm = (x < 8) * 1.0, ((x >= 8) & (x < 14)) * 1.0
    return csf, gm, 1.0 - csf - gm


def test_border_voxel_is_split_by_its_intensity_under_a_bias_field():
    """The last CSF voxel before cortex, halfway in intensity, becomes half GM, also where a
    smooth bias field scales the image by 0.9-1.1 across the slab (global class means would
    say 0.4-0.6)."""
    csf, gm, wm = layered()
    t1w = CSF_I * csf + GM_I * gm + WM_I * wm
    t1w[7] = 0.5 * (CSF_I + GM_I)
    bias = np.linspace(0.9, 1.1, t1w.shape[1])[None, :, None]
    f_gm, f_wm = intensity_fractions(t1w * bias, gm, wm, csf, np.ones(t1w.shape, bool))
    np.testing.assert_allclose(f_gm[7], 0.5, atol=0.04)
    np.testing.assert_array_equal(f_gm[:7], 0)  # pure CSF stays CSF
    for x in (9, 12, 15):  # inside a tissue: the posteriors
        np.testing.assert_array_equal(f_gm[x], gm[x])
        np.testing.assert_array_equal(f_wm[x], wm[x])
    for x in (8, 13, 14):  # borders of pure intensity: about the posteriors
        np.testing.assert_allclose(f_gm[x], gm[x], atol=0.08)
        np.testing.assert_allclose(f_wm[x], wm[x], atol=0.08)


def test_ventricle_border_mixes_with_white_matter():
    """CSF next to WM only (no GM in its neighbourhood) is split into CSF and WM."""
    shape = (16, 8, 4)
    x = np.arange(shape[0])[:, None, None] * np.ones(shape)
    csf, wm = (x < 8) * 1.0, (x >= 8) * 1.0
    gm = np.zeros(shape)
    t1w = CSF_I * csf + WM_I * wm
    t1w[7] = CSF_I + 0.25 * (WM_I - CSF_I)
    f_gm, f_wm = intensity_fractions(t1w, gm, wm, csf, np.ones(shape, bool))
    np.testing.assert_array_equal(f_gm, 0)
    np.testing.assert_allclose(f_wm[7], 0.25, atol=1e-6)


def test_fractions_stay_inside_the_mask_the_tissue_total_and_the_borders():
    """On a noisy T1w only voxels next to another label change; none outside the mask."""
    rng = np.random.default_rng(0)
    csf, gm, wm = layered()
    t1w = CSF_I * csf + GM_I * gm + WM_I * wm + rng.normal(0, 5, csf.shape)
    mask = np.ones(csf.shape, bool)
    mask[:, :3] = False
    f_gm, f_wm = intensity_fractions(t1w, gm, wm, csf, mask)
    assert np.all(f_gm[~mask] == 0) and np.all(f_wm[~mask] == 0)
    assert np.all(f_gm + f_wm <= gm + wm + csf + 1e-6) and f_gm.dtype == np.float32
    changed = ((f_gm != gm) | (f_wm != wm)) & mask
    border = np.isin(np.indices(csf.shape)[0], [7, 8, 13, 14])
    assert changed[border].any() and not changed[~border].any()


@pytest.mark.usefixtures('one_torch_thread')
def test_sr_with_csf_recovers_partial_volume_cortex():
    """Cortex whose GM fraction falls smoothly into CSF, labelled hard (as Atropos does):
    passing the CSF map lets the guided detail follow the fraction, and the SR comes closer
    to the truth than with the hard GM/WM maps alone."""
    rng = np.random.default_rng(3)
    shape = (24, 24, 16)
    f_gm = ndimage.gaussian_filter((ndimage.gaussian_filter(rng.random(shape), 2.0) > 0.5)
                                   * 1.0, 1.0)
    wm = np.zeros(shape)
    wm[12:] = 1.0
    f_gm = np.where(wm > 0, 0.0, f_gm)
    f_csf = 1.0 - f_gm - wm
    truth = 60 * f_gm + 20 * wm
    t1w = (CSF_I * f_csf + GM_I * f_gm + WM_I * wm).astype(np.float32)
    gm_hard = ((f_gm >= f_csf) & (wm == 0)) * 1.0
    csf_hard = 1.0 - gm_hard - wm
    lr, lr_aff, hr_aff = acquire_4mm(truth)
    config = sr_fit.FitConfig(iters=0)
    inner = (slice(3, -3),) * 3

    def rmse(**tissue):
        out, _ = superres.super_resolve(lr, lr_aff, t1w, hr_aff, config=config, gm=gm_hard,
                                        wm=wm, **tissue)
        return float(np.sqrt(np.mean((out - truth)[inner] ** 2)))

    hard, split = rmse(), rmse(csf=csf_hard)
    assert split < 0.85 * hard  # 6.8 vs 8.6 ml/100 g/min
