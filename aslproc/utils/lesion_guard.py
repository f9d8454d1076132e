"""Corrections of the denoised CBF map from the plain average, which noise does not bias:
the tissue-mean gain (:func:`restore_tissue_means`) and the lesion guard.

The lesion guard: what a denoiser removed at lesion scale, beyond the noise, goes back.

A learned denoiser may remove noise; it must not remove perfusion the data show. The guard
compares the denoised CBF map with the plain average at the scale of a focal lesion
(Gaussian of ``fwhm_mm`` inside the brain): where the plain map departs from the denoised
one by more than ``k`` noise SDs at that scale, the excess is added back (soft threshold),
and again on what is left. The noise is modelled on the scan itself (:func:`plain_noise_model`,
:func:`noise_sd_map`): its ΔM noise, from the difference of the means of the two halves of
its pairs, times each voxel's CBF of a unit ΔM, carried through the smoothing. The QC numbers
of both learned stages count in the same noise SDs (:func:`aslproc.utils.qc.data_departure_sd`).
Departures within the noise are left to the denoiser.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from aslproc.utils import cbf as cbfu
from aslproc.utils.pvreg import robust_sd

#: Lesion scale (mm FWHM) and threshold (noise SDs at that scale) of the default guard,
#: chosen on the lesion benchmark (benchmarks/RESULTS.md, issue #12).
GUARD_FWHM_MM = 10.0
GUARD_K = 1.0
#: Most passes of the guard (it stops earlier once nothing is left beyond its threshold).
GUARD_PASSES = 8


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


def voxel_noise_sd(noise: np.ndarray, per_unit: np.ndarray, observed: np.ndarray
                   ) -> np.ndarray:
    """Noise SD of each voxel of the plain-average CBF map.

    The ΔM noise of a scan is about the same in every voxel; its CBF noise is not, because
    a voxel's CBF is its ΔM times ``per_unit`` (the CBF of ΔM = 1: the slice's delay factor
    over the voxel's M0). At the brain's edge M0 falls to a few per cent of its brain value,
    and one voxel there carries 10-20 times the median noise (dro-lesion: ``per_unit`` up to
    2,600 against a median of 132). So the ΔM noise SD is measured once, robustly, on the
    noise-only map ``noise`` (:func:`half_difference_cbf`) divided by ``per_unit`` where
    ``observed``, and multiplied back by ``per_unit``. 0 where ``per_unit`` is 0.

    >>> per_unit = np.array([1.0, 1.0, 10.0, 0.0])
    >>> noise = np.array([3.0, -1.0, -20.0, 0.0])  # ΔM noise 3, -1, -2: robust SD 1.4826
    >>> [round(float(v), 3) for v in voxel_noise_sd(noise, per_unit, per_unit > 0)]
    [1.483, 1.483, 14.826, 0.0]
    """
    good = (observed > 0) & (per_unit != 0)
    if not good.any():
        return np.zeros(np.shape(noise), np.float32)
    sd_dm = robust_sd(noise[good] / per_unit[good])
    return (sd_dm * np.abs(per_unit)).astype(np.float32)


def plain_noise_model(pairs: np.ndarray, m0: np.ndarray, mask: np.ndarray, params: dict,
                      unreliable: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The plain map's noise model: a noise-only CBF map (:func:`half_difference_cbf`), 0
    where it does not show the noise (``unreliable``: voxels that motion left to be filled,
    whose spread motion sets; or where no CBF is quantified), and the noise SD of each voxel
    (:func:`voxel_noise_sd`). ``params`` has the per-slice delays."""
    per_unit = cbfu.cbf_map(np.ones(m0.shape, np.float32), m0, params, mask)
    observed = (mask > 0) & (per_unit != 0)
    if unreliable is not None:
        observed &= ~np.asarray(unreliable, bool)
    noise = np.where(observed, half_difference_cbf(pairs, m0, mask, params), 0.0)
    return noise.astype(np.float32), voxel_noise_sd(noise, per_unit, observed)


def _gaussian_weights(sigma: float) -> np.ndarray:
    """The 1-D kernel of ``scipy.ndimage.gaussian_filter`` (truncated at 4 SDs)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def noise_sd_map(voxel_sd: np.ndarray, noise: np.ndarray, mask: np.ndarray, fwhm_mm: float,
                 zooms) -> np.ndarray:
    """SD, at each voxel, of the plain map's noise averaged over a lesion
    (:func:`aslproc.utils.cbf.smooth_in_mask` over ``fwhm_mm``).

    The voxel variances (``voxel_sd``, :func:`voxel_noise_sd`) are carried through the
    squared kernel of that smoothing, as for independent noise; the map is then scaled so
    that the noise-only map ``noise`` (0 where it shows no noise), smoothed the same way
    and divided by it, has unit robust SD where it is observed: noise that is correlated
    between voxels (a reconstruction filter, a 3D readout) averages out less than
    independent noise. On the public cases the scale is 0.99-1.03. 0 outside ``mask``.

    >>> rng = np.random.default_rng(0)
    >>> mask = np.ones((30, 30, 12)); zooms = (3.0, 3.0, 6.0)
    >>> voxel_sd = np.where(np.arange(12) < 6, 10.0, 30.0) * mask  # noisier upper half
    >>> noise = rng.normal(0.0, 1.0, mask.shape) * voxel_sd
    >>> sd = noise_sd_map(voxel_sd, noise, mask, 10.0, zooms)
    >>> z = cbfu.smooth_in_mask(noise, mask, 10.0, zooms) / sd
    >>> bool(0.8 < robust_sd(z[..., :5]) < 1.2), bool(0.8 < robust_sd(z[..., 7:]) < 1.2)
    (True, True)
    >>> bool(sd[15, 15, 10] > 2.5 * sd[15, 15, 1])
    True
    """
    inside = (mask > 0).astype(np.float64)
    sigma = cbfu.sigma_voxels(fwhm_mm, zooms)

    def carried(var):
        num, den = var * inside, inside.copy()
        for axis, s in enumerate(sigma):
            w = _gaussian_weights(s)
            num = ndimage.correlate1d(num, w ** 2, axis=axis, mode='constant')
            den = ndimage.correlate1d(den, w, axis=axis, mode='constant')
        return np.where(inside > 0, np.sqrt(np.maximum(num, 0.0)) / np.maximum(den, 1e-6), 0.0)

    var = np.asarray(voxel_sd, np.float64) ** 2
    observed = (noise != 0) & (inside > 0)
    predicted = carried(np.where(observed, var, 0.0))
    smoothed = cbfu.smooth_in_mask(np.where(observed, noise, 0.0), mask, fwhm_mm, zooms)
    usable = observed & (predicted > 0)
    scale = robust_sd(smoothed[usable] / predicted[usable]) if usable.sum() > 10 else 1.0
    return (scale * carried(var)).astype(np.float32)


def lesion_guard(denoised: np.ndarray, plain: np.ndarray, noise: np.ndarray,
                 voxel_sd: np.ndarray, mask: np.ndarray, zooms,
                 fwhm_mm: float = GUARD_FWHM_MM, k: float = GUARD_K,
                 passes: int = GUARD_PASSES) -> tuple[np.ndarray, dict]:
    """The denoised map with the significant lesion-scale departures of ``plain`` restored.

    ``noise`` and ``voxel_sd`` are the plain map's noise model (:func:`plain_noise_model`:
    a noise-only map, 0 where the pairs do not show the noise, and the noise SD of each
    voxel). The threshold is ``k`` times the SD of that noise at lesion scale, voxel by
    voxel (:func:`noise_sd_map`): one SD for the whole brain would be set by its noisy edge,
    too high inside it (a filled lesion left alone) and too low at the edge (noise put back
    in 10 mm blobs). What lies beyond the threshold is added back, and again on what is left
    (``passes`` at most): one pass adds the smoothed excess, which for a lesion the size of
    the kernel is about half of it. Returns the map and a summary (the median threshold in
    ml/100 g/min, the passes made, the share of brain voxels changed and the mean absolute
    change there).

    A deficit that the denoiser filled in comes back; a residual within the noise does not:

    >>> rng = np.random.default_rng(0)
    >>> mask = np.ones((24, 24, 24)); voxel_sd = np.full(mask.shape, 10.0)
    >>> plain = 50.0 + rng.normal(0, 10.0, mask.shape)
    >>> plain[8:16, 8:16, 8:16] -= 25.0  # an 8-voxel (16 mm) hypoperfused lesion
    >>> denoised = np.full(mask.shape, 50.0)  # a denoiser that erased it
    >>> out, info = lesion_guard(denoised, plain, rng.normal(0, 10.0, mask.shape), voxel_sd,
    ...                          mask, (2.0, 2.0, 2.0))
    >>> bool(out[10:14, 10:14, 10:14].mean() < 30.0), bool(abs(out[0:4, 0:4, 0:4].mean() - 50) < 1)
    (True, True)
    """
    inside = mask > 0
    if fwhm_mm <= 0 or not inside.any() or not np.any(noise[inside]):
        return denoised, {'threshold': 0.0, 'passes': 0, 'changed_pct': 0.0, 'mean_change': 0.0}
    threshold = k * noise_sd_map(voxel_sd, noise, mask, fwhm_mm, zooms)
    out = np.asarray(denoised, np.float64)
    done, settled = 0, 0.01 * np.median(threshold[inside])
    while done < passes:
        residual = cbfu.smooth_in_mask(plain - out, mask, fwhm_mm, zooms)
        excess = np.where(inside, np.sign(residual) * np.maximum(np.abs(residual) - threshold,
                                                                 0.0), 0.0)
        out, done = out + excess, done + 1
        if np.abs(excess).max() <= settled:
            break
    correction = (out - denoised)[inside]
    changed = correction != 0
    info = {'threshold': round(float(np.median(threshold[inside])), 3), 'passes': done,
            'changed_pct': round(100 * float(changed.mean()), 2),
            'mean_change': round(float(np.abs(correction[changed]).mean()), 3)
            if changed.any() else 0.0}
    return out.astype(np.float32), info


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
