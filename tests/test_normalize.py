"""Spatial normalization recovers a known scale and shift of the template (5 mm head), and
resampling into output spaces goes through the composed transforms in one step."""

import ants
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn import image
from nipype.pipeline import engine as pe

from aslproc.interfaces.anat import BrainMask
from aslproc.interfaces.normalize import ResampleToSpace, SpatialNormalization
from aslproc.utils.normalize import gm_dice
from aslproc.utils.registration import write_xfm
from aslproc.utils.template import template_image

VOXEL = 5.0
#: The subject is the template scaled by 8 % about the origin and shifted by this (mm).
SCALE, SHIFT = 1.08, np.array([8.0, -6.0, 5.0])
_LPS = np.array([-1.0, -1.0, 1.0])


def _pose() -> np.ndarray:
    pose = np.diag([SCALE, SCALE, SCALE, 1.0])
    pose[:3, 3] = SHIFT
    return pose


def _on_grid(img):
    """A template map on a 5 mm grid over its box (anti-aliased)."""
    affine = np.diag([VOXEL] * 3 + [1.0])
    affine[:3, 3] = [-95.0, -130.0, -70.0]
    smooth = image.smooth_img(img, fwhm=VOXEL)
    out = image.resample_img(smooth, target_affine=affine, target_shape=(39, 47, 38),
                             interpolation='continuous', force_resample=True, copy_header=True)
    return out.get_fdata(dtype=np.float32), affine


@pytest.fixture(scope='module')
def normalized(tmp_path_factory):
    """The 5 mm template brain with the pose in its header (voxel v of the 'subject' holds the
    template at world A v, and lies at world pose A v), skull-stripped, then normalized."""
    tmp = tmp_path_factory.mktemp('norm')
    t1, affine = _on_grid(template_image('T1', 2))
    gm, _ = _on_grid(template_image('GM', 2))
    t1 = t1 + np.random.default_rng(7).normal(0.0, 0.01, t1.shape).astype(np.float32)
    files = {}
    for name, data in (('t1w', t1), ('gm', np.clip(gm, 0, 1))):
        files[name] = str(tmp / f'{name}.nii.gz')
        nib.Nifti1Image(data, _pose() @ affine).to_filename(files[name])
    mask = pe.Node(BrainMask(in_file=files['t1w']), name='brain_mask', base_dir=str(tmp)).run()
    node = pe.Node(SpatialNormalization(
        t1w_file=files['t1w'], gm_file=files['gm'],
        template_affine=mask.outputs.out_template_affine,
        template_warp=mask.outputs.out_template_warp,
        template_inverse_warp=mask.outputs.out_template_inverse_warp, res=2),
        name='normalize', base_dir=str(tmp))
    return {'out': node.run().outputs, 'files': files, 'tmp': tmp}


def _brain_points(n=2000) -> np.ndarray:
    """World (RAS) points of the template brain, every few voxels."""
    mask = template_image('mask', 2)
    idx = np.argwhere(np.asanyarray(mask.dataobj) > 0.5)[::97][:n]
    return idx @ mask.affine[:3, :3].T + mask.affine[:3, 3]


def _map_points(points, xfm) -> np.ndarray:
    """Where ANTs maps RAS points through a transform file (it works in LPS)."""
    lps = pd.DataFrame(points * _LPS, columns=['x', 'y', 'z'])
    return ants.apply_transforms_to_points(3, lps, [xfm]).to_numpy() * _LPS


def test_recovers_the_known_scale_and_shift(normalized):
    """Template point p lies at pose(p) in the subject: the T1w -> template transform maps
    template points to subject points (it resamples the subject onto the template)."""
    p = _brain_points()
    truth = p * SCALE + SHIFT
    found = _map_points(p, normalized['out'].out_to_template)
    err = np.linalg.norm(found - truth, axis=1)
    baseline = np.linalg.norm(p - truth, axis=1)
    assert np.median(baseline) > 10.0  # the pose is large: identity is far off
    assert np.median(err) < 2.0 and np.percentile(err, 90) < 4.0, np.percentile(err, [50, 90])


def test_inverse_transform_goes_back(normalized):
    p = _brain_points(500)
    there = _map_points(p, normalized['out'].out_to_template)
    back = _map_points(there, normalized['out'].out_from_template)
    assert np.median(np.linalg.norm(back - p, axis=1)) < 1.0


def test_warped_grey_matter_overlaps_the_template(normalized):
    out = normalized['out']
    template_gm = np.asanyarray(template_image('GM', 2).dataobj)
    warped = nib.load(out.out_gm)
    assert warped.shape == template_gm.shape
    assert out.dice_gm == gm_dice(np.asanyarray(warped.dataobj), template_gm)
    # without normalization: the subject GM read at the same world positions
    ident = image.resample_to_img(normalized['files']['gm'], template_image('GM', 2),
                                  interpolation='linear', force_resample=True,
                                  copy_header=True).get_fdata()
    assert out.dice_gm > 0.75 and out.dice_gm > gm_dice(ident, template_gm) + 0.1
    t1 = np.asanyarray(nib.load(out.out_t1w).dataobj)
    inside = np.asanyarray(template_image('mask', 2).dataobj) > 0.5
    ref = np.asanyarray(template_image('T1', 2).dataobj)
    t1_ident = image.resample_to_img(normalized['files']['t1w'], template_image('T1', 2),
                                     interpolation='linear', force_resample=True,
                                     copy_header=True).get_fdata()
    r, r_ident = (np.corrcoef(x[inside], ref[inside])[0, 1] for x in (t1, t1_ident))
    assert r > 0.7 and r > r_ident + 0.2, (r, r_ident)  # a 5 mm head: blurred


def test_asl_maps_reach_the_template_in_one_step(normalized):
    """An 'ASL' map on a 10 mm grid shifted 4 mm from the T1w: through [T1w -> template,
    ASL -> T1w] a sphere drawn at template point c comes back at c; masks stay binary."""
    tmp = normalized['tmp']
    c = np.array([20.0, -30.0, 10.0])
    asl_shift = np.array([4.0, 0.0, -3.0])  # ASL world = T1w world + shift
    aff = np.diag([10.0, 10.0, 10.0, 1.0])
    aff[:3, 3] = [-100.0, -140.0, -80.0]
    grid = np.indices((21, 26, 20)).reshape(3, -1).T @ aff[:3, :3].T + aff[:3, 3]
    at_subject = c * SCALE + SHIFT + asl_shift
    sphere = (np.linalg.norm(grid - at_subject, axis=1) < 15.0).reshape(21, 26, 20)
    asl = tmp / 'asl_sphere.nii.gz'
    nib.Nifti1Image(60.0 * sphere.astype(np.float32), aff).to_filename(asl)
    rigid = np.eye(4)
    rigid[:3, 3] = asl_shift * _LPS  # maps T1w points to ASL points (LPS)
    xfm = write_xfm(rigid, tmp / 'asl2t1w.mat')
    ref = tmp / 'ref.nii.gz'
    template_image('T1', 2).to_filename(ref)
    outs = {}
    for interp in ('linear', 'nearestNeighbor'):
        node = pe.Node(ResampleToSpace(in_file=str(asl), reference=str(ref), interpolation=interp,
                                       xfms=[normalized['out'].out_to_template, str(xfm)]),
                       name=f'to_template_{interp}', base_dir=str(tmp))
        outs[interp] = nib.load(node.run().outputs.out_file)
    lin = np.asanyarray(outs['linear'].dataobj)
    assert outs['linear'].get_data_dtype() == np.float32 and lin.max() == pytest.approx(60, 0.05)
    idx = np.argwhere(lin > 30)
    centre = idx.mean(0) @ outs['linear'].affine[:3, :3].T + outs['linear'].affine[:3, 3]
    assert np.linalg.norm(centre - c) < 3.0, centre
    near = np.asanyarray(outs['nearestNeighbor'].dataobj)
    assert outs['nearestNeighbor'].get_data_dtype() == np.uint8
    assert set(np.unique(near).tolist()) <= {0, 60}
