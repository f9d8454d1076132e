"""From a motion-corrected ASL series to ΔM, M0 and CBF maps (array layer, no I/O).

The formulas themselves live in :mod:`aslproc.kinetics`; this module only picks
volumes by type, averages them and applies the M0 conventions of each M0Type.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from aslproc import kinetics

logger = logging.getLogger(__name__)

#: Voxels whose M0 is below this fraction of the robust brain M0 get CBF 0: there the
#: division by M0 amplifies noise without bound (edges of the head, signal voids).
M0_FLOOR_FRACTION = 0.05


def volume_indices(volume_types, kind: str) -> list[int]:
    """Indices of the volumes of one type.

    >>> volume_indices(['m0scan', 'control', 'label', 'label', 'control'], 'label')
    [2, 3]
    """
    return [i for i, v in enumerate(volume_types) if v == kind]


def pair_indices(volume_types) -> tuple[list[int], list[int], list[int]]:
    """Volumes of each pair: controls, labels (the k-th of each pair up) and deltam volumes.

    >>> pair_indices(['m0scan', 'label', 'control', 'label', 'control', 'deltam'])
    ([2, 4], [1, 3], [5])
    """
    ctl, lab = volume_indices(volume_types, 'control'), volume_indices(volume_types, 'label')
    n = min(len(ctl), len(lab))
    return ctl[:n], lab[:n], volume_indices(volume_types, 'deltam')


def pairwise_values(values, volume_types) -> np.ndarray:
    """A per-volume value (e.g. the delay) of each pair of :func:`pairwise_delta_m`, in its
    order: the control's value for a control/label pair, then each deltam volume's.

    >>> pairwise_values([0, 1.5, 1.5, 2.0, 2.0, 1.0],
    ...                 ['m0scan', 'label', 'control', 'label', 'control', 'deltam']).tolist()
    [1.5, 2.0, 1.0]
    """
    ctl, _, dm = pair_indices(volume_types)
    return np.asarray(values, dtype=float)[ctl + dm]


def pairwise_delta_m(data: np.ndarray, volume_types) -> np.ndarray:
    """ΔM of each control/label pair, shape (X, Y, Z, P), in acquisition order.

    The k-th control pairs with the k-th label, whatever order they came in, so
    label-first and control-first sequences both give control − label. ``deltam``
    volumes are appended as already-subtracted pairs.

    >>> d = np.stack([np.full((1, 1, 1), v) for v in (100., 99., 98., 100.)], -1)
    >>> pairwise_delta_m(d, ['control', 'label', 'label', 'control']).ravel().tolist()
    [1.0, 2.0]
    """
    ctl, lab, dm = pair_indices(volume_types)
    parts = []
    if ctl:
        parts.append(data[..., ctl] - data[..., lab])
    if dm:
        parts.append(data[..., dm])
    if not parts:
        raise kinetics.AslMetadataError('aslcontext lists no control/label pairs and no deltam')
    return np.concatenate(parts, axis=-1).astype(np.float32)


def mean_delta_m(data: np.ndarray, volume_types) -> np.ndarray:
    """Mean ΔM over all pairs (the plain-averaging estimate)."""
    return pairwise_delta_m(data, volume_types).mean(axis=-1)


def m0_map(data: np.ndarray, volume_types, m0: dict, m0_image: np.ndarray | None = None
           ) -> np.ndarray:
    """Equilibrium magnetization on the ASL grid for any M0Type.

    Parameters
    ----------
    data : ndarray (X, Y, Z, T)
        Motion-corrected ASL series.
    volume_types : sequence of str
        aslcontext of ``data``.
    m0 : dict
        ``m0_type``, ``m0_estimate``, ``m0_tr`` (s), ``t1_tissue`` (s), ``m0_scale``
        (see :func:`m0_params`).
    m0_image : ndarray, optional
        The separate M0 scan already on the ASL grid (3D or 4D) for ``Separate``.

    Returns
    -------
    ndarray (X, Y, Z)
        M0 × saturation-recovery correction × ``m0_scale``. ``Absent`` uses the mean
        control image, which equals M0 only for a sequence without background
        suppression whose control magnetization recovers from saturation during
        the TR: the same correction then applies (white paper, "M0 image").

    Examples
    --------
    >>> d = np.stack([np.full((1, 1, 1), v) for v in (50., 40., 39.)], -1)
    >>> p = dict(m0_type='Included', m0_tr=10.0, t1_tissue=1.33, m0_scale=2.0)
    >>> round(float(m0_map(d, ['m0scan', 'control', 'label'], p)[0, 0, 0]), 3)
    100.054
    """
    kind = m0['m0_type']
    shape = data.shape[:3]
    if kind == 'Included':
        raw = data[..., volume_indices(volume_types, 'm0scan')].mean(axis=-1)
    elif kind == 'Separate':
        if m0_image is None:
            raise kinetics.AslMetadataError('M0Type is Separate but no M0 image was given')
        raw = m0_image.mean(axis=-1) if m0_image.ndim == 4 else m0_image
    elif kind == 'Estimate':
        return np.full(shape, float(m0['m0_estimate']) * m0['m0_scale'], dtype=np.float32)
    elif kind == 'Absent':
        raw = data[..., volume_indices(volume_types, 'control')].mean(axis=-1)
    else:
        raise kinetics.AslMetadataError(f'unknown M0Type {kind!r}')
    corr = kinetics.m0_saturation_correction(m0['m0_tr'], m0['t1_tissue'])
    return (raw * corr * m0['m0_scale']).astype(np.float32)


def m0_params(spec) -> dict:
    """The M0 conventions of an :class:`~aslproc.bids.spec.AslSpec` as a plain dict."""
    return {
        'm0_type': spec.m0_type,
        'm0_estimate': spec.m0_estimate,
        'm0_tr': spec.m0_tr,
        't1_tissue': spec.t1_tissue,
        'm0_scale': spec.m0_scale,
    }


def m0_floor(m0: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Smallest M0 that is quantified: a fraction of the 98th percentile inside ``mask``.

    >>> m0_floor(np.array([0., 100., 100., 100.]))
    5.0
    """
    vals = m0[mask > 0] if mask is not None and np.any(mask > 0) else m0[m0 > 0]
    if vals.size == 0:
        return np.inf
    return float(M0_FLOOR_FRACTION * np.percentile(vals, 98))


def cbf_map(delta_m: np.ndarray, m0: np.ndarray, params: dict, mask: np.ndarray | None = None
            ) -> np.ndarray:
    """CBF (ml/100 g/min) from ΔM (3D, or 4D pairs) in ``mask``; 0 outside and where M0 is void.

    >>> p = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> cbf_map(np.ones((2, 1, 1)), np.array([100., 100.]).reshape(2, 1, 1), p,
    ...         np.array([1, 0]).reshape(2, 1, 1)).astype(float).round(2).ravel().tolist()
    [86.3, 0.0]
    """
    floor = m0_floor(m0, mask)
    m0b = m0[..., None] if delta_m.ndim == 4 else m0
    out = kinetics.safe_cbf(delta_m, m0b, params, floor)
    if mask is not None:
        keep = mask > 0
        out = np.where(keep[..., None] if delta_m.ndim == 4 else keep, out, 0.0)
    return out.astype(np.float32)


def sigma_voxels(fwhm_mm: float, zooms) -> list[float]:
    """Gaussian SD in voxels along each axis of a kernel of ``fwhm_mm`` FWHM.

    >>> [round(s, 3) for s in sigma_voxels(6.0, (2.0, 2.0, 3.0))]
    [1.274, 1.274, 0.849]
    """
    return [float(fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / float(z)) for z in zooms[:3]]


def smooth_in_mask(img: np.ndarray, mask: np.ndarray, fwhm_mm: float, zooms) -> np.ndarray:
    """Gaussian smoothing normalised inside ``mask`` so that the brain edge is not darkened.

    Computes ``G*(x·m) / G*m`` inside the mask (0 outside), with a Gaussian of the given
    FWHM in mm converted to voxels per axis. FWHM 0 returns the masked input.

    >>> m = np.ones((5, 1, 1)); x = np.full((5, 1, 1), 40.0)
    >>> smooth_in_mask(x, m, 6.0, (2, 2, 2)).ravel().round(3).tolist()
    [40.0, 40.0, 40.0, 40.0, 40.0]
    """
    w = (mask > 0).astype(np.float64)
    if fwhm_mm <= 0:
        return (img * w).astype(np.float32)
    sigma = sigma_voxels(fwhm_mm, zooms)
    num = ndimage.gaussian_filter(img * w, sigma, mode='constant')
    den = ndimage.gaussian_filter(w, sigma, mode='constant')
    with np.errstate(invalid='ignore', divide='ignore'):
        out = np.where(w > 0, num / np.maximum(den, 1e-6), 0.0)
    return out.astype(np.float32)
