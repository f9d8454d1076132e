"""Tiny hand-made BIDS ASL datasets for the tests of :mod:`aslproc.bids`.

The datasets are BIDS-valid (checked with ``bids-validator-deno``) and small enough
(6×6×4 voxels, a few volumes) that writing one takes milliseconds. Values are
plausible: the control signal is 90 % of M0 and ΔM about 1 % of M0.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nb
import numpy as np

logger = logging.getLogger(__name__)

M0_VALUE = 1000.0
CONTROL_VALUE = 900.0
DELTA_M = 10.0
T1W_SHAPE = (8, 8, 6)
ASL_ZOOMS = (3.0, 3.0, 5.0)


def write_json(path: Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + '\n')
    return path


def write_nifti(path: Path, data: np.ndarray, zooms=ASL_ZOOMS, tr: float | None = None) -> Path:
    """Save ``data`` as NIfTI-1 with an axial affine of voxel size ``zooms`` and mm/s units."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = -0.5 * np.asarray(zooms) * np.asarray(data.shape[:3])
    img = nb.Nifti1Image(data.astype(np.float32), affine)
    img.header.set_xyzt_units('mm', 'sec')
    if data.ndim == 4:
        img.header.set_zooms((*zooms, tr or 1.0))
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nb.save(img, path)
    return path


def volume_types(m0: str, n_pairs: int) -> list[str]:
    """aslcontext rows: one m0scan first when ``m0 == 'Included'``, then control/label pairs."""
    rows = ['m0scan'] if m0 == 'Included' else []
    return rows + ['control', 'label'] * n_pairs


def asl_series(types: list[str], shape=(6, 6, 4), seed: int = 0) -> np.ndarray:
    """4D series with M0, control and label levels plus 0.5 % Gaussian noise (seeded)."""
    level = {'m0scan': M0_VALUE, 'control': CONTROL_VALUE, 'label': CONTROL_VALUE - DELTA_M,
             'deltam': DELTA_M, 'cbf': 60.0, 'noRF': M0_VALUE}
    rng = np.random.default_rng(seed)
    data = np.stack([np.full(shape, level[t]) for t in types], axis=-1)
    return data + rng.normal(0.0, 0.005 * CONTROL_VALUE, data.shape)


def asl_metadata(label: str, m0: str, bs_pulses: int | None, n_pairs: int = 3) -> dict:
    """A plausible ``*_asl.json`` for one labeling scheme and M0 type."""
    meta = {
        'ArterialSpinLabelingType': label,
        'MRAcquisitionType': '3D',
        'MagneticFieldStrength': 3,
        'EchoTime': 0.012,
        'FlipAngle': 90,
        'PostLabelingDelay': 1.8,
        'RepetitionTimePreparation': 4.0,
        'M0Type': m0,
        'BackgroundSuppression': bs_pulses is not None,
        'VascularCrushing': False,
        'TotalAcquiredPairs': n_pairs,
    }
    if label == 'PCASL':
        meta.update(LabelingDuration=1.8, PCASLType='balanced')
    elif label == 'CASL':
        meta.update(LabelingDuration=1.8, CASLType='single-coil')
    else:
        meta.update(BolusCutOffFlag=True, BolusCutOffDelayTime=0.8,
                    BolusCutOffTechnique='Q2TIPS', PASLType='FAIR')
    if bs_pulses is not None:
        meta['BackgroundSuppressionNumberPulses'] = bs_pulses
        meta['BackgroundSuppressionPulseTime'] = [0.5 + 0.4 * k for k in range(bs_pulses)]
    if m0 == 'Estimate':
        meta['M0Estimate'] = M0_VALUE
    return meta


def _dataset_files(root: Path, subjects) -> None:
    write_json(root / 'dataset_description.json', {
        'Name': 'aslproc tiny test dataset',
        'BIDSVersion': '1.10.0',
        'DatasetType': 'raw',
        'License': 'CC0',
        'Authors': ['aslproc tests', 'aslproc maintainers'],
    })
    (root / 'README').write_text('Tiny synthetic ASL dataset written by the aslproc tests.\n')
    rows = ['participant_id'] + [f'sub-{s}' for s in subjects]
    (root / 'participants.tsv').write_text('\n'.join(rows) + '\n')


def make_tiny_bids(root, *, label='PCASL', m0='Included', n_pairs=3, shape=(6, 6, 4),
                   bs_pulses=None, extra_meta=None, drop=(), subjects=('01',), session=None,
                   run=None, acq=None) -> Path:
    """Write a tiny BIDS ASL dataset under ``root`` and return ``root``.

    Parameters
    ----------
    root : path-like
        Dataset folder (created).
    label : {'PCASL', 'CASL', 'PASL'}
        ArterialSpinLabelingType.
    m0 : {'Included', 'Separate', 'Estimate', 'Absent'}
        M0Type; ``'Separate'`` also writes ``*_m0scan.nii.gz`` with IntendedFor.
    n_pairs : int
        Control/label pairs.
    shape : tuple of int
        Spatial shape of the ASL series.
    bs_pulses : int or None
        Background-suppression pulses (None: no background suppression).
    extra_meta : dict, optional
        Fields added to (or, with value None, removed from) ``*_asl.json``.
    drop : sequence of str
        Fields removed from ``*_asl.json``.
    subjects, session, run, acq
        Subject labels and optional session, run and acquisition labels.
    """
    root = Path(root)
    _dataset_files(root, subjects)
    for sub in subjects:
        paths = run_paths(root, sub, session=session, run=run, acq=acq)
        write_nifti(paths['t1w'], np.full(T1W_SHAPE, 500.0), zooms=(2.0, 2.0, 2.0))
        types = volume_types(m0, n_pairs)
        write_nifti(paths['asl'], asl_series(types, shape), tr=4.0)
        paths['aslcontext'].write_text('\n'.join(['volume_type', *types]) + '\n')
        meta = asl_metadata(label, m0, bs_pulses, n_pairs)
        meta.update(extra_meta or {})
        meta = {k: v for k, v in meta.items() if v is not None and k not in drop}
        write_json(paths['json'], meta)
        if m0 == 'Separate':
            write_nifti(paths['m0'], np.full(shape, M0_VALUE))
            rel = paths['asl'].relative_to(root / f'sub-{sub}').as_posix()
            write_json(paths['m0json'], {
                'IntendedFor': rel, 'RepetitionTimePreparation': 6.0,
                'EchoTime': 0.012, 'FlipAngle': 90, 'MagneticFieldStrength': 3,
                'MRAcquisitionType': '3D',
            })
    logger.debug('wrote tiny BIDS dataset at %s', root)
    return root


def run_paths(root, subject='01', session=None, run=None, acq=None) -> dict:
    """Paths of the files :func:`make_tiny_bids` writes for one run (keys: asl, aslcontext,
    json, t1w, m0, m0json)."""
    root = Path(root)
    subdir = root / f'sub-{subject}' / (f'ses-{session}' if session else '')
    prefix = f'sub-{subject}' + (f'_ses-{session}' if session else '')
    ents = prefix + (f'_acq-{acq}' if acq else '') + (f'_run-{run}' if run else '')
    perf = subdir / 'perf'
    return {
        'asl': perf / f'{ents}_asl.nii.gz',
        'aslcontext': perf / f'{ents}_aslcontext.tsv',
        'json': perf / f'{ents}_asl.json',
        't1w': subdir / 'anat' / f'{prefix}_T1w.nii.gz',
        'm0': perf / f'{ents}_m0scan.nii.gz',
        'm0json': perf / f'{ents}_m0scan.json',
    }


def edit_json(path, **changes) -> dict:
    """Change fields of a JSON file in place (value None removes the field)."""
    path = Path(path)
    obj = json.loads(path.read_text())
    obj.update(changes)
    obj = {k: v for k, v in obj.items() if v is not None}
    write_json(path, obj)
    return obj


def spec_of(root, subject='01', **kwargs):
    """``build_spec`` on one run of a tiny dataset, called the way ``collect_runs`` calls it
    (without pybids, so metadata tests stay fast)."""
    from aslproc.bids.metadata import build_spec

    p = run_paths(root, subject)
    meta = json.loads(p['json'].read_text())
    m0_file = m0_meta = None
    if p['m0'].exists():
        m0_file, m0_meta = p['m0'], json.loads(p['m0json'].read_text())
    args = dict(m0_file=m0_file, m0_metadata=m0_meta)
    args.update(kwargs)
    return build_spec(p['asl'], meta, p['aslcontext'], p['t1w'], {'subject': subject}, **args)
