"""What each learned stage removed: input − output on one grid, for the report.

The denoiser's residual is the plain-average CBF minus the denoised CBF (ASL grid). The
super-resolution's is the linear upsampling of its input (the denoised map, or the plain one
without the denoiser) onto the T1w grid minus its output. Noise looks like noise there; a
lesion a stage filled in, or tissue structure it painted, looks like a lesion or like anatomy.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from aslproc.reports.images import Volume, robust_max

logger = logging.getLogger(__name__)


def stage_residuals(maps: dict, files: dict, xfm: Path | None) -> dict:
    """Residual volumes by row label, each with the voxels where it is defined.

    Parameters
    ----------
    maps : dict of str to Volume
        The report's CBF maps by label ('plain average', 'denoised', 'super-resolved').
    files : dict of str to Path
        The same maps' files (the SR input is resampled from its file).
    xfm : Path or None
        The ASL → T1w transform (needed for the SR residual).
    """
    out = {}
    plain, den = maps.get('plain average'), maps.get('denoised')
    if plain is not None and den is not None and plain.data.shape == den.data.shape:
        support = Volume(((plain.data != 0) | (den.data != 0)).astype(np.float32),
                         plain.origin, plain.zooms)
        out['denoiser: plain − denoised'] = (
            Volume(plain.data - den.data, plain.origin, plain.zooms), support)
    sr = maps.get('super-resolved')
    source = 'denoised' if den is not None else 'plain average'
    if sr is not None and source in files and xfm is not None and Path(xfm).is_file():
        from aslproc.utils.registration import resample_to_t1w

        with tempfile.TemporaryDirectory() as tmp:
            linear = Volume.load(resample_to_t1w(files[source], files['super-resolved'], xfm,
                                                 Path(tmp) / 'linear.nii.gz'))
        if linear.data.shape == sr.data.shape:
            support = Volume((sr.data != 0).astype(np.float32), sr.origin, sr.zooms)
            out[f'SR: linear({source}) − SR'] = (
                Volume(np.where(sr.data != 0, linear.data - sr.data, 0.0), sr.origin,
                       sr.zooms), support)
    return out


def residual_scale(residuals: dict) -> float:
    """One symmetric colour scale for every row: the robust maximum of |residual|."""
    vals = [np.abs(v.data[s.data > 0]) for v, s in residuals.values()]
    vals = np.concatenate([v for v in vals if v.size]) if vals else np.array([])
    return max(robust_max(vals[vals > 0]) if np.any(vals > 0) else 1.0, 1.0)
