"""Physics: hand-computed values, invariants, numpy/torch agreement."""

import math

import numpy as np
import pytest
import torch

from aslproc import kinetics as k

PCASL = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
PASL = dict(label_type='PASL', pld=1.8, ti1=0.8, t1_blood=1.65, alpha=0.98, lam=0.9)


def test_pcasl_hand_value():
    # 6000 * 0.9 * 0.5 * e^(2/1.65) / (2 * 0.85 * 1.65 * 80 * (1 - e^(-1.5/1.65)))
    expected = 6000 * 0.9 * 0.5 * math.exp(2 / 1.65) / (
        2 * 0.85 * 1.65 * 80 * (1 - math.exp(-1.5 / 1.65)))
    assert k.pcasl_cbf(0.5, 80.0, 2.0, 1.5) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(67.72, abs=0.01)  # 9075.6 / 134.02


def test_pasl_hand_value():
    expected = 6000 * 0.9 * 0.7 * math.exp(1.5 / 1.65) / (2 * 0.98 * 0.7 * 90)
    assert k.pasl_cbf(0.7, 90.0, 1.5, 0.7) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize('params', [PCASL, PASL])
def test_linear_in_delta_m_and_inverse_in_m0(params):
    rng = np.random.default_rng(20261123)
    dm = rng.uniform(0.1, 3.0, 50)
    m0 = rng.uniform(50, 150, 50)
    base = k.quantify(dm, m0, params)
    np.testing.assert_allclose(k.quantify(3 * dm, m0, params), 3 * base, rtol=1e-12)
    np.testing.assert_allclose(k.quantify(dm, 2 * m0, params), base / 2, rtol=1e-12)


@pytest.mark.parametrize('params', [PCASL, PASL])
def test_forward_inverse_round_trip(params):
    rng = np.random.default_rng(7)
    cbf = rng.uniform(5, 120, 100)
    m0 = rng.uniform(500, 1500, 100)
    dm = k.forward(cbf, m0, params, att=0.5)
    np.testing.assert_allclose(k.quantify(dm, m0, params), cbf, rtol=1e-10)


def test_late_arrival_lowers_signal():
    early = k.forward(60.0, 1000.0, PCASL, att=1.0)
    late = k.forward(60.0, 1000.0, PCASL, att=2.5)
    never = k.forward(60.0, 1000.0, PCASL, att=4.0)
    assert 0 < late < early and never == 0
    pasl_late = k.forward(60.0, 1000.0, PASL, att=1.3)
    assert 0 < pasl_late < k.forward(60.0, 1000.0, PASL, att=0.5)


@pytest.mark.parametrize('params', [PCASL, PASL])
def test_numpy_and_torch_agree(params):
    rng = np.random.default_rng(3)
    dm = rng.uniform(0.1, 3.0, (4, 5))
    m0 = rng.uniform(50, 150, (4, 5))
    att = rng.uniform(0.3, 2.5, (4, 5))
    ref = k.quantify(dm, m0, params)
    got = k.quantify(torch.tensor(dm), torch.tensor(m0), params)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    fwd = k.forward(torch.tensor(dm), torch.tensor(m0), params, att=torch.tensor(att))
    np.testing.assert_allclose(fwd.numpy(), k.forward(dm, m0, params, att=att), rtol=1e-12)


def test_torch_gradient_flows():
    dm = torch.tensor([1.0, 2.0], requires_grad=True)
    k.quantify(dm, torch.tensor([100.0, 100.0]), PCASL).sum().backward()
    assert torch.allclose(dm.grad, torch.full((2,), k.quantify(1.0, 100.0, PCASL)).float())


def test_per_slice_pld_broadcasts():
    dm = np.ones((2, 2, 3))
    pld = np.array([1.5, 1.6, 1.7]).reshape(1, 1, 3)
    out = k.quantify(dm, 100.0, dict(PCASL, pld=pld))
    assert out.shape == (2, 2, 3)
    assert out[0, 0, 2] > out[0, 0, 0]
    assert out[0, 0, 1] == pytest.approx(k.quantify(1.0, 100.0, dict(PCASL, pld=1.6)))


def test_safe_cbf_zero_where_m0_void():
    out = k.safe_cbf(np.array([1.0, 1.0]), np.array([100.0, 0.5]), PCASL, 1.0)
    assert out[1] == 0 and np.isfinite(out).all()


def test_errors():
    with pytest.raises(k.AslMetadataError, match='ArterialSpinLabelingType'):
        k.quantify(1.0, 1.0, dict(PCASL, label_type='FAIR'))
    with pytest.raises(k.AslMetadataError, match='RepetitionTimePreparation'):
        k.m0_saturation_correction(0.0, 1.3)
    with pytest.raises(k.AslMetadataError, match='BackgroundSuppressionNumberPulses'):
        k.background_suppression_factor(-1)


def test_field_strength_tables():
    assert k.t1_blood(3) == 1.65 and k.t1_blood(1.5) == 1.35 and k.t1_blood(2.9) == 1.65
    assert k.background_suppression_factor(2) == pytest.approx(0.9025)
