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
residuals (carried up the pyramid) plus an anatomy-guided detail (:func:`guided_detail`;
the GM/WM structure finer than an ASL voxel, scaled by the subject's own CBF-vs-tissue fit).
Before it is added, :func:`null_detail` removes from it what the ASL acquisition would see
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

logger = logging.getLogger(__name__)


#: Upper bound of the local scaling of the guided detail (data / tissue model).
RATIO_MAX = 2.0
#: Smoothing of that ratio, in multiples of the ASL point-spread function's SD: the noise of
#: the measured CBF would otherwise be multiplied into the detail.
RATIO_SMOOTH = 2.0
#: Default number of :func:`refine_ratio` steps, and the smoothing of each step's correction
#: in multiples of the PSF's SD (benchmarks/RESULTS.md, stop 31).
RATIO_STEPS = 6
RATIO_STEP_SMOOTH = 1.5


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
    # local perfusion relative to what the tissue model predicts at the ASL scale
    model_seen = sum(c * sv for c, sv in zip(coef, seen, strict=True)) + sol[-1]
    smooth = [RATIO_SMOOTH * v for v in op.sigma]
    ratio = (gaussian_blur(op.spread(target), smooth)
             / gaussian_blur(op.spread(model_seen), smooth).abs().clamp_min(1e-6))
    if not proportional:
        return [round(float(c), 6) for c in sol], detail * mask.to(regs.dtype)
    ratio = ratio.clamp(0.0, RATIO_MAX)
    if ratio_steps:
        model = (sum(c * g for c, g in zip(coef, chans, strict=True)) + sol[-1]) * mask
        ratio = refine_ratio(ratio, model, model_seen, target, op, ratio_steps)
    return [round(float(c), 6) for c in sol], detail * ratio * mask.to(regs.dtype)


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
