"""Pair-aware subtraction: each pair's ΔM formed at its own midpoint pose."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aslproc import synth
from aslproc.utils.cbf import cbf_map, m0_map, mean_delta_m
from aslproc.utils.motion import correct_motion


def _m0(series, sim, types=None):
    """M0 as the pipeline takes it from a series with the M0 volume included."""
    return m0_map(series, types or sim.volume_types, dict(
        m0_type='Included', m0_estimate=None, m0_tr=sim.metadata['RepetitionTimePreparation'][0],
        t1_tissue=1.33, m0_scale=1.0))


def _gm_bias(series, sim):
    cbf = cbf_map(mean_delta_m(series, sim.volume_types), _m0(series, sim), sim.quant_params)
    gm = sim.truth['seg'] == 1
    return float(cbf[gm].mean() / sim.truth['cbf'][gm].mean() - 1)


@pytest.fixture(scope='module')
def jerky():
    """The motion benchmark's worst case: 4 pairs, no background suppression, 0.3 mm/°
    jitter, 1 mm drift and two jerks (one between a control and its label), 7.8 mm slices."""
    config = synth.SynthConfig(asl_matrix=(64, 76, 24), n_pairs=4, snr=100, pose=0,
                               lesions=(2, 3), seed=9102, bs_pulses=0, jitter_mm=0.3,
                               drift_mm=1.0, jerks=2)
    sim = synth.simulate_subject(np.random.default_rng([9102, 0]), config)
    twin = synth.simulate_subject(np.random.default_rng([9102, 0]),
                                  dataclasses.replace(config, still_twin=True))
    return sim, twin


@pytest.fixture(scope='module')
def realigned(jerky):
    sim, _ = jerky
    per_volume = correct_motion(sim.asl, sim.asl_affine, sim.volume_types, num_threads=2,
                                pair_aware=False)
    pair_aware = correct_motion(sim.asl, sim.asl_affine, sim.volume_types, num_threads=2,
                                pair_aware=True)
    return per_volume, pair_aware


def test_pair_aware_subtraction_removes_the_through_plane_residue(jerky, realigned):
    """Resampled one by one, the volumes of a pair lose different amounts of signal at the top
    of the brain (through-plane partial volume, not linear in the pose): GM bias +19.8 %
    against +2.2 % for the still twin (measured). Subtracted at each pair's midpoint: +2.8 %."""
    sim, twin = jerky
    (per_volume, _, _), (pair_aware, _, _) = realigned
    still = _gm_bias(twin.asl, twin)
    assert _gm_bias(per_volume, sim) - still > 0.10
    assert abs(_gm_bias(pair_aware, sim) - still) < 0.03


def test_pair_aware_leaves_a_still_series_bit_identical(jerky):
    _, twin = jerky
    out, _, _ = correct_motion(twin.asl, twin.asl_affine, twin.volume_types, pair_aware=True)
    assert np.array_equal(out, twin.asl.astype(np.float32))


def test_motion_step_with_pair_aware_subtraction_meets_the_targets(jerky, realigned):
    """The whole motion step on it (pair-aware subtraction, compensation, pair and voxel tests,
    fill): within 3 dB of the still twin and |GM bias| ≤ 5 % (issue #13, no background
    suppression). Measured on the benchmark: +1.8 % GM bias, 0.2 dB below the twin
    (volume by volume: +8.1 %)."""
    from aslproc.utils.motion import motion_robust_steps
    from aslproc.utils.quantify import static_mean, unreliable_and_filled

    sim, twin = jerky
    series, params, reference = realigned[1]
    robust, types, ratio, _ = motion_robust_steps(series, sim.asl_affine, sim.volume_types,
                                                  params, reference)
    m0 = _m0(robust, sim, types)
    cbf = cbf_map(mean_delta_m(robust, types), m0, sim.quant_params)
    filled, _ = unreliable_and_filled(cbf, ratio, m0, np.ones(cbf.shape), types,
                                      static_mean(robust, types))
    truth, seg = sim.truth['cbf'], sim.truth['seg']
    brain, gm = (seg > 0) & (seg < 3), seg == 1

    def psnr(x):
        return 20 * np.log10(truth[brain].max() / np.sqrt(np.mean((x[brain] - truth[brain]) ** 2)))

    still = cbf_map(mean_delta_m(twin.asl, twin.volume_types), _m0(twin.asl, twin),
                    twin.quant_params)
    assert psnr(filled) > psnr(still) - 3.0
    assert abs(filled[gm].mean() / truth[gm].mean() - 1) < 0.05
