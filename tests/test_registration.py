"""ANTs helpers, ASL → T1w rigid registration and resampling in both directions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nilearn import datasets, image
from nipype.pipeline import engine as pe
from scipy.spatial.transform import Rotation

from aslproc.interfaces.registration import RegisterToT1w, ResampleToAsl, ResampleToT1w
from aslproc.utils.registration import (
    apply_xfms,
    linear_register,
    load_ants,
    read_xfm,
    to_ants,
    write_xfm,
)

FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS


def mni_on_grid(img, voxel, margin_mm=0.0):
    """A nilearn MNI map, anti-aliased and resampled to ``voxel`` mm over the brain box."""
    lo, hi = np.array([-72.0, -106.0, -72.0]) - margin_mm, np.array([72.0, 72.0, 82.0]) + margin_mm
    voxel = np.broadcast_to(np.asarray(voxel, dtype=float), (3,))
    affine = np.diag([*voxel, 1.0])
    affine[:3, 3] = lo
    shape = tuple(int(s) for s in np.ceil((hi - lo) / voxel) + 1)
    smooth = image.smooth_img(img, fwhm=float(voxel.max()))
    return image.resample_img(
        smooth, target_affine=affine, target_shape=shape, interpolation='continuous',
        force_resample=True, copy_header=True,
    )  # fmt: skip


def rigid(rot_deg, trans_mm):
    """4×4 RAS rigid matrix (rotation about the origin, then translation)."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler('xyz', rot_deg, degrees=True).as_matrix()
    m[:3, 3] = trans_mm
    return m


def save(data, affine, path):
    nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine).to_filename(path)
    return str(path)


def test_xfm_round_trip(tmp_path):
    m = FLIP @ rigid([3.0, -2.0, 5.0], [1.5, -4.0, 2.0]) @ FLIP
    out = write_xfm(m, tmp_path / 'x.mat')
    assert np.allclose(read_xfm(out), m, atol=1e-5)


def test_linear_register_checks_levels(tmp_path):
    img = to_ants(np.zeros((4, 4, 4)), np.eye(4))
    with pytest.raises(ValueError, match='one entry per level'):
        linear_register(img, img, str(tmp_path / 'x_'), iterations=(10,), shrink=(2, 1))


def test_load_ants_rejects_4d(tmp_path):
    path = save(np.zeros((3, 3, 3, 2)), np.eye(4), tmp_path / 'four.nii.gz')
    with pytest.raises(ValueError, match='expected a 3D image'):
        load_ants(path)


@pytest.fixture(scope='module')
def coreg_case(tmp_path_factory):
    """'T1w': MNI T1 at 4 mm. 'ASL ref': PD-like map (CSF > GM > WM) at 5 mm, posed off by
    8 mm / 8° through its header, so the true T1w → ASL point map is ``pose``."""
    tmp = tmp_path_factory.mktemp('coreg')
    t1w = mni_on_grid(datasets.load_mni152_template(resolution=2), 4.0)
    brain = mni_on_grid(datasets.load_mni152_brain_mask(resolution=2), 5.0).get_fdata() > 0.5
    gm = mni_on_grid(datasets.load_mni152_gm_template(resolution=2), 5.0)
    wm = mni_on_grid(datasets.load_mni152_wm_template(resolution=2), 5.0).get_fdata()
    csf = np.clip(brain - gm.get_fdata() - wm, 0, None)
    pd = 0.8 * gm.get_fdata() + 0.6 * wm + 1.0 * csf
    pose = rigid([5.0, -4.0, 4.0], [6.0, -4.0, 3.0])  # |t| ≈ 7.8 mm, angle ≈ 7.5°
    return {
        't1w': save(t1w.get_fdata(), t1w.affine, tmp / 't1w.nii.gz'),
        'asl_ref': save(pd, pose @ gm.affine, tmp / 'asl_ref.nii.gz'),
        'pose': pose,
    }


def test_register_to_t1w_recovers_pose(coreg_case, tmp_path):
    node = pe.Node(RegisterToT1w(num_threads=1), name='coreg', base_dir=str(tmp_path))
    node.inputs.asl_ref = coreg_case['asl_ref']
    node.inputs.t1w_file = coreg_case['t1w']
    out = node.run().outputs.out_xfm
    assert out.endswith('from-asl_to-T1w_mode-image_xfm.mat')
    est, pose = FLIP @ read_xfm(out) @ FLIP, coreg_case['pose']
    angle = np.degrees(Rotation.from_matrix(est[:3, :3].T @ pose[:3, :3]).magnitude())
    center = np.array([0.0, -17.0, 5.0, 1.0])  # middle of the brain box
    shift = np.linalg.norm((est @ center - pose @ center)[:3])
    assert angle < 1.0
    assert shift < 1.0


@pytest.fixture
def shift_case(tmp_path):
    """A 6×5×4 ramp on a 2 mm grid and a transform moving T1w points by +1 voxel in x."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    data = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    xfm = np.eye(4)
    xfm[:3, 3] = [2.0, 0.0, 0.0]  # RAS: ASL point = T1w point + 2 mm in x
    return {
        'img': save(data, affine, tmp_path / 'img.nii.gz'),
        'data': data,
        'xfm': write_xfm(FLIP @ xfm @ FLIP, tmp_path / 'shift.mat'),
    }


def test_resample_to_asl_inverts_the_transform(shift_case, tmp_path):
    # ASL voxel i sits at T1w voxel i - 1: its value is the T1w ramp one x-step back
    node = pe.Node(ResampleToAsl(), name='to_asl', base_dir=str(tmp_path))
    node.inputs.in_file = shift_case['img']
    node.inputs.reference_file = shift_case['img']
    node.inputs.xfm = shift_case['xfm']
    out = nib.load(node.run().outputs.out_file).get_fdata()
    assert np.allclose(out[1:], shift_case['data'][:-1], atol=1e-4)
    assert np.all(out[0] == 0)


def test_resample_to_t1w_applies_the_transform(shift_case, tmp_path):
    node = pe.Node(
        ResampleToT1w(interpolation='nearestNeighbor'), name='to_t1w', base_dir=str(tmp_path)
    )
    node.inputs.in_file = shift_case['img']
    node.inputs.reference_file = shift_case['img']
    node.inputs.xfm = shift_case['xfm']
    out = nib.load(node.run().outputs.out_file).get_fdata()
    assert np.array_equal(out[:-1], shift_case['data'][1:])


def test_apply_xfms_identity_is_exact(shift_case):
    img = load_ants(shift_case['img'])
    out = apply_xfms(img, img, [write_xfm(np.eye(4), shift_case['xfm'])])
    assert np.allclose(out.numpy(), shift_case['data'])
