"""Per-subject fit of the multi-scale super-resolution GAN (torch side of the SR stage).

The pyramid runs coarse → fine over grids aligned with the T1w, from about the ASL voxel size
(level 0) to the T1w voxel (last level). Level ``l`` upsamples the output of level ``l-1``
(trilinear), and its generator (:class:`~aslproc.models.srgan.SRGenerator`, warm-started
from the level below) adds a residual read from that upsampling and the T1w guide. There is no
high-resolution data: every loss comes from the subject's own low-resolution CBF.

* **Reconstruction** (weight ``alpha``), zero-shot: the level-0 image (the ASL data) is
  blurred and downsampled by the same per-axis factor as one pyramid step, upsampled again,
  and the generator must restore it, T1w guide at level 0 beside it. What it learns about
  sharpening one step at a coarse scale it applies at the finer levels (scale invariance,
  the assumption of SinGAN and ZSSR).
* **Low-pass consistency** (weight ``beta``): the residual a level adds, blurred by the ASL
  point-spread function, must vanish, so no level changes what the acquisition saw.
* **WGAN-GP** (weight ``adv``, gradient penalty ``gp``): a patch critic
  (:class:`~aslproc.models.srgan.PatchCritic`) compares patches of the level's output with
  patches of the level-0 image, so fine-scale texture follows the statistics of the data.

The result is a detail layer over the linear upsampling of the ASL data: the generators'
residuals (carried up the pyramid) plus an anatomy-guided detail
(:func:`~aslproc.training.sr_detail.guided_detail`; the GM/WM structure finer than an ASL
voxel, scaled by the subject's own CBF-vs-tissue fit). Before it is added,
:func:`~aslproc.training.sr_detail.null_detail` removes from it what the ASL acquisition would see
(its samples at the ASL voxel centres and its means over the ASL point-spread function), by
back-projection with a linear (smooth) upsampler. So the output resampled back onto the ASL
grid equals the linear upsampling resampled back (the input, up to interpolation error), and
its ASL-scale means are those of the linear upsampling: detail is redistributed inside ASL
voxels, never added to them. (An exact projection through the Gaussian PSF was tried first:
it has to deconvolve the noisy input and lost 8 dB on the public case.)
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from aslproc.models.srgan import PatchCritic, SRGenerator
from aslproc.training.sr_detail import (
    RATIO_STEPS,
    Consistency,
    gaussian_blur,
    guided_detail,
    null_detail,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of one per-subject fit (defaults: the CPU budget)."""

    iters: int = 40                 # generator updates per level
    patch: int = 24                 # patch edge (voxels), clamped to the grid
    batch: int = 2                  # patches per update
    features: tuple = (8, 16)       # generator U-Net channels
    critic_features: tuple = (8, 16, 32)
    lr: float = 1e-3                # Adam learning rate (generator and critic)
    alpha: float = 10.0             # zero-shot reconstruction weight
    beta: float = 10.0              # low-pass consistency weight
    adv: float = 0.1                # adversarial weight (0: no critic)
    gp: float = 0.1                 # WGAN-GP gradient-penalty weight
    proj_iters: int = 6             # back-projection steps (see null_detail)
    guided: bool = True             # add the anatomy-guided detail (see guided_detail)
    proportional: bool = True       # scale it by the local data / tissue-model ratio
    free_intercept: bool = False    # let the tissue fit's constant go negative (up to stop 28)
    ratio_steps: int = RATIO_STEPS  # refinements of that ratio through the PSF (see guided_detail)
    seed: int = 0

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


@dataclass
class LevelData:
    """One pyramid level in numpy (built by :mod:`aslproc.utils.superres`).

    ``guide`` (Cg, X, Y, Z) guide channels; ``mask`` (X, Y, Z) bool, where patches are drawn;
    ``points`` (N, 3) the constrained ASL voxel centres in this grid's voxel coordinates;
    ``sigma`` (3,) the ASL point-spread function (Gaussian SD) in this grid's voxels;
    ``step`` (3,) the per-axis upsampling factor from the level below; ``to_lr`` (4, 4) this
    grid's voxel indices → ASL voxel indices.
    """

    guide: np.ndarray
    mask: np.ndarray
    points: np.ndarray
    sigma: np.ndarray
    step: np.ndarray = field(default_factory=lambda: np.ones(3))
    to_lr: np.ndarray = field(default_factory=lambda: np.eye(4))

    @property
    def shape(self) -> tuple:
        return tuple(self.mask.shape)


def _patch_starts(rng, mask: np.ndarray, size, n: int) -> list:
    """Corners of ``n`` patches of ``size`` whose centres lie in ``mask`` (anywhere if empty)."""
    idx = np.argwhere(mask)
    if not len(idx):
        idx = np.argwhere(np.ones_like(mask, bool))
    centres = idx[rng.integers(0, len(idx), n)]
    hi = np.asarray(mask.shape) - np.asarray(size)
    return [tuple(np.clip(c - np.asarray(size) // 2, 0, hi)) for c in centres]


def _crop(t: torch.Tensor, start, size) -> torch.Tensor:
    return t[..., start[0]:start[0] + size[0], start[1]:start[1] + size[1],
             start[2]:start[2] + size[2]]


def _stack(t, starts, size):
    return torch.cat([_crop(t, s, size) for s in starts], 0)


def _wgan_gp(critic, real, fake, gp: float):
    """Critic loss ``D(fake) - D(real) + gp·(‖∇D(mix)‖ - 1)²`` (Gulrajani et al., 2017)."""
    eps = torch.rand(real.shape[0], 1, 1, 1, 1, device=real.device)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mix).sum(), mix, create_graph=True)
    penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return critic(fake).mean() - critic(real).mean() + gp * penalty


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(int(s) for s in size), mode='trilinear',
                         align_corners=False)


def zero_shot_pair(x0: torch.Tensor, guide0: torch.Tensor, step) -> tuple:
    """(input, target) of the reconstruction loss: ``x0`` degraded by one pyramid step."""
    step = np.maximum(np.asarray(step, float), 1.0)
    small = np.maximum(np.round(np.asarray(x0.shape[2:]) / step), 2)
    sigma = np.sqrt(step**2 - 1) / 2.355
    degraded = _resize(_resize(gaussian_blur(x0, sigma), small), x0.shape[2:])
    return torch.cat([degraded, guide0], 1), x0


def fit_pyramid(levels: Sequence[LevelData], lr_values: np.ndarray, lr_index: np.ndarray,
                lr_shape, x_init: np.ndarray, base: np.ndarray, config: FitConfig = FitConfig(),
                device='cpu') -> tuple[np.ndarray, dict]:
    """Fit the generators level by level; return the consistent image on the last grid.

    Parameters
    ----------
    levels : sequence of LevelData
        Coarse to fine; level 0 is at about the ASL resolution, the last is the T1w grid.
    lr_values : ndarray (N,)
        The measured (normalised) CBF at the constrained ASL voxels, in the order of
        ``levels[i].points``.
    lr_index, lr_shape : ndarray (N,), tuple
        Flat indices of those voxels in the ASL grid, and its shape.
    x_init : ndarray, shape of level 0
        Starting image at level 0 (an upsampling of the ASL data).
    base : ndarray, shape of the last level
        The classical upsampling the result is a detail layer over (linear).

    Returns
    -------
    ndarray, shape of the last level
        ``project(base + highpass(x_L - base))``: the generators' detail with its low-pass
        part (the ASL point-spread function) removed, so local means stay those of ``base``,
        then made to pass through the ASL data exactly.
    dict
        Per-level losses, sizes and times, and the largest consistency error.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device(device)
    target = torch.as_tensor(np.asarray(lr_values, np.float32), device=device)
    tens = [torch.as_tensor(np.asarray(lv.guide, np.float32), device=device)[None]
            for lv in levels]
    last = levels[-1]
    op = Consistency(last.shape, last.points, lr_shape, lr_index, last.to_lr, last.sigma, device)
    x = x0 = torch.as_tensor(np.asarray(x_init, np.float32), device=device)[None, None]
    detail = torch.zeros_like(x)  # sum of the generators' residuals, carried up the pyramid
    gen = SRGenerator(1 + tens[0].shape[1], config.features).to(device)
    critic = PatchCritic(1, config.critic_features).to(device) if config.adv > 0 else None
    record = {'per_level': []}
    for i, lv in enumerate(levels):
        t0 = time.perf_counter()
        if i:
            x, detail = _resize(x, lv.shape), _resize(detail, lv.shape)
        stats = {}
        if i and config.iters > 0:
            pair = zero_shot_pair(x0, tens[0], lv.step)
            rec_start = _full_rec(gen, pair)
            stats = _fit_level(gen, critic, lv, x, tens[i], x0, pair, config, rng, i)
            stats.update(rec_start=rec_start, rec_end=_full_rec(gen, pair))
            with torch.no_grad():
                new = gen(torch.cat([x, tens[i]], 1))
            detail, x = detail + new - x, new
        record['per_level'].append(dict(shape=list(lv.shape), iters=config.iters if i else 0,
                                     time_s=round(time.perf_counter() - t0, 2), **stats))
        gen = copy.deepcopy(gen)  # warm start of the next level
    b = torch.as_tensor(np.asarray(base, np.float32), device=device)[None, None]
    if config.guided:
        slope, guided = guided_detail(tens[-1], torch.as_tensor(last.mask, device=device),
                                      target, op, config.proportional,
                                      config.free_intercept, config.ratio_steps)
        detail = detail + guided
        record['guide_slope'], record['guide_intercept'] = slope[:-1], slope[-1]
    if config.iters > 0 or config.guided:
        detail = null_detail(detail, op, config.proj_iters)
    x = b + detail
    with torch.no_grad():
        record['consistency'] = {
            'point_max_abs': op.sample(detail).abs().max().item(),
            'psf_rms': op.sample(detail, True).pow(2).mean().sqrt().item(),
            'linear_point_rms': (op.sample(b) - target).pow(2).mean().sqrt().item(),
            'detail_rms': detail.pow(2).mean().sqrt().item()}
    return x[0, 0].cpu().numpy(), record


@torch.no_grad()
def _full_rec(gen, pair) -> float:
    """Reconstruction loss of the zero-shot pair over the whole level-0 grid."""
    return round(F.mse_loss(gen(pair[0]), pair[1]).item(), 8)


def _fit_level(gen, critic, lv, x_up, guide, x0, pair, config, rng, level) -> dict:
    """Adam updates of one level's generator (and critic); returns the last losses."""
    opt_g = torch.optim.Adam(gen.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_c = (torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.999))
             if critic is not None else None)
    size = tuple(min(config.patch, a, b) for a, b in zip(lv.shape, x0.shape[2:], strict=True))
    size0 = tuple(min(config.patch, s) for s in pair[1].shape[2:])
    use_critic = critic is not None and min(size) >= critic.min_size
    mask0 = np.ones(x0.shape[2:], bool)
    inp_full = torch.cat([x_up, guide], 1)
    losses = {}
    for it in range(config.iters):
        starts = _patch_starts(rng, lv.mask, size, config.batch)
        inp = _stack(inp_full, starts, size)
        fake = gen(inp)
        s0 = _patch_starts(rng, mask0, size0, config.batch)
        rec = F.mse_loss(gen(_stack(pair[0], s0, size0)), _stack(pair[1], s0, size0))
        low = gaussian_blur(fake - inp[:, :1], lv.sigma).pow(2).mean()
        loss = config.alpha * rec + config.beta * low
        if use_critic:
            real = _stack(x0, _patch_starts(rng, mask0, size, config.batch), size)
            opt_c.zero_grad()
            c_loss = _wgan_gp(critic, real, fake.detach(), config.gp)
            c_loss.backward()
            opt_c.step()
            adv = -critic(fake).mean()
            loss = loss + config.adv * adv
            losses.update(critic=c_loss.item(), adv=adv.item())
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        losses.update(rec=rec.item(), lowpass=low.item(), total=loss.item())
        if it == 0 or (it + 1) % max(1, config.iters // 4) == 0:
            logger.info('SR level %d iteration %d/%d: %s', level, it + 1, config.iters,
                        ', '.join(f'{k} {v:.4g}' for k, v in losses.items()))
    return {k: round(v, 6) for k, v in losses.items()}
