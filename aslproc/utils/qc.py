"""Quality-control metrics of one ASL run (array layer, no I/O).

The metrics are those a reader of an ASLPrep report checks first: head motion,
how well the ASL brain matches the T1w brain, and whether tissue CBF is plausible.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from aslproc.utils.cbf import smooth_in_mask
from aslproc.utils.lesion_guard import GUARD_FWHM_MM, noise_sd_map

logger = logging.getLogger(__name__)

#: Probability above which a voxel counts as grey or white matter for the tissue means.
GM_THRESHOLD = 0.7
WM_THRESHOLD = 0.9


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Sørensen–Dice overlap of two binary masks (1 when both are empty).

    >>> dice(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0]))
    0.6666666666666666
    """
    a, b = a > 0, b > 0
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(a, b).sum() / total)


def intensity_mask(ref: np.ndarray) -> np.ndarray:
    """Head/brain mask of an ASL reference image from its intensities alone.

    Otsu-like threshold (mean of the two class means, iterated), hole filling and the
    largest connected component: independent of the registration, so its overlap with
    the T1w mask carried to ASL space measures the registration.
    """
    vals = ref[np.isfinite(ref)]
    thr = float(vals.mean())
    for _ in range(50):
        lo, hi = vals[vals <= thr], vals[vals > thr]
        if lo.size == 0 or hi.size == 0:
            break
        new = 0.5 * (lo.mean() + hi.mean())
        if abs(new - thr) < 1e-6 * max(abs(thr), 1.0):
            break
        thr = new
    mask = ndimage.binary_fill_holes(ref > thr)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, range(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


#: Scale (mm FWHM) at which a learned stage's departure from its data is measured: that of a
#: focal lesion, the default of the denoiser's lesion guard.
DEPARTURE_FWHM_MM = GUARD_FWHM_MM


def data_departure_sd(departure: np.ndarray, voxel_sd: np.ndarray, noise: np.ndarray,
                      mask: np.ndarray, zooms, fwhm_mm: float = DEPARTURE_FWHM_MM) -> float:
    """Largest departure of a learned stage's map from its data at lesion scale, in noise SDs.

    ``departure`` is what the stage changed in the values the data fix, on the ASL grid:
    for the denoiser, the plain-average minus the denoised CBF; for the super-resolution,
    its output resampled back onto the ASL grid minus the linear upsampling of its input
    resampled back in the same way (:func:`aslproc.utils.superres.data_departure`). It is
    smoothed inside ``mask`` over a lesion (Gaussian of ``fwhm_mm``) and divided, voxel by
    voxel, by the SD that the plain map's noise has at that scale there
    (:func:`aslproc.utils.lesion_guard.noise_sd_map` of the voxel noise SDs ``voxel_sd`` and
    the noise-only map ``noise``). The number is the largest absolute value in the brain.

    Noise alone reaches about 4 somewhere in a brain (the largest of some thousand
    independent lesion-sized means): a good denoiser without the lesion guard reads 3.4-4.3
    on the public cases. The guard puts back what lies beyond one SD, so the default denoised
    map reads about 1.3; the SR, which may add detail inside ASL voxels but not change them,
    reads near 0. A lesion erased or filled in, or tissue contrast painted over the data,
    gives several SDs (benchmarks/RESULTS.md, stop 33). What lies between the centres of
    thick slices is not seen (stop 32). NaN without noise.

    >>> rng = np.random.default_rng(0)
    >>> mask = np.ones((24, 24, 24)); zooms = (3.0, 3.0, 3.0)
    >>> voxel_sd = np.full(mask.shape, 10.0); noise = rng.normal(0, 10.0, mask.shape)
    >>> data_departure_sd(np.zeros(mask.shape), voxel_sd, noise, mask, zooms)
    0.0
    >>> erased = np.zeros(mask.shape); erased[9:14, 9:14, 9:14] = 25.0  # a 15 mm lesion
    >>> data_departure_sd(erased, voxel_sd, noise, mask, zooms) > 3
    True
    """
    inside = mask > 0
    if inside.sum() < 10 or not np.any(noise[inside]):
        return float('nan')
    sd = noise_sd_map(voxel_sd, noise, mask, fwhm_mm, zooms)
    usable = inside & (sd > 0)
    if not usable.any():
        return float('nan')
    smooth = smooth_in_mask(np.asarray(departure, np.float64), mask, fwhm_mm, zooms)
    return round(float(np.abs(smooth[usable] / sd[usable]).max()), 2)


def att_metrics(att: np.ndarray, gm: np.ndarray, wm: np.ndarray, asl_mask: np.ndarray
                ) -> dict:
    """Mean arrival time (s) in grey and white matter (same voxels as the tissue CBF).

    >>> att = np.array([1.0, 1.2, 1.6]).reshape(3, 1, 1)
    >>> gm = np.array([1., 1., 0.]).reshape(3, 1, 1)
    >>> att_metrics(att, gm, 1 - gm, np.ones((3, 1, 1)))
    {'mean_gm_att': 1.1, 'mean_wm_att': 1.6}
    """
    inside = asl_mask > 0
    out = {}
    for key, prob, thr in (('mean_gm_att', gm, GM_THRESHOLD), ('mean_wm_att', wm, WM_THRESHOLD)):
        vals = att[(prob > thr) & inside]
        out[key] = round(float(vals.mean()), 4) if vals.size else float('nan')
    return out


def qc_metrics(cbf: np.ndarray, gm: np.ndarray, wm: np.ndarray, fd: np.ndarray,
               asl_mask: np.ndarray, ref_mask: np.ndarray) -> dict:
    """One row of QC numbers for a CBF map on the ASL grid.

    Parameters
    ----------
    cbf : ndarray (X, Y, Z)
        CBF in ml/100 g/min.
    gm, wm : ndarray (X, Y, Z)
        Tissue probabilities resampled to the ASL grid.
    fd : ndarray (T,)
        Framewise displacement (mm); NaN entries are ignored.
    asl_mask, ref_mask : ndarray (X, Y, Z)
        T1w brain mask carried to the ASL grid, and the intensity mask of the ASL reference.

    Examples
    --------
    >>> cbf = np.array([60., 60., 20., -5.]).reshape(4, 1, 1)
    >>> gm = np.array([1., 1., 0., 1.]).reshape(4, 1, 1); wm = 1 - gm
    >>> row = qc_metrics(cbf, gm, wm, np.array([0., .2, .4]), gm + wm, gm + wm)
    >>> row['mean_gm_cbf'], row['mean_wm_cbf'], row['pct_negative_gm'], row['max_fd']
    (38.333, 20.0, 33.333, 0.4)
    """
    inside = asl_mask > 0
    gmv = cbf[(gm > GM_THRESHOLD) & inside]
    wmv = cbf[(wm > WM_THRESHOLD) & inside]
    fd = np.asarray(fd, dtype=float)
    fd = fd[np.isfinite(fd)]
    mean_gm = float(gmv.mean()) if gmv.size else float('nan')
    mean_wm = float(wmv.mean()) if wmv.size else float('nan')
    return {
        'mean_fd': round(float(fd.mean()) if fd.size else 0.0, 4),
        'max_fd': round(float(fd.max()) if fd.size else 0.0, 4),
        'dice_asl_t1w': round(dice(asl_mask, ref_mask), 4),
        'mean_gm_cbf': round(mean_gm, 3),
        'mean_wm_cbf': round(mean_wm, 3),
        'gm_wm_ratio': round(mean_gm / mean_wm, 3) if mean_wm not in (0.0,) and gmv.size
        and wmv.size else float('nan'),
        'pct_negative_gm': round(float(100.0 * (gmv < 0).mean()) if gmv.size else float('nan'),
                                 3),
        'n_gm_voxels': int(gmv.size),
        'n_wm_voxels': int(wmv.size),
    }
