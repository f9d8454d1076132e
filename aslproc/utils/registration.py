"""Rigid registration with ANTs (antspyx) and the ASL ↔ T1w mappings.

ANTs runs in-process through antspyx; there are no command-line tools. This module holds the
small ANTs layer that motion correction and anatomy share (image conversion, thread setting,
one configurable linear registration, ITK transform I/O), then the ASL → T1w registration and
the resampling in both directions.

Conventions (those of ``antsRegistration`` and ``antsApplyTransforms``): a transform written by
a registration of ``moving`` onto ``fixed`` maps *fixed* physical points (LPS, mm) to *moving*
points, so it is the one used to resample the moving image onto the fixed grid. The ASL → T1w
transform (derivative ``_from-asl_to-T1w_mode-image_xfm.mat``) therefore resamples ASL-space
images onto the T1w grid as is, and T1w-space maps onto the ASL grid when inverted
(``whichtoinvert=[True]``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager

import ants
import nibabel as nib
import numpy as np
from ants.internal import get_pointer_string
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

RANDOM_SEED = 20110903
"""Seed of ANTs' metric sampling, fixed so that reruns give the same transforms."""

_THREADS_ENV = 'ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS'
_RAS_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


@contextmanager
def ants_threads(num_threads: int | None = None):
    """Set ITK's thread count (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``) inside a block.

    The previous value is restored on exit. ITK reads the variable when it first creates its
    thread pool in a process, so the setting governs a fresh process (a nipype node) and is
    inert once ANTs has already run in the same process. ``None`` leaves it unchanged.
    """
    if num_threads is None:
        yield
        return
    old = os.environ.get(_THREADS_ENV)
    os.environ[_THREADS_ENV] = str(max(1, int(num_threads)))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(_THREADS_ENV, None)
        else:
            os.environ[_THREADS_ENV] = old


def to_ants(data: np.ndarray, affine: np.ndarray) -> ants.ANTsImage:
    """Make a 3D ANTs image (LPS physical space) from an array and its RAS affine.

    Examples
    --------
    >>> aff = np.diag([2.0, 3.0, 4.0, 1.0]); aff[:3, 3] = [10, 20, 30]
    >>> img = to_ants(np.zeros((2, 3, 4)), aff)
    >>> img.spacing, img.origin
    ((2.0, 3.0, 4.0), (-10.0, -20.0, 30.0))
    >>> bool(np.allclose(ants_affine(img), aff))
    True
    """
    lps = _RAS_LPS @ np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return ants.from_numpy(
        np.ascontiguousarray(data, dtype=np.float32),
        origin=lps[:3, 3].tolist(),
        spacing=spacing.tolist(),
        direction=lps[:3, :3] / spacing,
    )


def ants_affine(image: ants.ANTsImage) -> np.ndarray:
    """RAS voxel-to-world affine (4×4) of an ANTs image."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.direction) * np.asarray(image.spacing)[:3]
    lps[:3, 3] = image.origin[:3]
    return _RAS_LPS @ lps


def load_ants(path: str | os.PathLike) -> ants.ANTsImage:
    """Read a 3D NIfTI with nibabel (header-exact affine) into an ANTs image."""
    img = nib.load(os.fspath(path))
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f'{path}: expected a 3D image, got shape {data.shape}')
    return to_ants(data, img.affine)


def save_like(image: ants.ANTsImage, template: str | os.PathLike, out_file, dtype=np.float32):
    """Write an ANTs image with the header of a NIfTI on the same grid (``template``)."""
    ref = nib.load(os.fspath(template))
    header = ref.header.copy()
    header.set_data_dtype(dtype)
    out = nib.Nifti1Image(image.numpy().astype(dtype), ref.affine, header)
    out.to_filename(os.fspath(out_file))
    return os.fspath(out_file)


def read_xfm(path: str | os.PathLike) -> np.ndarray:
    """Read a linear ITK transform file as a 4×4 matrix on LPS points (fixed → moving)."""
    tx = ants.read_transform(os.fspath(path))
    params = np.asarray(tx.parameters, dtype=float)
    center = np.asarray(tx.fixed_parameters, dtype=float)
    mat = np.eye(4)
    mat[:3, :3] = params[:9].reshape(3, 3)
    mat[:3, 3] = params[9:12] + center - mat[:3, :3] @ center
    return mat


def write_xfm(matrix: np.ndarray, path: str | os.PathLike) -> str:
    """Write a 4×4 LPS matrix (fixed → moving points) as an ITK ``AffineTransform`` file."""
    matrix = np.asarray(matrix, dtype=float)
    params = np.concatenate([matrix[:3, :3].ravel(), matrix[:3, 3]])
    tx = ants.create_ants_transform(
        transform_type='AffineTransform',
        dimension=3,
        parameters=params.tolist(),
        fixed_parameters=[0.0, 0.0, 0.0],
    )
    ants.write_transform(tx, os.fspath(path))
    return os.fspath(path)


def linear_register(
    fixed: ants.ANTsImage,
    moving: ants.ANTsImage,
    out_prefix: str,
    *,
    transform: str = 'Rigid',
    metric: str = 'MeanSquares',
    initial: str = 'Identity',
    iterations: Sequence[int] = (50, 30, 20),
    shrink: Sequence[int] = (4, 2, 1),
    sigmas: Sequence[float] = (1.0, 0.5, 0.0),
    sampling: float = 0.25,
    step: float = 0.3,
    fixed_mask: ants.ANTsImage | None = None,
    moving_mask: ants.ANTsImage | None = None,
) -> str:
    """Run one multi-resolution linear ``antsRegistration`` stage; return the ``.mat`` path.

    Parameters
    ----------
    transform : {'Rigid', 'Similarity', 'Affine'}
    metric : {'MeanSquares', 'Mattes', 'GC'}
        MeanSquares for images of one contrast, Mattes mutual information across contrasts.
    initial : str
        ``'Identity'``, ``'com'`` (translate to align the intensity centres of mass), or the
        path of a transform to start from.
    iterations, shrink, sigmas : sequences of equal length
        Iterations, shrink factors and Gaussian sigmas (voxels) per level, coarse to fine.
    sampling : float
        Fraction of the fixed voxels (regular grid, seeded jitter) used by the metric.
    step : float
        Gradient step (largest shift in mm per iteration).
    """
    if not len(iterations) == len(shrink) == len(sigmas):
        raise ValueError('iterations, shrink and sigmas need one entry per level')
    fptr, mptr = get_pointer_string(fixed), get_pointer_string(moving)
    init = f'[{fptr},{mptr},1]' if initial == 'com' else initial
    bins = 32 if metric == 'Mattes' else 0
    # ANTs wants binary masks; keep references to the copies while ANTs runs
    binary = [
        m.clone('unsigned char') if m is not None else None for m in (fixed_mask, moving_mask)
    ]
    masks = [get_pointer_string(m) if m is not None else 'NA' for m in binary]
    args = [
        '--dimensionality', '3', '--float', '1', '--collapse-output-transforms', '1',
        '--output', out_prefix, '--random-seed', str(RANDOM_SEED), '--verbose', '0',
        '--winsorize-image-intensities', '[0.005,0.995]', '--use-histogram-matching', '0',
        '--initial-moving-transform', init, '--transform', f'{transform}[{step}]',
        '--metric', f'{metric}[{fptr},{mptr},1,{bins},Regular,{sampling}]',
        '--convergence', f'[{"x".join(str(int(i)) for i in iterations)},1e-7,5]',
        '--shrink-factors', 'x'.join(str(int(s)) for s in shrink),
        '--smoothing-sigmas', 'x'.join(f'{s:g}' for s in sigmas) + 'vox',
    ]  # fmt: skip
    if fixed_mask is not None or moving_mask is not None:
        args += ['--masks', f'[{masks[0]},{masks[1]}]']
    ants.registration(args, None)
    return f'{out_prefix}0GenericAffine.mat'


def apply_xfms(
    moving: ants.ANTsImage,
    reference: ants.ANTsImage,
    xfms: Sequence[str],
    *,
    invert: Sequence[bool] | None = None,
    interpolation: str = 'linear',
) -> ants.ANTsImage:
    """Resample ``moving`` onto ``reference`` through ``xfms`` (applied last to first)."""
    return ants.apply_transforms(
        fixed=reference,
        moving=moving,
        transformlist=list(xfms),
        interpolator=interpolation,
        whichtoinvert=list(invert) if invert is not None else [False] * len(xfms),
    )


def smooth_downsample(image: ants.ANTsImage, res_mm: float) -> ants.ANTsImage:
    """Gaussian anti-alias then resample to isotropic ``res_mm`` (no-op if already coarser)."""
    spacing = np.asarray(image.spacing)
    if np.all(spacing >= res_mm * 0.9):
        return image
    sigma = np.sqrt(np.clip(res_mm**2 - spacing**2, 0, None)) / 2.355 / spacing
    smooth = image.new_image_like(ndi.gaussian_filter(image.numpy(), sigma))
    return ants.resample_image(smooth, (res_mm,) * 3, use_voxels=False, interp_type=0)


_COREG_STAGES = (
    # coarse (8 and 4 mm at the 2 mm working grid): capture pose, sparse sampling is enough
    {
        'iterations': (200, 100),
        'shrink': (4, 2),
        'sigmas': (2.0, 1.0),
        'sampling': 0.5,
        'step': 0.2,
    },
    # fine (2 mm): denser sampling, smaller steps; ~0.2 mm mean error on the DRO T1w
    {'iterations': (30,), 'shrink': (1,), 'sigmas': (0.0,), 'sampling': 0.5, 'step': 0.1},
)


def _coregister(asl, t1w_file, t1w_mask_file, work_res_mm, tmpdir) -> str:
    """Two-stage Mattes rigid registration (files in ``tmpdir``); returns the transform path."""
    t1w = smooth_downsample(load_ants(t1w_file), work_res_mm)
    if t1w_mask_file is not None:
        mask = load_ants(t1w_mask_file)
        inside = ants.resample_image_to_target(mask, t1w, interp_type='linear').numpy() > 0.5
    else:  # head (or brain, if skull-stripped) foreground: 10 % of the robust maximum
        data = t1w.numpy()
        inside = ndi.binary_fill_holes(data > 0.1 * np.percentile(data[data > 0], 98))
    radius = max(1, int(round(12.0 / work_res_mm)))
    mask = t1w.new_image_like(ndi.binary_dilation(inside, iterations=radius).astype(np.float32))
    xfm = 'com'
    for stage, kwargs in enumerate(_COREG_STAGES):
        prefix = os.path.join(tmpdir, f'stage{stage}_')
        xfm = linear_register(
            t1w, asl, prefix, metric='Mattes', initial=xfm, fixed_mask=mask, **kwargs
        )
    return xfm


def register_asl_to_t1w(
    asl_ref_file: str | os.PathLike,
    t1w_file: str | os.PathLike,
    t1w_mask_file: str | os.PathLike | None = None,
    out_xfm: str | os.PathLike = 'from-asl_to-T1w_mode-image_xfm.mat',
    *,
    work_res_mm: float = 2.0,
    num_threads: int | None = None,
) -> str:
    """Rigidly register an ASL reference (M0 or mean control) to the T1w with mutual information.

    The T1w is the fixed image, anti-aliased and resampled to ``work_res_mm`` for speed. The
    start aligns the intensity centres of mass, then Mattes MI at 8, 4 and 2 mm (two stages, see
    ``_COREG_STAGES``). With ``t1w_mask_file`` the metric is computed in the brain mask dilated
    by 12 mm (brain edge and some surroundings, not the neck); without it, in the T1w
    foreground (head) dilated by 12 mm. The mask also makes it several times faster.
    Recovers poses up to ~10 mm / 10° off.

    Returns
    -------
    str
        ``out_xfm``: an ITK transform that maps T1w points to ASL points, i.e. the one that
        resamples ASL-space images onto the T1w grid (invert it for the other direction).
    """
    tmpdir = tempfile.mkdtemp(prefix='aslproc_coreg_')
    try:
        with ants_threads(num_threads):
            asl = load_ants(asl_ref_file)
            found = _coregister(asl, t1w_file, t1w_mask_file, work_res_mm, tmpdir)
        shutil.copyfile(found, out_xfm)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    logger.info('ASL -> T1w rigid transform written to %s', out_xfm)
    return os.fspath(out_xfm)


def resample_to_asl(
    t1w_space_file: str | os.PathLike,
    asl_ref_file: str | os.PathLike,
    xfm: str | os.PathLike,
    out_file: str | os.PathLike,
    interpolation: str = 'linear',
) -> str:
    """Bring a T1w-space map (mask, probseg) onto the ASL grid through the inverse of ``xfm``.

    ``xfm`` is the ``from-asl_to-T1w`` transform of :func:`register_asl_to_t1w`; it is applied
    with ``whichtoinvert=[True]``. Masks come back as fractions with ``'linear'``; the caller
    thresholds them (or asks for ``'nearestNeighbor'`` / ``'genericLabel'``).
    """
    moving = load_ants(t1w_space_file)
    out = apply_xfms(
        moving, load_ants(asl_ref_file), [os.fspath(xfm)], invert=[True],
        interpolation=interpolation,
    )  # fmt: skip
    return save_like(out, asl_ref_file, out_file)


def resample_to_t1w(
    asl_file: str | os.PathLike,
    t1w_file: str | os.PathLike,
    xfm: str | os.PathLike,
    out_file: str | os.PathLike,
    interpolation: str = 'linear',
) -> str:
    """Bring an ASL-space 3D map (CBF, reference) onto the T1w grid through ``xfm``."""
    out = apply_xfms(
        load_ants(asl_file), load_ants(t1w_file), [os.fspath(xfm)], interpolation=interpolation
    )
    return save_like(out, t1w_file, out_file)


def rigid_params(matrix: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Six rigid parameters of a 4×4 LPS matrix: RAS translations (mm) at ``center`` and
    rotations (rad) about the RAS x, y, z axes (``R = Rz·Ry·Rx``).

    Examples
    --------
    A 2 mm shift to the right and a 0.1 rad roll (about RAS +x), written in LPS:

    >>> ras = np.eye(4); ras[0, 3] = 2.0
    >>> c, s = np.cos(0.1), np.sin(0.1)
    >>> ras[1:3, 1:3] = [[c, -s], [s, c]]
    >>> lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras @ np.diag([-1.0, -1.0, 1.0, 1.0])
    >>> np.round(rigid_params(lps, np.zeros(3)), 6).tolist()
    [2.0, 0.0, 0.0, 0.1, 0.0, 0.0]
    """
    from scipy.spatial.transform import Rotation

    ras = _RAS_LPS @ np.asarray(matrix, dtype=float) @ _RAS_LPS
    center_ras = np.asarray(center, dtype=float)
    shift = ras[:3, :3] @ center_ras + ras[:3, 3] - center_ras
    angles = Rotation.from_matrix(ras[:3, :3]).as_euler('xyz')
    return np.concatenate([shift, angles])
