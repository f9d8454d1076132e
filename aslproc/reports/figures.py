"""Report figures (matplotlib, Agg backend), returned as PNG bytes."""

from __future__ import annotations

import io
import logging

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

logger = logging.getLogger(__name__)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=80, bbox_inches='tight')
    plt.close(fig)
    return buf.getvalue()


def axial_slices(shape_z: int, n: int = 8) -> list[int]:
    """``n`` evenly spaced axial slices, avoiding the first and last 15 %.

    >>> axial_slices(20, 4)
    [3, 7, 12, 16]
    """
    lo, hi = int(0.15 * shape_z), max(int(0.85 * shape_z), int(0.15 * shape_z) + 1)
    return sorted(set(np.linspace(lo, hi - 1, min(n, hi - lo)).round().astype(int).tolist()))


def cbf_mosaic(maps: dict, vmax: float | None = None) -> bytes:
    """Rows of axial slices, one row per map, on a common colour scale (ml/100 g/min)."""
    names = list(maps)
    zs = axial_slices(next(iter(maps.values())).shape[2])
    if vmax is None:
        vals = np.concatenate([m[m > 0].ravel() for m in maps.values() if np.any(m > 0)] or
                              [np.array([1.0])])
        vmax = float(np.percentile(vals, 99))
    fig, axes = plt.subplots(len(names), len(zs), figsize=(1.6 * len(zs), 1.8 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        data = maps[name]
        for c, z in enumerate(zs):
            ax = axes[r, c]
            im = ax.imshow(np.rot90(data[:, :, min(z, data.shape[2] - 1)]), cmap='viridis',
                           vmin=0, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label='CBF (ml/100 g/min)')
    return _png(fig)


def motion_plot(confounds: dict) -> bytes:
    """Translations, rotations and framewise displacement against volume index."""
    fig, axes = plt.subplots(3, 1, figsize=(7, 5), sharex=True)
    for k in ('trans_x', 'trans_y', 'trans_z'):
        axes[0].plot(confounds[k], label=k)
    for k in ('rot_x', 'rot_y', 'rot_z'):
        axes[1].plot(np.degrees(confounds[k]), label=k)
    fd = np.asarray(confounds['framewise_displacement'], dtype=float)
    axes[2].plot(fd, color='k')
    axes[2].axhline(0.5, color='r', ls='--', lw=0.8)
    outliers = np.nonzero(fd > 0.5)[0]
    axes[2].plot(outliers, fd[outliers], 'rx')
    axes[0].set_ylabel('mm')
    axes[1].set_ylabel('degrees')
    axes[2].set_ylabel('FD (mm)')
    axes[2].set_xlabel('volume')
    for ax in axes[:2]:
        ax.legend(fontsize=7, ncol=3, loc='upper right')
    return _png(fig)
