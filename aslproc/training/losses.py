"""The DeepASL loss: noise error plus the error of the CBF that the kinetic model gives.

.. math::
    L = \\lambda \\, \\lVert N - \\tilde N \\rVert^2
        + (1-\\lambda) \\, \\lVert f_{true} - f(\\Delta M - \\tilde N) \\rVert^2 / s^2

``f`` is :func:`aslproc.kinetics.quantify` on torch tensors (gradients flow through it)
with each sample's own acquisition parameters and M0; ``N`` and ``Ñ`` are in the normalised
units of :mod:`aslproc.utils.denoise` (CBF / ``s``, ``s`` = 100), so both terms are in the
same units. The noise term averages over the whole patch, the kinetic term over the mask.
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


def deepasl_loss(noise_pred: torch.Tensor, noisy_x: torch.Tensor, noise_true: torch.Tensor,
                 to_x: torch.Tensor, m0: torch.Tensor, cbf_true: torch.Tensor, params: list,
                 mask: torch.Tensor, lam: float = 0.2, weight: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict]:
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

    Returns
    -------
    loss : Tensor (scalar)
    terms : dict
        ``noise`` and ``kinetic`` terms as floats, for the loss curve.
    """
    noise_term = masked_mse(noise_pred, noise_true)
    dm_hat = (noisy_x - noise_pred) / to_x.view(-1, 1, 1, 1)
    m0_safe = torch.where(mask > 0, m0, torch.ones_like(m0))
    cbf_hat = kinetic_cbf(dm_hat, m0_safe, params)
    kin_term = masked_mse(cbf_hat / CBF_SCALE, cbf_true / CBF_SCALE, mask)
    per_sample = lam * noise_term + (1.0 - lam) * kin_term
    w = torch.ones_like(per_sample) if weight is None else weight.to(per_sample.dtype)
    loss = torch.sum(w * per_sample) / torch.sum(w)
    return loss, {'noise': float(noise_term.mean().detach()),
                  'kinetic': float(kin_term.mean().detach())}
