"""The report's arrival-time section of a multi-delay run: the ATT map and the mean ΔM of
each delay in GM and WM with the kinetic-model curves the fit implies.

The points are what the fit saw (the fit node's mean ΔM per delay over M0, in the work
directory); the curves are :func:`aslproc.kinetics.kinetic_curve` at the tissue's mean
voxels' fitted curves averaged (CBF and ATT of each voxel), so a curve that misses its points
shows a fit (or a model) that does not describe the data.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from aslproc.kinetics import kinetic_curve
from aslproc.reports import figures
from aslproc.reports.images import Volume
from aslproc.utils.multidelay import voxel_times
from aslproc.utils.qc import GM_THRESHOLD, WM_THRESHOLD

#: Node of the run workflow that fits CBF and ATT (see :func:`aslproc.workflows.cbf`).
FIT_NODE = 'cbf_wf/fit_multidelay'


def tissue_curves(dm: np.ndarray, m0: np.ndarray, cbf: np.ndarray, att: np.ndarray,
                  masks: dict, params: dict, delays, min_voxels: int = 10,
                  n_points: int = 120) -> dict:
    """Per tissue: mean ΔM/M0 of each delay and the mean of the voxels' fitted curves.

    ``dm`` is (X, Y, Z, D), the mean ΔM of each delay; ``masks`` maps a tissue name to a
    boolean (X, Y, Z) mask; ``params`` is :meth:`aslproc.bids.spec.AslSpec.fit_params`.
    Each voxel's curve is ``CBF · kinetic_curve(ATT, t)`` at its own readout times (slice
    timing included); points and curves are drawn at the tissue's mean readout time, so the
    curve passes through the points when the model describes the data. A tissue with fewer
    than ``min_voxels`` fitted voxels is left out.

    >>> dm = np.stack([np.full((2, 1, 1), v) for v in (1.0, 2.0)], -1)
    >>> p = dict(label_type='PASL', ti1=0.8, t1_blood=1.65, alpha=0.98, lam=0.9,
    ...          slice_timing=None)
    >>> out = tissue_curves(dm, np.full((2, 1, 1), 100.0), np.full((2, 1, 1), 50.0),
    ...                     np.full((2, 1, 1), 0.5), {'GM': np.ones((2, 1, 1), bool)}, p,
    ...                     (0.5, 1.0), min_voxels=1, n_points=3)
    >>> out['GM']['times'].tolist(), out['GM']['signal'].tolist(), out['GM']['cbf']
    ([0.5, 1.0], [0.01, 0.02], 50.0)

    The curve at t = 0, 0.55 and 1.1 s, ATT 0.5 s: 0; 50 · 2·0.98·e^(−0.55/1.65)·0.05 / 5400
    = 6.50e-4; 50 · 2·0.98·e^(−1.1/1.65)·0.6 / 5400 = 5.591e-3:

    >>> [round(v * 1e3, 3) for v in out['GM']['model'].tolist()]
    [0.0, 0.65, 5.591]
    """
    times = voxel_times(tuple(delays), params.get('slice_timing'), m0.shape)
    out = {}
    for name, mask in masks.items():
        use = mask & (m0 > 0) & (cbf != 0)
        if use.sum() < min_voxels:
            continue
        t = times[use]
        offset = t[:, :1] - float(delays[0])  # the voxel's slice delay
        grid = np.linspace(0.0, 1.1 * float(np.max(delays)), n_points)
        curves = cbf[use][:, None] * np.asarray(
            kinetic_curve(params, att[use][:, None], grid[None, :] + offset), float)
        out[name] = {'times': t.mean(axis=0),
                     'signal': (dm[use] / m0[use][:, None]).mean(axis=0),
                     'model_times': grid + float(offset.mean()), 'model': curves.mean(axis=0),
                     'cbf': float(cbf[use].mean()), 'att': float(np.median(att[use])),
                     'voxels': int(use.sum())}
    return out


def delay_section(spec, work, prefix, cbf_file, att_file, tissue) -> list[dict]:
    """The ATT mosaic and the delay-curve figure of a multi-delay run (reasons if absent).

    ``tissue`` is a function of a label ('gm' or 'wm') giving its probability on the ASL grid
    (or None); see :func:`aslproc.reports.context._tissue`.
    """
    from aslproc.reports.context import _figure  # the report's never-raising figure wrapper

    have_att = att_file.is_file()
    att_vol = Volume.load(att_file) if have_att else None
    att_fig = _figure(
        'att', 'Arterial transit time',
        'ATT (s) fitted with the CBF, axial slices; 0 (black) is outside the fitted voxels. '
        'Voxels whose every delay came after the whole bolus have an ATT taken from their '
        'neighbours (the data bound it only from above).',
        lambda: figures.att_mosaic(att_vol, box=att_vol.box()) if have_att else
        'not available: no ATT map was written')

    def curves():
        dm_file = work.value(f'{prefix}/{FIT_NODE}', 'out_deltam') if prefix else None
        m0_file = work.value(f'{prefix}/{FIT_NODE}', 'm0_file', inputs=True) if prefix else None
        if not (dm_file and m0_file and have_att and cbf_file.is_file()):
            return 'not available: the fit\'s mean ΔM per delay is not in the work directory'
        gm, wm = tissue('gm'), tissue('wm')
        if gm is None or wm is None:
            return 'not available: no tissue maps on the ASL grid'
        dm = np.asanyarray(nib.load(str(dm_file)).dataobj, dtype=np.float64)  # 4D
        found = tissue_curves(dm.reshape(*dm.shape[:3], -1), Volume.load(m0_file).data,
                              Volume.load(cbf_file).data, att_vol.data,
                              {'GM': gm > GM_THRESHOLD, 'WM': wm > WM_THRESHOLD},
                              spec.fit_params(), spec.delays)
        if not found:
            return 'not available: too few GM and WM voxels'
        return figures.delay_curves(found, what='TI' if spec.label_type == 'PASL'
                                    else 'PLD')

    curve_fig = _figure(
        'delays', 'Mean ΔM per delay and the fitted kinetic curves',
        f'Points: mean ΔM/M0 of each delay where P(GM) > {GM_THRESHOLD} and P(WM) > '
        f'{WM_THRESHOLD}, at the mean readout time of those voxels (slice timing included). '
        'Lines: the mean over the same voxels of each voxel\'s fitted curve (general kinetic '
        'model at its CBF and ATT); the legend gives the mean CBF and the median ATT. '
        'Points far from their line mean the model or the fit does not '
        'describe this series.', curves)
    return [att_fig, curve_fig]
