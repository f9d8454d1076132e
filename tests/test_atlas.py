"""Atlases and regional CBF on tiny hand-made grids with answers worked by hand."""

import csv

import nibabel as nib
import numpy as np
import pytest

from aslproc.utils.atlas import (
    AtlasError,
    check_atlas,
    prepare_atlas,
    read_labels,
    regional_table,
    seitzman_rois,
    sphere_atlas,
)
from aslproc.utils.template import template_image


def _labels(path, rows, header=('index', 'name')):
    path.write_text('\t'.join(header) + '\n' + ''.join('\t'.join(map(str, r)) + '\n'
                                                       for r in rows))
    return path


def _nifti(path, data, affine=None, dtype=np.int16):
    nib.Nifti1Image(np.asarray(data).astype(dtype), np.eye(4) if affine is None else affine
                    ).to_filename(path)
    return path


@pytest.fixture
def user_atlas(tmp_path):
    """Two boxes in MNI space on a 4 mm grid: label 3 left of the midline, 7 right."""
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-40, -40, -20]
    data = np.zeros((21, 21, 11))
    data[2:8, 8:12, 4:7] = 3
    data[13:19, 8:12, 4:7] = 7
    atlas = _nifti(tmp_path / 'atlas.nii.gz', data, aff)
    labels = _labels(tmp_path / 'atlas.tsv', [(3, 'left box', 'a'), (7, 'right box', 'b')],
                     header=('index', 'name', 'note'))
    return atlas, labels, data


def test_label_table_errors_name_file_and_field(tmp_path):
    with pytest.raises(AtlasError, match=r'lab\.tsv: no "name" column'):
        read_labels(_labels(tmp_path / 'lab.tsv', [(1,)], header=('index',)))
    with pytest.raises(AtlasError, match=r'lab\.tsv, line 3: index \'x\' is not an integer'):
        read_labels(_labels(tmp_path / 'lab.tsv', [(1, 'a'), ('x', 'b')]))
    with pytest.raises(AtlasError, match='index 1 is listed twice'):
        read_labels(_labels(tmp_path / 'lab.tsv', [(1, 'a'), (1, 'b')]))
    rows = read_labels(_labels(tmp_path / 'lab.tsv', [(0, 'background'), (2, 'b')]))
    assert rows == [{'index': 2, 'name': 'b'}]


def test_atlas_and_labels_must_match(user_atlas, tmp_path):
    atlas, labels, data = user_atlas
    assert [r['index'] for r in check_atlas(atlas, labels)] == [3, 7]
    short = _labels(tmp_path / 'short.tsv', [(3, 'left box')])
    with pytest.raises(AtlasError, match=r'atlas\.nii\.gz: labels 7 are not in .*short\.tsv'):
        check_atlas(atlas, short)
    extra = _labels(tmp_path / 'extra.tsv', [(3, 'l'), (7, 'r'), (9, 'gone')])
    with pytest.raises(AtlasError, match=r'extra\.tsv: indices 9 do not occur in .*atlas'):
        check_atlas(atlas, extra)
    frac = _nifti(tmp_path / 'frac.nii.gz', data + 0.5, dtype=np.float32)
    with pytest.raises(AtlasError, match='non-negative integer labels'):
        check_atlas(frac, labels)
    far = np.diag([4.0, 4.0, 4.0, 1.0])
    far[:3, 3] = [500, 500, 500]
    with pytest.raises(AtlasError, match='must be in MNI152NLin2009aSym space'):
        check_atlas(_nifti(tmp_path / 'far.nii.gz', data, far), labels)


def test_user_atlas_is_carried_onto_the_template_grid(user_atlas, tmp_path):
    atlas, labels, data = user_atlas
    ref = tmp_path / 'ref.nii.gz'
    template_image('T1', 2).to_filename(ref)
    out, table = prepare_atlas(ref, tmp_path / 'a.nii.gz', tmp_path / 'a.tsv',
                               atlas_file=atlas, labels_file=labels)
    lab = np.asarray(nib.load(out).dataobj)
    # each 4 mm voxel becomes 2 x 2 x 2 voxels of 2 mm: 6 x 4 x 3 boxes of 8 voxels
    assert [int((lab == k).sum()) for k in (3, 7)] == [6 * 4 * 3 * 8] * 2
    img = nib.load(out)
    left = np.argwhere(lab == 3).mean(0) @ img.affine[:3, :3].T + img.affine[:3, 3]
    assert left[0] < 0  # the left box stays left (world coordinates, not voxel order)
    with open(table) as f:
        rows = list(csv.DictReader(f, delimiter='\t'))
    assert [(r['index'], r['name'], r['note']) for r in rows] == [('3', 'left box', 'a'),
                                                                   ('7', 'right box', 'b')]


def test_seitzman_spheres():
    rows = seitzman_rois()
    assert len(rows) == 300 and rows[0]['index'] == 1 and rows[-1]['index'] == 300
    assert {r['radius'] for r in rows} <= {4.0, 5.0}
    assert len({r['network'] for r in rows}) >= 13
    img = template_image('T1', 2)
    lab = sphere_atlas(rows, img.affine, img.shape)
    counts = np.bincount(lab.ravel(), minlength=301)[1:]
    assert np.all(counts > 0)
    # a 5 mm sphere on a 2 mm grid holds about 4/3 pi 2.5^3 = 65 voxels
    five = [c for c, r in zip(counts, rows, strict=True) if r['radius'] == 5.0]
    assert 55 < np.median(five) < 75
    centre = rows[0]
    vox = np.rint(np.linalg.inv(img.affine) @ [centre['x'], centre['y'], centre['z'], 1])[:3]
    assert lab[tuple(vox.astype(int))] == 1


def test_regional_table_counts_coverage_and_gm_means(tmp_path):
    """Region 1: 8 voxels, the ASL field of view covers 6, 4 of them in GM (CBF 10, 20, 30,
    40 there: mean 25); region 2: fully covered, no grey matter; region 5 is empty."""
    shape = (4, 4, 2)
    atlas = np.zeros(shape)
    atlas[:2, :2, :] = 1
    atlas[2:, 2:, :] = 2
    fov = np.ones(shape)
    fov[1, 1, :] = 0
    gm = np.zeros(shape)
    gm[:2, :2, :] = 0.8
    gm[0, 0, :] = 0.3
    cbf = np.zeros(shape)
    cbf[0, 1, :], cbf[1, 0, :] = [10, 20], [30, 40]  # the four voxels averaged
    cbf[0, 0, :], cbf[1, 1, :] = 777, 999  # not grey matter; outside the field of view
    cbf[2:, 2:, :] = 50
    files = {name: _nifti(tmp_path / f'{name}.nii.gz', arr, dtype=np.float32) for name, arr in
             (('atlas', atlas), ('gm', gm), ('fov', fov), ('mask', np.ones(shape)),
              ('cbf', cbf), ('cbf2', 2 * cbf))}
    labels = _labels(tmp_path / 'labels.tsv', [(1, 'one'), (2, 'two'), (5, 'five')])
    out = regional_table(files['atlas'], labels, files['gm'], files['mask'], files['fov'],
                         [files['cbf'], files['cbf2']], ['cbf', 'cbf_denoised'],
                         tmp_path / 'out.tsv')
    with open(out) as f:
        rows = list(csv.DictReader(f, delimiter='\t'))
    one, two, five = rows
    # region 1: voxels (0,0,*) are not GM, (1,1,*) are outside the field of view
    assert (one['n_voxels'], one['coverage'], one['n_voxels_gm']) == ('8', '0.75', '4')
    assert float(one['cbf']) == 25.0 and float(one['cbf_denoised']) == 50.0
    assert (two['n_voxels'], two['coverage'], two['n_voxels_gm'], two['cbf']) == (
        '8', '1.0', '0', 'n/a')
    assert (five['n_voxels'], five['coverage'], five['cbf']) == ('0', 'n/a', 'n/a')


def test_regional_table_refuses_mismatched_grids(tmp_path):
    a = _nifti(tmp_path / 'a.nii.gz', np.ones((3, 3, 3)))
    b = _nifti(tmp_path / 'b.nii.gz', np.ones((2, 2, 2)), dtype=np.float32)
    labels = _labels(tmp_path / 'l.tsv', [(1, 'x')])
    with pytest.raises(ValueError, match=r'b\.nii\.gz: grid \(2, 2, 2\) differs'):
        regional_table(a, labels, a, a, a, [b], ['cbf'], tmp_path / 'o.tsv')
