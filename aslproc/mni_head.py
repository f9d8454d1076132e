"""The MNI152 2009 template head of the phantom, loaded from nilearn's package data.

nilearn ships the grey- and white-matter probability maps, the skull-stripped T1 template and
its brain mask (no download). CSF is the brain mask minus GM and WM. Because the template is
skull-stripped, a head shell is added from the distance to the brain (a thin extra-cerebral
CSF layer, then skull, then scalp), so that brain extraction on the synthetic T1w and M0 is a
real task. By default the tissues are hard labels at 1 mm (:func:`crisp_labels`).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from scipy import ndimage

from aslproc.phantom import SHELL_MM, Anatomy

logger = logging.getLogger(__name__)

#: Matrix of nilearn's 1 mm MNI152 2009 templates (checked when they are loaded).
MNI_SHAPE_1MM = (197, 233, 189)


def fov_mm(voxel_mm: float) -> np.ndarray:
    """Field of view (mm) of :func:`load_anatomy` at ``voxel_mm``, without loading it.

    >>> fov_mm(2.0).tolist()
    [196.0, 232.0, 188.0]
    """
    k = float(voxel_mm)
    return np.array([int(s // k) * k for s in MNI_SHAPE_1MM])


def _downsample(data: np.ndarray, affine: np.ndarray, voxel_mm: float):
    """Resample a 1 mm template to ``voxel_mm`` (block mean for integer factors)."""
    k = float(voxel_mm) / float(affine[0, 0])
    shape = tuple(int(s // k) for s in data.shape)
    new = affine.copy()
    new[:3, :3] *= k
    new[:3, 3] += affine[:3, :3] @ np.full(3, (k - 1) / 2)
    if abs(k - round(k)) < 1e-6 and round(k) >= 1:
        n = int(round(k))
        crop = data[: shape[0] * n, : shape[1] * n, : shape[2] * n]
        out = crop.reshape(shape[0], n, shape[1], n, shape[2], n).mean((1, 3, 5))
        return out.astype(np.float32), new
    if k > 1:
        data = ndimage.gaussian_filter(data, np.sqrt(k**2 - 1) / 2.355)
    out = ndimage.affine_transform(data, np.full(3, k), (k - 1) / 2, shape, order=1)
    return out.astype(np.float32), new


@functools.lru_cache(maxsize=1)
def _templates_1mm():
    from nilearn import datasets

    imgs = [load(resolution=1) for load in (datasets.load_mni152_gm_template,
                                            datasets.load_mni152_wm_template,
                                            datasets.load_mni152_template)]
    return tuple(np.asarray(i.dataobj, dtype=np.float32) for i in imgs) + (imgs[0].affine,)


def _layer(dist: np.ndarray, lo: float, hi: float, voxel: float) -> np.ndarray:
    """Fraction of each voxel, spanning distances (dist - voxel, dist], inside [lo, hi)."""
    return np.clip(np.minimum(dist, hi) - np.maximum(dist - voxel, lo), 0.0, voxel) / voxel


def crisp_labels(gm: np.ndarray, wm: np.ndarray, brain: np.ndarray) -> tuple:
    """Hard GM/WM/CSF masks (float32) from probability maps: the most likely class per voxel.

    The MNI152 probability maps are an average over 152 brains, so most 1 mm voxels are a
    mixture (71 % of brain voxels have 0.1 < GM < 0.9); a single brain is not. Hard labels at
    1 mm, averaged down to the working grid, give partial volume only at tissue borders, as
    in a real head and in label-based phantoms.

    >>> g, w, c = crisp_labels(np.array([.6, .3, .1]), np.array([.3, .6, .1]), np.ones(3))
    >>> g.tolist(), w.tolist(), c.tolist()
    ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    """
    inside = brain > 0.5
    csf = np.clip(np.float32(inside) - gm - wm, 0, 1)
    label = np.argmax(np.stack([gm, wm, csf]), axis=0)
    return tuple(np.float32(inside & (label == k)) for k in range(3))


@functools.lru_cache(maxsize=4)
def load_anatomy(voxel_mm: float = 2.0, crisp: bool = True) -> Anatomy:
    """The MNI152 2009 head at ``voxel_mm`` isotropic: tissue fractions, shell, T1 template.

    With ``crisp`` (default) the tissues are :func:`crisp_labels` at 1 mm before resampling;
    otherwise the template's soft probabilities are used as fractions.
    Cached per resolution; the arrays are read-only because they are shared between callers.
    The field of view is the template's (197 × 233 × 189 mm).

    >>> anat = load_anatomy(4.0)
    >>> anat.shape, anat.voxel_mm.tolist()
    ((49, 58, 47), [4.0, 4.0, 4.0])
    >>> bool(anat.brain.max() <= 1.0 + 1e-5 and anat.scalp.max() > 0.9)
    True
    """
    gm1, wm1, t11, affine1 = _templates_1mm()
    if gm1.shape != MNI_SHAPE_1MM:
        raise RuntimeError(f'unexpected MNI152 template shape {gm1.shape}')
    t11 = t11 / t11.max()  # nilearn's brain mask is this above 0.2 (load_mni152_brain_mask)
    if crisp:
        gm1, wm1, _ = crisp_labels(gm1, wm1, np.float32(t11 > 0.2))
    (gm, affine), (wm, _), (t1, _), (bm, _) = (
        _downsample(a, affine1, voxel_mm) for a in (gm1, wm1, t11, np.float32(t11 > 0.2)))
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.clip(bm - gm - wm, 0, 1)
    brain = gm + wm + csf
    dist = ndimage.distance_transform_edt(brain <= 0.5, sampling=float(voxel_mm))
    outside = np.clip(1.0 - brain, 0.0, 1.0) * (brain <= 0.5)
    shell = {k: (_layer(dist, lo, hi, float(voxel_mm)) * outside).astype(np.float32)
             for k, (lo, hi) in SHELL_MM.items()}
    arrays = dict(gm=gm, wm=wm, csf=csf + shell['csf'], skull=shell['skull'],
                  scalp=shell['scalp'], t1=t1)
    for arr in arrays.values():
        arr.flags.writeable = False
    logger.debug('MNI152 anatomy at %s mm: %s', voxel_mm, gm.shape)
    return Anatomy(affine=affine, **arrays)
