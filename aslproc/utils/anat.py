"""Offline brain extraction and tissue segmentation of the T1w.

Brain mask: nilearn's MNI152 template (ICBM 2009a nonlinear symmetric, MNI152NLin2009aSym;
shipped with nilearn, already skull-stripped,
values in [0, 1], zero outside the brain) is registered to the subject T1w (affine, then a
quick SyN, at a coarse working resolution), and nilearn's brain mask (template > 0.2, which
holds brain and CSF) is carried over, thresholded and cleaned (holes filled, largest
component). As the template has no skull, the metric is restricted to the template brain
dilated by 10 mm: the dark rim of the template then meets CSF and skull of a whole-head T1w,
and scalp or neck play no part. Skull-stripped inputs work the same way.

Tissues: Atropos (ANTs) with K-means initialisation (3 classes) and a light MRF prior, inside
the brain mask, after N4 bias-field correction (T1w voxels ≤ 2 mm). Classes are named by mean
intensity (CSF < GM < WM, T1 contrast).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager

import ants
import nibabel as nib
import numpy as np
from ants.internal import get_pointer_string
from nilearn import datasets
from scipy import ndimage as ndi

from aslproc.utils.registration import (
    RANDOM_SEED,
    ants_threads,
    apply_xfms,
    linear_register,
    load_ants,
    save_like,
    smooth_downsample,
    to_ants,
)

logger = logging.getLogger(__name__)

_MASK_MARGIN_MM = 10.0
_AFFINE = {
    'transform': 'Affine', 'metric': 'Mattes', 'iterations': (200, 100, 50),
    'shrink': (4, 2, 1), 'sigmas': (2.0, 1.0, 0.0), 'sampling': 0.25, 'step': 0.2,
}  # fmt: skip
_SYN_ITERATIONS = (40, 20, 10)
_N4_CONVERGENCE = {'iters': [20, 20, 10], 'tol': 1e-4}


def _nilearn_image(loader, resolution: int) -> ants.ANTsImage:
    img = loader(resolution=resolution)
    return to_ants(np.asanyarray(img.dataobj, dtype=np.float32), img.affine)


def mni_template(res_mm: float) -> tuple[ants.ANTsImage, ants.ANTsImage]:
    """nilearn's MNI152 T1 template and filled brain mask, at about ``res_mm``.

    The 1 mm files serve working resolutions under 2 mm, the 2 mm files the others; coarser
    grids are anti-aliased and resampled from the 2 mm ones.
    """
    resolution = 1 if res_mm < 2 else 2
    template = _nilearn_image(datasets.load_mni152_template, resolution)
    mask = _nilearn_image(datasets.load_mni152_brain_mask, resolution)
    mask = mask.new_image_like(ndi.binary_fill_holes(mask.numpy() > 0).astype(np.float32))
    if res_mm > resolution * 1.1:
        template = smooth_downsample(template, res_mm)
        mask = ants.resample_image_to_target(mask, template, interp_type='linear')
    return template, mask


def _syn(fixed, moving, prefix, initial, fixed_mask) -> list[str]:
    """Quick SyN (Mattes MI) from an affine start; returns the forward transform list.

    ``antsRegistration`` also leaves ``<prefix>1InverseWarp.nii.gz``, the inverse of the SyN
    field (used, with the inverted affine, to resample subject images into the template).

    The metric mask is on the fixed side: ANTs finds no valid points for SyN with a moving mask.
    """
    fptr, mptr = get_pointer_string(fixed), get_pointer_string(moving)
    mask = fixed_mask.clone('unsigned char')  # keep a reference while ANTs runs
    levels = len(_SYN_ITERATIONS)
    args = [
        '--dimensionality', '3', '--float', '1', '--collapse-output-transforms', '1',
        '--output', prefix, '--random-seed', str(RANDOM_SEED), '--verbose', '0',
        '--winsorize-image-intensities', '[0.005,0.995]', '--use-histogram-matching', '0',
        '--initial-moving-transform', initial,
        '--transform', 'SyN[0.2,3,0]', '--metric', f'Mattes[{fptr},{mptr},1,32]',
        '--convergence', f'[{"x".join(map(str, _SYN_ITERATIONS))},1e-6,5]',
        '--shrink-factors', 'x'.join(str(2**k) for k in reversed(range(levels))),
        '--smoothing-sigmas', 'x'.join(str(k) for k in reversed(range(levels))) + 'vox',
        '--masks', f'[{get_pointer_string(mask)},NA]',
    ]  # fmt: skip
    ants.registration(args, None)
    return [f'{prefix}1Warp.nii.gz', f'{prefix}0GenericAffine.mat']


def normalize_template(
    subject: ants.ANTsImage, template: ants.ANTsImage, template_mask: ants.ANTsImage, workdir: str
) -> list[str]:
    """Register the template to the subject (affine + quick SyN) at the grid of ``subject``.

    Returns the transform list that resamples template-space images onto the subject grid
    (``ants.apply_transforms(fixed=subject, moving=template_image, transformlist=...)``).
    """
    spacing = float(np.mean(template.spacing))
    radius = max(1, int(round(_MASK_MARGIN_MM / spacing)))
    metric_mask = template_mask.new_image_like(
        ndi.binary_dilation(template_mask.numpy() > 0.5, iterations=radius).astype(np.float32)
    )
    affine = linear_register(
        subject, template, os.path.join(workdir, 'affine_'), initial='com',
        moving_mask=metric_mask, **_AFFINE,
    )  # fmt: skip
    subject_mask = apply_xfms(metric_mask, subject, [affine], interpolation='nearestNeighbor')
    return _syn(subject, template, os.path.join(workdir, 'syn_'), affine, subject_mask)


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Largest connected component with its holes filled (3D, then slice by slice).

    >>> m = np.zeros((7, 7, 7), bool); m[1:6, 1:6, 1:6] = True; m[3, 3, 3] = False
    >>> m[0, 0, 0] = True  # a speck
    >>> out = clean_mask(m)
    >>> int(out.sum()), bool(out[3, 3, 3]), bool(out[0, 0, 0])
    (125, True, False)
    """
    labels, n = ndi.label(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = ndi.sum(mask, labels, index=np.arange(1, n + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    filled = ndi.binary_fill_holes(largest)
    for axis in range(3):  # holes open to the border in 3D (e.g. at the foramen) per slice
        filled = np.stack([ndi.binary_fill_holes(s) for s in np.moveaxis(filled, axis, 0)], axis=0)
        filled = np.moveaxis(filled, 0, axis)
    return filled


def _warp_template_mask(t1w, work_res_mm, workdir, out_xfm_prefix) -> ants.ANTsImage:
    """Register the template at the working grid and warp its mask onto the T1w grid."""
    res = max(float(work_res_mm), float(min(t1w.spacing)))
    template, template_mask = mni_template(res)
    xfms = normalize_template(smooth_downsample(t1w, res), template, template_mask, workdir)
    _, fine_mask = mni_template(float(min(t1w.spacing)))
    if out_xfm_prefix is not None:
        inverse = xfms[0].replace('1Warp.nii.gz', '1InverseWarp.nii.gz')
        names = ('1Warp.nii.gz', '0GenericAffine.mat', '1InverseWarp.nii.gz')
        for src, name in zip((*xfms, inverse), names, strict=True):
            shutil.copyfile(src, f'{out_xfm_prefix}{name}')
    return apply_xfms(fine_mask, t1w, xfms, interpolation='linear')


def brain_mask(
    t1w_file: str | os.PathLike,
    out_file: str | os.PathLike,
    *,
    work_res_mm: float = 2.0,
    out_xfm_prefix: str | None = None,
    num_threads: int | None = None,
) -> str:
    """Skull-strip a T1w offline by warping nilearn's MNI152 brain mask (see module doc).

    Parameters
    ----------
    work_res_mm : float
        Isotropic grid (mm) on which the template is registered; the T1w voxel size if coarser.
    out_xfm_prefix : str, optional
        If given, keep the template → T1w transforms as ``<prefix>0GenericAffine.mat`` and
        ``<prefix>1Warp.nii.gz``, and the inverse SyN field as ``<prefix>1InverseWarp.nii.gz``
        (spatial normalization reuses this registration, :mod:`aslproc.utils.normalize`).

    Returns
    -------
    str
        ``out_file``: a uint8 mask on the T1w grid.
    """
    workdir = tempfile.mkdtemp(prefix='aslproc_brainmask_')
    try:
        with ants_threads(num_threads):
            t1w = load_ants(t1w_file)
            warped = _warp_template_mask(t1w, work_res_mm, workdir, out_xfm_prefix)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    mask = clean_mask(warped.numpy() > 0.5)
    logger.info('Brain mask: %.0f mL', mask.sum() * np.prod(t1w.spacing) / 1000.0)
    return save_like(t1w.new_image_like(mask.astype(np.float32)), t1w_file, out_file, np.uint8)


@contextmanager
def _private_tempdir():
    """Point :mod:`tempfile` at a fresh folder for the block, then delete it.

    ``ants.atropos`` writes its probability maps to ``mktemp`` names in the system temporary
    folder and never removes them (three volumes per call); this keeps them out of /tmp.
    """
    folder, previous = tempfile.mkdtemp(prefix='aslproc_atropos_'), tempfile.tempdir
    tempfile.tempdir = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def segment_image(
    t1w: ants.ANTsImage, mask: np.ndarray, *, mrf: float = 0.1, bias_correct: bool | None = None
) -> dict[str, np.ndarray]:
    """GM/WM/CSF probabilities of a T1w inside a mask (arrays on the T1w grid, 0 outside).

    Parameters
    ----------
    mrf : float
        Atropos MRF smoothing weight (neighbourhood 1 voxel).
    bias_correct : bool, optional
        N4 before Atropos. By default only for voxels of 2 mm or less: on coarser grids the
        B-spline field has too few voxels per knot span to tell bias from anatomy, and on the
        5 mm test head it lowered the GM agreement with the template (r 0.81 → 0.75).
    """
    mask_img = t1w.new_image_like(mask.astype(np.float32))
    if bias_correct is None:
        bias_correct = float(min(t1w.spacing)) <= 2.0
    if bias_correct:  # N4 on a ~5 mm grid: a smooth field, fast
        shrink = max(1, int(round(5.0 / float(min(t1w.spacing)))))
        t1w = ants.n4_bias_field_correction(
            t1w, mask=mask_img, shrink_factor=shrink, convergence=_N4_CONVERGENCE
        )
    with _private_tempdir():
        seg = ants.atropos(a=t1w, x=mask_img, i='Kmeans[3]', m=f'[{mrf},1x1x1]', c='[5,0]',
                           r=0)
        probs = [p.numpy() * mask for p in seg['probabilityimages']]
    data = t1w.numpy()
    means = [np.average(data[mask], weights=p[mask] + 1e-12) for p in probs]
    csf, gm, wm = (probs[k] for k in np.argsort(means))
    return {'GM': gm, 'WM': wm, 'CSF': csf}


def segment_tissues(
    t1w_file: str | os.PathLike,
    mask_file: str | os.PathLike,
    out_gm: str | os.PathLike,
    out_wm: str | os.PathLike,
    out_csf: str | os.PathLike,
    *,
    num_threads: int | None = None,
) -> tuple[str, str, str]:
    """File layer of :func:`segment_image`: three float32 probability maps on the T1w grid."""
    mask = np.asanyarray(nib.load(os.fspath(mask_file)).dataobj) > 0.5
    if not mask.any():
        raise ValueError(f'{mask_file}: the brain mask is empty')
    with ants_threads(num_threads):
        t1w = load_ants(t1w_file)
        if mask.shape != t1w.shape:
            raise ValueError(f'mask shape {mask.shape} differs from the T1w shape {t1w.shape}')
        probs = segment_image(t1w, mask)
    outs = (out_gm, out_wm, out_csf)
    for name, out in zip(('GM', 'WM', 'CSF'), outs, strict=True):
        save_like(t1w.new_image_like(probs[name].astype(np.float32)), t1w_file, out)
    return tuple(os.fspath(o) for o in outs)
