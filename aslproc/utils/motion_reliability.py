"""Voxels whose ΔM head motion has destroyed, and CBF there from the voxels around them.

Realignment and motion-compensated subtraction (:mod:`aslproc.utils.motion_residue`) leave
some voxels whose control and label values still swing with every pose far beyond the noise:
at the edge of the brain, and wherever a thick slice cuts a tissue border, a sub-millimetre
shift changes the static signal by tens of percent while ΔM is about 1 % of it. No regression
on the motion parameters predicts such a voxel to that precision (0.1 mm of registration error
is already several times ΔM there), so averaging its pairs gives values off by hundreds of
ml/100 g/min. Those voxels carry no usable perfusion measurement.

They are found from the data: the residual variance of each voxel's control and label values
around their own means (static tissue does not change between volumes, ΔM only between the
two types) is compared with the noise variance of the brain. The noise level is matched at
the 10th percentile of the residual variances inside the head (the quietest tenth of the
brain is noise-limited even in a moving series: :func:`noise_variance`), and a voxel is
*unreliable* when its ratio exceeds the χ² quantile of ``alpha`` (one in a thousand by
default) for its degrees of freedom. There, CBF is replaced by a precision-weighted local
mean of the CBF around it (:func:`fill_unreliable`: weights M0²/ratio), taken first from
neighbours whose mean static signal (the realigned mean control/label image of the same
series) is alike, an edge-preserving joint-bilateral interpolation that keeps grey matter
from being filled with the white matter beside it, and otherwise from a Gaussian neighbourhood
grown until every such voxel is reached. No tissue class or T1w enters: on the motion
reference case the unguided fill lowered grey-matter CBF by 7 %, the guided one by 2 %. A
series in which nothing moved is never assessed, so motion-free results stay bit-identical;
the filled voxels are counted in the QC table and drawn in the report.

This is the voxel-level counterpart of outlier rejection of whole pairs (SCORE, Dolui et al.
2017; ENABLE, Shirzadi et al. 2018): a measurement judged by its own variance, and the map
completed from the measurements that pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, stats

logger = logging.getLogger(__name__)

#: Significance of the excess variance above which a voxel's ΔM is not used.
ALPHA = 1e-3
#: Fewest control + label volumes for which the variance test is made.
MIN_VOLUMES = 6
#: Quantile of the residual variances at which they are matched to the noise distribution.
NOISE_QUANTILE = 0.10
#: Static signal over noise SD above which a voxel's variance measures the noise.
MIN_SNR = 5.0
#: Gaussian SD (voxels) of the unguided fill; doubled until every unreliable voxel is reached.
FILL_SD_VOX = 0.7
#: Spatial SD (voxels) of the guided fill, and the guide difference (fraction of its brain
#: median) at which a neighbour's weight falls to 1/√e.
GUIDED_SD_VOX, GUIDE_CONTRAST = 1.5, 0.03
#: Reliable weight a voxel's guided neighbourhood needs (fraction of a fully reliable one).
GUIDED_SUPPORT = 0.05


def residual_variance(series: np.ndarray, volume_types: Sequence[str]
                      ) -> tuple[np.ndarray, int]:
    """Variance of each voxel's control and label values around their own type means.

    Parameters
    ----------
    series : ndarray (X, Y, Z, T)
    volume_types : sequence of str, length T

    Returns
    -------
    variance : ndarray (X, Y, Z)
        Pooled within-type variance (sum of squares over ``n - 2`` degrees of freedom).
    n : int
        Number of control and label volumes.

    Examples
    --------
    >>> s = np.array([10., 12., 9., 11.]).reshape(1, 1, 1, 4)
    >>> v, n = residual_variance(s, ['control', 'label', 'control', 'label'])
    >>> float(v[0, 0, 0]), n     # (0.25 + 0.25 + 0.25 + 0.25) / (4 - 2)
    (0.5, 4)
    """
    kinds = np.array([str(v).lower() for v in volume_types])
    ss, n = np.zeros(series.shape[:3]), 0
    for kind in ('control', 'label'):
        vols = series[..., kinds == kind].astype(np.float64)
        if vols.shape[-1]:
            ss += ((vols - vols.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
            n += vols.shape[-1]
    return ss / max(n - 2, 1), n


def noise_variance(variance: np.ndarray, mask: np.ndarray, dof: int,
                   quantile: float = NOISE_QUANTILE, alpha: float = ALPHA) -> float:
    """Noise variance that puts the ``quantile`` of the noise-like voxels' ``variance`` (in
    ``mask``) where a pure-noise voxel's χ²(dof)/dof would be.

    Voxels hit by motion sit above the noise-like ones, so the quantile is taken of the
    noise-like fraction only: the estimate is repeated with the quantile scaled by the
    fraction of voxels that pass the χ² test of ``alpha`` at the previous estimate.

    >>> rng = np.random.default_rng(0)
    >>> v = rng.chisquare(10, 100000) / 10 * 4.0       # noise variance 4
    >>> v[:30000] *= 50                                  # 30 % of the voxels hit by motion
    >>> round(noise_variance(v, np.ones(v.shape, bool), 10), 1)
    4.0
    """
    vals = variance[mask > 0]
    if vals.size == 0:
        raise ValueError('no voxel in the mask to estimate the noise level from')
    unit = stats.chi2.ppf(quantile, dof) / dof
    limit = stats.chi2.isf(alpha, dof) / dof
    noise, passing = float(np.quantile(vals, quantile) / unit), 1.0
    for _ in range(5):
        passing = max(float(np.mean(vals <= limit * noise)), quantile)
        noise = float(np.quantile(vals, quantile * passing) / unit)
    return noise


def instability_ratio(series: np.ndarray, volume_types: Sequence[str], head: np.ndarray
                      ) -> np.ndarray:
    """Residual variance of every voxel over the noise variance of the ``head`` (1: noise-
    like).

    The noise level is estimated inside ``head`` (:func:`noise_variance`) where the mean
    static signal is at least :data:`MIN_SNR` times the noise SD: in magnitude images the
    variance of a dim voxel (scalp, or static tissue under background suppression) is below
    that of the noise (Rician statistics), and matching the quantile there would call the
    brain unstable. The ratio is given everywhere, the rim around the head included
    (resampling rings there). All zeros when there are fewer than :data:`MIN_VOLUMES` control
    and label volumes (nothing assessed).
    """
    variance, n = residual_variance(series, volume_types)
    zeros = np.zeros(series.shape[:3], dtype=np.float32)
    if n < MIN_VOLUMES or not np.any(head):
        return zeros
    kinds = np.array([str(v).lower() for v in volume_types])
    static = np.abs(series[..., (kinds == 'control') | (kinds == 'label')].mean(axis=-1))
    noise = noise_variance(variance, head, n - 2)
    for _ in range(3):
        bright = (head > 0) & (static > MIN_SNR * np.sqrt(max(noise, 0.0)))
        if bright.sum() < 100:
            break
        noise = noise_variance(variance, bright, n - 2)
    if not noise > 0:
        return zeros
    return np.maximum(variance / noise, 1e-6).astype(np.float32)


def unreliable_threshold(n_volumes: int, alpha: float = ALPHA) -> float:
    """Ratio above which a voxel is unreliable: the χ²(n − 2) quantile of ``1 − alpha``, / dof.

    >>> round(unreliable_threshold(24), 2)   # χ²(22) exceeds 48.27 once in a thousand
    2.19
    """
    dof = max(int(n_volumes) - 2, 1)
    return float(stats.chi2.isf(alpha, dof) / dof)


def unreliable_voxels(ratio: np.ndarray, volume_types: Sequence[str], mask: np.ndarray,
                      alpha: float = ALPHA) -> np.ndarray:
    """Voxels of ``mask`` whose instability ratio fails the χ² test (none if unassessed)."""
    n = sum(str(v).lower() in ('control', 'label') for v in volume_types)
    if n < MIN_VOLUMES:
        return np.zeros(ratio.shape, dtype=bool)
    return (mask > 0) & (ratio > unreliable_threshold(n, alpha))


def fill_unreliable(cbf: np.ndarray, ratio: np.ndarray, m0: np.ndarray,
                    unreliable: np.ndarray, mask: np.ndarray, guide: np.ndarray | None = None,
                    sd_vox: float = FILL_SD_VOX) -> np.ndarray:
    """CBF with the unreliable voxels replaced by the precision-weighted local mean.

    The variance of a voxel's CBF is its ΔM variance over M0², so every voxel of ``mask``
    contributes with weight ``M0² / max(ratio, 1)``: the unreliable ones too, with little
    weight, and the rim of the head, where M0 is small and CBF noisy, less than the brain
    inside. With a ``guide`` (the series' own mean static image), neighbours are first taken
    only where the guide is alike (:func:`_guided_pass`), so that a grey-matter voxel is not
    filled with the white matter beside it; voxels that this leaves without enough reliable
    neighbours, and every unreliable voxel without a guide, get a Gaussian mean (``sd_vox``
    voxels on each axis) doubled until the reliable voxels under it weigh at least a tenth of
    what a fully reliable neighbourhood would (a patch of unreliable voxels is not filled from
    itself). Reliable voxels are returned unchanged.

    >>> cbf = np.array([50., 50., 900., 50., 50.]).reshape(5, 1, 1)
    >>> ratio = np.array([1., 1., 400., 1., 1.]).reshape(5, 1, 1)
    >>> m0, bad = np.ones_like(cbf), ratio > 10
    >>> fill_unreliable(cbf, ratio, m0, bad, m0).ravel().astype(float).round(1).tolist()
    [50.0, 50.0, 52.8, 50.0, 50.0]

    (The neighbours at 1 and 2 voxels weigh 0.360 and 0.017 each, the voxel itself 1/400:
    (50·0.754 + 900/400) / (0.754 + 0.0025) = 52.8.)
    """
    if not np.any(unreliable):
        return cbf
    inside = (mask > 0).astype(np.float64)
    weight = inside * np.maximum(m0, 0.0).astype(np.float64) ** 2 / np.maximum(ratio, 1.0)
    trusted = weight * ~unreliable
    typical = float(np.median(trusted[trusted > 0])) if np.any(trusted > 0) else 0.0
    if typical <= 0:
        return cbf
    source = np.where(inside > 0, cbf, 0.0).astype(np.float64) * weight
    out = np.array(cbf, dtype=np.float64)
    todo = unreliable.copy()
    if guide is not None:
        num, den, support, reach = _guided_pass(source, weight, trusted, inside, guide)
        ok = todo & (support > GUIDED_SUPPORT * typical * reach)
        out[ok] = num[ok] / den[ok]
        todo &= ~ok
    sd = np.broadcast_to(np.asarray(sd_vox, dtype=float), (3,)).copy()
    for _ in range(7):
        if not np.any(todo):
            break
        num = ndimage.gaussian_filter(source, sd, mode='constant')
        den = ndimage.gaussian_filter(weight, sd, mode='constant')
        support = ndimage.gaussian_filter(trusted, sd, mode='constant')
        reach = ndimage.gaussian_filter(inside, sd, mode='constant')
        ok = todo & (support > 0.1 * typical * reach)
        out[ok] = num[ok] / den[ok]
        todo &= ~ok
        sd *= 2.0
    return out.astype(np.float32)


def _guided_pass(source, weight, trusted, inside, guide):
    """Joint-bilateral sums over a 5 × 5 × 3 window: spatial Gaussian of
    :data:`GUIDED_SD_VOX`, times the similarity of the guide (Gaussian of
    :data:`GUIDE_CONTRAST` × the guide's median in the mask). Returns the weighted sum of
    CBF, of the weights, of the reliable weights, and the spatial reach of the mask."""
    level = float(np.median(guide[inside > 0])) if np.any(inside > 0) else 0.0
    h = max(GUIDE_CONTRAST * abs(level), 1e-12)
    pad = ((2, 2), (2, 2), (1, 1))
    padded = [np.pad(a, pad) for a in (source, weight, trusted, inside, guide)]
    sums = [np.zeros(guide.shape) for _ in range(4)]
    nx, ny, nz = guide.shape
    for dx in range(-2, 3):
        for dy in range(-2, 3):
            for dz in range(-1, 2):
                spatial = np.exp(-(dx * dx + dy * dy + dz * dz) / (2 * GUIDED_SD_VOX ** 2))
                sl = (slice(2 + dx, 2 + dx + nx), slice(2 + dy, 2 + dy + ny),
                      slice(1 + dz, 1 + dz + nz))
                src, wgt, tru, ins, gd = (a[sl] for a in padded)
                k = spatial * np.exp(-((guide - gd) / h) ** 2 / 2)
                sums[0] += k * src
                sums[1] += k * wgt
                sums[2] += k * tru
                sums[3] += spatial * ins
    return tuple(sums)
