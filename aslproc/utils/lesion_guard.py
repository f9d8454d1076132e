"""Corrections of the denoised CBF map from the plain average, which noise does not bias:
the tissue-mean gain (:func:`restore_tissue_means`) and the lesion guard.

The lesion guard: what a denoiser removed at lesion scale, beyond the noise, goes back.

A learned denoiser may remove noise; it must not remove perfusion the data show. The guard
compares the denoised CBF map with the plain average at the scale of a focal lesion
(Gaussian of ``fwhm_mm`` inside the brain): where the plain map departs from the denoised
one by more than ``k`` noise SDs at that scale, the excess is added back (soft threshold).
The noise SD at that scale is measured on the scan itself, from the difference of the means
of the two halves of its pairs (noise only, with the plain map's variance), smoothed in the
same way. Departures within the noise are left to the denoiser.
"""

from __future__ import annotations

import numpy as np

from aslproc.utils import cbf as cbfu
from aslproc.utils.pvreg import robust_sd

#: Lesion scale (mm FWHM) and threshold (noise SDs at that scale) of the default guard,
#: chosen on the lesion benchmark (benchmarks/RESULTS.md, issue #12).
GUARD_FWHM_MM = 10.0
GUARD_K = 1.0


def half_difference_cbf(pairs: np.ndarray, m0: np.ndarray, mask: np.ndarray, params: dict
                        ) -> np.ndarray:
    """Noise-only CBF map with the variance of the plain average: half the difference of
    the CBF of the first and the second half of the pairs (an odd last pair is left out).

    >>> pairs = np.stack([np.full((1, 1, 1), v) for v in (1.0, 3.0, 2.0, 6.0)], -1)
    >>> p = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> per_unit = float(cbfu.cbf_map(np.ones((1, 1, 1)), np.ones((1, 1, 1)), p,
    ...                               np.ones((1, 1, 1)))[0, 0, 0])
    >>> round(float(half_difference_cbf(pairs, np.ones((1, 1, 1)), np.ones((1, 1, 1)), p)
    ...             [0, 0, 0]) / per_unit, 6)  # ((1 + 3) / 2 - (2 + 6) / 2) / 2
    -1.0
    """
    half = pairs.shape[-1] // 2
    if half < 1:
        raise ValueError('the lesion guard needs at least 2 pairs')
    first = cbfu.cbf_map(pairs[..., :half].mean(-1), m0, params, mask)
    second = cbfu.cbf_map(pairs[..., half:2 * half].mean(-1), m0, params, mask)
    return (first - second) / 2.0


def noise_sd_at_scale(noise: np.ndarray, mask: np.ndarray, fwhm_mm: float, zooms) -> float:
    """Robust SD of a noise-only map smoothed inside ``mask`` over ``fwhm_mm`` (Gaussian):
    the noise of a lesion-sized mean, which the guard and the SR's QC number compare with.

    >>> noise = np.random.default_rng(0).normal(0, 10.0, (24, 24, 24))
    >>> 0.5 < noise_sd_at_scale(noise, np.ones(noise.shape), 10.0, (2.0, 2.0, 2.0)) < 1.5
    True
    """
    return robust_sd(cbfu.smooth_in_mask(noise, mask, fwhm_mm, zooms)[mask > 0])


def lesion_guard(denoised: np.ndarray, plain: np.ndarray, noise: np.ndarray,
                 mask: np.ndarray, zooms, fwhm_mm: float = GUARD_FWHM_MM,
                 k: float = GUARD_K, noise_mask: np.ndarray | None = None
                 ) -> tuple[np.ndarray, dict]:
    """The denoised map with the significant lesion-scale departures of ``plain`` restored.

    ``noise`` is a noise-only map with the plain map's variance
    (:func:`half_difference_cbf`); ``noise_mask`` (default ``mask``) is where it shows the
    noise: voxels filled after motion have the same ΔM in every pair, so their noise map is 0
    and would otherwise lower the threshold. Returns the map and a summary (the threshold in
    ml/100 g/min, the share of brain voxels changed and the mean absolute change there).

    A deficit that the denoiser filled in comes back; a residual within the noise does not:

    >>> rng = np.random.default_rng(0)
    >>> mask = np.ones((24, 24, 24))
    >>> noise = rng.normal(0, 10.0, mask.shape)
    >>> plain = 50.0 + noise
    >>> plain[8:16, 8:16, 8:16] -= 25.0  # an 8-voxel (16 mm) hypoperfused lesion
    >>> denoised = np.full(mask.shape, 50.0)  # a denoiser that erased it
    >>> out, info = lesion_guard(denoised, plain, rng.normal(0, 10.0, mask.shape), mask,
    ...                          (2.0, 2.0, 2.0))
    >>> bool(out[10:14, 10:14, 10:14].mean() < 35.0), bool(abs(out[0:4, 0:4, 0:4].mean() - 50) < 1)
    (True, True)
    """
    inside = mask > 0
    if fwhm_mm <= 0 or not inside.any():
        return denoised, {'threshold': 0.0, 'changed_pct': 0.0, 'mean_change': 0.0}
    residual = cbfu.smooth_in_mask(plain - denoised, mask, fwhm_mm, zooms)
    observed = inside if noise_mask is None else (noise_mask > 0) & inside
    threshold = k * noise_sd_at_scale(noise, observed, fwhm_mm, zooms)
    correction = np.sign(residual) * np.maximum(np.abs(residual) - threshold, 0.0)
    correction = np.where(inside, correction, 0.0)
    changed = correction[inside] != 0
    info = {'threshold': round(threshold, 3), 'changed_pct': round(100 * float(changed.mean()), 2),
            'mean_change': round(float(np.abs(correction[inside][changed]).mean()), 3)
            if changed.any() else 0.0}
    return (denoised + correction).astype(np.float32), info


def restore_tissue_means(cbf_den: np.ndarray, cbf_plain: np.ndarray, gm: np.ndarray,
                         wm: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, list]:
    """Give the denoised CBF the tissue means of the plain average, which is unbiased.

    Noise is zero-mean, so any systematic difference between the plain-average and the
    denoised map that follows the tissue fractions is bias the network introduced: it
    shrinks grey matter towards the brain mean (by 10-30 % on phantoms unlike its training
    data). The bias is a *gain*, so it is corrected as one: the denoised map is multiplied by
    ``1 + a·GM + b·WM + c``, with the three numbers chosen so that the GM-weighted, the
    WM-weighted and the plain means over the mask equal those of the plain map (moment
    matching: three equations, three unknowns). Three numbers estimated from the subject's
    own data, so tissue contrast is restored as measured, never painted from the T1w, and a
    focal lesion keeps its contrast *relative to its tissue*. (An additive correction, used
    first, lifted a GM deficit by the whole GM offset: on the public lesion case it turned a
    12 % contrast error of the network into 25 %. A least-squares fit of the same gain, used
    next, left part of the bias: −6.8 % GM CBF on the public motion case, against −2.5 %.)

    >>> gm = np.array([1., 1., 1., 0., 0.]); wm = 1 - gm; m = np.ones(5)
    >>> truth = np.array([60., 60., 24., 20., 20.])   # the third voxel: a GM deficit (0.4)
    >>> shrunk = truth * (0.85 * gm + 1.1 * wm)          # the network's tissue-dependent gain
    >>> out, coef = restore_tissue_means(shrunk, truth, gm, wm, m)
    >>> out.round(3).tolist()
    [60.0, 60.0, 24.0, 20.0, 20.0]
    """
    inside = mask > 0
    den = cbf_den[inside].astype(np.float64)
    weights = np.stack([gm[inside], wm[inside], np.ones(den.size)], axis=1)
    moments = weights.T @ (weights * den[:, None])
    target = weights.T @ (cbf_plain[inside] - den)
    coef = np.linalg.lstsq(moments, target, rcond=None)[0]
    gain = 1.0 + coef[0] * gm + coef[1] * wm + coef[2]
    return np.where(inside, cbf_den * gain, cbf_den).astype(np.float32), coef.tolist()
