"""Training samples for the ΔM denoiser, from the project's own simulator only.

Each *subject* is one call of :func:`aslproc.synth.simulate_subject` with a random
acquisition (PCASL/PASL, 3D/2D readout, PLD, background suppression, clinical voxel sizes of
2.5-4 mm in-plane and 4-8 mm slices, SNR, Rician or Gaussian noise, a little motion) and many
pairs (40). Most subjects are simulated at half the voxel (in-plane, sometimes also across
slices) and decimated, which gives a point-spread function much narrower than the
simulator's (FWHM one voxel): the network then sees both soft and crisp tissue edges. A
*sample* draws a random subset of 1-40 pairs from a subject (cheap: no new simulation),
re-draws the perfusion contrast (:func:`augment_contrast`), builds the network input exactly
as inference does (:func:`aslproc.utils.denoise.build_inputs`) and crops a patch.

The targets are the simulator's noise-free ΔM (``truth['cleandm']``) and the CBF that the
kinetic model gives from it with the noise-free M0 — not an all-pairs average.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from aslproc import kinetics
from aslproc.synth import SynthConfig, simulate_subject
from aslproc.utils import cbf as cbfu
from aslproc.utils import denoise as dnu

logger = logging.getLogger(__name__)

#: Pairs simulated per subject; samples use subsets of 1..N_PAIRS.
N_PAIRS = 40


@dataclass
class Subject:
    """One simulated subject reduced to what training needs (ASL grid, float32)."""

    pairs: np.ndarray      # (X, Y, Z, P) pairwise ΔM
    m0: np.ndarray         # noisy M0 map as the pipeline computes it
    cleandm: np.ndarray
    cleanm0: np.ndarray
    mask: np.ndarray       # brain mask (truth segmentation, dilated once in-plane)
    wm: np.ndarray         # white-matter weight (truth segmentation, softened), for augmentation
    pvgm: np.ndarray       # true GM and WM partial-volume fractions on the ASL grid
    pvwm: np.ndarray
    params: dict           # quantify parameters (per-slice PLD as (1, 1, Z))
    lesion: np.ndarray | None = None  # lesion fraction on the ASL grid (None: older banks)


def random_config(rng: np.random.Generator, n_pairs: int = N_PAIRS,
                  heterogeneous: float = 0.0) -> tuple[SynthConfig, int]:
    """A random clinical-like acquisition and the decimation factors (in-plane, slice).

    With probability ``heterogeneous`` the subject's perfusion is the lesion benchmark's
    preset (:data:`aslproc.synth.PERFUSION`: territories, 6-25 mm lesions, GM/WM border);
    the draw is made only when ``heterogeneous`` > 0, so other streams are unchanged.
    """
    label = 'PASL' if rng.random() < 0.25 else 'PCASL'
    inplane = rng.uniform(2.5, 4.0)
    thick = rng.uniform(6.0, 8.0) if rng.random() < 0.6 else rng.uniform(3.5, 6.0)
    if rng.random() < 0.25:  # the clinical 64 x 76 x 24 grid (about 3.1 x 3.1 x 7.9 mm)
        inplane, thick = 3.07, 7.85
    factor = 2 if rng.random() < 0.7 else 1
    zfactor = 2 if factor == 2 and rng.random() < 0.5 else 1
    pld = rng.uniform(1.5, 2.2) if label == 'PCASL' else rng.uniform(1.5, 2.0)
    att_lo = rng.uniform(0.5, 1.2) if label == 'PCASL' else rng.uniform(0.3, 0.8)
    att_range = (att_lo, att_lo + rng.uniform(0.5, 1.5))
    config = SynthConfig(
        label=label, n_pairs=n_pairs, snr=float(np.exp(rng.uniform(np.log(40), np.log(800)))),
        motion_mm=float(rng.uniform(0, 0.5)) * (rng.random() < 0.5),
        asl_voxel=(inplane / factor, inplane / factor, thick / zfactor), t1w_voxel=2.0,
        bs_pulses=int(rng.choice([0, 0, 0, 2, 4])), readout='2D' if rng.random() < 0.3 else '3D',
        pld=float(pld), tau=float(rng.uniform(1.4, 1.8)), ti1=float(rng.uniform(0.7, 0.8)),
        noise='gaussian' if rng.random() < 0.2 else 'rician', lesions=(3, 8),
        m0_tr=float(rng.choice([6.0, 10.0])), seed=int(rng.integers(1 << 30)),
        att_range=att_range)
    if heterogeneous > 0 and rng.random() < heterogeneous:
        config = SynthConfig(**{**config.__dict__, 'perfusion': 'heterogeneous'})
    return config, (factor, zfactor)


def _block(a: np.ndarray, k: tuple) -> np.ndarray:
    """Every k-th voxel in-plane and every kz-th slice (``k = (k, kz)``): decimation.

    Simulating at a fraction of the voxel and keeping one voxel in ``k`` gives the same grid
    and noise per voxel with a point-spread function ``k`` times narrower than the
    simulator's (FWHM one voxel): sharp tissue edges, as in piecewise-constant phantoms.
    """
    return a[::k[0], ::k[0], ::k[1]]


def make_subject(rng: np.random.Generator, n_pairs: int = N_PAIRS, quick: bool = False,
                 heterogeneous: float = 0.0) -> Subject:
    """Simulate one random subject (a few seconds) and reduce it to a :class:`Subject`.

    ``quick`` uses a 4 mm anatomy and 8 mm ASL voxels (a fraction of a second; tests).
    """
    config, k = random_config(rng, n_pairs, heterogeneous)
    if quick:
        config, k = SynthConfig(**{**config.__dict__, 't1w_voxel': 4.0, 'asl_voxel': 8.0,
                                   'asl_matrix': None, 'readout': '3D', 'snr': 300.0}), (1, 1)
    sim = simulate_subject(rng, config)
    types = list(sim.volume_types)
    m0_raw = sim.asl[..., cbfu.volume_indices(types, 'm0scan')].mean(axis=-1)
    corr = kinetics.m0_saturation_correction(config.m0_tr,
                                             kinetics.t1_tissue(config.field_strength))
    pairs = _block(cbfu.pairwise_delta_m(sim.asl, types), k)
    mask = _block(sim.truth['seg'] > 0, k)
    mask = ndimage.binary_dilation(mask, np.ones((3, 3, 1), bool))
    wm = ndimage.gaussian_filter(_block(np.float32(sim.truth['seg'] == 2), k), (0.7, 0.7, 0.3))
    params = dict(sim.quant_params)
    if np.ndim(params['pld']) > 0:  # 2D readout: the PLD of the slices kept
        params['pld'] = np.asarray(params['pld'], dtype=float)[::k[1]].reshape(1, 1, -1)
    return Subject(pairs=pairs.astype(np.float32), m0=_block(m0_raw * corr, k).astype(np.float32),
                   cleandm=_block(sim.truth['cleandm'], k).astype(np.float32),
                   cleanm0=_block(sim.truth['cleanm0'], k).astype(np.float32),
                   mask=mask, wm=wm.astype(np.float32), params=params,
                   pvgm=_block(sim.truth['pvgm'], k).astype(np.float32),
                   pvwm=_block(sim.truth['pvwm'], k).astype(np.float32),
                   lesion=_block(sim.truth['lesion'], k).astype(np.float32))


#: Fraction of samples whose perfusion contrast is re-drawn by :func:`augment_contrast`.
AUGMENT_P = 0.8


#: Probability that :func:`augment_contrast` also makes the image (mostly) piecewise constant.
HARD_P = 0.5


def piecewise_constant(clean: np.ndarray, mask: np.ndarray, levels: int = 4) -> np.ndarray:
    """Each voxel of ``mask`` replaced by the mean of its intensity class (quantiles).

    Mimics phantoms built from hard tissue labels (no partial volume, flat tissue CBF):
    classes are the ``levels`` quantile bins of ``clean`` inside the mask.

    >>> piecewise_constant(np.array([1., 2., 9., 11.]), np.ones(4, bool), levels=2).tolist()
    [1.5, 1.5, 10.0, 10.0]
    """
    vals = clean[mask]
    if vals.size < levels:
        return clean
    edges = np.quantile(vals, np.linspace(0, 1, levels + 1)[1:-1])
    cls = np.digitize(clean, edges)
    means = np.array([vals[cls[mask] == c].mean() if np.any(cls[mask] == c) else 0.0
                      for c in range(levels)])
    return np.where(mask, means[cls], clean).astype(clean.dtype)


#: Probability that :func:`augment_contrast` also weakens the smooth perfusion field.
FLAT_P = 0.5
#: Scale (voxels, in-plane and across slices) separating the smooth field from focal changes.
FIELD_SIGMA = (3.0, 3.0, 1.0)


def flatten_field(clean: np.ndarray, subj: Subject, keep: float) -> np.ndarray:
    """``clean`` with its large-scale departure from the tissue model scaled by ``keep``.

    The departure from the subject's partial-volume tissue model
    (:func:`aslproc.utils.denoise.tissue_model` with the true fractions) is split into a
    smooth part (Gaussian, :data:`FIELD_SIGMA`) and the rest; only the smooth part is
    scaled, so focal lesions stay. Phantoms with flat tissue CBF (``keep`` 0) teach the
    network that a residual can be pure noise; the simulator's field (``keep`` 1) that it
    can be perfusion.
    """
    inside = subj.mask.astype(np.float32)
    res = np.where(subj.mask, clean - dnu.tissue_model(clean, subj.pvgm, subj.pvwm, subj.mask),
                   0.0)
    low = (ndimage.gaussian_filter(res, FIELD_SIGMA)
           / np.maximum(ndimage.gaussian_filter(inside, FIELD_SIGMA), 1e-3))
    return np.where(subj.mask, clean - (1.0 - keep) * low, clean).astype(np.float32)


def augment_contrast(rng: np.random.Generator, subj: Subject, pairs: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """New CBF level, WM/GM contrast and edge sharpness of the noise-free ΔM, pairs alike.

    The simulator draws GM and WM CBF from narrow distributions (60 ± 8 and 22 ± 4) and
    builds them from probabilistic tissue maps, so its images are soft; other generators and
    real scans differ (a full kinetic model with long WM transit times gives a much lower
    apparent WM CBF; a phantom made from hard labels has crisp edges). The noise-free ΔM is
    (1) sharpened by unsharp masking (amount 0-1.5, one-voxel Gaussian), half the time mixed
    (weight 0.5-1) with its :func:`piecewise_constant` version, (2) multiplied by a
    factor ``r`` in 0.2-1.3 in white matter (hard label: WM weight > 0.5), and (3) by a global
    factor in 0.6-1.6. The same change is added to every pair (pairs = clean ΔM + noise), so
    noise and lesions stay intact and the network cannot learn a fixed tissue ratio or
    edge profile. Half the time the smooth perfusion field is also weakened
    (:func:`flatten_field`).
    """
    clean = subj.cleandm
    amount = float(rng.uniform(0.0, 1.5))
    sharp = clean + amount * (clean - ndimage.gaussian_filter(clean, (1.0, 1.0, 0.0)))
    sharp = np.where(subj.mask, np.maximum(sharp, 0.0), clean)
    if rng.random() < HARD_P:
        w = float(rng.uniform(0.5, 1.0))
        hard = piecewise_constant(sharp, subj.mask, int(rng.integers(3, 7)))
        sharp = w * hard + (1.0 - w) * sharp
    if rng.random() < FLAT_P:
        sharp = flatten_field(sharp, subj, float(rng.uniform(0.0, 1.0)))
    g = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    r = float(rng.uniform(0.2, 1.3))
    new = (sharp * (g * (1.0 + (r - 1.0) * (subj.wm > 0.5)))).astype(np.float32)
    return pairs + (new - clean)[..., None], new


def perturb_fractions(rng: np.random.Generator, subj: Subject) -> tuple[np.ndarray, np.ndarray]:
    """GM and WM fractions as the pipeline would estimate them: blurred and shifted.

    The pipeline's fractions come from segmenting the T1w and resampling to the ASL grid,
    so they are softer or sharper than the truth and misregistered by a fraction of a
    voxel: a random in-plane blur (σ 0-0.5 voxel, 0-0.3 across slices) and a random shift
    (±0.3 voxel per axis), the same for both maps.
    """
    sigma = (*(rng.uniform(0, 0.5),) * 2, rng.uniform(0, 0.3))
    shift = rng.uniform(-0.3, 0.3, 3)
    return tuple(np.clip(ndimage.shift(ndimage.gaussian_filter(f, sigma), shift, order=1),
                         0, 1) for f in (subj.pvgm, subj.pvwm))


def draw_pair_count(rng: np.random.Generator, available: int) -> int:
    """Pairs in a subset: log-uniform over 1..available (few pairs are the hard case)."""
    return int(np.clip(np.round(np.exp(rng.uniform(0, np.log(available + 0.5)))), 1, available))


#: Extra weight of the kinetic loss in lesion voxels (``--lesion-weight``; 0: none).
LESION_WEIGHT = 0.0


def loss_weights(subj: Subject, lesion_weight: float) -> np.ndarray:
    """Kinetic-loss weights: 1 in the loss mask, ``1 + lesion_weight`` in and one voxel around
    focal lesions (their area is small, so a plain MSE barely sees a lesion filled in)."""
    mask = (subj.mask & (subj.cleanm0 > 0.1 * subj.cleanm0.max())).astype(np.float32)
    if not lesion_weight or subj.lesion is None:
        return mask
    near = ndimage.binary_dilation(subj.lesion > 0.2, np.ones((3, 3, 1), bool))
    return mask * (1.0 + lesion_weight * near)


def sample(rng: np.random.Generator, subj: Subject, channels, patch: int = 64,
           n_slices: int = 2, lesion_weight: float = LESION_WEIGHT, paired: bool = False
           ) -> dict:
    """Random pair subset of one subject → ``n_slices`` training patches (numpy, float32).

    Returns a dict of arrays with a leading sample axis: ``inputs`` (N, C, H, W), ``noisy``
    (the normalised mean ΔM, N × 1 × H × W), ``noise`` (its true noise), ``to_x``
    (normalised per ΔM, per sample), ``m0`` (noisy M0 used for CBF), ``cbf_true`` (kinetic
    target from clean ΔM and M0),
    ``mask``, ``sigma`` (estimated noise SD of the input, normalised units) and ``params``
    (one dict per sample).

    ``paired`` draws two *disjoint* subsets of the same number of pairs (at most half the
    subject's) with the same contrast augmentation, slice, crop and flips: *twins*, samples
    ``2i`` and ``2i + 1``, whose noise is independent and whose truth is the same. The
    product of their errors is an unbiased estimate of the squared bias of the network on
    that truth (:func:`aslproc.training.losses.twin_bias`). ``paired=False`` draws exactly
    the random stream of earlier releases (the shipped model's command reproduces).
    """
    total = subj.pairs.shape[-1]
    if paired:
        n = draw_pair_count(rng, total // 2)
        pick = rng.choice(total, 2 * n, replace=False)
        subsets = [pick[:n], pick[n:]]
    else:
        n = draw_pair_count(rng, total)
        subsets = [rng.choice(total, n, replace=False)]
    pairs, cleandm = subj.pairs[..., np.concatenate(subsets)], subj.cleandm
    if rng.random() < AUGMENT_P:
        pairs, cleandm = augment_contrast(rng, subj, pairs)
    # drawn for every input set (plain inputs ignore them): the random stream, and so the
    # shipped model's reproduction from its command, must not depend on the channels
    gm, wm = perturb_fractions(rng, subj)
    built = [dnu.build_inputs(pairs[..., i * n:(i + 1) * n], subj.m0, subj.mask, subj.params,
                              channels, gm, wm) for i in range(len(subsets))]
    cbf_true = kinetics.quantify(cleandm, np.maximum(subj.cleanm0, 1e-3), subj.params)
    loss_mask = loss_weights(subj, lesion_weight)
    brain_slices = np.flatnonzero(subj.mask.sum(axis=(0, 1)) > 50)
    zs = rng.choice(brain_slices, n_slices, replace=len(brain_slices) < n_slices)
    out = {k: [] for k in ('inputs', 'noisy', 'noise', 'to_x', 'm0', 'cbf_true', 'mask',
                           'params', 'sigma')}
    for z in zs:
        crop = _crop_box(rng, subj.mask[..., z], patch)
        flips = (rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5)
        aug = _augmenter(crop, flips)
        pz = dict(subj.params)
        if np.ndim(pz['pld']) > 0:
            pz['pld'] = float(np.ravel(pz['pld'])[z])
        for inputs, norm in built:
            noise = norm['x'][z] - cleandm[..., z] * norm['to_x'][..., z]
            out['inputs'].append(aug(inputs[z]))
            out['noisy'].append(aug(norm['x'][z][None]))
            out['noise'].append(aug(noise[None]))
            out['to_x'].append(float(norm['to_x'][0, 0, z]))
            out['sigma'].append(norm['sigma'])
            out['m0'].append(aug(subj.m0[..., z][None]))
            out['cbf_true'].append(aug(cbf_true[..., z][None]))
            out['mask'].append(aug(loss_mask[..., z][None]))
            out['params'].append(pz)
    return {k: (v if k == 'params' else np.stack(v).astype(np.float32)) for k, v in out.items()}


def _crop_box(rng, mask2d: np.ndarray, patch: int) -> tuple:
    """Top-left corner of a ``patch``-square window centred near a random brain voxel."""
    idx = np.argwhere(mask2d)
    cx, cy = idx[rng.integers(len(idx))] if len(idx) else np.array(mask2d.shape) // 2
    x0 = int(np.clip(cx - patch // 2, 0, max(mask2d.shape[0] - patch, 0)))
    y0 = int(np.clip(cy - patch // 2, 0, max(mask2d.shape[1] - patch, 0)))
    return x0, y0, patch


def _augmenter(crop: tuple, flips: tuple):
    """A function (C, X, Y) → (C, patch, patch): crop (zero-padded if small), flips, transpose."""
    x0, y0, p = crop

    def aug(a):
        a = a[:, x0:x0 + p, y0:y0 + p]
        pad = ((0, 0), (0, p - a.shape[1]), (0, p - a.shape[2]))
        a = np.pad(a, pad)
        if flips[0]:
            a = a[:, ::-1]
        if flips[1]:
            a = a[:, :, ::-1]
        if flips[2]:
            a = a.transpose(0, 2, 1)
        return np.ascontiguousarray(a)

    return aug


def batch(rng: np.random.Generator, bank: list, channels, size: int = 16, patch: int = 64,
          lesion_weight: float = LESION_WEIGHT, paired: bool = False) -> dict:
    """A training batch of ``size`` patches from ``size // 2`` draws: two slices of each, or
    with ``paired`` the twins of one slice (samples ``2i``, ``2i + 1``; see :func:`sample`)."""
    parts = [sample(rng, bank[rng.integers(len(bank))], channels, patch, 1 if paired else 2,
                    lesion_weight, paired)
             for _ in range(max(1, size // 2))]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != 'params'}
    out['params'] = [q for p in parts for q in p['params']]
    return out


def _simulate(job: tuple) -> Subject:
    key, heterogeneous = job
    return make_subject(np.random.default_rng(list(key)), heterogeneous=heterogeneous)


def make_bank(n: int, seed: int, cache=None, workers: int = 1, heterogeneous: float = 0.0
              ) -> list:
    """``n`` subjects (subject ``i`` from ``default_rng([seed, i])``), cached in a pickle file.

    The cache is keyed by the caller (path); an existing file with at least ``n`` subjects is
    reused, so repeated training runs do not simulate again. ``workers`` processes simulate
    in parallel; each subject has its own seed, so the bank does not depend on them.
    """
    import pickle
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    if cache is not None and Path(cache).exists():
        with open(cache, 'rb') as f:
            bank = pickle.load(f)  # noqa: S301 - our own cache file
        if len(bank) >= n:
            return bank[:n]
    jobs = [((seed, i), heterogeneous) for i in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            bank = list(pool.map(_simulate, jobs))
    else:
        bank = [_simulate(j) for j in jobs]
    logger.info('simulated %d training subjects', n)
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        with open(cache, 'wb') as f:
            pickle.dump(bank, f)
    return bank
