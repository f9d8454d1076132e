"""Partial-volume correction: GM and WM CBF maps, the opt-in output that BASIL and ExploreASL
users know (``--pvc``: ``desc-pvcGM_cbf``, ``desc-pvcWM_cbf``).

An ASL voxel of 3×3×6 mm mixes grey and white matter, so its CBF is a weighted mean of two
different perfusions. The linear-regression method of Asllani et al. (MRM 2008), as in
ExploreASL, assumes that GM CBF and WM CBF are constant within a small in-plane kernel and
fits them there from the voxels' GM and WM fractions: ``CBF(v) = P_GM(v)·CBF_GM + P_WM(v)·
CBF_WM``. The result is what a purely grey (or white) voxel would show.

This is a tissue-class model, so it is explicit and opt-in, never inside the default maps: a
focal deficit smaller than the kernel is spread over the kernel and shared between GM and WM,
and the maps inherit any segmentation or registration error. Voxels with less than
:data:`MIN_FRACTION` of a tissue get 0 in that tissue's map (its level is not determined
there).
"""

from __future__ import annotations

import numpy as np

from aslproc.utils.pvreg import local_tissue_levels

#: Gaussian kernel SD in-plane (mm): about the 5×5-voxel kernel of Asllani et al. at 3-4 mm
#: voxels. No kernel through the slices, which are thick (as the 5×5×1 kernel of ExploreASL).
KERNEL_SD_MM = 4.5
#: Smallest tissue fraction at which that tissue's CBF is reported.
MIN_FRACTION = 0.1


def partial_volume_correct(cbf: np.ndarray, gm: np.ndarray, wm: np.ndarray, mask: np.ndarray,
                           zooms, kernel_sd_mm: float = KERNEL_SD_MM,
                           min_fraction: float = MIN_FRACTION
                           ) -> tuple[np.ndarray, np.ndarray]:
    """GM and WM CBF maps from a CBF map and the tissue fractions on its grid.

    Parameters
    ----------
    cbf, gm, wm, mask : ndarray (X, Y, Z)
        Plain CBF, GM and WM fractions, quantification mask.
    zooms : sequence of float
        Voxel size (mm); the kernel acts along the first two axes only.

    Returns
    -------
    cbf_gm, cbf_wm : ndarray (X, Y, Z), float32

    Examples
    --------
    A checkerboard of pure and mixed voxels with GM 60 and WM 20: both levels come back
    wherever the tissue is present.

    >>> gm = np.indices((16, 16, 1)).sum(0) % 3 / 2.0
    >>> cbf = 60 * gm + 20 * (1 - gm)
    >>> g, w = partial_volume_correct(cbf, gm, 1 - gm, np.ones_like(gm), (3, 3, 6))
    >>> round(float(g[8, 8, 0]), 2), round(float(w[8, 7, 0]), 2), float(g[8, 7, 0])
    (60.0, 20.0, 0.0)
    """
    sigma = (kernel_sd_mm / zooms[0], kernel_sd_mm / zooms[1], 0.0)
    level_gm, level_wm = local_tissue_levels(cbf, gm, wm, mask, sigma)
    inside = mask > 0
    cbf_gm = np.where(inside & (gm >= min_fraction), level_gm, 0.0)
    cbf_wm = np.where(inside & (wm >= min_fraction), level_wm, 0.0)
    return cbf_gm.astype(np.float32), cbf_wm.astype(np.float32)
