"""Spatial normalization of the T1w to MNI152NLin2009aSym, and resampling into output spaces.

The normalization reuses the registration that the skull-stripping already ran
(:func:`aslproc.utils.anat.brain_mask`): nilearn's skull-stripped template registered to the
T1w, affine then SyN (Mattes mutual information, metric restricted to the template brain
dilated by 10 mm, so that only the brain and its rim drive it), on a 2 mm grid. A second SyN
would double the anatomical run time for no gain on the simulator (see
``benchmarks/normalization_synth.py``). This module turns that registration into the two
normalization transforms and checks it.

Conventions are those of ANTs (:mod:`aslproc.utils.registration`): a transform named
``from-A_to-B`` resamples A-space images onto a B grid, so it maps B points to A points.
``from-T1w_to-MNI152NLin2009aSym`` is therefore the inverse affine followed by the inverse
SyN field, and ``from-MNI152NLin2009aSym_to-T1w`` the SyN field followed by the affine. Both
are written as ITK composite transforms (HDF5, ``.h5``), readable by ``antsApplyTransforms``.

ASL-grid maps reach the template in one interpolation: the list
``[from-T1w_to-template, from-asl_to-T1w]`` maps each template voxel to an ASL position once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import ants
import nibabel as nib
import numpy as np

from aslproc.utils.registration import ants_threads, apply_xfms, load_ants, save_like, to_ants
from aslproc.utils.template import template_image

logger = logging.getLogger(__name__)

#: Probability above which a voxel counts as grey matter in the normalization Dice.
DICE_THRESHOLD = 0.5


def gm_dice(warped_gm: np.ndarray, template_gm: np.ndarray,
            threshold: float = DICE_THRESHOLD) -> float:
    """Dice overlap of two probability maps thresholded at ``threshold``.

    >>> a = np.zeros((4, 4, 4)); a[:2] = 0.9
    >>> b = np.zeros((4, 4, 4)); b[1:3] = 0.8
    >>> gm_dice(a, b)
    0.5
    >>> gm_dice(np.zeros(3), np.zeros(3))
    0.0
    """
    x, y = np.asarray(warped_gm) > threshold, np.asarray(template_gm) > threshold
    total = int(x.sum() + y.sum())
    return round(2.0 * float((x & y).sum()) / total, 4) if total else 0.0


def compose_template_xfms(affine, warp, inverse_warp, out_to_template,
                          out_from_template) -> tuple[str, str]:
    """Write the T1w → template and template → T1w composite transforms (ITK HDF5).

    Parameters
    ----------
    affine, warp, inverse_warp : path-like
        The template → T1w registration: ``0GenericAffine.mat``, ``1Warp.nii.gz`` and
        ``1InverseWarp.nii.gz`` of ``antsRegistration`` (template moving, T1w fixed).
    out_to_template, out_from_template : path-like
        Where ``from-T1w_to-<template>`` and ``from-<template>_to-T1w`` go (``.h5``).
    """
    mat = ants.read_transform(os.fspath(affine))
    fwd = ants.read_transform(os.fspath(warp))
    inv = ants.read_transform(os.fspath(inverse_warp))
    ants.write_transform(ants.compose_ants_transforms([mat.invert(), inv]),
                         os.fspath(out_to_template))
    ants.write_transform(ants.compose_ants_transforms([fwd, mat]), os.fspath(out_from_template))
    return os.fspath(out_to_template), os.fspath(out_from_template)


def _to_template(image: ants.ANTsImage, reference: ants.ANTsImage, xfm: str,
                 interpolation: str) -> np.ndarray:
    return apply_xfms(image, reference, [xfm], interpolation=interpolation).numpy()


def normalize_t1w(t1w_file, gm_file, affine, warp, inverse_warp, *, res: int,
                  out_to_template, out_from_template, out_t1w, out_gm,
                  num_threads: int | None = None) -> dict:
    """Normalization transforms, the T1w and its GM map in the template, and their Dice.

    Writes the two composite transforms (:func:`compose_template_xfms`), the T1w and its GM
    probability resampled (linear) onto the template's ``res`` grid, and returns
    ``{'dice_gm': ...}``: the Dice of the warped GM (> 0.5) with the template's GM (> 0.5),
    the accuracy measure of ``benchmarks/normalization_synth.py``.
    """
    compose_template_xfms(affine, warp, inverse_warp, out_to_template, out_from_template)
    ref_img = template_image('T1', res)
    gm_img = template_image('GM', res)
    with ants_threads(num_threads):
        ref = to_ants(np.asanyarray(ref_img.dataobj), ref_img.affine)
        xfm = os.fspath(out_to_template)
        t1w = _to_template(load_ants(t1w_file), ref, xfm, 'linear')
        gm = np.clip(_to_template(load_ants(gm_file), ref, xfm, 'linear'), 0.0, 1.0)
    for data, out in ((t1w, out_t1w), (gm, out_gm)):
        nib.Nifti1Image(data.astype(np.float32), ref_img.affine).to_filename(os.fspath(out))
    dice = gm_dice(gm, np.asanyarray(gm_img.dataobj))
    logger.info('T1w -> template: Dice of GM (> %.1f) with the template GM %.3f',
                DICE_THRESHOLD, dice)
    return {'dice_gm': dice}


def resample_to_space(in_file, reference, xfms: Sequence[str], out_file, *,
                      interpolation: str = 'linear', fov: bool = False) -> str:
    """Resample an ASL-grid map onto ``reference`` through ``xfms`` in one interpolation.

    Parameters
    ----------
    in_file : path-like
        A 3D map (CBF, mask) on its own grid.
    reference : path-like
        An image on the output grid (the T1w, or the template at some ``res``).
    xfms : sequence of path-like
        ANTs transform list, output grid first (``[from-T1w_to-template, from-asl_to-T1w]``
        for the template, ``[from-asl_to-T1w]`` for the T1w). Points outside ``in_file``'s
        grid get 0.
    interpolation : str
        ANTs interpolator: ``'linear'`` for CBF (float32 out), ``'nearestNeighbor'`` for
        masks (uint8), ``'genericLabel'`` for label maps (int32).
    fov : bool
        Resample an image of ones on ``in_file``'s grid instead of its values (nearest
        neighbour): the ASL field of view in the output space.
    """
    moving = load_ants(in_file)
    if fov:
        moving = moving.new_image_like(np.ones(moving.shape, np.float32))
        interpolation = 'nearestNeighbor'
    out = apply_xfms(moving, load_ants(reference), [os.fspath(x) for x in xfms],
                     interpolation=interpolation)
    dtype = _DTYPES.get(interpolation, np.float32)
    if dtype != np.float32:
        out = out.new_image_like(np.rint(out.numpy()))
    return save_like(out, reference, out_file, dtype)


_DTYPES = {'nearestNeighbor': np.uint8, 'genericLabel': np.int32}
