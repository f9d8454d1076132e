"""The super-resolved map, brought back to the ASL grid, equals the input (low-pass consistency).

"Brought back" is computed here independently of the package: trilinear interpolation of the
T1w-grid output at the ASL voxel centres (what resampling onto the ASL grid does), and the
same after a Gaussian point-spread function of FWHM one ASL voxel (the voxel means).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from aslproc.training import sr_fit
from aslproc.utils import superres

CONFIG = sr_fit.FitConfig(iters=10, patch=8, batch=2, features=(4, 8), critic_features=(4, 8),
                          lr=3e-3, proj_iters=8)


def _case(seed=0):
    rng = np.random.default_rng(seed)
    tissue = ndimage.gaussian_filter(rng.random((20, 20, 16)), 1.5)
    tissue = (tissue > np.median(tissue)).astype(np.float32)
    t1w = (100 - 40 * tissue + rng.normal(0, 1, tissue.shape)).astype(np.float32)
    lr = (40 + 20 * ndimage.gaussian_filter(rng.random((10, 10, 8)), 1.5)).astype(np.float32)
    hr_aff, lr_aff = np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([4.0, 4.0, 4.0, 1.0])
    lr_aff[:3, 3] = 1.0
    centre = np.array([20.0, 20.0, 16.0])
    ras = np.eye(4)  # T1w world → ASL world: 4° about z and 1 mm along x, about the centre
    ras[:3, :3] = Rotation.from_euler('z', 4, degrees=True).as_matrix()
    ras[:3, 3] = centre - ras[:3, :3] @ centre + [1.0, 0, 0]
    return lr, lr_aff, t1w, hr_aff, ras


def _back(hr, lr_aff, hr_aff, ras, lr_shape, psf_fwhm_mm=0.0):
    """Sample a T1w-grid map at the ASL voxel centres (optionally through a Gaussian PSF)."""
    if psf_fwhm_mm:
        hr = ndimage.gaussian_filter(hr, psf_fwhm_mm / 2.355 / 2.0, mode='nearest')
    to_hr = np.linalg.inv(hr_aff) @ np.linalg.inv(ras) @ lr_aff
    idx = np.indices(lr_shape).reshape(3, -1)
    pos = to_hr[:3, :3] @ idx + to_hr[:3, 3:]
    return ndimage.map_coordinates(hr, pos, order=1, mode='nearest').reshape(lr_shape)


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def test_output_brought_back_equals_input():
    lr, lr_aff, t1w, hr_aff, ras = _case()
    out, info = superres.super_resolve(lr, lr_aff, t1w, hr_aff, ras, config=CONFIG, levels=2)
    linear = superres.resample(lr, superres.t1w_to_asl_voxels(lr_aff, hr_aff, ras), t1w.shape)
    assert np.abs(out - linear).max() > 1e-3  # the fit did add detail
    inner = (slice(2, -2),) * 3  # ASL voxels whose neighbourhood lies inside the T1w field
    back = _back(out, lr_aff, hr_aff, ras, lr.shape)[inner]
    back_lin = _back(linear, lr_aff, hr_aff, ras, lr.shape)[inner]
    # resampled back, the output equals the linear upsampling resampled back ...
    assert np.abs(back - back_lin).max() < 2e-3 * lr.max()
    # ... which equals the input up to interpolation error on the 2 mm grid
    assert np.abs(back - lr[inner]).max() < 0.02 * lr.max()
    # the voxel means (PSF of one ASL voxel) are those of the linear upsampling
    psf = _back(out - linear, lr_aff, hr_aff, ras, lr.shape, psf_fwhm_mm=4.0)[inner]
    assert np.sqrt(np.mean(psf**2)) < 0.25 * np.sqrt(np.mean((out - linear) ** 2))
    assert info['consistency']['point_max_abs'] < 2e-3 * lr.max()
