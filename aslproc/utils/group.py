"""Group level: which runs pass QC, global CBF outliers, template-space mean/SD maps and the
subject × region table, from a derivatives folder that participant runs filled.

A run is **included** when none of its QC values lies outside the usual range the subject
report flags (:data:`aslproc.reports.context.QC_ROWS`; the denoiser's residual-structure
metric is shown but judges the denoiser, not the data, and does not exclude), and when its
global grey- or white-matter CBF is not an outlier among the runs: robust z, (x − median) /
(1.4826 MAD), beyond ±3.5 (Iglewicz and Hoaglin's modified z-score; computed from 3 runs on).

Mean and SD maps are over **subjects**: a subject's included runs are averaged first (voxel by
voxel, each run inside its own template-space brain mask), so a subject with three runs
counts once; a voxel's count is the number of subjects whose brain mask covers it, and its SD
(n − 1) is 0 where fewer than two do.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

logger = logging.getLogger(__name__)

#: |robust z| beyond which a run's global GM or WM CBF is an outlier.
OUTLIER_Z = 3.5
#: Fewest runs for which a robust z is computed.
MIN_RUNS_Z = 3
#: QC metrics shown but not used to exclude a run.
NOT_EXCLUDING = ('denoise_data_departure_sd', 'sr_data_departure_sd')
#: Template-space CBF file name of a run (groups: prefix, space, res, desc).
_MAP = re.compile(r'^(?P<stem>.+)_space-(?P<space>[A-Za-z0-9]+)_res-(?P<res>\d+)'
                  r'(?:_desc-(?P<desc>[A-Za-z0-9]+))?_cbf\.nii\.gz$')


#: Column descriptions of ``group_desc-global_cbf.tsv`` (its JSON sidecar).
GLOBAL_COLUMNS = {
    'participant_id': {'Description': 'subject'},
    'run': {'Description': 'entities of the run (file name stem)'},
    'mean_gm_cbf': {'Description': 'mean CBF where P(GM) > 0.7 (QC table, ASL grid)',
                    'Units': 'mL/100 g/min'},
    'mean_wm_cbf': {'Description': 'mean CBF where P(WM) > 0.9 (QC table, ASL grid)',
                    'Units': 'mL/100 g/min'},
    'gm_robust_z': {'Description': '(x - median) / (1.4826 MAD) of mean_gm_cbf over the runs'},
    'wm_robust_z': {'Description': '(x - median) / (1.4826 MAD) of mean_wm_cbf over the runs'},
    'outlier': {'Description': f'|robust z| of GM or WM CBF above {OUTLIER_Z}'},
    'qc_flags': {'Description': 'QC metrics outside the usual range of the subject report'},
    'normalization_dice_gm': {'Description': 'Dice of the warped GM with the template GM '
                              '(shown, never excluding)'},
    'included': {'Description': 'whether the run enters the group mean/SD maps'},
    'reason': {'Description': 'why it does not'},
}
#: Column descriptions of ``group_desc-regions_cbf.tsv`` (region columns: mean CBF).
REGION_COLUMNS = {
    'participant_id': {'Description': 'subject'},
    'run': {'Description': 'entities of the run (file name stem)'},
    'included': {'Description': 'whether the run passed QC (group_desc-global_cbf.tsv)'},
    'map': {'Description': 'CBF map: cbf (plain), cbf_smoothed, cbf_denoised, cbf_pvcGM; the '
            'other columns are its mean (mL/100 g/min) in the subject\'s grey matter of each '
            'region, as in the run\'s desc-regions_cbf.tsv'},
}


def robust_z(values) -> np.ndarray:
    """(x − median) / (1.4826 · MAD) over the finite values; NaN for fewer than
    :data:`MIN_RUNS_Z` values; a zero MAD falls back to 1.2533 × the mean absolute deviation.

    >>> robust_z([50.0, 52.0, 48.0, 51.0, 49.0, 90.0]).round(2).tolist()
    [-0.22, 0.67, -1.12, 0.22, -0.67, 17.76]
    >>> bool(np.isnan(robust_z([1.0, 2.0])).all())
    True
    """
    x = np.asarray(values, dtype=float)
    out = np.full(x.shape, np.nan)
    ok = np.isfinite(x)
    if ok.sum() < MIN_RUNS_Z:
        return out
    med = np.median(x[ok])
    scale = 1.4826 * np.median(np.abs(x[ok] - med))
    if scale == 0:
        scale = 1.2533 * np.mean(np.abs(x[ok] - med))
    out[ok] = 0.0 if scale == 0 else (x[ok] - med) / scale
    return out


@dataclass
class Run:
    """One participant run found in the derivatives: its ``<ent>`` stem, subject, QC row,
    and its template-space maps by (space, res) and desc ('' for the plain map)."""

    stem: str
    subject: str
    perf: Path
    qc: dict
    maps: dict = field(default_factory=dict)
    masks: dict = field(default_factory=dict)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float('nan')


def collect_runs(output_dir) -> list[Run]:
    """Every run with a ``*_desc-qc_cbf.tsv``, with its template-space maps, sorted by name."""
    runs = []
    for tsv in sorted(Path(output_dir).glob('sub-*/**/perf/*_desc-qc_cbf.tsv')):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter='\t'), {})
        stem = tsv.name[: -len('_desc-qc_cbf.tsv')]
        run = Run(stem, stem.split('_')[0][4:], tsv.parent, row)
        for path in sorted(tsv.parent.glob(f'{stem}_space-*_cbf.nii.gz')):
            m = _MAP.match(path.name)
            if m and m['stem'] == stem:
                key = (m['space'], int(m['res']))
                run.maps.setdefault(key, {})[m['desc'] or ''] = path
                mask = path.with_name(f"{stem}_space-{m['space']}_res-{m['res']}"
                                      '_desc-brain_mask.nii.gz')
                if mask.is_file():
                    run.masks[key] = mask
        runs.append(run)
    return runs


def qc_flags(row: dict) -> list[str]:
    """QC metrics of a run outside their usual range (those that may exclude it)."""
    from aslproc.reports.context import QC_ROWS, flag

    return [key for key, _, _, rng in QC_ROWS
            if key in row and key not in NOT_EXCLUDING and flag(row[key], *rng)]


def decide(runs: list[Run], dice: dict | None = None) -> list[dict]:
    """One row per run: global GM/WM CBF, robust z, flags and whether it is included.

    ``dice`` maps a subject label to its normalization Dice (shown, never excluding).
    """
    gm = np.array([_number(r.qc.get('mean_gm_cbf')) for r in runs])
    wm = np.array([_number(r.qc.get('mean_wm_cbf')) for r in runs])
    zg, zw = robust_z(gm), robust_z(wm)
    rows = []
    for k, run in enumerate(runs):
        flags = qc_flags(run.qc)
        outlier = [n for n, z in (('GM', zg[k]), ('WM', zw[k])) if abs(z) > OUTLIER_Z]
        reasons = [f'{f} outside the usual range' for f in flags]
        reasons += [f'{n} CBF outlier (robust z {z:+.1f})' for n, z in
                    (('GM', zg[k]), ('WM', zw[k])) if n in outlier]
        rows.append({'participant_id': f'sub-{run.subject}', 'run': run.stem,
                     'mean_gm_cbf': gm[k], 'mean_wm_cbf': wm[k], 'gm_robust_z': zg[k],
                     'wm_robust_z': zw[k], 'outlier': bool(outlier),
                     'qc_flags': ','.join(flags) or 'none',
                     'normalization_dice_gm': (dice or {}).get(run.subject, float('nan')),
                     'included': not reasons, 'reason': '; '.join(reasons) or 'n/a'})
    return rows


def _load(path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    return data.reshape(data.shape[:3]), img.affine


def subject_mean(maps: list[Path], masks: list[Path | None]) -> tuple[np.ndarray, np.ndarray]:
    """Voxelwise mean of one subject's runs (each inside its mask) and the covered voxels."""
    total = covered = None
    for cbf, mask in zip(maps, masks, strict=True):
        data, _ = _load(cbf)
        inside = _load(mask)[0] > 0 if mask is not None else data != 0
        inside &= np.isfinite(data)
        if total is None:
            total, covered = np.zeros(data.shape), np.zeros(data.shape)
        total += np.where(inside, data, 0.0)
        covered += inside
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(covered > 0, total / np.maximum(covered, 1), 0.0), covered > 0


def mean_sd(subjects: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, SD (n − 1; 0 below two subjects) and count maps over subjects.

    ``subjects`` maps a label to ``(maps, masks)`` lists; Welford's update keeps one subject
    in memory at a time. Returns ``(mean, sd, count, affine)``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> def img(name, v):
    ...     nib.Nifti1Image(np.array(v, np.float32).reshape(3, 1, 1), np.eye(4)).to_filename(
    ...         d / name)
    ...     return d / name
    >>> subs = {'a': ([img('a.nii', [10, 20, 0])], [img('am.nii', [1, 1, 0])]),
    ...         'b': ([img('b.nii', [30, 40, 50]), img('b2.nii', [50, 40, 50])],
    ...               [img('bm.nii', [1, 1, 1]), img('bm2.nii', [1, 1, 1])])}
    >>> mean, sd, n, _ = mean_sd(subs)
    >>> mean.ravel().tolist(), sd.ravel().round(3).tolist(), n.ravel().tolist()
    ([25.0, 30.0, 50.0], [21.213, 14.142, 0.0], [2, 2, 1])
    """
    mean = m2 = count = affine = None
    for label, (maps, masks) in subjects.items():
        value, inside = subject_mean(maps, masks)
        if mean is None:
            affine = _load(maps[0])[1]
            mean, m2 = np.zeros(value.shape), np.zeros(value.shape)
            count = np.zeros(value.shape, np.int32)
        elif value.shape != mean.shape:
            raise ValueError(f'sub-{label}: template grid {value.shape} differs from '
                             f'{mean.shape}')
        count += inside
        delta = np.where(inside, value - mean, 0.0)
        mean += np.where(inside, delta / np.maximum(count, 1), 0.0)
        m2 += np.where(inside, delta * (value - mean), 0.0)
    sd = np.sqrt(np.where(count > 1, m2 / np.maximum(count - 1, 1), 0.0))
    return mean, sd, count, affine


def region_rows(runs: list[Run], decisions: list[dict]) -> tuple[list[str], list[dict]]:
    """The subject × region table: one row per run and map (``participant_id``, ``run``,
    ``included``, ``map``, then one column per region name); regions in the order of the
    first run's table. Runs without a regional table are left out."""
    names, rows = None, []
    for run, dec in zip(runs, decisions, strict=True):
        tsv = run.perf / f'{run.stem}_desc-regions_cbf.tsv'
        if not tsv.is_file():
            continue
        with open(tsv) as f:
            table = list(csv.DictReader(f, delimiter='\t'))
        if names is None:
            names = [r['name'] for r in table]
        maps = [k for k in table[0] if k == 'cbf' or k.startswith('cbf_')] if table else []
        by_name = {r['name']: r for r in table}
        for m in maps:
            row = {'participant_id': dec['participant_id'], 'run': run.stem,
                   'included': dec['included'], 'map': m}
            row.update({n: by_name.get(n, {}).get(m, 'n/a') for n in names})
            rows.append(row)
    return names or [], rows


def write_tsv(path, rows: list[dict], fields=None) -> Path:
    """A TSV of ``rows`` written atomically; floats with 4 decimals, NaN as ``n/a``."""
    from aslproc.bids.derivatives import atomic_write_text

    fields = list(fields or dict.fromkeys(k for r in rows for k in r))

    def text(v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, float | np.floating):
            return 'n/a' if not np.isfinite(v) else repr(round(float(v), 4))
        return str(v)

    lines = ['\t'.join(fields)] + ['\t'.join(text(r.get(k, 'n/a')) for k in fields)
                                   for r in rows]
    return atomic_write_text(path, '\n'.join(lines) + '\n')


#: Row label of each template-space map type (``desc`` of the participant files).
MAP_LABELS = {'': 'plain average', 'smoothed': 'smoothed', 'denoised': 'denoised',
              'pvcGM': 'PVC grey matter', 'pvcWM': 'PVC white matter'}


def group_name(space: str, res: int, stat: str, desc: str = '') -> str:
    """File name of a group map.

    >>> group_name('MNI152NLin2009aSym', 2, 'sd', 'denoised')
    'group_space-MNI152NLin2009aSym_res-2_stat-sd_desc-denoised_cbf.nii.gz'
    """
    parts = ['group', f'space-{space}', f'res-{res}', f'stat-{stat}']
    return '_'.join(parts + ([f'desc-{desc}'] if desc else []) + ['cbf']) + '.nii.gz'


def _save_nifti(data, affine, dst: Path, dtype) -> None:
    import os

    from aslproc.bids.derivatives import atomic_fill

    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    img.header.set_xyzt_units('mm')

    def fill(tmp):
        nib.save(img, tmp + '.nii.gz')
        os.replace(tmp + '.nii.gz', tmp)

    atomic_fill(dst, fill)


def write_group_maps(output_dir, runs: list[Run], decisions: list[dict]) -> list[dict]:
    """Mean, SD and count maps of every template space and map type of the included runs.

    Returns one dict per (space, res, desc): ``label``, ``space``, ``res``, ``desc``,
    ``subjects`` (labels) and ``files`` (stat → path).
    """
    from aslproc.bids.derivatives import atomic_write_json

    out_dir = Path(output_dir)
    included = [r for r, d in zip(runs, decisions, strict=True) if d['included']]
    excluded = {d['run']: d['reason'] for d in decisions if not d['included']}
    kinds = sorted({(key, desc) for r in included for key, m in r.maps.items() for desc in m})
    written = []
    for (space, res), desc in kinds:
        subjects = {}
        for r in included:
            path = r.maps.get((space, res), {}).get(desc)
            if path is not None:
                maps, masks = subjects.setdefault(r.subject, ([], []))
                maps.append(path)
                masks.append(r.masks.get((space, res)))
        mean, sd, count, affine = mean_sd(subjects)
        label = MAP_LABELS.get(desc, desc)
        sources = [f'bids::{p.relative_to(out_dir).as_posix()}' for ms, _ in subjects.values()
                   for p in ms]
        files = {}
        for stat, data, dtype, what, units in (
                ('mean', mean, np.float32, 'Mean', 'mL/100 g/min'),
                ('sd', sd, np.float32, 'Standard deviation (n - 1; 0 below two subjects) of',
                 'mL/100 g/min'),
                ('count', count, np.int16, 'Number of subjects covering each voxel, for',
                 'subjects')):
            dst = out_dir / group_name(space, res, stat, desc)
            _save_nifti(data, affine, dst, dtype)
            atomic_write_json(dst.with_name(dst.name[:-7] + '.json'), {
                'Description': f'{what} the {label} CBF over subjects that passed QC '
                               '(runs of a subject averaged first, each in its brain mask)',
                'Units': units, 'Space': space, 'Resolution': f'{res} mm',
                'Subjects': [f'sub-{s}' for s in subjects], 'ExcludedRuns': excluded,
                'Sources': sources})
            files[stat] = dst
        written.append({'label': label, 'space': space, 'res': res, 'desc': desc,
                        'subjects': list(subjects), 'files': files})
        logger.info('group %s CBF in %s res-%d: %d subjects', label, space, res, len(subjects))
    return written
