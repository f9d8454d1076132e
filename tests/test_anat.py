"""Offline brain extraction and tissue segmentation on a synthetic head."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nilearn import datasets, image
from nipype.pipeline import engine as pe
from scipy import ndimage as ndi

from aslproc.interfaces.anat import BrainMask, TissueSegmentation
from aslproc.utils.anat import segment_tissues

VOXEL = 5.0
MARGIN_MM = 20.0


def mni_on_grid(img):
    """A nilearn MNI map, anti-aliased and resampled to 5 mm over the brain box + 20 mm."""
    lo = np.array([-72.0, -106.0, -72.0]) - MARGIN_MM
    hi = np.array([72.0, 72.0, 82.0]) + MARGIN_MM
    affine = np.diag([VOXEL] * 3 + [1.0])
    affine[:3, 3] = lo
    shape = tuple(int(s) for s in np.ceil((hi - lo) / VOXEL) + 1)
    smooth = image.smooth_img(img, fwhm=VOXEL)
    out = image.resample_img(
        smooth, target_affine=affine, target_shape=shape, interpolation='continuous',
        force_resample=True, copy_header=True,
    )  # fmt: skip
    return out.get_fdata(dtype=np.float32), affine


def dice(a, b):
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


@pytest.fixture(scope='module')
def head(tmp_path_factory):
    """MNI T1 at 5 mm wrapped in a dark skull and a bright scalp, then scaled by 1.05 and
    shifted by (6, -5, 4) mm through its header (the truth mask moves with it)."""
    tmp = tmp_path_factory.mktemp('anat')
    t1w, affine = mni_on_grid(datasets.load_mni152_template(resolution=2))
    brain = mni_on_grid(datasets.load_mni152_brain_mask(resolution=2))[0] > 0.5
    gm = mni_on_grid(datasets.load_mni152_gm_template(resolution=2))[0]
    outside = ndi.distance_transform_edt(~brain) * VOXEL
    skull = (outside > 0) & (outside <= 8.0)
    scalp = (outside > 8.0) & (outside <= 16.0)
    t1w = np.where(skull, 0.05, np.where(scalp, 0.75, t1w))
    t1w += np.random.default_rng(3).normal(0.0, 0.01, t1w.shape)
    pose = np.diag([1.05, 1.05, 1.05, 1.0])
    pose[:3, 3] = [6.0, -5.0, 4.0]
    path = tmp / 'T1w.nii.gz'
    nib.Nifti1Image(t1w.astype(np.float32), pose @ affine).to_filename(path)
    return {'t1w': str(path), 'brain': brain, 'gm': gm, 'tmp': tmp}


@pytest.fixture(scope='module')
def mask_node(head):
    node = pe.Node(BrainMask(num_threads=1), name='brain_mask', base_dir=str(head['tmp']))
    node.inputs.in_file = head['t1w']
    return node.run().outputs


@pytest.fixture(scope='module')
def seg_node(head, mask_node):
    node = pe.Node(TissueSegmentation(), name='segment', base_dir=str(head['tmp']))
    node.inputs.in_file = head['t1w']
    node.inputs.mask_file = mask_node.out_file
    return node.run().outputs


def test_brain_mask_matches_truth(head, mask_node):
    img = nib.load(mask_node.out_file)
    assert img.get_data_dtype() == np.uint8
    assert np.allclose(img.affine, nib.load(head['t1w']).affine)
    mask = np.asanyarray(img.dataobj) > 0
    assert dice(mask, head['brain']) > 0.9
    assert not np.any(mask & (ndi.distance_transform_edt(~head['brain']) * VOXEL > 10.0))


def test_brain_mask_keeps_template_transforms(mask_node):
    assert mask_node.out_template_affine.endswith('0GenericAffine.mat')
    assert nib.load(mask_node.out_template_warp).shape[-1] == 3


def test_probabilities_are_bounded_and_masked(mask_node, seg_node):
    mask = np.asanyarray(nib.load(mask_node.out_file).dataobj) > 0
    probs = [nib.load(f).get_fdata() for f in seg_node.out_probseg]
    assert seg_node.out_probseg == [seg_node.out_gm, seg_node.out_wm, seg_node.out_csf]
    total = sum(probs)
    assert np.all(total <= 1.0 + 1e-5)
    assert np.all(total[~mask] == 0)
    assert np.all([np.all(p >= 0) for p in probs])
    assert np.allclose(total[mask], 1.0, atol=1e-3)


def test_grey_matter_agrees_with_the_template(head, mask_node, seg_node):
    mask = (np.asanyarray(nib.load(mask_node.out_file).dataobj) > 0) & head['brain']
    gm = nib.load(seg_node.out_gm).get_fdata()
    assert np.corrcoef(gm[mask], head['gm'][mask])[0, 1] > 0.7


def test_tissue_means_are_ordered(head, seg_node):
    t1w = nib.load(head['t1w']).get_fdata()
    means = [np.average(t1w, weights=nib.load(f).get_fdata()) for f in seg_node.out_probseg]
    gm, wm, csf = means
    assert csf < gm < wm


def test_empty_mask_is_an_error(head, tmp_path):
    empty = tmp_path / 'empty.nii.gz'
    ref = nib.load(head['t1w'])
    nib.Nifti1Image(np.zeros(ref.shape, np.uint8), ref.affine).to_filename(empty)
    outs = [tmp_path / f'{k}.nii.gz' for k in ('gm', 'wm', 'csf')]
    with pytest.raises(ValueError, match='the brain mask is empty'):
        segment_tissues(head['t1w'], empty, *outs)


def test_mask_grid_mismatch_is_an_error(head, tmp_path):
    small = tmp_path / 'small.nii.gz'
    nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), np.eye(4)).to_filename(small)
    outs = [tmp_path / f'{k}.nii.gz' for k in ('gm', 'wm', 'csf')]
    with pytest.raises(ValueError, match='differs from the T1w shape'):
        segment_tissues(head['t1w'], small, *outs)


def test_segmentation_leaves_no_temporary_files(head, monkeypatch, tmp_path):
    """ants.atropos writes its probability maps to /tmp and never removes them."""
    import tempfile

    import ants

    from aslproc.utils.anat import segment_image

    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))
    t1w = ants.image_read(head['t1w'])
    mask = t1w.numpy() > np.percentile(t1w.numpy(), 60)
    probs = segment_image(t1w, mask, bias_correct=False)
    assert set(probs) == {'GM', 'WM', 'CSF'}
    assert list(tmp_path.iterdir()) == []
