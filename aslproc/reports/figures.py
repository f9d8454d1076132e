"""Report figures, drawn with matplotlib's object API (no pyplot state) and returned as PNG.

Slices are cut at world positions (see :mod:`aslproc.reports.images`), shown in
neurological convention (subject's left on the left).
"""

from __future__ import annotations

import io
import logging

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from aslproc.reports.images import PLANES, Volume, cuts

logger = logging.getLogger(__name__)

#: Resolution of every PNG: ~1000 px wide figures keep the page at a few hundred kB.
DPI = 80
#: Framewise displacement (mm) above which a volume is marked as an outlier.
FD_THRESHOLD = 0.5
CBF_LABEL = 'CBF (ml/100 g/min)'
#: CBF (ml/100 g/min) below which a voxel shows as negative; float noise around 0 does not.
NEGATIVE = -1.0
#: Contour colour of an overlay drawn on a grey-scale image.
EDGE = '#ff3b30'


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=DPI)
    return buf.getvalue()


def _window(vol: Volume) -> tuple[float, float]:
    """Grey-scale limits: 1st and 99.5th percentiles of the non-zero voxels."""
    vals = vol.data[vol.data != 0]
    if not vals.size:
        return 0.0, 1.0
    lo, hi = np.percentile(vals, [1.0, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _contour(ax, vol: Volume, axis: int, mm: float, levels, color: str) -> None:
    plane = vol.plane(axis, mm)
    levels = [lv for lv in levels if plane.min() < lv < plane.max()]
    if levels:
        ax.contour(plane, levels=levels, colors=color, linewidths=0.9, origin='lower',
                   extent=vol.extent(axis))


def _frame(ax, box, h: int, v: int, margin: float = 6.0) -> None:
    lo, hi = box
    ax.set_xlim(lo[h] - margin, hi[h] + margin)
    ax.set_ylim(lo[v] - margin, hi[v] + margin)
    ax.set_xticks([])
    ax.set_yticks([])


def plane_grid(background: Volume, overlays=(), *, box, n_cuts: int = 5,
               title: str = '') -> bytes:
    """Sagittal, coronal and axial rows of ``background`` with contour ``overlays``.

    Parameters
    ----------
    background : Volume
        Grey-scale image.
    overlays : sequence of (Volume, levels, colour)
        Images whose iso-contours are drawn on top (any grid).
    box : (ndarray (3,), ndarray (3,))
        World bounding box (mm) framing every panel and placing the cuts.
    """
    vmin, vmax = _window(background)
    fig = Figure(figsize=(2.2 * n_cuts, 6.9), layout='constrained')
    axes = fig.subplots(3, n_cuts, squeeze=False)
    for row, (axis, name, (h, v)) in enumerate(PLANES):
        for col, mm in enumerate(cuts(box[0][axis], box[1][axis], n_cuts)):
            ax = axes[row, col]
            ax.imshow(background.plane(axis, mm), origin='lower', cmap='gray', vmin=vmin,
                      vmax=vmax, extent=background.extent(axis), interpolation='nearest')
            ax.set_facecolor('black')
            for vol, levels, color in overlays:
                _contour(ax, vol, axis, mm, levels, color)
            _frame(ax, box, h, v)
            ax.set_title(f"{'xyz'[axis]} = {mm:.0f} mm", fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
                if axis != 0:
                    ax.text(0.02, 0.02, 'L', color='w', fontsize=8, transform=ax.transAxes)
                    ax.text(0.93, 0.02, 'R', color='w', fontsize=8, transform=ax.transAxes)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def motion_figure(confounds: dict, threshold: float = FD_THRESHOLD) -> bytes:
    """Translations (mm), rotations (degrees) and framewise displacement per volume.

    Volumes whose FD exceeds ``threshold`` are shaded in every panel and crossed in the last.
    """
    fd = np.asarray(confounds['framewise_displacement'], dtype=float)
    outliers = np.nonzero(np.nan_to_num(fd) > threshold)[0]
    fig = Figure(figsize=(9.0, 5.4), layout='constrained')
    axes = fig.subplots(3, 1, sharex=True)
    for k in ('trans_x', 'trans_y', 'trans_z'):
        axes[0].plot(confounds[k], lw=1.2, label=k)
    for k in ('rot_x', 'rot_y', 'rot_z'):
        axes[1].plot(np.degrees(np.asarray(confounds[k], dtype=float)), lw=1.2, label=k)
    axes[2].plot(fd, color='k', lw=1.2, marker='.', label='FD')
    axes[2].axhline(threshold, color='r', ls='--', lw=0.8, label=f'{threshold} mm')
    axes[2].plot(outliers, fd[outliers], 'rx', ms=8, mew=2, label='outlier')
    excluded = np.flatnonzero(np.nan_to_num(np.asarray(
        confounds.get('pair_excluded', np.zeros(fd.size)), dtype=float)) > 0)
    if excluded.size:
        axes[2].plot(excluded, np.nan_to_num(fd[excluded]), 'bs', ms=6, mfc='none',
                     label='pair left out')
    for ax, unit in zip(axes, ('translation (mm)', 'rotation (deg)', 'FD (mm)'), strict=True):
        for t in outliers:
            ax.axvspan(t - 0.5, t + 0.5, color='r', alpha=0.15, lw=0)
        for t in excluded:
            ax.axvspan(t - 0.5, t + 0.5, color='b', alpha=0.12, lw=0)
        ax.set_ylabel(unit, fontsize=9)
        ax.legend(fontsize=7, ncol=4, loc='upper right')
        ax.grid(alpha=0.3)
    axes[2].set_xlabel('volume')
    fig.suptitle(f'{len(outliers)} volume(s) with FD > {threshold} mm', fontsize=10)
    return _png(fig)


def _cbf_cmap():
    # cyan: negative CBF; black: outside the map's support (masked zeros)
    return colormaps['viridis'].with_extremes(under='#00e5ff', bad='black')


def cbf_mosaic(maps: dict, *, box, vmax: float, n_cuts: int = 7) -> bytes:
    """One row of axial slices per CBF map, at the same world z and on one colour scale.

    Parameters
    ----------
    maps : dict of str to Volume
        Row label and map (ml/100 g/min); maps may lie on different grids.
    box : (ndarray (3,), ndarray (3,))
        World bounding box (mm) of the brain.
    vmax : float
        Top of the colour scale; 0 is the bottom, values below :data:`NEGATIVE` show in cyan.
    """
    def plane(vol):
        def cut(mm):
            p = vol.plane(2, mm)
            return np.ma.array(np.where((p < 0) & (p > NEGATIVE), 0.0, p), mask=p == 0), vol
        return cut

    return _axial_rows({name: plane(vol) for name, vol in maps.items()}, box=box,
                       n_cuts=n_cuts, cmap=_cbf_cmap(), vmin=0, vmax=vmax, extend='min',
                       label=CBF_LABEL)


def residual_mosaic(residuals: dict, *, box, scale: float, n_cuts: int = 7) -> bytes:
    """One row of axial slices per learned stage's residual (its input − its output), at the
    same world z as :func:`cbf_mosaic`, on one symmetric scale (red: the stage removed CBF,
    blue: it added CBF)."""
    def plane(vol, support):
        return lambda mm: (np.ma.array(vol.plane(2, mm),
                                       mask=~support.plane(2, mm).astype(bool)), vol)

    return _axial_rows({name: plane(*pair) for name, pair in residuals.items()}, box=box,
                       n_cuts=n_cuts, cmap=colormaps['RdBu_r'].with_extremes(bad='black'),
                       vmin=-scale, vmax=scale, extend='both', label='removed ' + CBF_LABEL,
                       ylabel_size=8)


def _axial_rows(rows: dict, *, box, n_cuts: int, cmap, vmin: float, vmax: float, extend: str,
                label: str, ylabel_size: int = 9) -> bytes:
    """One row of axial panels per entry (name → function of z in mm giving the masked
    plane and the Volume it came from), at the same world z, one colour bar."""
    fig = Figure(figsize=(1.45 * n_cuts + 1.2, 1.75 * len(rows) + 0.4), layout='constrained')
    axes = fig.subplots(len(rows), n_cuts, squeeze=False)
    im = None
    for row, (name, cut) in enumerate(rows.items()):
        for col, mm in enumerate(cuts(box[0][2], box[1][2], n_cuts)):
            ax = axes[row, col]
            shown, vol = cut(mm)
            im = ax.imshow(shown, origin='lower', cmap=cmap, vmin=vmin, vmax=vmax,
                           extent=vol.extent(2), interpolation='nearest')
            ax.set_facecolor('black')
            _frame(ax, box, 0, 1, margin=3.0)
            if row == 0:
                ax.set_title(f'z = {mm:.0f} mm', fontsize=8)
            if col == 0:
                ax.set_ylabel(name, fontsize=ylabel_size)
    fig.colorbar(im, ax=axes, extend=extend, shrink=0.85, label=label)
    return _png(fig)


def tissue_histograms(values: dict, *, vmax: float) -> bytes:
    """Histograms of grey- and white-matter CBF, one panel per map, common axes.

    Parameters
    ----------
    values : dict of str to (ndarray, ndarray)
        Map name and its CBF values in GM and in WM.
    vmax : float
        Top of the CBF colour scale; the axis spans ``[-vmax / 2, 1.5 vmax]``, and the share
        of values beyond it is written in the panel.
    """
    bins = np.linspace(min(-20.0, -0.5 * vmax), 1.5 * vmax, 61)
    fig = Figure(figsize=(2.9 * len(values) + 0.4, 2.7), layout='constrained')
    axes = fig.subplots(1, len(values), squeeze=False, sharex=True)[0]
    for ax, (name, (gm, wm)) in zip(axes, values.items(), strict=True):
        beyond = []
        for vals, color, label in ((gm, '#2ca02c', 'GM'), (wm, '#1f77b4', 'WM')):
            if vals.size:
                ax.hist(vals, bins=bins, color=color, alpha=0.45,
                        label=f'{label} (mean {vals.mean():.0f})')
                ax.axvline(vals.mean(), color=color, lw=1.2)
                out = 100.0 * np.mean((vals < bins[0]) | (vals > bins[-1]))
                if out >= 0.5:
                    beyond.append(f'{label} {out:.0f} %')
        if beyond:
            ax.text(0.02, 0.97, 'off axis:\n' + '\n'.join(beyond), transform=ax.transAxes,
                    fontsize=7, va='top', color='#a00')
        ax.axvline(0.0, color='k', lw=0.6, ls=':')
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(CBF_LABEL, fontsize=8)
        ax.set_yticks([])
        ax.legend(fontsize=7, loc='upper right')
    return _png(fig)


def att_mosaic(att: Volume, *, box, n_cuts: int = 7) -> bytes:
    """One row of axial slices of the arrival-time map (s), zeros (not fitted) in black."""
    inside = att.data[att.data > 0]
    vmax = float(np.percentile(inside, 99.5)) if inside.size else 1.0

    def cut(mm):
        p = att.plane(2, mm)
        return np.ma.array(p, mask=p <= 0), att

    return _axial_rows({'ATT': cut}, box=box, n_cuts=n_cuts,
                       cmap=colormaps['magma'].with_extremes(bad='black'), vmin=0.0,
                       vmax=max(vmax, 0.1), extend='neither', label='arrival time (s)')


def delay_curves(tissues: dict, *, what: str = 'PLD') -> bytes:
    """Mean ΔM/M0 of each delay per tissue (points) and the mean of its voxels' fitted
    kinetic curves (lines); see :func:`aslproc.reports.multidelay.tissue_curves`."""
    colors = {'GM': '#2ca02c', 'WM': '#1f77b4'}
    fig = Figure(figsize=(6.0, 3.2), layout='constrained')
    ax = fig.subplots()
    for name, t in tissues.items():
        color = colors.get(name, 'k')
        ax.plot(t['times'], 100 * t['signal'], 'o', color=color,
                label=f"{name} data ({t['voxels']} voxels)")
        ax.plot(t['model_times'], 100 * t['model'], '-', color=color, lw=1.3,
                label=f"{name} fit: mean CBF {t['cbf']:.0f}, median ATT {t['att']:.2f} s")
    ax.axhline(0.0, color='k', lw=0.6, ls=':')
    ax.set_xlabel(f'{what}, readout time (s)')
    ax.set_ylabel('ΔM / M0 (%)')
    ax.legend(fontsize=7)
    return _png(fig)
