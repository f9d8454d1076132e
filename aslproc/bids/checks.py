"""Checks of the ASL images themselves, after the metadata have been parsed into an AslSpec.

:func:`aslproc.bids.metadata.build_spec` checks the sidecars; this module opens the
NIfTI files and checks that they agree with them (a 4D series with one volume per
aslcontext row, finite voxels, an M0 that can be brought onto the ASL grid), so that
a broken input fails before any workflow runs, with the file named.
"""

from __future__ import annotations

import gzip
import logging
import zlib

import nibabel as nb
import numpy as np

from aslproc.bids.spec import AslSpec
from aslproc.kinetics import AslMetadataError

logger = logging.getLogger(__name__)


#: What reading a damaged image raises: a gzip cut short (EOFError), corrupt compressed data
#: (zlib.error, gzip.BadGzipFile is an OSError), fewer bytes than the header promises
#: (ValueError from numpy or nibabel), an unreadable header (ImageFileError).
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nb.filebasedimages.ImageFileError)


def _describe(err: Exception) -> str:
    """What is wrong with a file, in words, from the error reading it raised."""
    if isinstance(err, EOFError) or 'ended before' in str(err) or 'end-of-stream' in str(err):
        return 'the file ends early (truncated, e.g. a copy cut short)'
    if isinstance(err, zlib.error) or 'gzip' in str(err).lower() or 'CRC' in str(err):
        return f'the compressed data are corrupt ({err})'
    return str(err) or type(err).__name__


def gzip_problem(path) -> str | None:
    """What is wrong with a ``.gz`` file's compressed stream, read to its end (a truncated
    copy, corrupt data, a failed CRC check), or None when it is whole or not gzipped.

    Reading the stream to its end is what verifies the CRC: nibabel stops at the last voxel.
    """
    if not str(path).endswith('.gz'):
        return None
    try:
        with gzip.open(path, 'rb') as fobj:
            while fobj.read(1 << 22):
                pass
    except _READ_ERRORS as err:
        return _describe(err)
    return None


def _load(path, what: str):
    """The image header, or a one-line error naming the file when it cannot be opened or its
    compressed stream is damaged."""
    problem = gzip_problem(path)
    if problem:
        raise AslMetadataError(f'{path}: cannot read the {what} image: {problem}')
    try:
        return nb.load(str(path))
    except _READ_ERRORS as err:
        raise AslMetadataError(f'{path}: cannot read the {what} image: {_describe(err)}'
                               ) from err


def read_all(img, path, what: str) -> None:
    """Read every voxel once (with :func:`count_nonfinite`), so that a truncated or corrupt
    file fails here, before any work starts, with the file named and no traceback."""
    try:
        bad = count_nonfinite(img)
    except _READ_ERRORS as err:
        raise AslMetadataError(f'{path}: cannot read the {what} image data: {_describe(err)}'
                               ) from err
    if bad:
        raise AslMetadataError(f'{path}: the {what} image has {bad} NaN or infinite voxel(s) '
                               f'out of {int(np.prod(img.shape))}; replace them (e.g. with 0)')


def count_nonfinite(img, max_bytes: int = 1 << 30) -> int:
    """Number of NaN or infinite voxels of an image.

    Images up to ``max_bytes`` are read at once (slicing a gzipped file volume by
    volume decompresses it again for each volume); larger ones one volume at a time.

    >>> data = np.ones((2, 2, 1, 3), dtype=np.float32)
    >>> data[0, 0, 0, 1] = np.nan
    >>> count_nonfinite(nb.Nifti1Image(data, np.eye(4)))
    1
    >>> count_nonfinite(nb.Nifti1Image(data, np.eye(4)), max_bytes=0)
    1
    """
    size = int(np.prod(img.shape)) * img.get_data_dtype().itemsize
    if img.ndim != 4 or size <= max_bytes:
        return int(np.count_nonzero(~np.isfinite(np.asanyarray(img.dataobj))))
    return sum(int(np.count_nonzero(~np.isfinite(np.asanyarray(img.dataobj[..., i]))))
               for i in range(img.shape[3]))


def has_usable_affine(img) -> bool:
    """Whether the header says the affine maps voxels to scanner space (sform/qform code > 0).

    >>> img = nb.Nifti1Image(np.zeros((2, 2, 2), dtype=np.float32), np.eye(4))
    >>> has_usable_affine(img)
    True
    >>> img.header.set_sform(None, code=0); img.header.set_qform(None, code=0)
    >>> has_usable_affine(img)
    False
    """
    header = img.header
    try:
        return int(header['sform_code']) > 0 or int(header['qform_code']) > 0
    except (KeyError, ValueError):
        return False


def same_grid(img_a, img_b) -> bool:
    """Same voxel grid: equal spatial shape and affines equal within 1e-4 mm.

    >>> a = nb.Nifti1Image(np.zeros((2, 2, 2, 3), dtype=np.float32), np.eye(4))
    >>> same_grid(a, nb.Nifti1Image(np.zeros((2, 2, 2), dtype=np.float32), np.eye(4)))
    True
    """
    return img_a.shape[:3] == img_b.shape[:3] and np.allclose(img_a.affine, img_b.affine,
                                                              atol=1e-4)


def _check_m0(spec: AslSpec, asl_img) -> None:
    m0_img = _load(spec.m0_file, 'M0')
    if m0_img.ndim not in (3, 4):
        raise AslMetadataError(f'{spec.m0_file}: a separate M0 scan must be a 3D image or a 4D '
                               f'series of M0 volumes, got {m0_img.ndim}D {m0_img.shape}')
    if not same_grid(asl_img, m0_img):
        if not (has_usable_affine(asl_img) and has_usable_affine(m0_img)):
            raise AslMetadataError(
                f'{spec.m0_file}: ASL and M0 on different grids without a usable affine (shapes '
                f'{asl_img.shape[:3]} and {m0_img.shape[:3]}; sform_code and qform_code are 0 '
                f'in {spec.asl_file if not has_usable_affine(asl_img) else spec.m0_file}), so '
                'the M0 cannot be resampled onto the ASL grid')
        logger.info('%s: M0 grid differs from the ASL grid; it will be resampled through the '
                    'scanner affines', spec.m0_file)
    read_all(m0_img, spec.m0_file, 'M0')


def check_asl_data(spec: AslSpec) -> None:
    """Check that the images of one run agree with its metadata.

    Every input image (ASL, M0, T1w) is read whole, so a truncated or corrupt file is
    reported here. Raises :class:`AslMetadataError`, naming the file, when an image cannot
    be read, the ASL series is not 4D,
    its volume count differs from the aslcontext, a 2D readout's SliceTiming does not
    match the number of slices, any voxel is NaN or infinite, or a separate M0 is not
    3D/4D or sits on another grid with no usable affine.
    """
    img = _load(spec.asl_file, 'ASL')
    if img.ndim != 4:
        raise AslMetadataError(f'{spec.asl_file}: aslproc expects a 4D series (BIDS *_asl.nii), '
                               f'got a {img.ndim}D file of shape {img.shape}')
    n_vols, n_rows = img.shape[3], len(spec.volume_types)
    if n_vols != n_rows:
        raise AslMetadataError(f'{spec.aslcontext_file}: lists {n_rows} volumes but '
                               f'{spec.asl_file} has {n_vols} (BIDS: one aslcontext row per '
                               'volume)')
    spec.pld_map(img.shape[2])
    read_all(img, spec.asl_file, 'ASL')
    if spec.m0_type == 'Separate':
        _check_m0(spec, img)
    t1w = _load(spec.t1w_file, 'T1w')
    read_all(t1w, spec.t1w_file, 'T1w')
    logger.debug('%s: images agree with the metadata', spec.asl_file)
