"""The DeepASL loss: noise error plus the error of the CBF that the kinetic model gives.

.. math::
    L = \\lambda \\, \\lVert N - \\tilde N \\rVert^2
        + (1-\\lambda) \\, \\lVert f_{true} - f(\\Delta M - \\tilde N) \\rVert^2 / s^2

``f`` is :func:`aslproc.kinetics.quantify` on torch tensors (gradients flow through it)
with each sample's own acquisition parameters and M0; ``N`` and ``Ñ`` are in the normalised
units of :mod:`aslproc.utils.denoise` (CBF / ``s``, ``s`` = 100), so both terms are in the
same units. The noise term averages over the whole patch, the kinetic term over the mask.

A batch of *twins* (two disjoint pair subsets of the same truth, :func:`twin_bias`) can add
a third term: the squared bias of the CBF at lesion scale. The MSE lets a network buy less
variance with bias, which is how a focal deficit gets filled in; this term prices the bias
alone.
"""

from __future__ import annotations

import logging

import torch

from aslproc import kinetics
from aslproc.utils.denoise import CBF_SCALE

logger = logging.getLogger(__name__)


def masked_mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Mean squared difference of each sample (B, ...) weighted by ``mask`` (a 0/1 mask or
    non-negative weights; all voxels alike when None).

    >>> masked_mse(torch.tensor([[1., 3.]]), torch.zeros(1, 2), torch.tensor([[0., 1.]]))
    tensor([9.])
    >>> masked_mse(torch.tensor([[1., 3.]]), torch.zeros(1, 2), torch.tensor([[1., 3.]]))
    tensor([7.])
    """
    w = torch.ones_like(a) if mask is None else torch.clamp(mask.to(a.dtype), min=0.0)
    dims = tuple(range(1, a.dim()))
    return torch.sum(w * (a - b) ** 2, dim=dims) / torch.clamp(w.sum(dim=dims), min=1.0)


def kinetic_cbf(dm: torch.Tensor, m0: torch.Tensor, params: list) -> torch.Tensor:
    """CBF (ml/100 g/min) of each sample of a batch (B, 1, H, W) with its own parameters."""
    return torch.stack([kinetics.quantify(dm[i], m0[i], params[i]) for i in range(len(dm))])


#: Gaussian SD (voxels) of the low-pass that defines "lesion scale" in :func:`twin_bias`
#: (about 10 mm FWHM at 3 mm voxels: the lesion guard's scale).
BIAS_SIGMA = 1.5


def _lowpass(a: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W), zero outside the image."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=a.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    a = torch.nn.functional.conv2d(a, k.view(1, 1, -1, 1), padding=(r, 0))
    return torch.nn.functional.conv2d(a, k.view(1, 1, 1, -1), padding=(0, r))


def twin_bias(err: torch.Tensor, mask: torch.Tensor, sigma: float = BIAS_SIGMA
              ) -> torch.Tensor:
    """Squared lesion-scale bias of each twin pair, estimated without bias: (B/2,).

    ``err`` (B, 1, H, W) holds the errors of samples ``2i`` and ``2i + 1``, made from
    disjoint pairs of the same truth. Each is low-passed inside ``mask`` (normalised
    convolution, :data:`BIAS_SIGMA`); their product averaged over the mask has expectation
    (E[low-passed error])² because the two noises are independent: the variance, which the
    MSE already prices, drops out. One twin pair can give a negative value.

    >>> e = torch.full((2, 1, 5, 5), 0.5)
    >>> twin_bias(e, torch.ones(2, 1, 5, 5))
    tensor([0.2500])
    >>> twin_bias(torch.stack([e[0], -e[1]]), torch.ones(2, 1, 5, 5))
    tensor([-0.2500])
    """
    w = torch.clamp(mask.to(err.dtype), 0, 1)
    low = _lowpass(err * w, sigma) / torch.clamp(_lowpass(w, sigma), min=1e-3)
    inside = w[0::2] * w[1::2]
    prod = low[0::2] * low[1::2] * inside
    return prod.sum(dim=(1, 2, 3)) / torch.clamp(inside.sum(dim=(1, 2, 3)), min=1.0)


def deepasl_loss(noise_pred: torch.Tensor, noisy_x: torch.Tensor, noise_true: torch.Tensor,
                 to_x: torch.Tensor, m0: torch.Tensor, cbf_true: torch.Tensor, params: list,
                 mask: torch.Tensor, lam: float = 0.2, weight: torch.Tensor | None = None,
                 bias_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """λ·noise MSE + (1 − λ)·CBF MSE (CBF in units of ``CBF_SCALE``).

    Parameters
    ----------
    noise_pred, noisy_x, noise_true : Tensor (B, 1, H, W)
        Predicted noise Ñ, the noisy normalised mean ΔM, the true noise N (normalised units).
    to_x : Tensor (B,)
        Normalised units per ΔM unit of each sample, to map ``noisy_x - Ñ`` back to ΔM.
    m0, cbf_true, mask : Tensor (B, 1, H, W)
        M0 used for quantification, target CBF (clean ΔM and clean M0), loss mask.
    params : list of dict
        :func:`aslproc.kinetics.quantify` parameters of each sample.
    lam : float
        Weight of the noise term (0.2 in DeepASL).
    weight : Tensor (B,), optional
        Per-sample weights (mean 1 is advisable), e.g. to keep hopelessly noisy samples from
        dominating the batch; uniform when None.
    bias_weight : float
        Weight of :func:`twin_bias` of the CBF (the batch must be twins); 0: none.

    Returns
    -------
    loss : Tensor (scalar)
    terms : dict
        ``noise``, ``kinetic`` and ``bias`` terms as floats, for the loss curve.
    """
    noise_term = masked_mse(noise_pred, noise_true)
    dm_hat = (noisy_x - noise_pred) / to_x.view(-1, 1, 1, 1)
    m0_safe = torch.where(mask > 0, m0, torch.ones_like(m0))
    cbf_hat = kinetic_cbf(dm_hat, m0_safe, params)
    kin_term = masked_mse(cbf_hat / CBF_SCALE, cbf_true / CBF_SCALE, mask)
    per_sample = lam * noise_term + (1.0 - lam) * kin_term
    w = torch.ones_like(per_sample) if weight is None else weight.to(per_sample.dtype)
    loss = torch.sum(w * per_sample) / torch.sum(w)
    bias = torch.zeros(())
    if bias_weight:
        bias = twin_bias((cbf_hat - cbf_true) / CBF_SCALE, mask)
        wt = 0.5 * (w[0::2] + w[1::2])
        bias = torch.sum(wt * bias) / torch.sum(wt)
        loss = loss + bias_weight * bias
    return loss, {'noise': float(noise_term.mean().detach()),
                  'kinetic': float(kin_term.mean().detach()), 'bias': float(bias.detach())}
