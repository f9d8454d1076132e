"""The SR's QC number: how far its output, resampled back onto the ASL grid, departs from the
data at lesion scale, in noise SDs (:func:`aslproc.utils.qc.data_departure_sd`). The
denoiser's number, the same function on plain − denoised, is tested in test_qc_departure."""

from __future__ import annotations

import numpy as np
import pytest

from aslproc.training import sr_fit
from aslproc.utils import superres
from aslproc.utils.qc import data_departure_sd
from tests.test_sr_fit import TINY, acquire_4mm, block_lesion_case

pytestmark = pytest.mark.usefixtures('one_torch_thread')


#: Noise SD of the plain map of :func:`_brain_lesion_case` (ml/100 g/min).
PLAIN_SD = 8.0


def _departure_sd(out, lr, vox, seed):
    """The number, with the noise model of a plain map whose voxels have SD :data:`PLAIN_SD`
    (a noise-only map drawn with ``seed``)."""
    linear = superres.resample(lr, vox, out.shape)
    brain = lr != 0
    noise = np.where(brain, np.random.default_rng(seed).normal(0.0, PLAIN_SD, lr.shape), 0.0)
    return data_departure_sd(superres.data_departure(out, linear, lr, vox),
                             np.where(brain, PLAIN_SD, 0.0), noise, brain, (4.0, 4.0, 4.0))


def _brain_lesion_case(seed):
    """:func:`block_lesion_case` inside a brain that is zero beyond it, as real maps are."""
    lr, lr_aff, t1w, hr_aff, gm, wm, lesion, truth = block_lesion_case(
        seed, (24, 24, 16), 1.2, np.s_[8:16, 8:16, 5:11], 0.3)
    brain = np.zeros(gm.shape, bool)
    brain[3:-3, 3:-3, 2:-2] = True
    truth, gm, wm, t1w = (a * brain for a in (truth, gm, wm, t1w))
    lr, lr_aff, hr_aff = acquire_4mm(truth)
    lr[lr < 5.0] = 0.0  # the ASL brain mask
    return lr, lr_aff, t1w, hr_aff, brain, gm, wm


@pytest.mark.parametrize(('seed', 'iters'), [(5, 0), (6, 0), (5, 12)])
def test_departure_is_small_for_the_fit_and_large_for_a_tissue_painted_map(seed, iters):
    """A hypoperfused block (×0.3) that the anatomy does not show. The SR's output keeps the
    data, so its number stays well below the flag of 3 (0.05 and 0.06 here, 0.11 with GAN
    residuals; 5.0 and 5.5 without the projection that keeps it, ``proj_iters=0``); a GM/WM
    model of the same output (what T1 painting would give: the lesion erased) departs by
    5.1 to 6.3 noise SDs."""
    lr, lr_aff, t1w, hr_aff, brain, gm, wm = _brain_lesion_case(seed)
    # iters 0: the CPU default (guided detail); 12: with GAN residuals, as on a GPU
    cfg = sr_fit.FitConfig(**{**TINY.__dict__, 'iters': iters})
    out, _ = superres.super_resolve(lr, lr_aff, t1w, hr_aff, mask=brain, config=cfg, gm=gm,
                                    wm=wm)
    vox = superres.t1w_to_asl_voxels(lr_aff, hr_aff, np.eye(4))
    fit = _departure_sd(out, lr, vox, seed)
    tissue = np.stack([gm[brain], wm[brain]], 1)
    painted = out.copy()  # a GM/WM model of the output inside the brain
    painted[brain] = tissue @ np.linalg.lstsq(tissue, out[brain], rcond=None)[0]
    paint = _departure_sd(painted, lr, vox, seed)
    linear = superres.resample(lr, vox, t1w.shape)
    assert np.abs(out - linear).max() > 5.0  # the SR did add detail
    assert fit < 1.0
    assert paint > 3.0
