"""The report's spatial-normalization panel: the T1w in the template with template contours.

The warped T1w comes from the normalization node in the work directory, or, when the work
directory is gone, is redone from the derivatives (the T1w and its ``from-T1w_to-<template>``
transform). The contours are the template's brain mask and its white-matter boundary.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from aslproc.reports import figures
from aslproc.reports.context import _figure, anat_path, sidecar_of
from aslproc.reports.images import Volume
from aslproc.utils.template import TEMPLATE, template_spaces, write_template

logger = logging.getLogger(__name__)

#: Contour colour of the template's white-matter boundary (the brain outline is figures.EDGE).
WM_EDGE = '#ffd60a'
#: Dice of the warped GM with the template GM below which the report flags the normalization.
DICE_FLAG = 0.6


def _warped_t1w(settings, spec, work, res: int, tmp: Path) -> Path | str:
    """The T1w on the template grid: the node's output, else resampled from the outputs."""
    found = work.value('template_wf/normalize', 'out_t1w')
    if found:
        return found
    xfm = anat_path(settings, spec, 'xfm_to_template')
    if not xfm.is_file():
        return 'not available: the normalization did not run (see errors)'
    from aslproc.utils.normalize import resample_to_space

    ref = write_template('T1', res, tmp / 'ref.nii.gz')
    return Path(resample_to_space(spec.t1w_file, ref, [str(xfm)], tmp / 't1w.nii.gz'))


def normalization_section(settings, runs, work) -> dict | None:
    """Rows (template, Dice, transforms) and the contour figure; None when switched off."""
    if not settings.normalize or not runs:
        return None
    spec = runs[0]
    res = template_spaces(settings.output_spaces)[0].res
    xfm = anat_path(settings, spec, 'xfm_to_template')
    dice = sidecar_of(xfm).get('NormalizationDiceGM')

    def draw():
        with tempfile.TemporaryDirectory() as tmp:
            warped = _warped_t1w(settings, spec, work, res, Path(tmp))
            if isinstance(warped, str):
                return warped
            mask = Volume.load(write_template('mask', res, Path(tmp) / 'mask.nii.gz'))
            wm = Volume.load(write_template('WM', res, Path(tmp) / 'wm.nii.gz'))
            return figures.plane_grid(Volume.load(warped), [(mask, [0.5], figures.EDGE),
                                                            (wm, [0.5], WM_EDGE)],
                                      box=mask.box(0.5))

    fig = _figure('normalization', f'T1w in {TEMPLATE}',
                  f'The T1w resampled onto the {res} mm template grid through its '
                  f'T1w → {TEMPLATE} transform, with the template brain outline (red) and its '
                  'white-matter boundary (P(WM) = 0.5, yellow). Both should follow the '
                  "subject's brain edge and grey/white boundary.", draw)
    rows = [('template', f'{TEMPLATE} (ICBM 2009a nonlinear symmetric MNI152, nilearn)'),
            ('output spaces', ', '.join(settings.output_spaces)),
            ('Dice of the warped GM (> 0.5) with the template GM (> 0.5)',
             'not recorded' if dice is None else f'{dice:.3f}'),
            ('transforms', f'{xfm.name} and its inverse')]
    flagged = dice is not None and dice < DICE_FLAG
    return {'rows': rows, 'figure': fig, 'flag': flagged,
            'note': f'The GM Dice is below {DICE_FLAG}: check the contours.' if flagged else ''}
