"""The multi-delay fit (aslproc.utils.multidelay) and the general kinetic model it uses."""

import numpy as np
import pytest
import torch

from aslproc import kinetics
from aslproc.synth import SynthConfig, simulate_subject
from aslproc.utils import cbf as cbfu
from aslproc.utils import multidelay as md

PCASL = dict(label_type='PCASL', tau=1.4, t1_blood=1.65, alpha=0.88 * 0.95**2, lam=0.9)
PASL = dict(label_type='PASL', ti1=0.7, t1_blood=1.65, alpha=0.98 * 0.95**2, lam=0.9)
PLDS = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
TIS = np.round(np.arange(1, 11) * 0.3, 1)


@pytest.mark.parametrize('params', [PCASL, PASL])
def test_kinetic_curve_numpy_and_torch_agree(params):
    rng = np.random.default_rng(20260314)
    att, t = rng.uniform(0, 3, (50, 1)), rng.uniform(0.1, 3.5, (50, 6))
    ref = kinetics.kinetic_curve(params, att, t)
    got = kinetics.kinetic_curve(params, torch.as_tensor(att), torch.as_tensor(t))
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    # linear in CBF, and forward() is CBF times the curve times M0
    np.testing.assert_allclose(kinetics.forward(37.0, 800.0, dict(params, pld=t), att),
                               37.0 * 800.0 * ref, rtol=1e-12)


def test_kinetic_curve_regimes_by_hand():
    # PCASL τ 1.4 s: nothing before arrival, partial bolus, then independent of ATT
    assert kinetics.kinetic_curve(PCASL, 2.0, 0.5) == 0.0
    full = kinetics.kinetic_curve(PCASL, 0.3, 1.0)
    assert kinetics.kinetic_curve(PCASL, 0.9, 1.0) == pytest.approx(full, rel=1e-12)
    assert 0 < kinetics.kinetic_curve(PCASL, 1.2, 1.0) < full
    assert kinetics.full_bolus_time(PASL, 1.5) == pytest.approx(0.8)


@pytest.mark.parametrize('params,times', [(PCASL, PLDS), (PASL, TIS)])
def test_fit_recovers_noise_free_parameters(params, times):
    rng = np.random.default_rng(7)
    n = 400
    cbf, att = rng.uniform(10, 120, n), rng.uniform(0.5, 1.4, n)
    st = rng.choice([0.0, 0.2, 0.45], n)[:, None]  # 2D readout: slices read later
    t = times[None] + (st if params is PCASL else np.zeros((n, 1)))
    y = cbf[:, None] * kinetics.kinetic_curve(params, att[:, None], t)
    f, a = md.fit_cbf_att(y, t, np.full(len(times), 8.0), params)
    np.testing.assert_allclose(f, cbf, rtol=1e-4)
    # an arrival before a voxel's first delay is not in its data: flagged, bounded above
    flat, cap = md.censored(a, t, params)
    truly = att <= kinetics.full_bolus_time(params, t.min(axis=1))
    np.testing.assert_array_equal(flat, truly)
    np.testing.assert_allclose(a[~flat], att[~flat], atol=1e-4)
    assert (a[flat] <= cap[flat] + 1e-9).all() and (params is PCASL) == flat.any()


def test_fit_is_bounded_and_finite_without_signal():
    rng = np.random.default_rng(3)
    y = np.concatenate([np.zeros((5, 6)), -np.ones((5, 6)) * 1e-3, rng.normal(0, 1e-2, (90, 6))])
    f, a = md.fit_cbf_att(y, PLDS, np.full(6, 8.0), PCASL)
    lo, hi = md.att_bounds(PCASL, PLDS[None])
    assert np.isfinite(f).all() and np.isfinite(a).all()
    assert (a >= lo).all() and (a <= hi).all() and hi == pytest.approx(2.8)
    assert (np.abs(f) <= md.CBF_BOUNDS[1]).all()
    np.testing.assert_array_equal(f[:5], 0.0)


def test_censored_voxels_take_the_neighbours_att():
    # arrival before the first delay: CBF is determined, ATT only bounded by 0.5 s
    t = np.array([0.5, 1.0, 1.5])
    y = 50.0 * kinetics.kinetic_curve(PCASL, 0.3, t)[None]
    f, a = md.fit_cbf_att(y, t, np.ones(3), PCASL)
    flat, cap = md.censored(a, t[None], PCASL)
    assert f[0] == pytest.approx(50.0) and flat[0] and cap[0] == 0.5


def test_pair_delays_follow_the_pairing():
    types = ['m0scan', 'label', 'control', 'label', 'control']
    data = np.arange(5.0).reshape(1, 1, 1, 5) * np.array([0, 1, 3, 10, 30.0])
    plds = [0.0, 1.0, 1.0, 2.0, 2.0]
    pairs = cbfu.pairwise_delta_m(data, types)  # control − label: 3·2−1·1, 30·4−10·3
    assert pairs.ravel().tolist() == [5.0, 90.0]
    assert cbfu.pairwise_values(plds, types).tolist() == [1.0, 2.0]


def _multidelay_sim(label, snr, **kw):
    plds = tuple(PLDS) if label == 'PCASL' else tuple(TIS[::2])
    cfg = SynthConfig(label=label, plds=plds, n_pairs=2, tau=1.4, ti1=0.7, snr=snr,
                      t1w_voxel=3.0, asl_voxel=6.0, att_range=(0.5, 2.0), pose=0, seed=2,
                      noise='gaussian', **kw)
    return cfg, simulate_subject(np.random.default_rng(2), cfg)


@pytest.mark.parametrize('label', ['PCASL', 'PASL'])
def test_simulated_multidelay_series(label):
    cfg, sim = _multidelay_sim(label, 1e9, readout='2D', m0_type='Included')
    md_ = sim.metadata
    assert len(md_['PostLabelingDelay']) == len(sim.volume_types) == 1 + 2 * 2 * len(cfg.plds)
    assert md_['PostLabelingDelay'][0] == 0.0 and sim.truth['cleandm'].shape[-1] == len(cfg.plds)
    # the clean ΔM of each delay block is what the series' pairs show
    pairs = cbfu.pairwise_delta_m(sim.asl, sim.volume_types)
    dm, counts = md.delay_means(pairs, cbfu.pairwise_values(md_['PostLabelingDelay'],
                                                            sim.volume_types), cfg.plds)
    head = sim.truth['seg'] > 0
    np.testing.assert_allclose(dm[head], sim.truth['cleandm'][head], atol=1e-2)
    assert counts.tolist() == [2] * len(cfg.plds)


@pytest.mark.parametrize('label', ['PCASL', 'PASL'])
def test_fit_series_on_the_simulator(label):
    cfg, sim = _multidelay_sim(label, 400.0, readout='2D' if label == 'PCASL' else '3D')
    tr = sim.truth
    params = dict(label_type=label, tau=cfg.tau, ti1=cfg.ti1, t1_blood=1.65,
                  alpha=sim.quant_params['alpha'], lam=0.9,
                  volume_plds=sim.metadata['PostLabelingDelay'],
                  slice_timing=sim.metadata.get('SliceTiming'))
    out = md.fit_series(sim.asl, tr['cleanm0'], tr['seg'] > 0, sim.volume_types, params,
                        zooms=cfg.asl_voxel)
    gm = tr['seg'] == 1
    assert abs(out['cbf'][gm].mean() / tr['cbf'][gm].mean() - 1) < 0.08
    assert abs(out['att'][gm].mean() / tr['att'][gm].mean() - 1) < 0.08
    assert np.isfinite(out['att']).all() and (out['att'][tr['seg'] == 0] == 0).all()
    assert out['deltam'].shape == (*tr['seg'].shape, len(cfg.plds))


@pytest.mark.gpu
def test_cpu_and_cuda_fits_agree():
    rng = np.random.default_rng(11)
    t = PLDS[None] + rng.choice([0.0, 0.3], 2000)[:, None]
    att = rng.uniform(0.5, 2, (2000, 1))
    y = rng.uniform(20, 80, (2000, 1)) * kinetics.kinetic_curve(PCASL, att, t)
    y = y + rng.normal(0, 1e-3, y.shape)
    cpu = md.fit_cbf_att(y, t, np.full(6, 8.0), PCASL, device='cpu')
    gpu = md.fit_cbf_att(y, t, np.full(6, 8.0), PCASL, device='cuda')
    for c, g in zip(cpu, gpu, strict=True):
        np.testing.assert_allclose(g, c, rtol=1e-6, atol=1e-6)
