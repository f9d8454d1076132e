"""File layer of quantification: load NIfTIs, call :mod:`aslproc.utils.cbf`, save NIfTIs.

Every function takes explicit output paths and returns them, so the nipype
interfaces stay one-line adapters and the functions run without nipype too.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from aslproc.utils import cbf as cbfu
from aslproc.utils import lesion_guard as lg
from aslproc.utils import qc as qcu

logger = logging.getLogger(__name__)


def load(path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Data as float32 and the image (for its affine and header)."""
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), img


def save_like(data: np.ndarray, like: nib.Nifti1Image, out_file) -> str:
    """Save ``data`` with the affine and spatial header of ``like`` as float32."""
    hdr = like.header.copy()
    hdr.set_data_dtype(np.float32)
    if data.ndim == 3 and len(hdr.get_zooms()) > 3:
        hdr.set_data_shape(data.shape)
    img = nib.Nifti1Image(data.astype(np.float32), like.affine, hdr)
    img.set_sform(like.affine, code=int(like.header['sform_code']) or 1)
    img.set_qform(like.affine, code=int(like.header['qform_code']) or 1)
    nib.save(img, str(out_file))
    return str(out_file)


def compute_m0_file(asl_file, volume_types, m0: dict, out_file, m0_file=None) -> str:
    """Write the M0 map on the ASL grid (see :func:`aslproc.utils.cbf.m0_map`).

    A separate M0 on another grid is resampled onto the ASL grid through the
    affines of both headers (linear interpolation) before use.
    """
    data, img = load(asl_file)
    m0_image = None
    if m0_file:
        m0_image = _on_grid(m0_file, img)
    return save_like(cbfu.m0_map(data, volume_types, m0, m0_image), img, out_file)


def _on_grid(path, ref_img) -> np.ndarray:
    """Data of ``path`` sampled on the grid of ``ref_img`` (world coordinates)."""
    from nilearn.image import resample_img

    img = nib.load(str(path))
    same = img.shape[:3] == ref_img.shape[:3] and np.allclose(img.affine, ref_img.affine,
                                                              atol=1e-3)
    if same:
        return np.asarray(img.dataobj, dtype=np.float32)
    logger.info('resampling %s onto the ASL grid', path)
    out = resample_img(img, target_affine=ref_img.affine, target_shape=ref_img.shape[:3],
                       interpolation='linear', force_resample=True, copy_header=True)
    return np.asarray(out.dataobj, dtype=np.float32)


def compute_cbf_file(asl_file, volume_types, m0_file, mask_file, params: dict, out_cbf,
                     out_deltam, instability_file=None, out_unreliable=None, out_noise=None,
                     out_noise_sd=None):
    """Write the plain-average ΔM and the CBF map computed from it.

    A series made of ``cbf`` volumes (already quantified by the scanner) is averaged
    and passed through, masked. With ``instability_file`` (the motion step's
    :func:`~aslproc.utils.motion_reliability.instability_ratio`), the CBF of voxels whose
    control/label values motion has left unusable is filled from the voxels around them
    (:func:`unreliable_and_filled`), and ``out_unreliable`` gets their mask (all zeros when
    none). With ``out_noise`` and ``out_noise_sd`` (and at least 2 pairs), the plain map's
    noise model that the QC numbers of the learned stages count in
    (:func:`~aslproc.utils.lesion_guard.plain_noise_model`: a noise-only CBF map, 0 where
    motion left no usable ΔM, and the noise SD of each voxel).
    Returns the CBF, ΔM and (when asked for) unreliable-mask paths, then the noise-model paths
    (``None`` without pairs to measure the noise on).
    """
    data, img = load(asl_file)
    m0, _ = load(m0_file)
    mask, _ = load(mask_file)
    unreliable = np.zeros(mask.shape, dtype=bool)
    noise_model = None
    cbf_vols = cbfu.volume_indices(volume_types, 'cbf')
    if cbf_vols and not (cbfu.volume_indices(volume_types, 'control')
                         or cbfu.volume_indices(volume_types, 'deltam')):
        cbf = np.where(mask > 0, data[..., cbf_vols].mean(axis=-1), 0.0)
        dm = np.zeros_like(cbf)
    else:
        pairs = cbfu.pairwise_delta_m(data, volume_types)
        dm = pairs.mean(axis=-1)
        params = dict(params, pld=per_slice_pld(params['pld'], data.shape[2]))
        cbf = cbfu.cbf_map(dm, m0, params, mask)
        if instability_file:
            cbf, unreliable = unreliable_and_filled(cbf, load(instability_file)[0], m0, mask,
                                                    volume_types, static_mean(data, volume_types))
        if out_noise and out_noise_sd and pairs.shape[-1] >= 2:
            noise_model = lg.plain_noise_model(pairs, m0, mask, params, unreliable)
    if not np.any(cbf[mask > 0]):
        raise ValueError(f'{asl_file}: the CBF map is zero everywhere in the brain mask; '
                         'check M0 and the aslcontext')
    out = [save_like(cbf, img, out_cbf), save_like(dm, img, out_deltam)]
    if out_unreliable:
        out.append(save_mask(unreliable, img, out_unreliable))
    if out_noise and out_noise_sd:
        out += ([None, None] if noise_model is None else
                [save_like(noise_model[0], img, out_noise),
                 save_like(noise_model[1], img, out_noise_sd)])
    return tuple(out)


def static_mean(data, volume_types) -> np.ndarray:
    """Mean of the control and label volumes: the series' own static image (the guide of the
    fill of unreliable voxels)."""
    idx = cbfu.volume_indices(volume_types, 'control') + cbfu.volume_indices(volume_types,
                                                                               'label')
    return data[..., idx].mean(axis=-1) if idx else np.zeros(data.shape[:3], np.float32)


def unreliable_and_filled(cbf, ratio, m0, mask, volume_types, guide=None):
    """CBF with motion-destroyed voxels filled, and their mask
    (:mod:`aslproc.utils.motion_reliability`, ``guide``: :func:`static_mean`): only voxels
    with M0 above the quantification floor are judged or used, the others keep CBF 0."""
    from aslproc.utils import motion_reliability as mrel

    quantified = (mask > 0) & (m0 >= cbfu.m0_floor(m0, mask))
    unreliable = mrel.unreliable_voxels(ratio, volume_types, quantified)
    if np.any(unreliable):
        logger.info('motion left %d of %d brain voxels (%.1f %%) without a usable ΔM; their '
                    'CBF is filled from the voxels around them', unreliable.sum(),
                    quantified.sum(), 100.0 * unreliable.sum() / max(quantified.sum(), 1))
        cbf = mrel.fill_unreliable(cbf, ratio, m0, unreliable, quantified, guide)
    return cbf, unreliable


def motion_filled_pairs(pairs, m0, mask, params, ratio, volume_types, guide
                        ) -> tuple[np.ndarray, np.ndarray | None]:
    """Pairs in which the voxels that motion left without a usable ΔM
    (:mod:`aslproc.utils.motion_reliability`) take the ΔM of the filled plain map in every
    pair, and the mask of the voxels whose spread still measures the noise (``None`` when
    nothing was unreliable). Voxels of ``mask`` with M0 below the quantification floor (the
    rim outside the head, where resampling rings) get ΔM 0: their CBF is 0 anyway, and they
    would otherwise reach the network as motion outliers."""
    from aslproc.utils import motion_reliability as mrel

    everywhere = mrel.unreliable_voxels(ratio, volume_types, mask)
    if not np.any(everywhere):
        return pairs, None
    plain = cbfu.cbf_map(pairs.mean(axis=-1), m0, params, mask)
    filled, _ = unreliable_and_filled(plain, ratio, m0, mask, volume_types, guide)
    per_unit = cbfu.cbf_map(np.ones(m0.shape, np.float32), m0, params, mask)
    dm_filled = np.where(per_unit != 0, filled / np.where(per_unit != 0, per_unit, 1.0), 0.0)
    void = (mask > 0) & (m0 < cbfu.m0_floor(m0, mask))
    pairs = pairs.copy()
    pairs[everywhere] = dm_filled[everywhere][:, None]
    pairs[void] = 0.0
    return pairs, (mask > 0) & (ratio > 0) & ~everywhere & ~void


def save_mask(mask: np.ndarray, like: nib.Nifti1Image, out_file) -> str:
    """Save a boolean mask as uint8 on the grid of ``like``."""
    hdr = like.header.copy()
    hdr.set_data_dtype(np.uint8)
    if len(hdr.get_zooms()) > 3:
        hdr.set_data_shape(mask.shape)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), like.affine, hdr), str(out_file))
    return str(out_file)


def fit_multidelay_file(asl_file, volume_types, m0_file, mask_file, params: dict, out_cbf,
                        out_att, out_deltam, *, device='auto', num_threads: int = 1,
                        att_smooth_mm: float | None = None) -> tuple[str, str, str, dict]:
    """Write the CBF and ATT maps fitted to a multi-delay series, and its mean ΔM per delay
    (4D, one volume per delay, ascending), with :func:`aslproc.utils.multidelay.fit_series`.

    ``device`` is resolved with :func:`aslproc.models.infer.resolve_device`; torch uses
    ``num_threads`` CPU threads meanwhile. Returns the three paths and a dictionary of what
    the sidecars record (device, delays, pairs per delay, ATT bounds, smoothing, share of
    voxels whose ATT came from their neighbours).
    """
    import torch

    from aslproc.models.infer import resolve_device
    from aslproc.utils import multidelay

    data, img = load(asl_file)
    m0, _ = load(m0_file)
    mask, _ = load(mask_file)
    smooth = multidelay.ATT_SMOOTH_MM if att_smooth_mm is None else float(att_smooth_mm)
    dev, threads = resolve_device(device), torch.get_num_threads()
    torch.set_num_threads(max(1, int(num_threads)))
    try:
        out = multidelay.fit_series(data, m0, mask, volume_types, params,
                                    zooms=img.header.get_zooms()[:3], device=dev,
                                    att_smooth_mm=smooth)
    finally:
        torch.set_num_threads(threads)
    if not np.any(out['cbf'][mask > 0]):
        raise ValueError(f'{asl_file}: the fitted CBF map is zero everywhere in the brain '
                         'mask; check M0 and the aslcontext')
    info = {'FitDevice': dev.type, 'PostLabelingDelay': list(out['delays']),
            'PairsPerDelay': out['counts'], 'ArrivalTimeBounds': list(out['att_range']),
            'CBFBounds': list(multidelay.CBF_BOUNDS), 'ArrivalTimeSmoothingSDmm': smooth,
            'ArrivalTimeFromNeighboursFraction': round(out['censored_fraction'], 4)}
    logger.info('multi-delay fit on %s: %d delays, ATT in [%.2f, %.2f] s', dev.type,
                len(out['delays']), *out['att_range'])
    return (save_like(out['cbf'], img, out_cbf), save_like(out['att'], img, out_att),
            save_like(out['deltam'], img, out_deltam), info)


def per_slice_pld(pld, n_slices):
    """PLD as :func:`aslproc.kinetics.quantify` broadcasts it: a float for a 3D readout, an
    array of shape (1, 1, Z) for per-slice PLDs (2D readout).

    >>> per_slice_pld([1.8, 1.85], 2).shape
    (1, 1, 2)
    """
    if np.isscalar(pld) or np.ndim(pld) == 0:
        return float(pld)
    pld = np.asarray(pld, dtype=float)
    if pld.size != n_slices:
        raise ValueError(f'{pld.size} slice PLDs for {n_slices} slices')
    return pld.reshape(1, 1, -1)


def smooth_file(in_file, mask_file, fwhm_mm: float, out_file) -> str:
    """Write the mask-normalised Gaussian smoothing of a 3D map."""
    data, img = load(in_file)
    mask, _ = load(mask_file)
    zooms = img.header.get_zooms()[:3]
    return save_like(cbfu.smooth_in_mask(data, mask, fwhm_mm, zooms), img, out_file)


def pvc_file(cbf_file, gm_file, wm_file, mask_file, out_gm, out_wm) -> tuple[str, str]:
    """Write the partial-volume corrected GM and WM CBF maps (:mod:`aslproc.utils.pvc`)."""
    from aslproc.utils.pvc import partial_volume_correct

    cbf, img = load(cbf_file)
    gm, wm, mask = (load(f)[0] for f in (gm_file, wm_file, mask_file))
    cbf_gm, cbf_wm = partial_volume_correct(cbf, gm, wm, mask, img.header.get_zooms()[:3])
    return save_like(cbf_gm, img, out_gm), save_like(cbf_wm, img, out_wm)


def qc_file(cbf_file, gm_file, wm_file, confounds_file, mask_file, ref_file, out_file,
            extra: dict | None = None, denoised_file=None, unreliable_file=None,
            sr_departure_file=None, att_file=None, noise_file=None, noise_sd_file=None,
            quant_mask_file=None) -> str:
    """Write the one-row QC table of a run (TSV with a header); with ``unreliable_file``, the
    percentage of the brain mask whose CBF was filled because motion left no usable ΔM there
    (``motion_filled_pct``); with the plain map's noise model (``noise_file``,
    ``noise_sd_file``: :func:`~aslproc.utils.lesion_guard.plain_noise_model`), the largest
    lesion-scale departure from the data of the denoised map ``denoised_file``
    (``denoise_data_departure_sd``: plain minus denoised) and of the super-resolution
    (``sr_data_departure_sd``: ``sr_departure_file``, what it changed in the values its data
    fix), in noise SDs (:func:`aslproc.utils.qc.data_departure_sd`), inside
    ``quant_mask_file`` (default ``mask_file``): the quantification mask, where both stages
    and the lesion guard work; with ``att_file`` (multi-delay), the mean GM and WM arrival
    times."""
    cbf, img = load(cbf_file)
    gm, _ = load(gm_file)
    wm, _ = load(wm_file)
    mask, _ = load(mask_file)
    ref, _ = load(ref_file)
    fd = read_fd(confounds_file)
    row = dict(extra or {})
    row.update(qcu.qc_metrics(cbf, gm, wm, fd, mask, qcu.intensity_mask(ref)))
    if unreliable_file:
        unreliable, _ = load(unreliable_file)
        row['motion_filled_pct'] = round(
            float(100.0 * np.mean(unreliable[mask > 0] > 0)) if np.any(mask > 0) else 0.0, 2)
    departures = {}
    if denoised_file:
        departures['denoise_data_departure_sd'] = cbf - load(denoised_file)[0]
    if sr_departure_file:
        departures['sr_data_departure_sd'] = load(sr_departure_file)[0]
    noise, voxel_sd = ((load(noise_file)[0], load(noise_sd_file)[0])
                       if noise_file and noise_sd_file else (None, None))
    stage_mask = load(quant_mask_file)[0] if quant_mask_file else mask
    for key, departure in departures.items():  # n/a without a noise model (a single pair)
        row[key] = (float('nan') if noise is None else qcu.data_departure_sd(
            departure, voxel_sd, noise, stage_mask, img.header.get_zooms()[:3]))
    if att_file:
        att, _ = load(att_file)
        row.update(qcu.att_metrics(att, gm, wm, mask))
    with open(out_file, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(row), delimiter='\t', lineterminator='\n')
        w.writeheader()
        w.writerow({k: ('n/a' if isinstance(v, float) and not np.isfinite(v) else v)
                    for k, v in row.items()})
    return str(out_file)


def read_fd(confounds_file) -> np.ndarray:
    """The framewise_displacement column of a confounds TSV ('n/a' → NaN)."""
    with open(confounds_file) as f:
        rows = list(csv.DictReader(f, delimiter='\t'))
    return np.array([float('nan') if r['framewise_displacement'] in ('n/a', '')
                     else float(r['framewise_displacement']) for r in rows])


def binarize_file(in_file, threshold: float, out_file, dilate_inplane: int = 0) -> str:
    """Write ``in_file > threshold`` as a uint8 mask on the same grid.

    ``dilate_inplane`` grows the mask by that many voxels within each slice (not across
    slices, which are often thick in ASL), so that cortical voxels that are only partly
    inside the T1w brain mask keep their CBF.
    """
    data, img = load(in_file)
    mask = data > threshold
    if dilate_inplane:
        mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 1), bool),
                                       iterations=int(dilate_inplane))
    out = nib.Nifti1Image(mask.astype(np.uint8), img.affine, img.header)
    out.set_data_dtype(np.uint8)
    nib.save(out, str(out_file))
    return str(Path(out_file))
