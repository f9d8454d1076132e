"""Array and file layers around the ΔM denoiser (numpy in, numpy out).

The network never sees scanner units. ΔM is turned into *CBF-like* units with a single
robust M0 level of the brain (not the voxel-wise M0, so the noise stays spatially uniform):

.. math:: x = \\frac{\\mathrm{quantify}(\\Delta M, M_{0,ref})}{100}

where ``quantify`` is :func:`aslproc.kinetics.quantify` with the acquisition's parameters
(per-slice PLD for 2D readouts), so PCASL and PASL, any PLD, labeling efficiency and scanner
scale all reach the network as "CBF / 100". The standard deviation of the mean ΔM (estimated
from the spread of the pairs) is given in the same units as a constant channel, so one model
serves every noise level, and the relative M0 (``M0 / M0_ref``) gives the head outline.

Models trained with ``--inputs tissue`` instead see ``x`` as the subject's own partial-volume
tissue model (:func:`tissue_model`, three numbers fitted to the noisy map) plus the residual
from it; they need the tissue fractions on the ASL grid. They are not shipped: they pull
focal lesions towards the tissue model (see the model card).

The network predicts the noise in ``x``; the denoised ΔM is mapped back with the same factor,
and the tissue means of the plain average are restored as a gain
(:func:`aslproc.utils.lesion_guard.restore_tissue_means`), then the lesion guard runs.
Opt-in only (``--denoise-pv``), the CNN's map can then be the reference of an adaptive
partial-volume regression of the plain average (:mod:`aslproc.utils.pvreg`,
:func:`refine_with_tissue`): a tissue-class model, better on flat-tissue phantoms, that fills
in part of a focal deficit, hence not the default.
"""

from __future__ import annotations

import logging

import numpy as np

from aslproc import kinetics
from aslproc.utils import cbf as cbfu
from aslproc.utils import pvreg
from aslproc.utils.lesion_guard import (
    GUARD_FWHM_MM,
    lesion_guard,
    plain_noise_model,
    restore_tissue_means,
)

logger = logging.getLogger(__name__)

#: CBF-like units are divided by this so that grey matter sits near 0.5.
CBF_SCALE = 100.0
#: Input channels the array layer can build (names stored with the shipped weights).
CHANNELS = ('dm', 'dm_below', 'dm_above', 'sigma', 'm0', 'res', 'res_below', 'res_above',
            'tissue')
#: Channels that need the GM and WM fractions on the ASL grid.
TISSUE_CHANNELS = ('res', 'res_below', 'res_above', 'tissue')
#: Plain inputs: the ΔM of the slice and its two neighbours, and the noise level. No M0,
#: whose tissue contrast depends on the sequence and would let the network paint perfusion
#: from anatomy.
PLAIN_CHANNELS = ('dm', 'dm_below', 'dm_above', 'sigma')
#: Tissue-model inputs (an option, not shipped): the same as residuals from the subject's own
#: partial-volume tissue model (:func:`tissue_model`), plus that model. Much better on flat-
#: tissue phantoms, but the network learns to pull focal lesions towards the model
#: (aslproc/models/MODEL_CARD.md), so the shipped model uses :data:`PLAIN_CHANNELS`.
TISSUE_MODEL_CHANNELS = ('res', 'res_below', 'res_above', 'sigma', 'tissue')
DEFAULT_CHANNELS = PLAIN_CHANNELS


def kinetic_factor(params: dict, n_slices: int) -> np.ndarray:
    """CBF per unit ΔM/M0 for each slice, shape (1, 1, Z): ``quantify(1, 1, params)``.

    >>> p = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> kinetic_factor(p, 2).round(1).ravel().tolist()
    [8630.0, 8630.0]
    """
    pld = params['pld']
    if np.ndim(pld) > 0:
        pld = np.asarray(pld, dtype=float).reshape(1, 1, -1)
    k = kinetics.quantify(np.ones((1, 1, n_slices)), 1.0, dict(params, pld=pld))
    return np.broadcast_to(np.asarray(k, dtype=float), (1, 1, n_slices)).copy()


def to_normalised(params: dict, m0: np.ndarray, mask: np.ndarray, n_slices: int
                  ) -> np.ndarray:
    """Normalised (CBF / :data:`CBF_SCALE`) units per ΔM unit for each slice, (1, 1, Z):
    the kinetic factor over the brain's robust M0 level (see the module docstring)."""
    return kinetic_factor(params, n_slices) / (m0_reference(m0, mask) * CBF_SCALE)


def m0_reference(m0: np.ndarray, mask: np.ndarray) -> float:
    """Robust M0 level of the brain: the median of M0 inside ``mask`` (positive values).

    >>> m0_reference(np.array([0., 80., 100., 120.]), np.array([1, 1, 1, 1]))
    100.0
    """
    vals = m0[(mask > 0) & (m0 > 0)]
    if vals.size == 0:
        raise ValueError('M0 is not positive anywhere in the brain mask')
    return float(np.median(vals))


def noise_sd(pairs: np.ndarray, mask: np.ndarray) -> float:
    """Standard deviation of the *mean* ΔM, from the spread of the pairs (X, Y, Z, P).

    With two or more pairs: the mean within-voxel variance over ``mask`` divided by the
    number of pairs. With one pair the spread is unknown, so the noise of neighbouring-voxel
    differences (median absolute deviation, which slightly overestimates it) is used.

    >>> rng = np.random.default_rng(0)
    >>> p = rng.normal(0, 2.0, (20, 20, 4, 16))
    >>> round(noise_sd(p, np.ones((20, 20, 4))), 1)
    0.5
    """
    keep = mask > 0
    n = pairs.shape[-1]
    if n >= 2:
        return float(np.sqrt(pairs[keep].var(axis=-1, ddof=1).mean() / n))
    d = np.diff(pairs[..., 0], axis=0)[keep[1:] & keep[:-1]]
    return pvreg.robust_sd(d) / np.sqrt(2.0)


def tissue_coefficients(x: np.ndarray, gm: np.ndarray, wm: np.ndarray, mask: np.ndarray
                        ) -> np.ndarray:
    """Least-squares ``(a, b, c)`` of ``x ≈ a·GM + b·WM + c`` over the voxels of ``mask``."""
    inside = mask > 0
    design = np.stack([gm[inside], wm[inside], np.ones(int(inside.sum()))], axis=1)
    return np.linalg.lstsq(design, x[inside], rcond=None)[0]


def tissue_model(x: np.ndarray, gm: np.ndarray, wm: np.ndarray, mask: np.ndarray
                 ) -> np.ndarray:
    """The subject's partial-volume tissue model of ``x``: ``a·GM + b·WM + c`` in the mask.

    Three numbers fitted by least squares to the (noisy) map itself, so the levels are
    measured, not assumed; zero outside the mask. Noise averages out over thousands of
    voxels, so the model is nearly noise-free, and what it cannot explain (lesions,
    smooth variation, segmentation error) stays in the residual ``x - model`` for the
    network to denoise. This is the linear partial-volume model of Asllani et al.
    (MRM 2008) with one kernel for the whole brain.

    >>> gm = np.array([1., .5, 0., 0., 1.]); wm = np.array([0., .5, 1., 0., 0.])
    >>> m = np.array([1, 1, 1, 1, 0])  # GM 55 + 5, WM 15 + 5, the rest 5; last voxel outside
    >>> tissue_model(np.array([60., 40., 20., 5., 9.]), gm, wm, m).round(3).tolist()
    [60.0, 40.0, 20.0, 5.0, 0.0]
    """
    a, b, c = tissue_coefficients(x, gm, wm, mask)
    return np.where(mask > 0, a * gm + b * wm + c, 0.0)


def _neighbours(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slice below and above each slice (edge slices repeated), last axis."""
    return (np.concatenate([a[..., :1], a[..., :-1]], axis=2),
            np.concatenate([a[..., 1:], a[..., -1:]], axis=2))


def build_inputs(
    pairs: np.ndarray, m0: np.ndarray, mask: np.ndarray, params: dict, channels=CHANNELS,
    gm: np.ndarray | None = None, wm: np.ndarray | None = None,
    noise_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Network input of every slice and the constants to undo the normalisation.

    Parameters
    ----------
    pairs : ndarray (X, Y, Z, P)
        ΔM of each control/label pair (:func:`aslproc.utils.cbf.pairwise_delta_m`).
    m0, mask : ndarray (X, Y, Z)
        M0 map and brain mask on the ASL grid.
    params : dict
        :func:`aslproc.kinetics.quantify` parameters.
    channels : sequence of str
        Names from :data:`CHANNELS`.
    gm, wm : ndarray (X, Y, Z), optional
        Tissue fractions on the ASL grid; required by :data:`TISSUE_CHANNELS`.
    noise_mask : ndarray (X, Y, Z), optional
        Voxels whose pair spread measures the noise (default ``mask``; voxels filled after
        motion have none).

    Returns
    -------
    inputs : ndarray (Z, C, X, Y), float32
    norm : dict
        ``to_x`` (1, 1, Z: normalised units per ΔM unit), ``x`` (normalised mean ΔM,
        Z × X × Y, the map the network's noise estimate is subtracted from), ``sigma``
        (noise SD of the mean in normalised units), ``m0_ref``.
    """
    m0_ref = m0_reference(m0, mask)
    to_x = to_normalised(params, m0, mask, pairs.shape[2])  # (1, 1, Z)
    x = pairs.mean(axis=-1) * to_x
    sigma = noise_sd(pairs * to_x[..., None], mask if noise_mask is None else noise_mask)
    if set(channels) & set(TISSUE_CHANNELS):
        if gm is None or wm is None:
            raise ValueError(f'the denoiser inputs {list(channels)} need the GM and WM '
                             'fractions on the ASL grid')
        model = tissue_model(x, gm, wm, mask)
    else:
        model = None
    build = {
        'dm': lambda: x,
        'dm_below': lambda: _neighbours(x)[0],
        'dm_above': lambda: _neighbours(x)[1],
        'sigma': lambda: np.full(x.shape, sigma),
        'm0': lambda: np.clip(m0 / m0_ref, 0.0, 3.0),
        'res': lambda: x - model,
        'res_below': lambda: _neighbours(x - model)[0],
        'res_above': lambda: _neighbours(x - model)[1],
        'tissue': lambda: model,
    }
    stack = np.stack([build[c]() for c in channels], axis=0)  # (C, X, Y, Z)
    inputs = np.ascontiguousarray(np.moveaxis(stack, -1, 0), dtype=np.float32)
    x_zxy = np.ascontiguousarray(np.moveaxis(x, -1, 0), dtype=np.float32)
    return inputs, {'to_x': to_x, 'x': x_zxy, 'sigma': sigma, 'm0_ref': m0_ref}


#: In-plane symmetries averaged at inference (each is its own inverse): the network was
#: trained with flips and transposes, so averaging them removes orientation-specific errors.
SYMMETRIES = (
    lambda a: a,
    lambda a: a[..., ::-1, :],
    lambda a: a[..., :, ::-1],
    lambda a: np.swapaxes(a, -1, -2),
)


def denoise_pairs(
    model,
    pairs: np.ndarray,
    m0: np.ndarray,
    mask: np.ndarray,
    params: dict,
    channels=DEFAULT_CHANNELS,
    device='cpu',
    batch_size=None,
    symmetric: bool = False,
    gm: np.ndarray | None = None,
    wm: np.ndarray | None = None,
    noise_mask: np.ndarray | None = None,
) -> np.ndarray:
    """Denoised mean ΔM (X, Y, Z), in the units of ``pairs``.

    The model predicts the noise of the normalised mean ΔM, which is subtracted before
    mapping back to ΔM units (``gm``, ``wm``: see :func:`build_inputs`). With ``symmetric``
    the prediction is the mean over :data:`SYMMETRIES` (four times the compute for a few
    hundredths of a dB, hence off by default).
    """
    from aslproc.models import infer

    inputs, norm = build_inputs(pairs, m0, mask, params, channels, gm, wm, noise_mask)
    ops = SYMMETRIES if symmetric else SYMMETRIES[:1]
    noise = np.mean(
        [op(infer.predict(model, op(inputs), device, batch_size=batch_size)) for op in ops],
        axis=0,
    )[:, 0]  # (Z, X, Y)
    x_hat = norm['x'] - noise
    return (np.moveaxis(x_hat, 0, -1) / norm['to_x']).astype(np.float32)


def refine_with_tissue(dm_den, pairs, m0, mask, params, gm, wm, zooms, **kw
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive partial-volume regression (:mod:`aslproc.utils.pvreg`) around the CNN output.

    Works in the normalised units of :func:`build_inputs` (CBF-like, so slices with
    different PLDs are comparable): the windowed GM/WM fits are of the plain mean ΔM, and
    the CNN's map is the reference that keeps what the tissue fractions do not explain.
    ``kw`` goes to :func:`aslproc.utils.pvreg.adaptive_tissue_fit`. Returns the refined mean
    ΔM (units of ``pairs``) and the chosen width index of each voxel.
    """
    to_x = to_normalised(params, m0, mask, pairs.shape[2])
    est, chosen = pvreg.adaptive_tissue_fit(
        pairs.mean(axis=-1) * to_x, gm, wm, mask, zooms, dm_den * to_x,
        noise_sd(pairs * to_x[..., None], mask), **kw)
    return (est / to_x).astype(np.float32), chosen


def denoise_file(
    asl_file,
    volume_types,
    m0_file,
    mask_file,
    params: dict,
    out_cbf,
    out_deltam,
    device='auto',
    num_threads: int = 1,
    weights=None,
    gm_file=None,
    wm_file=None,
    tissue_refine: bool = False,
    instability_file=None,
    guard_fwhm: float = GUARD_FWHM_MM,
    adapt_steps: int = 0,
) -> tuple[str, str]:
    """Write the denoised mean ΔM and the CBF computed from it (masked as the plain map).

    ``weights`` is a weight file (default: the shipped one); ``num_threads`` caps torch's
    CPU threads. The CBF uses :func:`aslproc.utils.cbf.cbf_map`, like the plain-average map.
    With ``gm_file`` and ``wm_file`` (tissue fractions on the ASL grid) the tissue means of
    the plain average are restored in the CNN's map (:func:`restore_tissue_means`); with
    ``tissue_refine`` (opt-in, ``--denoise-pv``: a tissue model inside the map) that map is
    then the reference of the adaptive partial-volume regression (:func:`refine_with_tissue`).
    ΔM is written to match the CBF. With ``instability_file`` (the motion step's ratio map),
    every pair of a voxel that motion left without a usable ΔM takes the ΔM of the filled
    plain map (:func:`aslproc.utils.quantify.unreliable_and_filled`), so that the network
    and the noise estimate see no motion outliers; after the network those voxels are filled
    again, from the denoised map around them (less noisy than the plain one: on dro-motion
    +1.5 dB), and the lesion guard measures the noise only where the pairs still show it.
    ``adapt_steps`` > 0 first fine-tunes the network on the scan's own pairs
    (:func:`aslproc.models.adapt.noise2noise_finetune`;
    skipped with a warning below its minimum of pairs). The lesion guard
    (:func:`aslproc.utils.lesion_guard.lesion_guard`, ``guard_fwhm`` mm; 0 turns it off) then
    restores what the network removed at lesion scale beyond the noise.
    """
    import torch

    from aslproc.models import infer
    from aslproc.models.adapt import MIN_PAIRS, noise2noise_finetune
    from aslproc.utils.quantify import (
        load,
        motion_filled_pairs,
        per_slice_pld,
        save_like,
        static_mean,
        unreliable_and_filled,
    )

    torch.set_num_threads(max(1, int(num_threads)))
    data, img = load(asl_file)
    m0, _ = load(m0_file)
    mask, _ = load(mask_file)
    model, info = infer.load_denoiser(weights)
    pairs = cbfu.pairwise_delta_m(data, volume_types)
    params = dict(params, pld=per_slice_pld(params['pld'], data.shape[2]))
    gm, wm = (load(f)[0] if f else None for f in (gm_file, wm_file))
    noise_mask = ratio = guide = None
    if instability_file:
        ratio, guide = load(instability_file)[0], static_mean(data, volume_types)
        pairs, noise_mask = motion_filled_pairs(pairs, m0, mask, params, ratio, volume_types,
                                                guide)
    if set(info['channels']) & set(TISSUE_CHANNELS) and (gm is None or wm is None):
        raise ValueError(f"the denoiser model {info.get('name')} needs GM and WM fractions on "
                         'the ASL grid (gm_file, wm_file)')
    run_on = infer.resolve_device(device)
    if adapt_steps > 0:
        if pairs.shape[-1] >= MIN_PAIRS:
            model, _ = noise2noise_finetune(model, pairs, m0, mask, params, info['channels'],
                                            steps=adapt_steps, noise_mask=noise_mask,
                                            device=run_on)
        else:
            logger.warning('denoiser adaptation skipped: %d pairs, it needs %d',
                           pairs.shape[-1], MIN_PAIRS)
    dm = denoise_pairs(
        model, pairs, m0, mask, params, info['channels'], run_on,
        gm=gm, wm=wm, noise_mask=noise_mask,
    )
    dm = np.where(mask > 0, dm, pairs.mean(axis=-1))
    cbf = cbfu.cbf_map(dm, m0, params, mask)
    per_unit = cbfu.cbf_map(np.ones_like(dm), m0, params, mask)  # CBF of ΔM = 1
    plain = cbfu.cbf_map(pairs.mean(axis=-1), m0, params, mask)
    if ratio is not None:  # as the plain map is filled from the plain average around them
        cbf, _ = unreliable_and_filled(cbf, ratio, m0, mask, volume_types, guide)
    if gm is not None and wm is not None:
        cbf, coef = restore_tissue_means(cbf, plain, gm, wm, mask)
        logger.info('tissue means restored: gain × (1 %+.3f·GM %+.3f·WM %+.3f)', *coef)
    if guard_fwhm > 0 and pairs.shape[-1] >= 2:
        noise, voxel_sd = plain_noise_model(
            pairs, m0, mask, params, None if noise_mask is None else ~(noise_mask > 0))
        cbf, guarded = lesion_guard(cbf, plain, noise, voxel_sd, mask,
                                    img.header.get_zooms()[:3], guard_fwhm)
        logger.info('lesion guard (%g mm): median threshold %.2f ml/100 g/min, %d passes, '
                    '%.1f %% of the brain voxels restored by %.2f on average', guard_fwhm,
                    guarded['threshold'], guarded['passes'], guarded['changed_pct'],
                    guarded['mean_change'])
    dm = np.where(per_unit != 0, cbf / np.where(per_unit != 0, per_unit, 1.0), dm)
    if gm is not None and wm is not None:
        if tissue_refine:
            # the restored map is the reference: an unbiased one agrees with the fits
            dm, chosen = refine_with_tissue(dm, pairs, m0, mask, params, gm, wm,
                                            img.header.get_zooms()[:3])
            cbf = cbfu.cbf_map(dm, m0, params, mask)
            logger.info('partial-volume regression: voxels per window index %s',
                        np.bincount(chosen[mask > 0]).tolist())
    logger.info('denoised %d pairs with %s', pairs.shape[-1], info.get('name'))
    return save_like(cbf, img, out_cbf), save_like(dm, img, out_deltam)
