"""Head-motion correction of ASL series, motion parameters and framewise displacement.

ASL volumes differ in contrast by type (an M0 scan is bright and T1-weighted differently from
control/label images, ΔM and CBF volumes are noisy perfusion maps), so a single template fits
none of them well. Each *type group* is therefore aligned to its own mean (rigid, mean
squares), with one refinement pass against the re-averaged, sharper mean; then the M0 mean (and
any other group's) is aligned to the control/label mean (mutual information) and the two
transforms are composed, so every volume ends in the space of the control/label reference.
Without control/label volumes (a GE-style ΔM + M0 series, or a CBF series) the groups are two
unrelated contrasts, not a motion series: they are not registered to each other, and a group of
one volume is left as it is.

ΔM is ~1 % of the control signal, so a resampling blur or a noise-driven sub-voxel shift of one
volume of a pair leaves edge residues comparable to the perfusion signal. Volumes are resampled
with cubic B-splines (as sharp as Lanczos windowed sinc on the reference DRO, ten times faster),
and a volume whose estimated motion moves no corner of the brain's bounding box by more than
``min_displacement`` voxels (default 0.05, i.e. 0.15 mm at 3 mm) is passed through untouched:
such estimates are at the precision of the registration itself (~0.1 mm on 3×3×8 mm data), and
resampling would only add interpolation error. On the motion-free reference DRO this keeps
every volume bit-identical, where resampling them all cost 0.06 dB of CBF PSNR.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence

import ants
import nibabel as nib
import numpy as np

from aslproc.utils.motion_reliability import instability_ratio
from aslproc.utils.motion_residue import compensate_motion_residue
from aslproc.utils.pair_rejection import pair_volumes, reject_pairs
from aslproc.utils.pair_subtraction import subtract_at_midpoint
from aslproc.utils.registration import (
    ants_affine,
    ants_threads,
    apply_xfms,
    linear_register,
    read_xfm,
    rigid_params,
    to_ants,
    write_xfm,
)

logger = logging.getLogger(__name__)

MIN_DISPLACEMENT_VOX = 0.05
"""Largest displacement (voxels) below which a volume is not resampled (see module doc)."""

PARAM_NAMES = ('trans_x', 'trans_y', 'trans_z', 'rot_x', 'rot_y', 'rot_z')

_GROUP_OF = {
    'control': 'asl', 'label': 'asl', 'm0scan': 'm0', 'deltam': 'deltam', 'cbf': 'cbf',
    'norf': 'norf',
}  # fmt: skip
_REFERENCE_PRIORITY = ('asl', 'deltam', 'cbf', 'm0', 'norf')

# Within a type group (one contrast): mean squares at 1/4 and 1/2 resolution; finer levels
# cost 3× more and did not lower the error (~0.1 mm) on 3×3×8 mm simulated motion.
_FIRST_PASS = {
    'metric': 'MeanSquares', 'iterations': (50, 30), 'shrink': (4, 2), 'sigmas': (1.0, 0.5),
    'sampling': 0.5, 'step': 0.3,
}  # fmt: skip
_REFINE_PASS = {
    'metric': 'MeanSquares', 'iterations': (20,), 'shrink': (2,), 'sigmas': (0.5,),
    'sampling': 0.5, 'step': 0.1,
}  # fmt: skip
# Between group means (different contrasts): mutual information down to full resolution.
_BETWEEN_GROUPS = {
    'metric': 'Mattes', 'iterations': (50, 30, 10), 'shrink': (4, 2, 1),
    'sigmas': (1.0, 0.5, 0.0), 'sampling': 0.5, 'step': 0.2,
}  # fmt: skip


def framewise_displacement(params: np.ndarray, radius: float = 50.0) -> np.ndarray:
    """Framewise displacement (Power et al. 2012), mm.

    FD_t = |Δtrans_x| + |Δtrans_y| + |Δtrans_z| + radius·(|Δrot_x| + |Δrot_y| + |Δrot_z|),
    rotations in radians turned into arc length on a sphere of ``radius`` mm; FD_0 = 0.

    Parameters
    ----------
    params : ndarray (T, 6)
        trans_x, trans_y, trans_z (mm), rot_x, rot_y, rot_z (rad).

    Examples
    --------
    A 0.5 mm shift plus a 0.01 rad rotation: 0.5 + 50·0.01 = 1.0 mm.

    >>> p = np.zeros((3, 6)); p[1, 0] = 0.5; p[1, 4] = 0.01; p[2] = p[1]
    >>> framewise_displacement(p).tolist()
    [0.0, 1.0, 0.0]
    """
    params = np.asarray(params, dtype=float)
    if params.ndim != 2 or params.shape[1] != 6:
        raise ValueError(f'params must have shape (T, 6), got {params.shape}')
    diff = np.abs(np.diff(params, axis=0))
    fd = diff[:, :3].sum(axis=1) + radius * diff[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


def group_volumes(volume_types: Sequence[str]) -> dict[str, list[int]]:
    """Indices of the volumes of each contrast group, ordered by reference priority.

    >>> group_volumes(['m0scan', 'control', 'label', 'control', 'label'])
    {'asl': [1, 2, 3, 4], 'm0': [0]}
    """
    groups: dict[str, list[int]] = {}
    for i, vtype in enumerate(volume_types):
        key = _GROUP_OF.get(str(vtype).lower())
        if key is None:
            raise ValueError(f'unknown ASL volume type {vtype!r} at volume {i}')
        groups.setdefault(key, []).append(i)
    return {g: groups[g] for g in _REFERENCE_PRIORITY if g in groups}


def _align_group(images: list[ants.ANTsImage], workdir: str) -> tuple[list, ants.ANTsImage]:
    """Align same-contrast volumes to their mean, re-average, refine; matrices + final mean."""
    if len(images) == 1:
        return [np.eye(4)], images[0]
    mean0 = images[0].new_image_like(np.mean([im.numpy() for im in images], axis=0))
    first = [
        linear_register(mean0, im, os.path.join(workdir, f'p1_{i:04d}_'), **_FIRST_PASS)
        for i, im in enumerate(images)
    ]
    moved = [apply_xfms(im, mean0, [x]).numpy() for im, x in zip(images, first, strict=True)]
    mean1 = mean0.new_image_like(np.mean(moved, axis=0))
    final = [
        linear_register(
            mean1, im, os.path.join(workdir, f'p2_{i:04d}_'), initial=x, **_REFINE_PASS
        )
        for i, (im, x) in enumerate(zip(images, first, strict=True))
    ]
    return [read_xfm(x) for x in final], mean1


def _max_displacement_vox(matrix: np.ndarray, grid: ants.ANTsImage, box: np.ndarray) -> float:
    """Largest per-axis displacement (voxels) of the corners of an index-space box.

    Displacement is affine in position, so over a box it peaks at a corner.
    """
    corners = np.array([[box[a][c >> a & 1] for a in range(3)] for c in range(8)], dtype=float)
    to_lps = np.eye(4)
    to_lps[:3, :3] = np.asarray(grid.direction) * np.asarray(grid.spacing)
    to_lps[:3, 3] = grid.origin
    pts = to_lps @ np.c_[corners, np.ones(8)].T
    moved_idx = np.linalg.solve(to_lps, matrix @ pts)
    return float(np.abs(moved_idx[:3] - corners.T).max())


def _foreground_box(reference: np.ndarray) -> np.ndarray:
    """Index bounds (3, 2) of voxels above 10 % of the robust maximum (whole grid if none)."""
    positive = reference[reference > 0]
    if positive.size:
        fg = np.argwhere(reference > 0.1 * np.percentile(positive, 98))
        if len(fg):
            return np.stack([fg.min(axis=0), fg.max(axis=0)], axis=1)
    return np.stack([np.zeros(3), np.array(reference.shape) - 1], axis=1)


def correct_motion(
    data: np.ndarray,
    affine: np.ndarray,
    volume_types: Sequence[str],
    *,
    min_displacement: float = MIN_DISPLACEMENT_VOX,
    interpolation: str = 'bSpline',
    num_threads: int | None = None,
    pair_aware: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rigidly realign an ASL series, group by group (see the module docstring).

    With ``pair_aware`` (default), the ΔM of each control/label
    pair of which a volume was resampled is formed at the pair's own midpoint pose
    (:func:`aslproc.utils.pair_subtraction.subtract_at_midpoint`) and the control becomes
    the realigned label plus that ΔM.

    Parameters
    ----------
    data : ndarray (X, Y, Z, T)
    affine : ndarray (4, 4)
        RAS voxel-to-world affine.
    volume_types : sequence of str, length T
        BIDS aslcontext types (control, label, m0scan, deltam, cbf, noRF).
    min_displacement : float
        Voxels; volumes whose motion moves no brain-box corner further are not resampled.
    pair_aware : bool
        Subtract each moved pair at its midpoint pose (see above); ``params`` stay each
        volume's own estimate.

    Returns
    -------
    corrected : ndarray (X, Y, Z, T), float32
    params : ndarray (T, 6)
        trans_x/y/z (mm, RAS, at the centre of the grid) and rot_x/y/z (rad) of each volume
        relative to the reference; a positive trans_x means the head sits further right (+x)
        in that volume.
    reference : ndarray (X, Y, Z)
        Mean of the corrected control and label volumes (of the reference group if none).
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 4 or data.shape[3] != len(volume_types):
        raise ValueError(
            f'data must be 4D with one volume per type: {data.shape} vs {len(volume_types)} types'
        )
    groups = group_volumes(volume_types)
    workdir = tempfile.mkdtemp(prefix='aslproc_hmc_')
    try:
        with ants_threads(num_threads):
            images = [to_ants(data[..., t], affine) for t in range(data.shape[3])]
            totals, reference = _estimate(images, groups, workdir)
            grid = images[0]
            box = _foreground_box(reference.numpy())
            corrected, resampled = data.copy(), set()
            for t, matrix in enumerate(totals):
                if _max_displacement_vox(matrix, grid, box) > min_displacement:
                    xfm = write_xfm(matrix, os.path.join(workdir, f'total_{t:04d}.mat'))
                    moved = apply_xfms(images[t], grid, [xfm], interpolation=interpolation)
                    corrected[..., t] = moved.numpy()
                    resampled.add(t)
            if pair_aware:
                for c, lab in pair_volumes(volume_types):
                    if c in resampled or lab in resampled:
                        corrected[..., c] = corrected[..., lab] + subtract_at_midpoint(
                            images[c], images[lab], totals[c], totals[lab], grid, affine,
                            os.path.join(workdir, f'pair_{c:04d}_'), interpolation)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    center = (ants_affine(grid) @ np.r_[(np.array(data.shape[:3]) - 1) / 2.0, 1.0])[:3]
    params = np.array([rigid_params(m, center) for m in totals])
    ref_idx = groups[next(iter(groups))]
    logger.info(
        'Motion correction: %d volumes, max FD %.3f mm, %d resampled', data.shape[3],
        framewise_displacement(params).max(), len(resampled),
    )  # fmt: skip
    return corrected, params, corrected[..., ref_idx].mean(axis=3)


def _estimate(images, groups, workdir):
    """Composed transforms (reference → volume, LPS 4×4) of every volume + reference image."""
    totals: list[np.ndarray] = [np.eye(4)] * len(images)
    means = {}
    for g, idx in groups.items():
        sub = os.path.join(workdir, g)
        os.makedirs(sub)
        mats, means[g] = _align_group([images[i] for i in idx], sub)
        for i, m in zip(idx, mats, strict=True):
            totals[i] = m
    ref_group = next(iter(groups))
    for g, idx in groups.items():
        if g == ref_group:
            continue
        if ref_group != 'asl':
            logger.info('Motion correction: %s and %s volumes are different contrasts, not '
                        'registered to each other', ref_group, g)
            continue
        xfm = linear_register(
            means[ref_group], means[g], os.path.join(workdir, f'{g}_to_ref_'), **_BETWEEN_GROUPS
        )
        between = read_xfm(xfm)
        for i in idx:
            totals[i] = totals[i] @ between
    return totals, means[ref_group]


def write_confounds(params: np.ndarray, out_file: str | os.PathLike,
                    pair_columns: dict | None = None) -> str:
    """Write motion parameters + FD as a BIDS confounds TSV (first FD is ``n/a``).

    ``pair_columns`` (from :func:`pair_columns`) adds one column per name, with a value for
    the control and label volume of each pair and ``n/a`` for the other volumes.
    """
    fd = framewise_displacement(params)
    extra = pair_columns or {}
    lines = ['\t'.join((*PARAM_NAMES, 'framewise_displacement', *extra))]
    for t, row in enumerate(params):
        cells = [f'{v:.6g}' for v in row] + ['n/a' if t == 0 else f'{fd[t]:.6g}']
        cells += [extra[k].get(t, 'n/a') for k in extra]
        lines.append('\t'.join(cells))
    with open(out_file, 'w') as fobj:
        fobj.write('\n'.join(lines) + '\n')
    return os.fspath(out_file)


def pair_columns(volume_types: Sequence[str], deviations: np.ndarray, excluded: np.ndarray
                 ) -> dict:
    """Confounds columns of the pair test: ``pair_deviation`` (over the typical pair) and
    ``pair_excluded`` (1 when left out of every average), per volume of each pair.

    >>> pair_columns(['m0scan', 'control', 'label'], np.array([3.2]), np.array([True]))
    {'pair_deviation': {1: '3.2', 2: '3.2'}, 'pair_excluded': {1: '1', 2: '1'}}
    """
    dev, exc = {}, {}
    for k, (c, lab) in enumerate(pair_volumes(volume_types)):
        if k < len(deviations):
            dev[c] = dev[lab] = f'{deviations[k]:.3g}'
            exc[c] = exc[lab] = str(int(bool(excluded[k])))
    return {'pair_deviation': dev, 'pair_excluded': exc}


def motion_robust_steps(corrected: np.ndarray, affine: np.ndarray, volume_types: Sequence[str],
                        params: np.ndarray, reference: np.ndarray) -> tuple:
    """What follows realignment of a series that moved: motion-compensated subtraction
    (:mod:`aslproc.utils.motion_residue`), the pair test (:mod:`aslproc.utils.pair_rejection`)
    and the voxel test (:func:`aslproc.utils.motion_reliability.instability_ratio`), all
    inside the head (the reference above 5 % of its 99th percentile).

    ``params`` are :func:`correct_motion`'s, each volume's own: after the pair-aware
    subtraction the regression still sees each volume's displacement (taking the pairs'
    midpoints instead made it a no-op and cost dro-motion 0.1 dB and 4.7 points of GM bias).

    Returns the compensated series, the aslcontext with excluded pairs marked, the
    instability ratio map, and (pair deviations, excluded pairs).
    """
    head = reference > 0.05 * np.percentile(reference, 99)
    compensated, _ = compensate_motion_residue(corrected, affine, volume_types, params, head)
    types, deviations, excluded = reject_pairs(compensated, volume_types, head)
    ratio = instability_ratio(compensated, types, head)
    return compensated, types, ratio, (deviations, excluded)


def correct_motion_file(
    in_file: str | os.PathLike,
    volume_types: Sequence[str],
    out_file: str | os.PathLike,
    out_confounds: str | os.PathLike,
    out_reference: str | os.PathLike,
    out_m0ref: str | os.PathLike | None = None,
    out_instability: str | os.PathLike | None = None,
    *,
    num_threads: int | None = None,
    compensate: bool = True,
) -> tuple[str, str, str, str | None, str | None, list[str]]:
    """File layer of :func:`correct_motion` (pair-aware when ``compensate``), followed
    (``compensate``) by the motion-robust steps: the motion-compensated subtraction of
    :mod:`aslproc.utils.motion_residue`, the test of whole pairs
    (:mod:`aslproc.utils.pair_rejection`) and the test of each voxel
    (:func:`aslproc.utils.motion_reliability.instability_ratio`).

    Writes the corrected series (input header and affine), the confounds TSV (with the pair
    test's columns when it ran), the mean control/label reference and, when ``out_m0ref`` is
    given and the series has m0scan volumes, their corrected mean (returned as ``None``
    otherwise). ``out_instability`` gets each voxel's residual variance over the noise
    variance; it is all zeros (nothing assessed) when nothing was resampled or ``compensate``
    is off. The last item returned is the aslcontext with excluded pairs marked
    :data:`~aslproc.utils.pair_rejection.EXCLUDED` (the input's when nothing was tested).
    """
    img = nib.load(os.fspath(in_file))
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    corrected, params, reference = correct_motion(
        data, img.affine, volume_types, num_threads=num_threads, pair_aware=compensate
    )
    moved = bool(np.any(np.abs(corrected - data) > 0))
    ratio = np.zeros(reference.shape, dtype=np.float32)
    types, columns = [str(v) for v in volume_types], None
    if compensate and moved:
        corrected, types, ratio, (deviations, excluded) = motion_robust_steps(
            corrected, img.affine, volume_types, params, reference)
        columns = pair_columns(volume_types, deviations, excluded)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    nib.Nifti1Image(corrected, img.affine, header).to_filename(os.fspath(out_file))
    header3d = header.copy()
    header3d.set_data_shape(reference.shape)

    def save3d(volume, path):
        if path is None:
            return None
        nib.Nifti1Image(volume, img.affine, header3d).to_filename(os.fspath(path))
        return os.fspath(path)

    save3d(reference, out_reference)
    write_confounds(params, out_confounds, columns)
    m0_idx = group_volumes(volume_types).get('m0')
    m0ref = save3d(corrected[..., m0_idx].mean(axis=3), out_m0ref) if m0_idx else None
    return (os.fspath(out_file), os.fspath(out_confounds), os.fspath(out_reference), m0ref,
            save3d(ratio, out_instability), types)
