"""Motion-compensated subtraction: the displacement-linked residue is removed, nothing else."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aslproc import synth
from aslproc.utils.cbf import cbf_map, m0_map, mean_delta_m
from aslproc.utils.motion import correct_motion
from aslproc.utils.motion_residue import (
    MIN_VOLUMES,
    compensate_motion_residue,
    fit_motion_terms,
    voxel_displacements,
)


def test_displacement_of_a_rotation_by_hand():
    # 0.02 rad about x moves a point 50 mm anterior (+y) of the centre by +1 mm in z
    d = voxel_displacements(np.array([[0, 0, 0, 0.02, 0, 0]]), np.array([[10.0, 50.0, 0.0]]),
                            np.array([10.0, 0.0, 0.0]))
    assert d[0, 0].tolist() == pytest.approx([0.0, 0.0, 1.0])


def _edge_series(n_pairs=8, seed=0, slope=30.0, dm=1.0):
    """One voxel column at a tissue edge: static = 100 + slope·(displacement along x), label =
    static − ΔM, noise SD 0.5, random displacements with a control/label imbalance."""
    rng = np.random.default_rng(seed)
    signs = np.tile([0.5, -0.5], n_pairs)
    disp = rng.normal(0, 0.3, (2 * n_pairs, 1, 3))
    disp[signs > 0, :, 0] += 0.1  # controls sit 0.1 mm further along x on average
    series = 100 + slope * disp[..., 0] - (signs[:, None] < 0) * dm
    series = series + rng.normal(0, 0.5, series.shape)
    return series, signs, disp - disp.mean(axis=0)


def test_fit_recovers_the_motion_term_and_the_perfusion():
    series, signs, disp = _edge_series()
    motion, fstat = fit_motion_terms(series, signs, disp)
    clean = series - motion
    dm_plain = series[signs > 0].mean() - series[signs < 0].mean()
    dm_clean = clean[signs > 0].mean() - clean[signs < 0].mean()
    assert abs(dm_plain - 1.0) > 2.0  # 30 × 0.1 mm of residue: plain subtraction fails
    assert abs(dm_clean - 1.0) < 0.5
    assert fstat[0] > 50


def test_no_displacement_dependence_gives_a_small_f():
    series, signs, disp = _edge_series(slope=0.0)
    _, fstat = fit_motion_terms(series, signs, disp)
    assert fstat[0] < 5


def _moving_series(shape=(12, 12, 6), n_pairs=6):
    rng = np.random.default_rng(1)
    data = rng.normal(100, 1, (*shape, 2 * n_pairs)).astype(np.float32)
    return data, ['control', 'label'] * n_pairs


def test_nothing_moved_leaves_the_series_bit_identical():
    data, types = _moving_series()
    out, changed = compensate_motion_residue(data, np.eye(4), types, np.zeros((12, 6)),
                                             np.ones(data.shape[:3], bool))
    assert np.array_equal(out, data) and not changed.any()


def test_too_few_volumes_are_left_alone():
    data, types = _moving_series(n_pairs=(MIN_VOLUMES - 1) // 2)
    params = np.random.default_rng(2).normal(0, 0.3, (len(types), 6))
    out, changed = compensate_motion_residue(data, np.eye(4), types, params,
                                             np.ones(data.shape[:3], bool))
    assert np.array_equal(out, data) and not changed.any()


def test_m0_volumes_and_noise_only_voxels_are_untouched():
    data, types = _moving_series()
    types = ['m0scan', *types[1:]]
    params = np.random.default_rng(3).normal(0, 0.01, (len(types), 6))
    out, changed = compensate_motion_residue(data, np.eye(4), types, params,
                                             np.ones(data.shape[:3], bool))
    assert np.array_equal(out[..., 0], data[..., 0])
    assert changed.mean() < 0.05  # noise: about alpha = 1 % pass the test by chance
    assert np.array_equal(out[~changed], data[~changed])


def _psnr(x, ref, mask):
    return 20 * np.log10(ref[mask].max() / np.sqrt(np.mean((x[mask] - ref[mask]) ** 2)))


@pytest.fixture(scope='module')
def moving_and_still():
    """A simulated series imaged at a new pose every volume (1 mm / 1° jitter, no background
    suppression: the static tissue at full strength) and its still twin."""
    config = synth.SynthConfig(asl_matrix=(64, 76, 24), n_pairs=12, snr=100, pose=0,
                               jitter_mm=1.0, lesions=(2, 3), seed=5)
    sim = synth.simulate_subject(np.random.default_rng([5, 0]), config)
    twin = synth.simulate_subject(np.random.default_rng([5, 0]),
                                  dataclasses.replace(config, still_twin=True))
    return sim, twin


def _plain_cbf(series, sim):
    m0 = m0_map(series, sim.volume_types, dict(
        m0_type='Included', m0_estimate=None, m0_tr=sim.metadata['RepetitionTimePreparation'][0],
        t1_tissue=1.33, m0_scale=1.0))
    return cbf_map(mean_delta_m(series, sim.volume_types), m0, sim.quant_params)


@pytest.fixture(scope='module')
def realigned(moving_and_still):
    """The moving series realigned volume by volume, and then compensated (the pipeline's
    motion step before the pair-aware subtraction: the compensation is what is tested)."""
    sim, _ = moving_and_still
    corrected, params, reference = correct_motion(sim.asl, sim.asl_affine, sim.volume_types,
                                                  num_threads=2, pair_aware=False)
    head = reference > 0.05 * np.percentile(reference, 99)
    compensated, changed = compensate_motion_residue(corrected, sim.asl_affine,
                                                     sim.volume_types, params, head)
    return corrected, compensated, changed, head


def test_moving_series_comes_within_3_db_of_its_still_twin(moving_and_still, realigned):
    """Plain CBF of the realigned series (the previous release) is 3.5 dB below its still
    twin here; motion-compensated subtraction brings it within the issue's 3 dB (measured:
    1.3 dB), with |GM bias| ≤ 5 %."""
    sim, twin = moving_and_still
    truth, seg = sim.truth['cbf'], sim.truth['seg']
    brain, gm = (seg > 0) & (seg < 3), seg == 1
    corrected, compensated, changed, _ = realigned
    still = _psnr(_plain_cbf(twin.asl, twin), truth, brain)
    realigned = _psnr(_plain_cbf(corrected, sim), truth, brain)
    cbf = _plain_cbf(compensated, sim)
    assert realigned < still - 3.0
    assert _psnr(cbf, truth, brain) > max(still - 3.0, realigned + 1.5)
    assert abs(cbf[gm].mean() / truth[gm].mean() - 1) < 0.05
    assert 0.05 < changed[brain].mean() < 0.6


def test_filling_what_motion_destroyed_brings_the_map_closer_to_its_twin(moving_and_still,
                                                                         realigned):
    """After compensation some voxels still swing with the pose far beyond the noise; their
    CBF, filled from the reliable voxels around them (the pipeline's default), brings the map
    closer to the still twin (measured: 0.24 dB below it, against 1.28 dB without the fill;
    7 % of the brain filled, GM bias +2.2 %)."""
    from aslproc.utils.motion_reliability import instability_ratio
    from aslproc.utils.quantify import static_mean, unreliable_and_filled

    sim, twin = moving_and_still
    truth, seg = sim.truth['cbf'], sim.truth['seg']
    brain, gm = (seg > 0) & (seg < 3), seg == 1
    _, compensated, _, head = realigned
    cbf = _plain_cbf(compensated, sim)
    m0 = m0_map(compensated, sim.volume_types, dict(
        m0_type='Included', m0_estimate=None, m0_tr=sim.metadata['RepetitionTimePreparation'][0],
        t1_tissue=1.33, m0_scale=1.0))
    ratio = instability_ratio(compensated, sim.volume_types, head)
    filled, unreliable = unreliable_and_filled(cbf, ratio, m0, np.ones(cbf.shape),
                                               sim.volume_types,
                                               static_mean(compensated, sim.volume_types))
    still = _psnr(_plain_cbf(twin.asl, twin), truth, brain)
    assert 0.01 < unreliable[brain].mean() < 0.3
    assert np.array_equal(filled[~unreliable], cbf[~unreliable])
    assert _psnr(filled, truth, brain) > _psnr(cbf, truth, brain) + 0.5
    assert _psnr(filled, truth, brain) > still - 3.0
    assert abs(filled[gm].mean() / truth[gm].mean() - 1) < 0.05


def test_denoised_moving_series_gains_where_motion_destroyed_the_pairs(moving_and_still,
                                                                      realigned, tmp_path):
    """The denoiser on a realigned series, as the pipeline's denoise node runs it with the
    motion step's instability map. The voxels that motion destroyed are filled again after
    the network, from the denoised map around them, so they gain too. Measured: their error
    0.79 × that of the filled plain map (previous release 0.98: filled before the network
    only); +7.2 dB over the filled plain map in the brain (#13 target: +3), GM bias +2.6 %."""
    import nibabel as nib

    from aslproc.utils import denoise as dnu
    from aslproc.utils.motion_reliability import instability_ratio
    from aslproc.utils.quantify import static_mean, unreliable_and_filled

    sim, _ = moving_and_still
    truth, seg = sim.truth['cbf'], sim.truth['seg']
    brain = (seg > 0) & (seg < 3)
    _, compensated, _, head = realigned
    m0 = m0_map(compensated, sim.volume_types, dict(
        m0_type='Included', m0_estimate=None, m0_tr=sim.metadata['RepetitionTimePreparation'][0],
        t1_tissue=1.33, m0_scale=1.0))
    ratio = instability_ratio(compensated, sim.volume_types, head)
    mask = (seg > 0).astype(np.float32)
    files = {}
    for key, arr in (('asl', compensated), ('m0', m0), ('mask', mask), ('ratio', ratio),
                     ('gm', sim.truth['pvgm']), ('wm', sim.truth['pvwm'])):
        files[key] = str(tmp_path / f'{key}.nii.gz')
        nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), sim.asl_affine), files[key])
    out, _ = dnu.denoise_file(files['asl'], list(sim.volume_types), files['m0'], files['mask'],
                              dict(sim.quant_params), tmp_path / 'cbf.nii.gz',
                              tmp_path / 'dm.nii.gz', device='cpu', gm_file=files['gm'],
                              wm_file=files['wm'], instability_file=files['ratio'])
    denoised = nib.load(out).get_fdata()
    plain, unreliable = unreliable_and_filled(_plain_cbf(compensated, sim), ratio, m0, mask,
                                              sim.volume_types,
                                              static_mean(compensated, sim.volume_types))
    bad = unreliable & brain
    assert bad.sum() > 100
    rmse = lambda x: np.sqrt(np.mean((x[bad] - truth[bad]) ** 2))  # noqa: E731
    assert rmse(denoised) < 0.85 * rmse(plain)
    assert _psnr(denoised, truth, brain) > _psnr(plain, truth, brain) + 3.0
    assert abs(denoised[seg == 1].mean() / truth[seg == 1].mean() - 1) < 0.05
