"""CBF and arterial transit time (ATT) from a multi-delay series: the voxelwise fit (array
layer, torch on any device) and its file layer.

Model. The mean ΔM of the pairs at delay ``d`` of a voxel, over its M0, is
``y_d = f · s(Δt, t_d)`` where ``s`` is :func:`aslproc.kinetics.kinetic_curve` (the general
kinetic model, Buxton et al. 1998, in the single-compartment form of the multi-delay
consensus), ``f`` the CBF (ml/100 g/min), ``Δt`` the ATT (s) and ``t_d`` the voxel's PLD (TI
for PASL) plus its slice's SliceTiming offset for 2D readouts. The fit is the weighted least
squares ``min Σ_d w_d (y_d − f·s_d)²`` with ``w_d`` the number of pairs at delay ``d``, which is
the least-squares fit to every pair.

Method (variable projection). ``f`` enters linearly, so for a given ``Δt`` the best ``f`` is
``f*(Δt) = Σ w s y / Σ w s²``, clipped to :data:`CBF_BOUNDS`, and the fit reduces to one
dimension: minimise the profile residual ``R(Δt) = f*² Σ w s² − 2 f* Σ w s y`` over ``Δt`` in
the ATT bounds. A grid search (step :data:`GRID_STEP`) evaluates every voxel at once with
matrix products, then a golden-section search refines each voxel inside the bracket around
its best grid point (:data:`GOLDEN_STEPS` steps, to about 3 µs). Nothing iterates
towards a minimum that may not exist: no starting values, no divergence, the bounds hold by
construction, and every voxel gets finite numbers, also where there is no signal (CSF, noise:
there ``f*`` is about 0 and ``Δt`` is not determined by the data; the bounds keep it finite).

Arrival before every delay. Once the whole bolus has arrived the model no longer depends on
``Δt`` (:func:`aslproc.kinetics.full_bolus_time`), so a voxel whose earliest delay is later
than its arrival bounds its ATT from above only; its CBF is determined all the same. This is
common with 2D readouts, whose upper slices are read up to a second later. There the profile
is flat up to that bound, and :func:`fit_series` takes the ATT from the voxels around it
whose ATT the data determine (:func:`fill_censored`), capped at the bound.

Noise. At the SNR of a clinical series a voxel's few pairs per delay hardly determine its
ATT (ΔM is often below the noise at each delay), and a noise-driven ATT makes the CBF of the
same fit heavy-tailed and biased (+80 % in grey matter on the simulator at SNR 100). So
:func:`fit_series` fits the ATT to ΔM smoothed inside the brain (Gaussian SD
:data:`ATT_SMOOTH_MM`, a spatial prior in its simplest form: arrival time varies over
centimetres) and then takes each voxel's CBF as the least-squares amplitude of the model at
that ATT to its own, unsmoothed data (:func:`cbf_at`), which is linear in the data, so noise
averages out. ``att_smooth_mm=0`` gives the purely voxelwise fit of :func:`fit_cbf_att`.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage

from aslproc import kinetics
from aslproc.utils import cbf as cbfu

logger = logging.getLogger(__name__)

#: Range of arrival times searched (s). The top is also kept 0.1 s below the last readout
#: (:func:`att_bounds`): an arrival after every readout leaves no signal to fit.
ATT_BOUNDS = (0.0, 3.0)
#: Range of CBF values (ml/100 g/min) the fit may return. Symmetric about 0, so that the
#: noise of low-perfusion voxels averages out as in the plain-average map (an asymmetric range
#: biased noisy means upwards by tens of percent on the simulator).
CBF_BOUNDS = (-300.0, 300.0)
#: Gaussian SD (mm) of the in-brain smoothing of ΔM that the ATT is fitted to in
#: :func:`fit_series` (0: the voxel's own data). The CBF is the voxel's own.
ATT_SMOOTH_MM = 8.0
#: Step of the ATT grid search (s), and golden-section steps within the bracket after it.
GRID_STEP, GOLDEN_STEPS = 0.02, 20
_GOLD = (math.sqrt(5.0) - 1.0) / 2.0


def att_bounds(params: dict, times, bounds=ATT_BOUNDS) -> tuple[float, float]:
    """ATT search range (s): ``bounds``, its top kept 0.1 s before the latest arrival that
    still gives signal at the earliest-read slice (τ + last PLD for (P)CASL, the last TI for
    PASL).

    >>> att_bounds(dict(label_type='PCASL', tau=1.4), [[0.25, 1.5]])
    (0.0, 2.8)
    >>> att_bounds(dict(label_type='PASL', ti1=0.7), [[0.3, 3.0]])
    (0.0, 2.9)
    """
    last = float(np.min(np.max(np.asarray(times, dtype=float), axis=-1)))
    if params['label_type'] != 'PASL':
        last += float(params['tau'])
    return float(bounds[0]), round(min(float(bounds[1]), last - 0.1), 6)


def _profile(y, w, s, lo, hi):
    """Clipped best CBF and profile residual for curves ``s`` (..., D) against ``y``."""
    a = (w * s * y).sum(-1)
    b = (w * s * s).sum(-1).clamp_min(1e-30)
    f = (a / b).clamp(lo, hi)
    return f, f * f * b - 2.0 * f * a


def fit_cbf_att(y, times, weights, params: dict, *, att_range=None, cbf_bounds=CBF_BOUNDS,
                device='cpu', chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Fit CBF and ATT to every voxel (see the module docstring).

    Parameters
    ----------
    y : ndarray (N, D)
        Mean ΔM over M0 of each voxel at each delay.
    times : ndarray (D,) or (N, D)
        The delays (s) of every voxel (PLD, or TI for PASL, plus the slice offset).
    weights : ndarray (D,)
        Pairs averaged into each delay.
    params : dict
        :func:`aslproc.kinetics.kinetic_curve` parameters (``label_type``, ``tau`` or
        ``ti1``, ``t1_blood``, ``alpha``, ``lam``).
    att_range : (float, float), optional
        ATT bounds (s); default :func:`att_bounds` of ``times``.
    device : str or torch.device
        Where torch computes (float64 on every device, so CPU and CUDA agree).

    Returns
    -------
    cbf, att : ndarray (N,), float64
        CBF (ml/100 g/min) within ``cbf_bounds`` and ATT (s) within ``att_range``.

    Examples
    --------
    Noise-free curves of CBF 60 at ATT 1.2 s (PCASL, τ 1.4 s, six PLDs) come back:

    >>> p = dict(label_type='PCASL', tau=1.4, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> t = np.array([0.25, 0.5, 0.75, 1.0, 1.25, 1.5])
    >>> y = 60.0 * kinetics.kinetic_curve(p, 1.2, t)[None]
    >>> cbf, att = fit_cbf_att(y, t, np.full(6, 8.0), p)
    >>> round(float(cbf[0]), 4), round(float(att[0]), 4)
    (60.0, 1.2)
    """
    import torch

    dev = torch.device(device)
    y = np.asarray(y, dtype=np.float64)
    times = np.broadcast_to(np.asarray(times, dtype=np.float64), y.shape)
    lo, hi = att_range or att_bounds(params, times)
    grid = torch.arange(lo, hi + GRID_STEP / 2, GRID_STEP, dtype=torch.float64, device=dev)
    grid = grid.clamp_max(hi)
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64), device=dev)
    cbf, att = np.zeros(len(y)), np.zeros(len(y))
    for start in range(0, len(y), chunk):
        sl = slice(start, start + chunk)
        yt = torch.as_tensor(y[sl], device=dev)
        tt = torch.as_tensor(np.array(times[sl]), device=dev)
        f, a = _fit_chunk(yt, tt, w, params, grid, lo, hi, cbf_bounds)
        cbf[sl], att[sl] = f.cpu().numpy(), a.cpu().numpy()
    return cbf, att


def _unique_rows(t):
    """Distinct rows of ``t`` (N, D) and each row's index, via a 1D key (exact check after)."""
    import torch

    key = t @ torch.linspace(1.0, 2.0, t.shape[1], dtype=t.dtype, device=t.device)
    _, first, inverse = np.unique(key.cpu().numpy(), return_index=True, return_inverse=True)
    rows = t[torch.as_tensor(first, device=t.device)]
    inverse = torch.as_tensor(inverse.ravel(), device=t.device)
    if not torch.equal(rows[inverse], t):  # a key collision: fall back to the exact search
        return torch.unique(t, dim=0, return_inverse=True)
    return rows, inverse


def _fit_chunk(y, t, w, params, grid, lo, hi, cbf_bounds):
    """Grid search then golden-section refinement for one chunk of voxels (torch)."""
    import torch

    rows, inverse = _unique_rows(t)  # one row per slice offset
    best = torch.empty(len(y), dtype=torch.long, device=y.device)
    for r in range(len(rows)):
        idx = torch.nonzero(inverse == r).squeeze(1)
        s = kinetics.kinetic_curve(params, grid[:, None], rows[r][None, :])  # (G, D)
        a = (y[idx] * w) @ s.T  # (n, G)
        b = (w * s * s).sum(-1).clamp_min(1e-30)
        f = (a / b).clamp(*cbf_bounds)
        best[idx] = torch.argmin(f * f * b - 2.0 * f * a, dim=1)
    step = float(grid[1] - grid[0]) if len(grid) > 1 else 0.0
    left = (grid[best] - step).clamp(lo, hi)
    right = (grid[best] + step).clamp(lo, hi)

    def residual(att):
        return _profile(y, w, kinetics.kinetic_curve(params, att[:, None], t), *cbf_bounds)[1]

    a, b = left, right
    c, d = b - _GOLD * (b - a), a + _GOLD * (b - a)
    rc, rd = residual(c), residual(d)
    for _ in range(GOLDEN_STEPS):  # keep [a, d] when R(c) < R(d), else [c, b]; one new point
        m = rc < rd
        a, b = torch.where(m, a, c), torch.where(m, d, b)
        new = torch.where(m, b - _GOLD * (b - a), a + _GOLD * (b - a))
        rnew = residual(new)
        c, d, rc, rd = (torch.where(m, new, d), torch.where(m, c, new),
                        torch.where(m, rnew, rd), torch.where(m, rc, rnew))
    att = torch.where(rc < rd, c, d)
    cand = torch.stack([att, grid[best]])  # never worse than the best grid point
    res = torch.stack([residual(att), residual(grid[best])])
    att = cand.gather(0, res.argmin(0, keepdim=True)).squeeze(0)
    f = _profile(y, w, kinetics.kinetic_curve(params, att[:, None], t), *cbf_bounds)[0]
    return f, att


#: Gaussian widths (mm, SD) of the neighbourhoods that give censored voxels their ATT, tried
#: in turn until every such voxel has identified neighbours.
FILL_SD_MM = (4.0, 8.0, 16.0, 32.0)


def censored(att, times, params: dict):
    """Voxels whose fitted ATT is not after the full-bolus time of their earliest delay:
    the data bound their ATT from above only (see the module docstring). Also returns that
    bound (s).

    >>> p = dict(label_type='PCASL')
    >>> c, cap = censored(np.array([0.3, 0.9]), np.array([[0.5, 1.0], [0.5, 1.0]]), p)
    >>> c.tolist(), cap.tolist()
    ([True, False], [0.5, 0.5])
    """
    cap = kinetics.full_bolus_time(params, np.min(np.asarray(times, dtype=float), axis=-1))
    return np.asarray(att) <= cap + 1e-9, cap


def fill_censored(att: np.ndarray, known: np.ndarray, todo: np.ndarray, cap: np.ndarray,
                  zooms, sd_mm=FILL_SD_MM) -> np.ndarray:
    """ATT of the ``todo`` voxels from the ``known`` ones: Gaussian-weighted mean of the known
    ATT around each (normalised convolution, widths ``sd_mm`` tried in turn), capped at the
    voxel's bound ``cap``; a voxel with no known voxel in reach gets its bound.

    >>> att = np.array([1.0, 0.0, 1.2, 0.0]).reshape(4, 1, 1)
    >>> known = np.array([1, 0, 1, 0], bool).reshape(4, 1, 1)
    >>> cap = np.array([2.0, 2.0, 2.0, 0.6]).reshape(4, 1, 1)
    >>> out = fill_censored(att, known, ~known, cap, (1, 1, 1), sd_mm=(1.0,))
    >>> out.ravel().round(3).tolist()
    [1.0, 1.1, 1.2, 0.6]
    """
    out = np.where(known, att, 0.0).astype(np.float64)
    left = todo & ~known
    w = known.astype(np.float64)
    for sd in sd_mm:
        if not left.any():
            break
        sigma = [sd / float(z) for z in zooms[:3]]
        num = ndimage.gaussian_filter(out * w, sigma, mode='constant')
        den = ndimage.gaussian_filter(w, sigma, mode='constant')
        ok = left & (den > 1e-3)
        out[ok] = num[ok] / den[ok]
        left &= ~ok
    out[left] = cap[left]
    return np.where(todo, np.minimum(out, cap), att)


def cbf_at(y, att, times, weights, params: dict, cbf_bounds=CBF_BOUNDS) -> np.ndarray:
    """Least-squares CBF of every voxel at a given ATT: ``Σ w s y / Σ w s²`` (numpy).

    >>> p = dict(label_type='PCASL', tau=1.4, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> t = np.array([0.5, 1.0, 1.5])
    >>> y = 50.0 * kinetics.kinetic_curve(p, 0.8, t)[None]
    >>> cbf_at(y, np.array([0.8]), t, np.ones(3), p).round(6).tolist()
    [50.0]
    """
    s = np.asarray(kinetics.kinetic_curve(params, np.asarray(att)[:, None], times))
    w = np.asarray(weights, dtype=float)
    den = np.maximum((w * s * s).sum(-1), 1e-30)
    return np.clip((w * s * np.asarray(y)).sum(-1) / den, *cbf_bounds)


def smooth_inside(y: np.ndarray, inside: np.ndarray, zooms, sd_mm: float) -> np.ndarray:
    """Each volume of ``y`` (X, Y, Z, D) smoothed by a Gaussian of SD ``sd_mm`` normalised
    inside ``inside`` (voxels outside do not contribute).

    >>> y = np.zeros((5, 1, 1, 1)); y[:3] = 2.0; y[3:] = 99.0
    >>> inside = np.array([1, 1, 1, 0, 0], bool).reshape(5, 1, 1)
    >>> smooth_inside(y, inside, (1, 1, 1), 2.0)[:3].ravel().round(3).tolist()
    [2.0, 2.0, 2.0]
    """
    sigma = [sd_mm / float(z) for z in zooms[:3]]
    w = inside.astype(np.float64)
    den = np.maximum(ndimage.gaussian_filter(w, sigma, mode='constant'), 1e-6)
    return np.stack([ndimage.gaussian_filter(y[..., k] * w, sigma, mode='constant') / den
                     for k in range(y.shape[-1])], axis=-1)


def delay_means(pairs: np.ndarray, pair_delays, delays) -> tuple[np.ndarray, np.ndarray]:
    """Mean ΔM at each delay, (X, Y, Z, D), and the number of pairs in each (D,).

    >>> p = np.arange(4.0).reshape(1, 1, 1, 4)
    >>> m, n = delay_means(p, [1.0, 2.0, 1.0, 2.0], (1.0, 2.0))
    >>> m.ravel().tolist(), n.tolist()
    ([1.0, 2.0], [2, 2])
    """
    pair_delays = np.asarray(pair_delays, dtype=float)
    counts = np.array([int(np.sum(pair_delays == d)) for d in delays])
    if np.any(counts == 0):
        raise kinetics.AslMetadataError(f'no pair at delay(s) {np.asarray(delays)[counts == 0]}')
    means = np.stack([pairs[..., pair_delays == d].mean(axis=-1) for d in delays], axis=-1)
    return means.astype(np.float32), counts


def voxel_times(delays, slice_timing, shape) -> np.ndarray:
    """Delay of every voxel at every delay, (X, Y, Z, D): PLD plus the slice's SliceTiming.

    >>> voxel_times((1.0, 2.0), (0.0, 0.1), (1, 1, 2))[0, 0].tolist()
    [[1.0, 2.0], [1.1, 2.1]]
    """
    t = np.asarray(delays, dtype=float)[None, None, None, :]
    if slice_timing:
        t = t + np.asarray(slice_timing, dtype=float)[None, None, :, None]
    return np.broadcast_to(t, (*shape[:3], len(delays))).copy()


def fit_series(data: np.ndarray, m0: np.ndarray, mask: np.ndarray, volume_types,
               params: dict, zooms=(1.0, 1.0, 1.0), device='cpu',
               att_smooth_mm: float = ATT_SMOOTH_MM) -> dict:
    """CBF and ATT maps of a motion-corrected multi-delay series (array layer).

    ``params`` is :meth:`aslproc.bids.spec.AslSpec.fit_params` (per-volume delays and slice
    timing included), ``zooms`` the voxel size (mm). The ATT is fitted to ΔM smoothed by
    ``att_smooth_mm`` and the CBF to the voxel's own ΔM at that ATT (module docstring). Voxels
    outside ``mask`` or with M0 below the floor of :func:`aslproc.utils.cbf.m0_floor` get
    CBF 0 and ATT 0. Returns ``cbf``, ``att`` (3D), ``deltam`` (mean ΔM per delay, 4D),
    ``censored`` (3D bool: ATT taken from the neighbours), ``delays``, ``counts``,
    ``att_range`` and ``censored_fraction`` (of the fitted voxels).
    """
    delays = tuple(sorted({d for d, t in zip(params['volume_plds'], volume_types, strict=True)
                           if t in ('control', 'label', 'deltam')}))
    pairs = cbfu.pairwise_delta_m(data, volume_types)
    pair_delays = cbfu.pairwise_values(params['volume_plds'], volume_types)
    dm, counts = delay_means(pairs, pair_delays, delays)
    times = voxel_times(delays, params.get('slice_timing'), data.shape)
    inside = (mask > 0) & (m0 > cbfu.m0_floor(m0, mask))
    rng = att_bounds(params, times[inside] if inside.any() else times.reshape(-1, len(delays)))
    cbf, att = np.zeros(m0.shape, np.float32), np.zeros(m0.shape, np.float32)
    flat, cap = np.zeros(m0.shape, bool), np.zeros(m0.shape)
    if inside.any():
        y = dm / np.where(inside, m0, 1.0)[..., None]
        ys = smooth_inside(y, inside, zooms, att_smooth_mm) if att_smooth_mm > 0 else y
        _, a = fit_cbf_att(ys[inside], times[inside], counts, params, att_range=rng,
                           device=device)
        cbf[inside], att[inside] = cbf_at(y[inside], a, times[inside], counts, params), a
        flat[inside], cap[inside] = censored(a, times[inside], params)
        cap = np.clip(cap, *rng)
        att = fill_censored(att, inside & ~flat, flat, cap, zooms).astype(np.float32)
    share = float(flat[inside].mean()) if inside.any() else 0.0
    if share > 0.01:
        logger.info('%.0f %% of the fitted voxels were reached by the whole bolus at every '
                    'delay; their ATT comes from their neighbours', 100 * share)
    return dict(cbf=cbf, att=att, deltam=dm, censored=flat, delays=delays,
                counts=counts.tolist(), att_range=rng, censored_fraction=share)
