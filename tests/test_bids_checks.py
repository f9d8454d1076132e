"""Tests of aslproc.bids.checks: the images agree with the parsed metadata."""

import re

import nibabel as nb
import numpy as np
import pytest
from bidsdata import make_tiny_bids, run_paths, spec_of, write_nifti

from aslproc.bids.checks import check_asl_data
from aslproc.kinetics import AslMetadataError


def _resave(path, data, affine=None, codes=1):
    """Overwrite a NIfTI with new data/affine; ``codes=0`` removes the sform and qform."""
    img = nb.load(path)
    new = nb.Nifti1Image(np.asarray(data, dtype=np.float32),
                         img.affine if affine is None else affine)
    new.set_qform(new.affine, code=codes)
    new.set_sform(new.affine, code=codes)
    nb.save(new, path)


@pytest.mark.parametrize('m0', ['Included', 'Separate'])
def test_valid_data_pass(tmp_path, m0):
    check_asl_data(spec_of(make_tiny_bids(tmp_path, m0=m0)))


def test_3d_asl_file(tmp_path):
    root = make_tiny_bids(tmp_path)
    p = run_paths(root)
    spec = spec_of(root)
    _resave(p['asl'], np.ones((6, 6, 4)))
    with pytest.raises(AslMetadataError, match=re.escape(str(p['asl'])) + '.*expects a 4D '
                       'series.*3D'):
        check_asl_data(spec)


def test_aslcontext_length_mismatch(tmp_path):
    root = make_tiny_bids(tmp_path, n_pairs=3)
    p = run_paths(root)
    spec = spec_of(root)
    _resave(p['asl'], np.ones((6, 6, 4, 5)))
    with pytest.raises(AslMetadataError, match=re.escape(str(p['aslcontext']))
                       + '.*lists 7 volumes.*has 5'):
        check_asl_data(spec)


def test_nan_voxels(tmp_path):
    root = make_tiny_bids(tmp_path)
    p = run_paths(root)
    data = nb.load(p['asl']).get_fdata()
    data[0, 0, 0, 2] = np.nan
    data[1, 0, 0, 3] = np.inf
    _resave(p['asl'], data)
    with pytest.raises(AslMetadataError, match=re.escape(str(p['asl'])) + '.* 2 NaN'):
        check_asl_data(spec_of(root))


def test_nan_in_separate_m0(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate')
    p = run_paths(root)
    data = np.full((6, 6, 4), 1000.0)
    data[2, 2, 2] = np.nan
    _resave(p['m0'], data)
    with pytest.raises(AslMetadataError, match=re.escape(str(p['m0'])) + '.* 1 NaN'):
        check_asl_data(spec_of(root))


def test_m0_on_other_grid_with_affine_passes(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate')
    write_nifti(run_paths(root)['m0'], np.full((8, 8, 5), 1000.0), zooms=(2.0, 2.0, 4.0))
    check_asl_data(spec_of(root))


def test_m0_other_grid_without_usable_affine(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate')
    p = run_paths(root)
    _resave(p['m0'], np.full((8, 8, 5), 1000.0), affine=np.eye(4), codes=0)
    with pytest.raises(AslMetadataError, match=re.escape(str(p['m0']))
                       + '.*different grids without a usable affine'):
        check_asl_data(spec_of(root))


def test_m0_not_3d_or_4d(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate')
    p = run_paths(root)
    _resave(p['m0'], np.ones((6, 6)))
    with pytest.raises(AslMetadataError, match=re.escape(str(p['m0'])) + '.*3D image or a 4D'):
        check_asl_data(spec_of(root))


def test_slice_timing_length(tmp_path):
    root = make_tiny_bids(tmp_path, extra_meta={'MRAcquisitionType': '2D',
                                                'SliceTiming': [0.0, 0.05, 0.1]})
    with pytest.raises(AslMetadataError, match='SliceTiming has 3 entries.*4 slices'):
        check_asl_data(spec_of(root))


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@pytest.mark.parametrize(('key', 'what'), [('asl', 'ASL'), ('m0', 'M0'), ('t1w', 'T1w')])
def test_truncated_image_is_named(tmp_path, key, what):
    """A gzip cut short in a copy: a one-line error naming the file, before any work."""
    root = make_tiny_bids(tmp_path, m0='Separate')
    p = run_paths(root)
    spec = spec_of(root)
    _truncate(p[key])
    with pytest.raises(AslMetadataError, match=re.escape(str(p[key])) + f': cannot read the '
                       f'{what} image.*(ends early|corrupt)'):
        check_asl_data(spec)


def test_corrupt_compressed_data_is_named(tmp_path):
    root = make_tiny_bids(tmp_path)
    p = run_paths(root)
    spec = spec_of(root)
    raw = bytearray(p['asl'].read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = bytes(64)  # zeroed block inside the deflate stream
    p['asl'].write_bytes(bytes(raw))
    with pytest.raises(AslMetadataError, match=re.escape(str(p['asl'])) + ': cannot read'):
        check_asl_data(spec)
