"""Partial-volume tissue fractions on the T1w grid from the T1w intensity.

Atropos's posteriors are nearly hard: a 1 mm voxel at the cortex/CSF border that is half
grey matter comes out as CSF with probability about 1, although its T1w intensity lies
between the CSF and GM means and says how much of it is GM. The super-resolution's
anatomy-guided detail regresses CBF on the GM/WM maps, so those voxels get CSF's CBF (near
zero) where the truth is about half GM's. On the project's simulator (3 mm ASL, noise-free
input, true labels known) they were 4.5 % of GM and half of the SR's squared error
(``benchmarks/sr_oracle.md``).

:func:`intensity_fractions` keeps the posteriors inside each tissue and splits every
border voxel (one with a voxel of another label in its 3×3×3 neighbourhood) into its own
class and one neighbouring class by a two-class linear mixture of the local class means of
the T1w: ``f = (T1w - mean_own) / (mean_other - mean_own)``, clipped to [0, 1]. The other
class lies on the side of the own class's mean where the voxel's intensity is (darker:
towards CSF, brighter: towards WM), is present in the neighbourhood, and is the nearest in
intensity order: a CSF voxel brighter than CSF mixes with GM next to cortex and with WM at a
ventricle; a GM voxel mixes with CSF or WM; a WM voxel with GM, or with CSF at a ventricle.
Class means are local (a Gaussian-weighted mean of the voxels labelled with posterior >
:data:`PURE` whose 26 neighbours share their label, so that the mixed border voxels do not
pull the means), so a residual bias field does not shift the fractions. The maps describe
the anatomy only; no CBF value enters them.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: SD (voxels) of the Gaussian window of the local class means.
MEAN_SIGMA = 8.0
#: Posterior above which a voxel (all neighbours of its label) is pure for the class means.
PURE = 0.9


def local_means(t1w: np.ndarray, pure: np.ndarray, sigma: float = MEAN_SIGMA) -> np.ndarray:
    """Gaussian-weighted mean of ``t1w`` over the ``pure`` voxels around every voxel.

    Where the window holds (almost) no pure voxel the class's global mean is used.

    >>> t = np.array([10.0, 10.0, 12.0, 30.0, 30.0])
    >>> local_means(t, np.array([1, 1, 1, 0, 0], bool), sigma=100.0).round(2).tolist()
    [10.67, 10.67, 10.67, 10.67, 10.67]
    """
    num = ndi.gaussian_filter(np.where(pure, t1w, 0.0).astype(np.float64), sigma, mode='constant')
    den = ndi.gaussian_filter(pure.astype(np.float64), sigma, mode='constant')
    glob = float(t1w[pure].mean())
    ok = den > 1e-3 * den.max()
    return np.where(ok, num / np.where(ok, den, 1.0), glob)


def intensity_fractions(
    t1w: np.ndarray, gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, mask: np.ndarray,
    *, sigma: float = MEAN_SIGMA,
) -> tuple[np.ndarray, np.ndarray]:
    """GM and WM fraction maps: the posteriors, with tissue-border voxels split by intensity.

    Parameters
    ----------
    t1w : ndarray
        The T1w image the posteriors were computed from (T1 contrast: CSF < GM < WM).
    gm, wm, csf : ndarray
        Tissue posteriors on the same grid.
    mask : ndarray of bool
        Brain mask; the fractions are 0 outside.

    Returns
    -------
    gm, wm : float32 ndarrays; ``gm + wm`` never exceeds ``gm + wm + csf`` of the input.

    A CSF voxel (posterior 1) whose intensity is halfway between the local CSF and GM means,
    next to cortex, becomes half GM; a GM voxel a quarter of the way towards the WM mean,
    next to WM, becomes a quarter WM:

    >>> t = np.zeros((7, 1, 1)); t[:, 0, 0] = [140, 140, 80, 60, 60, 40, 20]
    >>> c = np.zeros_like(t); c[5:] = 1
    >>> w = np.zeros_like(t); w[:2] = 1
    >>> f_gm, f_wm = intensity_fractions(t, 1 - c - w, w, c, np.ones(t.shape, bool),
    ...                                  sigma=100.0)
    >>> f_gm[:, 0, 0].tolist()
    [0.0, 0.0, 0.75, 1.0, 1.0, 0.5, 0.0]
    >>> f_wm[:, 0, 0].tolist()
    [1.0, 1.0, 0.25, 0.0, 0.0, 0.0, 0.0]
    """
    mask = np.asarray(mask) > 0
    out_gm, out_wm = np.zeros(mask.shape, np.float32), np.zeros(mask.shape, np.float32)
    if not mask.any():
        return out_gm, out_wm
    box = ndi.find_objects(mask.astype(np.int8))[0]  # nothing outside the mask takes part
    mask = mask[box]
    t1w = np.asarray(t1w, np.float64)[box]
    probs = np.stack([np.asarray(a, np.float64)[box] for a in (csf, gm, wm)])  # T1w order
    label = np.where(mask, np.argmax(probs, 0), -1)
    near = np.ones((3,) * t1w.ndim, bool)
    touches = [ndi.binary_dilation(label == k, near) for k in range(3)]
    others = [np.any([touches[j] for j in range(3) if j != k], 0) for k in range(3)]
    pure = [(probs[k] > PURE) & (label == k) & ~others[k] for k in range(3)]
    means = [local_means(t1w, pure[k], sigma) if pure[k].any() else None for k in range(3)]
    out, total = probs.copy(), probs.sum(0)
    for k in range(3):
        border = (label == k) & others[k]
        if means[k] is None or not border.any():
            continue
        done = np.zeros_like(border)
        for j in sorted((j for j in range(3) if j != k), key=lambda j: abs(j - k)):
            if means[j] is None:
                continue
            toward = t1w < means[k] if j < k else t1w > means[k]
            where = border & touches[j] & toward & ~done
            span = means[j] - means[k]
            frac = np.clip((t1w - means[k]) / np.where(np.abs(span) > 1e-6, span, np.inf), 0, 1)
            out[:, where] = 0.0
            out[j][where] = (frac * total)[where]
            out[k][where] = ((1 - frac) * total)[where]
            done |= where
    out_gm[box], out_wm[box] = (np.where(mask, out[k], 0) for k in (1, 2))
    return out_gm, out_wm
