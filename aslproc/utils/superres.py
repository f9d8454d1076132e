"""Array and file layers of the super-resolution stage: ASL-grid CBF → CBF on the T1w grid.

:func:`super_resolve` works on arrays and affines: it crops the T1w grid to the brain's
bounding box (plus a margin of one ASL voxel), normalises the CBF (robust maximum) and the
T1w (robust z-score inside the brain), builds the pyramid of T1w-aligned grids from about the
ASL voxel to the T1w voxel (steps of about :data:`SCALE` per axis), describes the acquisition
model on each grid (a Gaussian point-spread function of FWHM one ASL voxel, then sampling at
the ASL voxel centres), calls :func:`aslproc.training.sr_fit.fit_pyramid` and puts the result
back on the full T1w grid (linear upsampling outside the crop). :func:`superres_file` is the
file layer (NIfTI in, NIfTI out) that the nipype interface calls.

The ASL→T1w transform is the ITK file of :mod:`aslproc.utils.registration` (T1w points →
ASL points, LPS), so no image is resampled twice: every operator maps T1w-grid voxels to
ASL voxel coordinates directly.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from aslproc.training import sr_detail, sr_fit
from aslproc.utils import pv_fractions
from aslproc.utils.quantify import load, save_like

logger = logging.getLogger(__name__)

#: Spacing ratio between consecutive pyramid levels (Cui, Gong et al.: about 0.75).
SCALE = 0.75
#: Iterations per level when a CUDA device is used (as published) and on the CPU. On the CPU
#: the default is 0: the T1w-guided detail alone. At the CPU budget that fits in minutes
#: (40 iterations per level, 1-3 min) the GAN's detail lowered PSNR in the simulator (4 mm:
#: -0.3 dB vs the guided detail alone; benchmarks/RESULTS.md), so it is opt-in there.
GPU_ITERS, CPU_ITERS = 2000, 0
#: FWHM → Gaussian SD.
FWHM_TO_SD = 1 / (2 * math.sqrt(2 * math.log(2)))
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def default_config(device: str, iters: int | None = None, seed: int = 0) -> sr_fit.FitConfig:
    """The fit budget for a device: the published one on CUDA, a light one on the CPU.

    CUDA: 2000 iterations per level, 32-64-128-channel U-Net, 48³ patches, 4-layer critic.
    CPU: :data:`CPU_ITERS` iterations (the guided detail alone); with ``iters`` > 0 an
    8-16-channel U-Net, 24³ patches, 3-layer critic.
    ``iters`` overrides the iterations per level.
    """
    if str(device).startswith('cuda'):
        cfg = sr_fit.FitConfig(
            iters=GPU_ITERS,
            patch=48,
            batch=4,
            features=(32, 64, 128),
            critic_features=(32, 64, 128, 256),
            seed=seed,
        )
    else:
        cfg = sr_fit.FitConfig(iters=CPU_ITERS, seed=seed)
    if iters is not None:
        cfg = sr_fit.FitConfig(**{**cfg.__dict__, 'iters': int(iters)})
    return cfg


def ras_xfm(xfm_file) -> np.ndarray:
    """The ITK ASL→T1w transform file as a 4×4 RAS matrix (T1w world → ASL world, mm)."""
    from aslproc.utils.registration import read_xfm

    return _FLIP @ read_xfm(xfm_file) @ _FLIP


def t1w_to_asl_voxels(lr_affine, hr_affine, ras) -> np.ndarray:
    """4×4 map from T1w voxel indices to (fractional) ASL voxel indices."""
    return np.linalg.inv(lr_affine) @ ras @ hr_affine


def resample(
    lr: np.ndarray, vox_map: np.ndarray, shape, order: int = 1, mode: str = 'constant'
) -> np.ndarray:
    """Sample ``lr`` at ``vox_map`` of each output voxel (order 1 linear, 3 cubic spline)."""
    return ndimage.affine_transform(
        np.asarray(lr, np.float32),
        vox_map[:3, :3],
        vox_map[:3, 3],
        output_shape=tuple(shape),
        order=order,
        mode=mode,
    )


def brain_box(mask: np.ndarray, margin) -> tuple:
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels per axis."""
    idx = np.nonzero(mask)
    if not idx[0].size:
        raise ValueError('the brain mask is empty: nothing to super-resolve')
    margin = np.broadcast_to(np.asarray(margin, int), (3,))
    return tuple(
        slice(max(0, int(a.min() - m)), min(int(n), int(a.max() + m + 1)))
        for a, m, n in zip(idx, margin, mask.shape, strict=True)
    )


def level_spacings(lr_spacing, hr_spacing, levels: int | None = None) -> list:
    """Per-axis voxel sizes from about ``lr_spacing`` (level 0) to ``hr_spacing`` (last).

    ``levels`` steps (``None`` or 0: enough for steps of about :data:`SCALE`), geometric per
    axis. An axis where the ASL is already as fine as the T1w keeps the T1w spacing.

    >>> sp = level_spacings([4, 4, 4], [1, 1, 1])
    >>> len(sp) - 1, np.round(sp[1], 2).tolist(), sp[-1].tolist()
    (5, [3.03, 3.03, 3.03], [1.0, 1.0, 1.0])
    >>> [s.tolist() for s in level_spacings([4, 4, 2], [1, 1, 1], levels=2)]
    [[4.0, 4.0, 2.0], [2.0, 2.0, 1.4142135623730951], [1.0, 1.0, 1.0]]
    """
    hr = np.asarray(hr_spacing, float)
    ratio = np.maximum(np.asarray(lr_spacing, float) / hr, 1.0)
    if not levels:
        levels = max(1, math.ceil(math.log(ratio.max()) / -math.log(SCALE) - 1e-6))
    return [hr * ratio ** ((levels - i) / levels) for i in range(levels + 1)]


def _lr_geometry(lr_affine, lr_shape, hr_affine, ras):
    """ASL spacing and PSF SD (mm) along the T1w axes, and the T1w-voxel → ASL-voxel map."""
    vox_map = t1w_to_asl_voxels(lr_affine, hr_affine, ras)
    lr_zooms = np.sqrt((np.asarray(lr_affine)[:3, :3] ** 2).sum(0))
    hr_zooms = np.sqrt((np.asarray(hr_affine)[:3, :3] ** 2).sum(0))
    # a 1-voxel step along a T1w axis, in ASL voxels; its length gives the ASL spacing there
    lr_spacing = hr_zooms / np.linalg.norm(vox_map[:3, :3], axis=0)
    # direction cosines between the ASL and T1w axes carry the PSF SD (separable approx.)
    rot = (vox_map[:3, :3] * lr_zooms[:, None]) / hr_zooms[None, :]
    psf_mm = np.sqrt((rot**2 * (lr_zooms[:, None] * FWHM_TO_SD) ** 2).sum(0))
    return vox_map, lr_spacing, psf_mm, hr_zooms


def _normalise_guide(t1w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Robust z-score of the T1w inside the brain, clipped to ±4, zero outside."""
    vals = t1w[mask]
    med = np.median(vals)
    mad = 1.4826 * np.median(np.abs(vals - med)) or 1.0
    return np.where(mask, np.clip((t1w - med) / mad, -4, 4), 0.0).astype(np.float32)


def _to_level(arr: np.ndarray, spacing_ratio, shape) -> np.ndarray:
    """Anti-aliased (Gaussian) resampling of a crop onto a coarser level grid."""
    t = torch.as_tensor(np.asarray(arr, np.float32))[None, None]
    sigma = np.sqrt(np.maximum(np.asarray(spacing_ratio) ** 2 - 1, 0)) * FWHM_TO_SD
    return sr_fit._resize(sr_detail.gaussian_blur(t, sigma), shape)[0, 0].numpy()


def super_resolve(
    lr,
    lr_affine,
    t1w,
    t1w_affine,
    ras=None,
    mask=None,
    *,
    levels=None,
    config: sr_fit.FitConfig | None = None,
    device='cpu',
    gm=None,
    wm=None,
    csf=None,
) -> tuple:
    """Super-resolve an ASL-grid map onto the T1w grid.

    Parameters
    ----------
    lr : ndarray (x, y, z)
        CBF on the ASL grid (0 outside the brain, as the pipeline writes it).
    lr_affine, t1w_affine : ndarray (4, 4)
        Voxel-to-world matrices of the ASL and T1w grids.
    t1w : ndarray (X, Y, Z)
        The T1w image (the guide).
    ras : ndarray (4, 4), optional
        T1w world → ASL world (see :func:`ras_xfm`); identity when omitted.
    mask : ndarray (X, Y, Z), optional
        Brain mask on the T1w grid; default the support of ``lr`` brought to the T1w grid.
    levels : int, optional
        Pyramid steps (default: steps of about 0.75).
    config : FitConfig, optional
        Fit budget (default :func:`default_config` for ``device``).
    gm, wm : ndarray (X, Y, Z), optional
        GM and WM probabilities on the T1w grid: extra guide channels, and the regressors of
        the anatomy-guided detail (:func:`aslproc.training.sr_detail.guided_detail`).
    csf : ndarray (X, Y, Z), optional
        CSF probability: with it, voxels at the tissue borders are split into two classes
        by their T1w intensity (:func:`aslproc.utils.pv_fractions.intensity_fractions`)
        before ``gm``/``wm`` are used, so that partial-volume cortex labelled CSF is not
        given CSF's CBF.

    Returns
    -------
    ndarray (X, Y, Z) float32 on the T1w grid, and a dict describing the fit.
    """
    t_start = time.perf_counter()
    config = config or default_config(str(device))
    lr = np.nan_to_num(np.asarray(lr, np.float32))
    ras = np.eye(4) if ras is None else np.asarray(ras, float)
    vox_map, lr_sp, psf_mm, hr_zooms = _lr_geometry(lr_affine, lr.shape, t1w_affine, ras)
    linear = resample(lr, vox_map, t1w.shape, order=1)
    if mask is None:
        mask = resample((lr != 0).astype(np.float32), vox_map, t1w.shape) > 0.5
    mask = np.asarray(mask) > 0
    box = brain_box(mask, np.ceil(lr_sp / hr_zooms).astype(int) + 2)
    shape_hr = tuple(s.stop - s.start for s in box)
    offset = np.array([s.start for s in box], float)
    spacings = level_spacings(lr_sp, hr_zooms, levels)
    scale = float(np.percentile(np.abs(lr[lr != 0]), 99)) if np.any(lr) else 1.0
    scale = scale or 1.0
    guide_hr = [_normalise_guide(np.asarray(t1w, np.float32)[box], mask[box])]
    regressors = 'T1w intensity'
    if gm is not None and wm is not None:
        regressors = 'GM/WM posteriors'
        if csf is not None:
            gm, wm = pv_fractions.intensity_fractions(t1w, gm, wm, csf, mask)
            regressors = 'GM/WM fractions (posteriors split at tissue borders by T1w intensity)'
        guide_hr += [np.where(mask[box], np.asarray(t, np.float32)[box], 0.0) for t in (gm, wm)]
    # ASL voxels constrained: every centre inside the crop (up to its last voxel, where the
    # brain reaches the edge of the T1w field: the data fix the values there too)
    lr_idx = np.indices(lr.shape).reshape(3, -1).T.astype(float)
    to_hr = np.linalg.inv(vox_map)
    pts_hr = lr_idx @ to_hr[:3, :3].T + to_hr[:3, 3] - offset
    keep = np.all((pts_hr >= 0) & (pts_hr <= np.asarray(shape_hr) - 1), axis=1)
    lr_index = np.flatnonzero(keep)
    pts_hr, values = pts_hr[keep], lr.reshape(-1)[keep] / scale
    level_data, prev = [], None
    for sp in spacings:
        shape = tuple(int(max(2, round(n * h / s))) for n, h, s in
                      zip(shape_hr, hr_zooms, sp, strict=True))
        ratio = np.asarray(shape_hr) / np.asarray(shape)  # level voxel in T1w voxels
        level_mm = ratio * hr_zooms
        sigma = np.sqrt(np.maximum(psf_mm**2 - (level_mm * FWHM_TO_SD) ** 2, 0)) / level_mm
        to_hr = np.diag([*ratio, 1.0])
        to_hr[:3, 3] = 0.5 * ratio - 0.5 + offset
        level_data.append(sr_fit.LevelData(
            guide=np.stack([_to_level(g, ratio, shape) for g in guide_hr]),
            mask=_to_level(mask[box], ratio, shape) > 0.5,
            points=(pts_hr + 0.5) / ratio - 0.5, sigma=sigma, to_lr=vox_map @ to_hr,
            step=np.ones(3) if prev is None else prev / level_mm))
        prev = level_mm
    # level-0 start: linear sampling of the ASL data at the level-0 voxel centres
    x_init = resample(lr / scale, level_data[0].to_lr, level_data[0].shape, mode='nearest')
    logger.info(
        'SR: ASL %s (%.2f x %.2f x %.2f mm along the T1w axes) -> T1w crop %s, '
        '%d levels, %d iterations each, %d ASL voxels constrained, device %s',
        lr.shape,
        *lr_sp,
        shape_hr,
        len(spacings) - 1,
        config.iters,
        len(values),
        device,
    )
    x_hr, record = sr_fit.fit_pyramid(level_data, values, lr_index, lr.shape, x_init,
                                      linear[box] / scale, config, device)
    out = linear.copy()
    out[box] = x_hr * scale
    means = tissue_means(linear, out, gm, wm)
    if means:
        logger.info('SR tissue means (ml/100 g/min), linear upsampling -> SR: %s', '; '.join(
            f"{t} {m['before']:.1f} -> {m['after']:.1f}" for t, m in means.items()))
    info = dict(
        record,
        schedule=[np.round(s, 3).tolist() for s in spacings],
        levels=len(spacings) - 1,
        iterations=config.iters,
        seed=config.seed,
        device=str(device),
        config=config.to_dict(),
        crop=[[s.start, s.stop] for s in box],
        consistency={k: v * scale for k, v in record['consistency'].items()},
        time_s=round(time.perf_counter() - t_start, 2),
        tissue_means=means,
        regressors=regressors if config.guided else None,
    )
    return out.astype(np.float32), info


def tissue_means(before, after, gm=None, wm=None) -> dict:
    """Mean CBF in GM and WM (probability > 0.5) of two maps on the T1w grid.

    The SR only redistributes detail inside ASL voxels, so its tissue means should stay
    close to those of the linear upsampling; a large change would mean tissue CBF was
    invented from the anatomy. Empty without tissue maps.

    >>> p = np.array([1.0, 1.0, 0.0, 0.0])
    >>> tissue_means(np.array([50., 50, 20, 20]), np.array([55., 57, 18, 18]), p, 1 - p)
    {'GM': {'before': 50.0, 'after': 56.0}, 'WM': {'before': 20.0, 'after': 18.0}}
    """
    if gm is None or wm is None:
        return {}
    out = {}
    for name, prob in (('GM', gm), ('WM', wm)):
        sel = np.asarray(prob) > 0.5
        if sel.any():
            out[name] = {'before': round(float(np.mean(before[sel])), 3),
                         'after': round(float(np.mean(after[sel])), 3)}
    return out


def superres_file(
    cbf_file,
    t1w_file,
    xfm_file,
    mask_file=None,
    out_file='sr_cbf.nii.gz',
    *,
    levels=None,
    iters=None,
    seed: int = 0,
    device='auto',
    num_threads=None,
    baseline: bool = False,
    gm_file=None,
    wm_file=None,
    csf_file=None,
) -> dict:
    """Write the super-resolved CBF on the T1w grid (and, with ``baseline``, its linear and
    cubic-spline resamplings next to it); returns ``out_file``, ``linear_file``,
    ``cubic_file`` (or None) and ``info``. ``gm_file``/``wm_file``/``csf_file``: tissue
    probabilities on the T1w grid (see :func:`super_resolve`).
    """
    from aslproc.models.infer import resolve_device

    dev = resolve_device(device)
    if num_threads:
        torch.set_num_threads(int(num_threads))
    lr, lr_img = load(cbf_file)
    t1w, t1_img = load(t1w_file)
    mask = load(mask_file)[0] > 0.5 if mask_file else None
    gm, wm, csf = (load(f)[0] if f else None for f in (gm_file, wm_file, csf_file))
    ras = ras_xfm(xfm_file) if xfm_file else np.eye(4)
    config = default_config(str(dev), iters, seed)
    out, info = super_resolve(
        lr, lr_img.affine, t1w, t1_img.affine, ras, mask, levels=levels, config=config,
        device=dev, gm=gm, wm=wm, csf=csf,
    )
    vox_map = t1w_to_asl_voxels(lr_img.affine, t1_img.affine, ras)
    linear = resample(lr, vox_map, t1w.shape, 1)
    departure_file = save_like(data_departure(out, linear, lr, vox_map), lr_img,
                               Path(out_file).with_name('sr_departure.nii.gz'))
    result = dict(
        out_file=save_like(out, t1_img, out_file), linear_file=None, cubic_file=None, info=info,
        departure_file=departure_file,
    )
    if baseline:
        stem = Path(out_file).name.split('.')[0]
        for key, order in (('linear_file', 1), ('cubic_file', 3)):
            path = Path(out_file).with_name(f'{stem}_{key.split("_")[0]}.nii.gz')
            resampled = linear if order == 1 else resample(lr, vox_map, t1w.shape, order)
            result[key] = save_like(resampled, t1_img, path)
    return result


def data_departure(out: np.ndarray, linear: np.ndarray, lr: np.ndarray,
                   vox_map: np.ndarray) -> np.ndarray:
    """What the SR changed in the values its data fix: the output minus ``linear`` (the
    linear upsampling of ``lr``) resampled back onto the ASL grid (trilinear, at the ASL
    voxel centres), 0 outside ``lr``'s support.

    Resampled independently of the fit (scipy, whole grid), so that it checks the fit's
    constraint rather than repeating it; :func:`aslproc.utils.qc.data_departure_sd` turns
    it into the QC number.

    >>> lr = np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3) + 10
    >>> half = np.diag([0.5, 0.5, 0.5, 1.0])  # a 2x finer grid over the same field
    >>> linear = resample(lr, half, (8, 8, 6)); out = linear.copy()
    >>> out[1::2] += 5.0  # detail between the ASL voxel centres: the data do not see it
    >>> float(np.abs(data_departure(out, linear, lr, half)).max())
    0.0
    >>> out[2:4, 2:4, 2:4] -= 5.0  # a change at an ASL voxel centre: they do
    >>> float(data_departure(out, linear, lr, half)[1, 1, 1])
    -5.0
    """
    changed = resample(out - linear, np.linalg.inv(vox_map), lr.shape, 1)
    return np.where(lr != 0, changed, 0.0).astype(np.float32)


def sr_sidecar(meta: dict, info: dict) -> dict:
    """The SR sidecar: the table's entries plus what the fit did (for the data sink).

    >>> sr_sidecar({'Units': 'x'}, {'schedule': [[4, 4, 4]], 'iterations': 0, 'seed': 1,
    ...            'device': 'cpu', 'time_s': 2.0, 'levels': []})['SRIterationsPerLevel']
    0
    """
    keys = {'schedule': 'SRVoxelSizesPerLevel', 'iterations': 'SRIterationsPerLevel',
            'seed': 'SRSeed', 'device': 'SRDevice', 'time_s': 'SRTimeSeconds',
            'consistency': 'SRConsistency', 'config': 'SRConfig',
            'tissue_means': 'SRTissueMeansBeforeAfter',
            'regressors': 'SRDetailRegressors'}
    return dict(meta, **{name: info[key] for key, name in keys.items() if key in info})
