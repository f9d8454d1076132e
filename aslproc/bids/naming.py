"""BIDS-derivative file names built from the entities of the input file.

>>> derivative_name({'subject': '01', 'run': 2, 'session': 'a'}, suffix='cbf',
...                 extension='.nii.gz', desc='smoothed')
'sub-01_ses-a_run-2_desc-smoothed_cbf.nii.gz'
>>> derivative_name({'subject': '01'}, suffix='xfm', extension='.mat',
...                 **{'from': 'asl', 'to': 'T1w', 'mode': 'image'})
'sub-01_from-asl_to-T1w_mode-image_xfm.mat'
>>> derivative_name({'subject': '01'}, suffix='cbf', extension='.nii.gz',
...                 space='MNI152NLin2009aSym', res='2', desc='denoised')
'sub-01_space-MNI152NLin2009aSym_res-2_desc-denoised_cbf.nii.gz'
"""

from __future__ import annotations

from pathlib import Path

#: (entity name, key in file names), in the order the BIDS specification writes them.
ENTITY_ORDER = (
    ('subject', 'sub'), ('session', 'ses'), ('acquisition', 'acq'), ('run', 'run'),
    ('from', 'from'), ('to', 'to'), ('mode', 'mode'), ('space', 'space'), ('res', 'res'),
    ('label', 'label'), ('desc', 'desc'),
)


def derivative_name(entities: dict, *, suffix: str, extension: str, **extra) -> str:
    """File name for a derivative: input entities, then ``extra`` (desc, space, ...), suffix."""
    values = {**{k: v for k, v in entities.items() if v not in (None, '')},
              **{k: v for k, v in extra.items() if v not in (None, '')}}
    parts = [f'{key}-{values[name]}' for name, key in ENTITY_ORDER if name in values]
    return '_'.join(parts + [suffix]) + extension


def derivative_path(out_dir, entities: dict, *, datatype: str, suffix: str, extension: str,
                    **extra) -> Path:
    """Full path ``OUT/sub-<label>[/ses-<label>]/<datatype>/<name>``."""
    sub = Path(out_dir) / f"sub-{entities['subject']}"
    if entities.get('session'):
        sub = sub / f"ses-{entities['session']}"
    return sub / datatype / derivative_name(entities, suffix=suffix, extension=extension, **extra)
