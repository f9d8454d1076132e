"""Tests of the phantom generator: truth consistency, BIDS validity, geometry and noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from aslproc import kinetics
from aslproc.synth import SynthConfig, simulate_subject, write_dataset
from aslproc.synth_cli import main

#: Small and fast: 3 mm T1w, 6 mm ASL, 2 pairs.
TINY = dict(t1w_voxel=3.0, asl_voxel=6.0, n_pairs=2, seed=3)


def _sim(seed=0, **kw):
    return simulate_subject(np.random.default_rng(seed), SynthConfig(**{**TINY, **kw}))


def _clean(seed=0, **kw):
    """A practically noise-free subject (Gaussian noise with a negligible SD)."""
    return _sim(seed, snr=1e9, noise='gaussian', **kw)


def _corr(a, b, mask):
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def test_seeded_determinism():
    a, b, c = _sim(5), _sim(5), _sim(6)
    assert np.array_equal(a.asl, b.asl) and np.array_equal(a.t1w, b.t1w)
    assert a.info == b.info
    for key in a.hr_truth:
        assert np.array_equal(a.hr_truth[key], b.hr_truth[key])
    assert not np.array_equal(a.asl, c.asl)
    assert a.info['gm_cbf'] != c.info['gm_cbf']


@pytest.mark.parametrize('label', ['PCASL', 'PASL'])
def test_clean_dm_quantifies_to_true_cbf(label):
    sim = _clean(1, label=label, bs_pulses=4)
    hr = sim.hr_truth
    cbf = kinetics.safe_cbf(hr['cleandm'], hr['cleanm0'], sim.quant_params, 1.0)
    bolus_end = sim.quant_params['pld'] - (sim.quant_params['ti1'] if label == 'PASL' else 0)
    arrived = (hr['att'] < bolus_end) & (hr['cbf'] > 1.0) & (hr['cleanm0'] > 1.0)
    assert arrived.mean() > 0.2 and arrived[hr['seg'] == 1].mean() > 0.95
    np.testing.assert_allclose(cbf[arrived], hr['cbf'][arrived], rtol=1e-4)
    # on the ASL grid the ratio of blurred maps differs from the blurred ratio only at edges
    tr = sim.truth
    gm = (tr['seg'] == 1) & (tr['cbf'] > 20)
    asl_cbf = kinetics.quantify(tr['cleandm'][gm], tr['cleanm0'][gm], sim.quant_params)
    assert np.median(np.abs(asl_cbf / tr['cbf'][gm] - 1)) < 0.02


def test_late_arrival_lowers_pcasl_signal():
    sim = _clean(2, att_range=(1.5, 2.6))
    hr = sim.hr_truth
    late = (hr['att'] > 1.9) & (hr['cbf'] > 10)
    assert late.any()
    cbf = kinetics.quantify(hr['cleandm'][late], hr['cleanm0'][late], sim.quant_params)
    assert np.all(cbf < hr['cbf'][late])


def test_2d_readout_uses_slice_pld():
    sim = _clean(0, readout='2d', asl_voxel=None, asl_matrix=(32, 38, 12), pose=0)
    st = sim.metadata['SliceTiming']
    assert sim.metadata['MRAcquisitionType'] == '2D' and len(st) == 12 and st[-1] > st[0]
    np.testing.assert_allclose(sim.quant_params['pld'], sim.metadata['PostLabelingDelay']
                               + np.asarray(st))
    tr = sim.truth
    gm = (tr['seg'] == 1) & (tr['cbf'] > 20)
    slice_pld = np.broadcast_to(sim.quant_params['pld'], gm.shape)[gm]
    for pld, tol in ((slice_pld, 0.03), (sim.metadata['PostLabelingDelay'], None)):
        cbf = kinetics.quantify(tr['cleandm'][gm], tr['cleanm0'][gm],
                                dict(sim.quant_params, pld=pld))
        err = np.abs(cbf / tr['cbf'][gm] - 1)
        if tol:
            assert np.median(err) < tol
        else:  # one PLD for all slices: the last slices (PLD + 0.3-0.4 s) are far off
            assert np.median(err[np.nonzero(gm)[2] >= 8]) > 0.1


def test_hypo_lesion_lowers_cbf_but_not_t1w():
    for seed in range(20):
        with_lesions = _sim(seed, lesions=3)
        if (with_lesions.hr_truth['lesion'] == 1).sum() > 20:
            break
    else:
        pytest.fail('no hypo-perfused lesion in 20 seeds')
    without = _sim(seed, lesions=0)
    assert not without.hr_truth['lesion'].any()
    # the T1w is drawn before the perfusion: identical with or without lesions
    assert np.array_equal(with_lesions.t1w, without.t1w)
    hypo = with_lesions.hr_truth['lesion'] == 1
    ratio = with_lesions.hr_truth['cbf'][hypo] / without.hr_truth['cbf'][hypo]
    assert np.all((ratio > 0.29) & (ratio < 0.61))
    changed = with_lesions.hr_truth['cbf'] != without.hr_truth['cbf']
    assert not (changed & (with_lesions.hr_truth['seg'] == 1) & ~hypo
                & (with_lesions.hr_truth['lesion'] == 0)).any()
    kinds = [les['kind'] for les in with_lesions.info['lesions']]
    assert 'hypo' in kinds and 1 <= len(kinds) <= 3


def _validator_errors(bids: Path) -> list:
    exe = Path(sys.executable).parent / 'bids-validator-deno'
    if not exe.exists():
        pytest.skip('bids-validator-deno is not installed next to the interpreter')
    run = subprocess.run([str(exe), str(bids), '--json'], capture_output=True, text=True,
                         timeout=120)
    issues = json.loads(run.stdout)['issues']['issues']
    return [i for i in issues if i['severity'] == 'error']


@pytest.mark.parametrize('m0_type, extra', [
    ('Included', {}),
    ('Separate', dict(label='PASL')),
    ('Estimate', dict(bs_pulses=4, readout='2D')),
    ('Absent', dict(subjects=2)),
])
def test_m0_types_write_valid_bids(tmp_path, m0_type, extra):
    out = write_dataset(tmp_path / 'ds', SynthConfig(**{**TINY, 'm0_type': m0_type, **extra}))
    perf = out / 'bids' / 'sub-01' / 'perf'
    md = json.loads((perf / 'sub-01_asl.json').read_text())
    types = (perf / 'sub-01_aslcontext.tsv').read_text().split()
    assert md['M0Type'] == m0_type and types[0] == 'volume_type'
    n_vol = nib.load(perf / 'sub-01_asl.nii.gz').shape[3]
    assert len(types) - 1 == n_vol == 2 * TINY['n_pairs'] + (m0_type == 'Included')
    assert (perf / 'sub-01_m0scan.nii.gz').exists() == (m0_type == 'Separate')
    assert ('m0scan' in types) == (m0_type == 'Included')
    assert ('M0Estimate' in md) == (m0_type == 'Estimate')
    if m0_type == 'Included':
        assert md['RepetitionTimePreparation'][0] > md['RepetitionTimePreparation'][1]
        assert len(md['RepetitionTimePreparation']) == n_vol
    if m0_type == 'Separate':
        m0md = json.loads((perf / 'sub-01_m0scan.json').read_text())
        assert m0md['IntendedFor'] == 'perf/sub-01_asl.nii.gz'
        assert md['BolusCutOffFlag'] and 'LabelingDuration' not in md
    if m0_type == 'Estimate':
        assert md['M0Estimate'] > 0 and md['BackgroundSuppressionNumberPulses'] == 4
        assert len(md['BackgroundSuppressionPulseTime']) == 4 and len(md['SliceTiming']) > 1
    truth = out / 'truth'
    for name in ('cbf', 'cleandm', 'cleanm0', 'seg', 'att', 'gtlesion', 'hrcbf', 'hrcleandm',
                 'hrcleanm0', 'hrseg'):
        assert (truth / f'sub-01_{name}.nii.gz').exists(), name
    assert nib.load(truth / 'sub-01_seg.nii.gz').get_data_dtype() == np.uint16
    params = json.loads((truth / 'params.json').read_text())
    assert len(params['subjects']) == extra.get('subjects', 1)
    assert len(params['subjects']['sub-01']['pose']) == 6
    assert _validator_errors(out / 'bids') == []


def test_no_motion_no_pose_aligns_with_truth():
    sim = _clean(4, pose=0, motion_mm=0)
    tr = sim.truth
    np.testing.assert_allclose(sim.delta_m().mean(0), tr['cleandm'], atol=1e-3)
    brain = tr['seg'] > 0
    ratio = sim.asl[..., 0][brain] / tr['cleanm0'][brain]  # M0 volume: saturation after 6 s
    assert np.all((ratio > 0.75) & (ratio <= 1.0 + 1e-5)) and np.median(ratio) > 0.95
    np.testing.assert_allclose(sim.info['asl_to_t1w'], np.eye(4), atol=1e-9)
    # with pose 0 the ASL grid and the T1w grid share world space: coarse truth follows hr truth
    m = np.linalg.inv(sim.t1w_affine) @ sim.asl_affine
    hr = ndimage.affine_transform(sim.hr_truth['cbf'], m[:3, :3], m[:3, 3],
                                          tr['cbf'].shape, order=1)
    assert _corr(hr, tr['cbf'], brain) > 0.95
    moved = _clean(4, pose=0, motion_mm=3)
    assert np.array_equal(moved.asl[..., 0], sim.asl[..., 0])  # motion starts at volume 0
    assert np.abs(moved.asl[..., -1] - sim.asl[..., -1]).max() > 50


def test_pose_is_recorded_as_asl_to_t1w():
    sim = _clean(4, pose=6.0)
    brain = sim.truth['seg'] > 0
    hr = sim.hr_truth['cbf']

    def resample(to_t1w):
        m = np.linalg.inv(sim.t1w_affine) @ to_t1w @ sim.asl_affine
        return ndimage.affine_transform(hr, m[:3, :3], m[:3, 3], brain.shape, order=1)

    posed = _corr(resample(np.asarray(sim.info['asl_to_t1w'])), sim.truth['cbf'], brain)
    assert posed > 0.95 and posed > _corr(resample(np.eye(4)), sim.truth['cbf'], brain) + 0.1


@pytest.mark.parametrize('noise', ['gaussian', 'rician'])
def test_noise_level_matches_snr(noise):
    sim = _sim(7, snr=20.0, noise=noise, pose=0, n_pairs=4)
    brain_m0 = sim.truth['cleanm0'][sim.truth['seg'] > 0].mean()
    sigma = brain_m0 / 20.0
    assert sim.info['noise_sd'] == pytest.approx(sigma)
    ctrl = sim.asl[..., np.array(sim.volume_types) == 'control']
    inside = sim.truth['cleanm0'] > 20 * sigma  # bright voxels: Rician ~ Gaussian
    est = np.std(ctrl[inside][:, 0] - ctrl[inside][:, 1]) / np.sqrt(2)
    assert est == pytest.approx(sigma, rel=0.1)
    if noise == 'rician':
        air = sim.truth['cleanm0'] == 0
        assert np.mean(ctrl[air]) == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.1)


def test_config_normalises_and_rejects():
    cfg = SynthConfig(label='pcasl', m0_type='ABSENT', readout='2d', lesions=2, asl_voxel=5)
    assert (cfg.label, cfg.m0_type, cfg.readout, cfg.lesions) == ('PCASL', 'Absent', '2D', (2, 2))
    assert cfg.asl_voxel == (5.0, 5.0, 5.0) and cfg.asl_matrix == (40, 47, 38)
    with pytest.raises(ValueError, match='background suppression'):
        SynthConfig(m0_type='absent', bs_pulses=2)
    with pytest.raises(ValueError, match='label'):
        SynthConfig(label='casl')


def test_cli(tmp_path, capsys):
    assert main([str(tmp_path / 'o'), '--t1w-voxel', '3', '--asl-voxel', '6', '--pairs', '1',
                 '--label', 'pasl', '--m0', 'separate', '--lesions', '1', '2']) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / 'o')
    params = json.loads((tmp_path / 'o' / 'truth' / 'params.json').read_text())
    assert params['args']['label'] == 'PASL' and params['args']['lesions'] == [1, 2]
    assert (tmp_path / 'o' / 'bids' / 'sub-01' / 'perf' / 'sub-01_m0scan.nii.gz').exists()
    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / 'x'), '--m0', 'absent', '--bs-pulses', '2'])
    assert err.value.code == 2


def test_heterogeneous_perfusion_has_territories_and_border_lesions():
    """The lesion benchmark's preset: 6-25 mm lesions, some on the GM/WM border, each with its
    own id in the truth, and CBF that varies within grey matter beyond the standard field."""
    kw = dict(asl_voxel=6.0, t1w_voxel=3.0, n_pairs=1, pose=0, lesions=(6, 6), seed=4)
    het = simulate_subject(np.random.default_rng([4, 0]),
                           SynthConfig(perfusion='heterogeneous', **kw))
    std = simulate_subject(np.random.default_rng([4, 0]), SynthConfig(**kw))
    lesions = het.info['lesions']
    assert all(6.0 <= 2 * les['radius_mm'] <= 25.0 for les in lesions)
    assert any(les['border'] for les in lesions) and not any(
        les['border'] for les in std.info['lesions'])
    ids = het.hr_truth['lesionid']
    assert set(np.unique(ids)) == set(range(len(lesions) + 1))
    gm = (het.hr_truth['seg'] == 1) & (het.hr_truth['lesion'] == 0)
    gm_std = (std.hr_truth['seg'] == 1) & (std.hr_truth['lesion'] == 0)
    spread = np.std(het.hr_truth['cbf'][gm]) / np.mean(het.hr_truth['cbf'][gm])
    assert spread > np.std(std.hr_truth['cbf'][gm_std]) / np.mean(std.hr_truth['cbf'][gm_std])
