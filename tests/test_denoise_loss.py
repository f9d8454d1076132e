"""The DeepASL loss against values worked out by hand on a 1x1x2x2 case."""

import pytest
import torch

from aslproc import kinetics
from aslproc.training import losses

PARAMS = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)


def _case():
    k = float(kinetics.quantify(1.0, 1.0, PARAMS))  # CBF per unit dM/M0 (8630.3)
    t = lambda v: torch.tensor(v, dtype=torch.float64).reshape(1, 1, 2, 2)  # noqa: E731
    # M0 = 100 and to_x = k / (100 * 100): normalised x is CBF / 100, so CBF = 100 * x_hat
    return dict(noise_pred=t([0.1, 0.0, 0.0, 0.1]), noisy_x=t([0.6, 0.5, 0.4, 0.3]),
                noise_true=t([0.1, 0.1, 0.0, 0.0]),
                to_x=torch.tensor([k / 1e4], dtype=torch.float64), m0=t([100.0] * 4),
                cbf_true=t([50.0, 40.0, 40.0, 20.0]), params=[PARAMS],
                mask=t([1.0, 1.0, 1.0, 0.0]))


@pytest.mark.parametrize('lam,expected', [
    # x_hat = [0.5, 0.5, 0.4, 0.2] -> CBF [50, 50, 40, 20]; CBF error / 100 = [0, .1, 0, (masked)]
    # noise error [0, -.1, 0, .1] -> MSE 0.005; kinetic MSE 0.01 / 3
    (0.2, 0.2 * 0.005 + 0.8 * 0.01 / 3),
    (1.0, 0.005),
    (0.0, 0.01 / 3),
])
def test_loss_by_hand(lam, expected):
    loss, terms = losses.deepasl_loss(**_case(), lam=lam)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert terms['noise'] == pytest.approx(0.005)
    assert terms['kinetic'] == pytest.approx(0.01 / 3)


def test_loss_has_gradient_through_the_kinetic_model():
    case = _case()
    case['noise_pred'] = case['noise_pred'].clone().requires_grad_(True)
    loss, _ = losses.deepasl_loss(**case, lam=0.0)
    loss.backward()
    # only the second voxel is wrong (CBF 50 for 40): d/dN of (0.5 - N - 0.4)^2 / 3 = -2*0.1/3
    assert case['noise_pred'].grad.reshape(-1).tolist() == pytest.approx(
        [0.0, -0.2 / 3, 0.0, 0.0])


def test_sample_weights():
    case = _case()
    two = {k: torch.cat([v, v]) if torch.is_tensor(v) else v * 2 for k, v in case.items()}
    two['noisy_x'][1] = two['noisy_x'][1] - torch.tensor([0.1, 0.1, 0.1, 0.1],
                                                         dtype=torch.float64).reshape(1, 2, 2)
    lw, _ = losses.deepasl_loss(**two, lam=0.2, weight=torch.tensor([1.0, 0.0]))
    l1, _ = losses.deepasl_loss(**case, lam=0.2)
    assert lw.item() == pytest.approx(l1.item())


def test_twin_bias_prices_the_bias_and_not_the_variance():
    """Twins with independent white errors of SD 0.3 have a large MSE and no bias; twins
    sharing a smooth error of 0.1 (a deficit filled in) have a small MSE and bias 0.1."""
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(400, 1, 16, 16)
    white = 0.3 * torch.randn(400, 1, 16, 16, generator=g)
    shared = torch.full((200, 1, 16, 16), 0.1).repeat_interleave(2, dim=0)
    mse = lambda e: losses.masked_mse(e, 0 * e).mean()  # noqa: E731
    assert mse(white) > 5 * mse(shared)
    assert abs(losses.twin_bias(white, mask).mean().item()) < 0.002
    assert losses.twin_bias(shared, mask).mean().item() == pytest.approx(0.01, rel=1e-4)
    assert losses.twin_bias(shared + white, mask).mean().item() == pytest.approx(0.01, abs=0.003)


def test_bias_weight_adds_the_twin_term():
    case = _case()
    two = {k: torch.cat([v, v]) if torch.is_tensor(v) else v * 2 for k, v in case.items()}
    plain, _ = losses.deepasl_loss(**two, lam=0.2)
    biased, terms = losses.deepasl_loss(**two, lam=0.2, bias_weight=3.0)
    # both twins read CBF 50 for 40 in one voxel of three: low-passed error at most 0.1
    assert 0 < terms['bias'] < 0.01
    assert biased.item() == pytest.approx(plain.item() + 3.0 * terms['bias'])
