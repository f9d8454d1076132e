"""Head-motion correction of ASL series: recovery of known motion, no blur without motion."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest
from nilearn import datasets, image
from nipype.pipeline import engine as pe
from scipy.spatial.transform import Rotation

from aslproc.interfaces.hmc import MotionCorrection
from aslproc.utils.motion import (
    MIN_DISPLACEMENT_VOX,
    correct_motion,
    framewise_displacement,
    group_volumes,
)
from aslproc.utils.registration import apply_xfms, to_ants, write_xfm

FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
TYPES = ['m0scan', 'control', 'label', 'control', 'label', 'control', 'label']
# RAS rigid motion of each volume (rot_x/y/z in degrees about the grid centre, trans in mm)
MOTION = {
    0: ([0.0, 0.0, 1.0], [1.0, 0.0, -1.0]),
    3: ([0.0, 0.0, 2.0], [1.2, -0.8, 0.5]),
    4: ([1.0, 0.0, 0.0], [-0.6, 1.0, 0.0]),
    6: ([0.0, -1.5, 0.0], [0.0, 0.8, 1.0]),
}
VOXEL = (4.0, 4.0, 6.0)


def _matrix(rot_deg, trans, center):
    m = np.eye(4)
    rot = Rotation.from_euler('xyz', rot_deg, degrees=True).as_matrix()
    m[:3, :3] = rot
    m[:3, 3] = np.asarray(trans) + center - rot @ center
    return m


def _params_matrix(p, center):
    return _matrix(np.degrees(p[3:]), p[:3], center)


@pytest.fixture(scope='module')
def phantom(tmp_path_factory):
    """7-volume ASL-like series on a 4×4×6 mm grid sampled from the 2 mm MNI template.

    Control = template, label = 0.99 × template, M0 = a different contrast (square root);
    volumes in ``MOTION`` are sampled through a known rigid motion; 0.5 % noise.
    """
    tmp = tmp_path_factory.mktemp('hmc')
    mni = image.smooth_img(datasets.load_mni152_template(resolution=2), fwhm=4.0)
    hr = to_ants(mni.get_fdata(dtype=np.float32), mni.affine)
    affine = np.diag([*VOXEL, 1.0])
    affine[:3, 3] = [-76.0, -110.0, -74.0]
    shape = (39, 47, 27)
    grid = to_ants(np.zeros(shape), affine)
    center = (affine @ np.r_[(np.array(shape) - 1) / 2.0, 1.0])[:3]
    rng = np.random.default_rng(20240613)
    vols, truth = [], {}
    for t, vtype in enumerate(TYPES):
        rot, trans = MOTION.get(t, ([0.0] * 3, [0.0] * 3))
        truth[t] = _matrix(rot, trans, center)  # volume point -> object point (RAS)
        xfm = write_xfm(FLIP @ truth[t] @ FLIP, tmp / f'truth_{t}.mat')
        vol = apply_xfms(hr, grid, [xfm], interpolation='bSpline').numpy()
        vol = np.sqrt(np.clip(vol, 0, None)) if vtype == 'm0scan' else vol
        vol = 0.99 * vol if vtype == 'label' else vol
        vols.append(vol + rng.normal(0.0, 0.005 * vol.max(), vol.shape))
    data = np.stack(vols, axis=-1).astype(np.float32)
    path = tmp / 'asl.nii.gz'
    nib.Nifti1Image(data, affine).to_filename(path)
    brain = data[..., 1] > 0.2 * data[..., 1].max()
    return {'data': data, 'affine': affine, 'truth': truth, 'center': center,
            'brain': brain, 'path': str(path)}  # fmt: skip


@pytest.fixture(scope='module')
def corrected(phantom):
    return correct_motion(phantom['data'], phantom['affine'], TYPES, num_threads=1)


def _brain_corners(phantom):
    idx = np.argwhere(phantom['brain'])
    box = np.stack([idx.min(axis=0), idx.max(axis=0)])
    corners = np.array([[box[c >> a & 1, a] for a in range(3)] for c in range(8)], dtype=float)
    return (phantom['affine'] @ np.c_[corners, np.ones(8)].T)[:3].T


@pytest.mark.parametrize('moved', sorted(MOTION))
def test_recovers_known_motion(phantom, corrected, moved):
    _, params, _ = corrected
    # unmoved control 1: its estimate maps reference points to object points, so the motion
    # of volume t (volume point -> object point) is est_1 @ inv(est_t)
    est = [_params_matrix(p, phantom['center']) for p in params]
    found = est[1] @ np.linalg.inv(est[moved])
    corners = np.c_[_brain_corners(phantom), np.ones(8)].T
    error = np.linalg.norm((found @ corners - phantom['truth'][moved] @ corners)[:3], axis=0)
    assert error.max() < 0.5  # mm at the corners of the brain box (voxels are 4×4×6 mm)


def test_corrected_volumes_match_the_unmoved_ones(phantom, corrected, tmp_path):
    data, brain, affine = phantom['data'], phantom['brain'], phantom['affine']
    grid = to_ants(np.zeros(data.shape[:3]), affine)
    for moved, still in ((3, 1), (4, 2), (6, 2)):
        scale = 0.99 if TYPES[still] != TYPES[moved] else 1.0  # label vs control contrast

        def rms(vol, still=still, scale=scale):
            return np.sqrt(np.mean((vol - scale * data[..., still])[brain] ** 2))

        # best achievable: undo the true motion with the same interpolator
        inverse = FLIP @ np.linalg.inv(phantom['truth'][moved]) @ FLIP
        xfm = write_xfm(inverse, tmp_path / f'inverse_{moved}.mat')
        oracle = apply_xfms(
            to_ants(data[..., moved], affine), grid, [xfm], interpolation='bSpline'
        )
        after = rms(corrected[0][..., moved])
        assert after < 0.5 * rms(data[..., moved])
        assert after < 1.6 * rms(oracle.numpy())


def test_reference_is_mean_of_corrected_control_label(corrected):
    out, _, reference = corrected
    assert np.allclose(reference, out[..., 1:].mean(axis=3), atol=1e-5)


def test_motion_free_series_is_not_resampled(phantom):
    data = phantom['data'][..., [1, 2, 5]]
    data = data + np.random.default_rng(7).normal(0, 0.005 * data.max(), data.shape)
    types = ['control', 'label', 'control']
    out, params, _ = correct_motion(data.astype(np.float32), phantom['affine'], types)
    assert np.array_equal(out, data.astype(np.float32))  # bit-identical: no blur
    assert np.abs(params[:, :3]).max() < MIN_DISPLACEMENT_VOX * min(VOXEL)


def test_interface_writes_series_confounds_and_references(phantom, tmp_path):
    node = pe.Node(MotionCorrection(), name='hmc', base_dir=str(tmp_path))
    node.inputs.in_file = phantom['path']
    node.inputs.volume_types = TYPES
    res = node.run().outputs
    series = nib.load(res.out_file)
    assert series.shape == phantom['data'].shape
    assert np.allclose(series.affine, phantom['affine'])
    out = series.get_fdata()
    assert np.allclose(
        nib.load(res.out_reference).get_fdata(), out[..., 1:].mean(axis=3), atol=1e-4
    )
    assert np.allclose(nib.load(res.out_m0ref).get_fdata(), out[..., 0], atol=1e-4)
    with open(res.out_confounds) as fobj:
        rows = list(csv.DictReader(fobj, delimiter='\t'))
    assert list(rows[0]) == [
        'trans_x', 'trans_y', 'trans_z', 'rot_x', 'rot_y', 'rot_z', 'framewise_displacement',
        'pair_deviation', 'pair_excluded',
    ]  # fmt: skip; the phantom moved, so its pairs were tested
    pairs = [r['pair_excluded'] for r in rows]
    assert pairs[0] == 'n/a' and set(pairs[1:]) <= {'0', '1'}
    assert len(res.out_volume_types) == len(TYPES)
    assert len(rows) == len(TYPES)
    assert rows[0]['framewise_displacement'] == 'n/a'
    params = np.array([[float(r[k]) for k in list(r)[:6]] for r in rows])
    fd = framewise_displacement(params)
    assert [float(r['framewise_displacement']) for r in rows[1:]] == pytest.approx(
        fd[1:], abs=1e-4
    )
    assert fd[3] > 1.0  # the 2° / 1.5 mm move of volume 3 shows up


def test_framewise_displacement_by_hand():
    p = np.zeros((3, 6))
    p[1] = [0.1, -0.2, 0.3, 0.001, 0.0, -0.002]  # 0.6 mm + 50·0.003 = 0.75 mm
    assert framewise_displacement(p).tolist() == pytest.approx([0.0, 0.75, 0.75])
    assert framewise_displacement(p, radius=80.0)[1] == pytest.approx(0.6 + 80 * 0.003)


def test_framewise_displacement_shape_error():
    with pytest.raises(ValueError, match=r'shape \(T, 6\)'):
        framewise_displacement(np.zeros((4, 3)))


def test_group_volumes_orders_reference_first():
    assert group_volumes(['deltam', 'M0SCAN', 'cbf']) == {'deltam': [0], 'cbf': [2], 'm0': [1]}


def test_unknown_volume_type_is_an_error():
    with pytest.raises(ValueError, match="unknown ASL volume type 'dummy' at volume 1"):
        group_volumes(['control', 'dummy'])


def test_volume_count_mismatch_is_an_error(phantom):
    with pytest.raises(ValueError, match='one volume per type'):
        correct_motion(phantom['data'], phantom['affine'], TYPES[:-1])


@pytest.mark.parametrize('types', [['m0scan', 'deltam'], ['deltam', 'deltam', 'm0scan'],
                                   ['cbf', 'm0scan']])
def test_perfusion_and_m0_volumes_are_not_registered_to_each_other(phantom, types):
    """A GE-style series (ΔM volumes and an M0): two contrasts, not a motion series. The M0
    moved by 1 mm / 1° must stay untouched, with zero motion reported for it."""
    data = phantom['data'][..., [0] + [1] * (len(types) - 1)].copy()
    data = data[..., [types.index('m0scan')] + [i for i in range(len(types))
                                                if types[i] != 'm0scan']]
    order = ['m0scan'] + [t for t in types if t != 'm0scan']
    out, params, _ = correct_motion(data, phantom['affine'], order, num_threads=1)
    assert np.array_equal(out[..., 0], data[..., 0])
    assert np.abs(params[0]).max() == 0.0
    if order.count('deltam') == 1 or 'cbf' in order:
        assert np.array_equal(out, data)
        assert np.abs(params).max() == 0.0
