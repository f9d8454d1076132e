"""Adaptive partial-volume regression: the tissue structure without the noise, where the
data agree with it.

Perfusion at a voxel is, to a good approximation, the GM fraction times a local GM CBF plus
the WM fraction times a local WM CBF (Asllani et al., MRM 2008). Fitting those two local
levels by Gaussian-weighted least squares over a neighbourhood averages the noise of many
voxels while the tissue fractions keep the GM/WM borders sharp. A wide neighbourhood
removes more noise but spreads whatever the fractions do not explain (a focal deficit, a
hyperperfused spot, segmentation error) over its width.

So the width is chosen voxel by voxel, in the spirit of the intersection-of-confidence-
intervals and Lepski rules (Katkovnik 1999): widths are tried from narrow to wide, and a
voxel takes the widest fit such that it and every narrower one (i) fit the plain average
within what its noise allows, the noise level being known from the spread of the pairs, and
(ii) agree with the CNN output, which keeps focal lesions, as well as fits agree with it
elsewhere in the brain. Where either test fails (a lesion or a segmentation error the
fractions do not explain) the widening stops, down to keeping the CNN's value. The fits use
the plain average, whose noise is white and unbiased: the CNN's errors are spatially
correlated and would not average out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Neighbourhood widths (Gaussian SD, mm) tried from narrow to wide.
WIDTHS_MM = (3.0, 4.5, 6.0, 9.0, 12.0)
#: Misfit to the plain map allowed, in standard deviations of its (averaged) noise.
GAMMA = 2.0
#: Departure from the CNN map allowed, in robust SDs of that departure over the brain.
AGREE = 3.0
#: SD (mm) of the Gaussian over which misfit and departure are averaged before the tests.
POOL_MM = 4.5
#: Ridge added to the 2 × 2 normal equations, relative to their trace (keeps pure-CSF and
#: single-tissue neighbourhoods solvable).
RIDGE = 1e-5


def local_tissue_levels(y, gm, wm, mask, sigma_vox) -> tuple[np.ndarray, np.ndarray]:
    """Local GM and WM levels ``a(r)``, ``b(r)`` of ``y ≈ a·GM + b·WM`` in a Gaussian window.

    The linear-regression partial-volume model of Asllani et al. (MRM 2008): within each
    window the two levels are fitted by weighted least squares (with a small ridge, so that
    single-tissue and pure-CSF windows stay solvable). ``y``, ``gm``, ``wm``, ``mask``: arrays
    of one shape; ``sigma_vox``: the window's SD in voxels along each axis (0: no window along
    that axis). Voxels outside ``mask`` neither enter the fit nor get one (0).

    >>> gm = np.tile([1., .5, 0.], 8).reshape(1, 24) * np.ones((24, 1))
    >>> a, b = local_tissue_levels(60 * gm + 20 * (1 - gm), gm, 1 - gm, np.ones((24, 24)),
    ...                            (2., 2.))
    >>> round(float(a[12, 12]), 2), round(float(b[12, 12]), 2)
    (60.0, 20.0)
    """
    inside = mask > 0
    g, w, y = (np.where(inside, a, 0.0) for a in (gm, wm, y))

    def smooth(a):
        return ndimage.gaussian_filter(a, [float(s) for s in sigma_vox], mode='constant')

    gg, gw, ww = smooth(g * g), smooth(g * w), smooth(w * w)
    lam = RIDGE * (gg + ww) + 1e-12
    a11, a22 = gg + lam, ww + lam
    det = a11 * a22 - gw * gw
    u, v = smooth(g * y), smooth(w * y)
    level_gm, level_wm = (a22 * u - gw * v) / det, (a11 * v - gw * u) / det
    return np.where(inside, level_gm, 0.0), np.where(inside, level_wm, 0.0)


def local_tissue_fit(y, gm, wm, mask, sigma_vox):
    """The partial-volume model's prediction ``a(r)·GM + b(r)·WM`` (see
    :func:`local_tissue_levels`); 0 outside ``mask``.

    >>> gm = np.tile([1., .5, 0.], 8).reshape(1, 24) * np.ones((24, 1))
    >>> y = 60 * gm + 20 * (1 - gm)
    >>> fit = local_tissue_fit(y, gm, 1 - gm, np.ones_like(y), (2., 2.))
    >>> bool(np.abs(fit - y).max() < 0.01)
    True
    """
    level_gm, level_wm = local_tissue_levels(y, gm, wm, mask, sigma_vox)
    return np.where(mask > 0, gm * level_gm + wm * level_wm, 0.0)


def robust_sd(a) -> float:
    """Normal-consistent median absolute deviation.

    >>> robust_sd(np.array([-1., 0., 1., 100.]))
    1.4826
    """
    return float(1.4826 * np.median(np.abs(a - np.median(a))))


def kernel_energy(sigma_vox) -> float:
    """``Σ w²`` of the normalised Gaussian kernel: the noise variance it leaves, per unit.

    >>> round(kernel_energy((0.0,)), 3), round(kernel_energy((2.0,)), 3)
    (1.0, 0.141)
    """
    size = [int(2 * np.ceil(4 * s) + 1) for s in sigma_vox]
    delta = np.zeros(size)
    delta[tuple(n // 2 for n in size)] = 1.0
    return float((ndimage.gaussian_filter(delta, sigma_vox, mode='constant') ** 2).sum())


def adaptive_tissue_fit(y, gm, wm, mask, zooms, reference, noise_sd, widths_mm=WIDTHS_MM,
                        gamma=GAMMA, agree=AGREE, pool_mm=POOL_MM):
    """Partial-volume fit of the plain map ``y``, its width chosen voxel by voxel.

    Both sides of each test are averaged over a Gaussian of SD ``pool_mm`` first. A width
    is accepted at a voxel while, for it and every narrower width,

    - the misfit ``fit - y`` stays within ``gamma`` times what the white noise of ``y``
      (SD ``noise_sd``) leaves after that averaging: the data agree with the tissue model;
    - the departure ``fit - reference`` stays within ``agree`` robust SDs of that departure
      over the brain: the fit does not erase what the CNN saw (``agree=None``: no test).

    ``zooms``: voxel size (mm); ``reference``: the estimate kept where even the narrowest
    fit is rejected (the CNN output, units of ``y``). Returns ``(estimate, width_index)``:
    index ``k`` means the fit of width ``widths_mm[k - 1]``, 0 the reference; outside
    ``mask``, the reference.
    """
    inside = mask > 0
    reference = np.asarray(reference, dtype=float)
    pool = [pool_mm / z for z in zooms]
    weight = np.maximum(ndimage.gaussian_filter(inside.astype(float), pool, mode='constant'),
                        1e-6)

    def local_mean(a):
        return ndimage.gaussian_filter(np.where(inside, a, 0.0), pool, mode='constant') / weight

    limit = gamma * np.asarray(noise_sd) * np.sqrt(kernel_energy(pool))
    est = reference.copy()
    alive = inside.copy()
    chosen = np.zeros(np.shape(y), dtype=np.int16)
    for k, width in enumerate(widths_mm, start=1):
        fit = local_tissue_fit(y, gm, wm, mask, [width / z for z in zooms])
        alive &= np.abs(local_mean(fit - y)) <= limit
        if agree is not None:
            dep = local_mean(fit - reference)
            alive &= np.abs(dep) <= agree * robust_sd(dep[inside])
        est = np.where(alive, fit, est)
        chosen[alive] = k
    return np.where(inside, est, reference), chosen
