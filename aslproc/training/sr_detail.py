"""The anatomy-guided detail layer of the SR, and its consistency with the ASL data.

:class:`Consistency` brings a fine grid back to the ASL grid (through the point-spread
function, or at the voxel centres) and spreads ASL values onto it; :func:`null_detail` removes
from a detail layer what the acquisition would see of it, so that adding it to the linear
upsampling leaves the data unchanged. :func:`guided_detail` is the detail the CPU default adds:
the GM/WM structure finer than an ASL voxel, scaled by the subject's own CBF-vs-tissue fit and
by the local departure of the data from that fit (:func:`refine_ratio`). The GAN pyramid that
can add to it is :mod:`aslproc.training.sr_fit`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Upper bound of the local scaling of the guided detail (data / tissue model).
RATIO_MAX = 2.0
#: Smoothing of that ratio, in multiples of the ASL point-spread function's SD: the noise of
#: the measured CBF would otherwise be multiplied into the detail.
RATIO_SMOOTH = 2.0
#: Default number of :func:`refine_ratio` steps, and the smoothing of each step's correction
#: in multiples of the PSF's SD (benchmarks/RESULTS.md, stop 31).
RATIO_STEPS = 6
RATIO_STEP_SMOOTH = 1.5


def gaussian_blur(x: torch.Tensor, sigma: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, X, Y, Z) with per-axis SD in voxels (edges replicated)."""
    b, c = x.shape[:2]
    out = x.reshape(b * c, 1, *x.shape[2:])
    for axis, s in enumerate(sigma):
        if s <= 1e-3:
            continue
        r = max(1, int(np.ceil(3 * s)))
        k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / s) ** 2)
        shape = [1, 1, 1, 1, 1]
        shape[axis + 2] = 2 * r + 1
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        out = F.conv3d(F.pad(out, pad, mode='replicate'), (k / k.sum()).view(shape))
    return out.reshape(b, c, *x.shape[2:])


class Consistency:
    """Bring a grid back to the ASL grid (``sample``) and spread ASL values onto it (``spread``).

    ``sample`` is what resampling onto the ASL grid does (trilinear interpolation at the ASL
    voxel centres, ``points`` (N, 3) in this grid's voxel coordinates); ``spread`` is the
    linear upsampling of ASL-grid values (``lr_shape``, voxels ``lr_index`` (N,) flat, others
    zero) through ``to_lr`` (4×4, this grid's voxels → ASL voxels). ``spread`` is smooth, so
    corrections made with it add no detail.
    """

    def __init__(self, shape, points, lr_shape, lr_index, to_lr, sigma=(0, 0, 0),
                 device='cpu'):
        self.shape, self.lr_shape = tuple(shape), tuple(lr_shape)
        self.sigma = [float(v) for v in sigma]
        self.index = torch.as_tensor(np.asarray(lr_index, np.int64), device=device)
        self.grid = _norm_grid(torch.as_tensor(np.asarray(points, np.float32)),
                               self.shape).view(1, 1, 1, -1, 3).to(device)
        self.to_lr = np.asarray(to_lr, np.float32)
        self.device = device
        self._up = None

    def sample(self, x: torch.Tensor, psf: bool = False) -> torch.Tensor:
        """(1, 1, X, Y, Z) → (N,); with ``psf``, through the ASL point-spread function first."""
        if psf:
            x = gaussian_blur(x, self.sigma)
        return F.grid_sample(x, self.grid, mode='bilinear', padding_mode='border',
                             align_corners=True).reshape(-1)

    def spread(self, values: torch.Tensor) -> torch.Tensor:
        """(N,) → (1, 1, X, Y, Z): linear upsampling of the ASL-grid values."""
        if self._up is None:
            idx = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32)
                                               for n in self.shape], indexing='ij'), -1)
            m = torch.as_tensor(self.to_lr)
            lr_pos = idx @ m[:3, :3].T + m[:3, 3]
            self._up = _norm_grid(lr_pos, self.lr_shape)[None].to(self.device)
        vol = torch.zeros(int(np.prod(self.lr_shape)), dtype=values.dtype, device=values.device)
        vol[self.index] = values
        return F.grid_sample(vol.view(1, 1, *self.lr_shape), self._up, mode='bilinear',
                             padding_mode='zeros', align_corners=True)


def _norm_grid(pos: torch.Tensor, shape) -> torch.Tensor:
    """Voxel coordinates (..., 3) → grid_sample's normalised (x, y, z) = reversed axes."""
    size = torch.tensor(shape, dtype=torch.float32).sub(1).clamp(min=1)
    return (2 * pos / size - 1).flip(-1)


@torch.no_grad()
def null_detail(detail: torch.Tensor, op: Consistency, iters: int = 6,
                rounds: int = 1) -> torch.Tensor:
    """Remove from ``detail`` what the ASL acquisition would see of it.

    Back-projection (``detail -= spread(sample(detail))``) alternately through the ASL
    point-spread function (the voxel means) and at the ASL voxel centres (what resampling
    back onto the ASL grid reads), so that adding the result to an upsampling of the data
    changes neither. Each step subtracts a linear upsampling of ASL-grid values: smooth,
    so the high-frequency detail is kept.
    """
    for _ in range(rounds):
        for psf in (True, False):
            for _ in range(iters):
                detail = detail - op.spread(op.sample(detail, psf))
    return detail


@torch.no_grad()
def guided_detail(guide: torch.Tensor, mask: torch.Tensor, target: torch.Tensor,
                  op: Consistency, proportional: bool = True,
                  free_intercept: bool = False,
                  ratio_steps: int = RATIO_STEPS) -> tuple[list, torch.Tensor]:
    """Anatomy-guided detail: ``Σ a_k · (g_k - spread(sample_psf(g_k)))`` inside the brain.

    The regressors ``g_k`` are the GM and WM maps when the guide carries them
    (channels 1 and 2), else the T1w (channel 0). The ``a_k`` come from a least-squares fit
    of the measured CBF against the regressors as the ASL acquisition sees them, over the ASL
    voxels inside the brain, with a constant. For the tissue fractions the constant is
    perfusion that does not depend on tissue, which cannot be negative: a negative one
    (partial volume with the zero outside the brain fitted as a dilution) shrinks the GM/WM
    coefficients and the tissue model's prediction, so the fit is redone without it
    (unless ``free_intercept``). A map that does not follow the tissue at all (a constant)
    is explained by the constant and gets no detail. The T1w's constant is free, its
    intensity having an arbitrary offset. Returns those coefficients (the constant last,
    in the units of ``target``) and the detail.

    So the detail is the anatomy finer than an ASL voxel, scaled by how CBF follows it in
    this subject's own data: no fixed GM/WM values are assumed, and a region where the data
    do not follow the anatomy (a lesion) keeps its low-pass value because the detail
    averages to zero there. With ``proportional`` the detail is also scaled, voxel by
    voxel, by the ratio of the measured CBF to the tissue model's prediction (both at the
    ASL scale, capped at
    :data:`RATIO_MAX`), so that inside a hypoperfused region the GM/WM detail shrinks with
    the perfusion and the region keeps its contrast against normal GM; ``ratio_steps``
    sharpen that ratio through the PSF (:func:`refine_ratio`), so that a focal lesion is
    scaled by its own ratio rather than by one spread into the normal GM around it. Tissue
    probabilities are the better regressors: CBF is high in GM and low in both WM and CSF,
    which lie at opposite ends of the T1w intensity scale, so no single slope on the T1w
    fits both borders.
    """
    tissue = guide.shape[1] >= 3
    regs = guide[:, 1:3] if tissue else guide[:, :1]
    inside = op.sample(mask.to(regs.dtype)[None, None]) > 0.99
    if int(inside.sum()) < regs.shape[1] + 2:
        return [0.0] * (regs.shape[1] + 1), torch.zeros_like(guide[:, :1])
    chans = [regs[:, k:k + 1] for k in range(regs.shape[1])]
    seen = [op.sample(c, psf=True) for c in chans]
    cols = [sv[inside] for sv in seen]
    sol = torch.linalg.lstsq(torch.stack(cols + [torch.ones_like(cols[0])], 1),
                             target[inside][:, None]).solution[:, 0]
    if tissue and not free_intercept and sol[-1] < 0:
        sol = torch.linalg.lstsq(torch.stack(cols, 1), target[inside][:, None]).solution[:, 0]
        sol = torch.cat([sol, sol.new_zeros(1)])
    coef = sol[:-1]
    detail = sum(c * (g - op.spread(sv)) for c, g, sv in zip(coef, chans, seen, strict=True))
    coefs, inside_brain = [round(float(c), 6) for c in sol], mask.to(regs.dtype)
    if not proportional:
        return coefs, detail * inside_brain
    # local perfusion relative to what the tissue model predicts at the ASL scale
    model_seen = sum(c * sv for c, sv in zip(coef, seen, strict=True)) + sol[-1]
    smooth = [RATIO_SMOOTH * v for v in op.sigma]
    ratio = (gaussian_blur(op.spread(target), smooth)
             / gaussian_blur(op.spread(model_seen), smooth).abs().clamp_min(1e-6))
    ratio = ratio.clamp(0.0, RATIO_MAX)
    if ratio_steps:
        model = (sum(c * g for c, g in zip(coef, chans, strict=True)) + sol[-1]) * inside_brain
        ratio = refine_ratio(ratio, model, model_seen, target, op, ratio_steps)
    return coefs, detail * ratio * inside_brain


@torch.no_grad()
def refine_ratio(ratio: torch.Tensor, model: torch.Tensor, model_seen: torch.Tensor,
                 target: torch.Tensor, op: Consistency, steps: int) -> torch.Tensor:
    """Sharpen the data / tissue-model ratio so that ``ratio · model`` reproduces the data.

    The ratio measured at the ASL scale is the true one blurred by the point-spread function
    and by :data:`RATIO_SMOOTH`: a focal departure from the tissue model (a lesion) comes out
    wider and shallower, so the detail is under-scaled inside a hyperperfused lesion and
    over-scaled in the normal grey matter around it, which lowers the lesion's contrast.
    Each Landweber step adds the smoothed misfit of ``sample_psf(ratio · model)`` to the data,
    relative to the tissue model at the same scale; the steps are few and smoothed
    (:data:`RATIO_STEP_SMOOTH`), because each also lets more of the input's noise into the
    ratio. ``model`` is the tissue model on the fine grid (zero outside the brain).
    """
    smooth = [RATIO_STEP_SMOOTH * v for v in op.sigma]
    norm = gaussian_blur(op.spread(model_seen), smooth).abs().clamp_min(1e-6)
    for _ in range(steps):
        misfit = target - op.sample(ratio * model, psf=True)
        ratio = (ratio + gaussian_blur(op.spread(misfit), smooth) / norm).clamp(0.0, RATIO_MAX)
    return ratio
