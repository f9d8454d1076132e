"""Gather what one ASL run's report sections show: inputs, figures, QC tables.

Everything is read from the derivatives in the output directory and, for what is not a
derivative (the ASL reference, tissue maps on the ASL grid), from the nipype work
directory. A section that cannot be drawn says why instead of disappearing.
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from aslproc.bids.naming import derivative_path
from aslproc.reports import figures
from aslproc.reports.images import Volume, robust_max
from aslproc.reports.residuals import residual_scale, stage_residuals
from aslproc.reports.workdir import SWITCHES
from aslproc.utils.qc import GM_THRESHOLD, WM_THRESHOLD, qc_metrics
from aslproc.workflows.outputs import OUTPUTS

logger = logging.getLogger(__name__)

#: CBF maps of the report, in display order: output key, row label, switch in Settings.
MAPS = (('cbf', 'plain average', None), ('cbf_smoothed', 'smoothed', None),
        ('cbf_denoised', 'denoised', 'denoise'), ('cbf_sr', 'super-resolved', 'sr'))
#: Row label of a multi-delay run's CBF: fitted with the ATT, not a plain average of pairs.
MULTI_DELAY_LABEL = 'kinetic-model fit'
#: Top of the CBF colour scale at most (ml/100 g/min): a noisy map must not flatten the others.
CBF_SCALE_CAP = 120.0
#: The denoiser's number is flagged above this: its residual holds the plain map's noise,
#: which alone reaches about 4 noise SDs somewhere in a brain (the SR's residual holds none).
DENOISE_DEPARTURE_FLAG = 5.0
#: QC rows: key of the QC table, label, unit, usual range (lo, hi); outside it is flagged.
QC_ROWS = (
    ('mean_gm_cbf', 'mean GM CBF', 'ml/100 g/min', (20.0, 110.0)),
    ('mean_wm_cbf', 'mean WM CBF', 'ml/100 g/min', (None, None)),
    ('gm_wm_ratio', 'GM/WM CBF ratio', '', (1.5, None)),
    ('pct_negative_gm', 'negative GM voxels', '%', (None, 10.0)),
    ('mean_fd', 'mean framewise displacement', 'mm', (None, 0.5)),
    ('max_fd', 'maximum framewise displacement', 'mm', (None, 3.0)),
    ('dice_asl_t1w', 'Dice, ASL intensity mask vs T1w brain mask', '', (0.6, None)),
    ('denoise_data_departure_sd', 'denoiser departs from the plain map (lesion scale)',
     'noise SD', (None, DENOISE_DEPARTURE_FLAG)),
    ('sr_data_departure_sd', 'super-resolution departs from its data (lesion scale)',
     'noise SD', (None, 3.0)),
    ('motion_filled_pct', 'brain voxels filled after motion (no usable ΔM)', '%',
     (None, 10.0)),
    ('mean_gm_att', 'mean GM arrival time (multi-delay)', 's', (None, None)),
    ('mean_wm_att', 'mean WM arrival time (multi-delay)', 's', (None, None)),
    ('n_gm_voxels', f'GM voxels (P > {GM_THRESHOLD})', '', (None, None)),
    ('n_wm_voxels', f'WM voxels (P > {WM_THRESHOLD})', '', (None, None)),
)


def out_path(settings, spec, key: str) -> Path:
    """Path of the derivative ``key`` of :data:`OUTPUTS` for this run."""
    o = OUTPUTS[key]
    return derivative_path(settings.output_dir, spec.entities, datatype=o.datatype,
                           suffix=o.suffix, extension=o.extension, **o.naming)


def anat_path(settings, spec, key: str) -> Path:
    """Path of an anatomical derivative (entities of the subject/session only)."""
    ents = {k: spec.entities[k] for k in ('subject', 'session') if spec.entities.get(k)}
    o = OUTPUTS[key]
    return derivative_path(settings.output_dir, ents, datatype=o.datatype, suffix=o.suffix,
                           extension=o.extension, **o.naming)


def sidecar_of(path: Path) -> dict:
    """The JSON sidecar of a derivative ({} when absent)."""
    side = path.with_name(path.name.split('.')[0] + '.json')
    return json.loads(side.read_text()) if side.is_file() else {}


def read_tsv(path) -> dict:
    """Columns of a TSV file as float arrays (``n/a`` becomes NaN)."""
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter='\t'))
    return {k: np.array([_num(r[k]) for r in rows]) for k in (rows[0] if rows else {})}


def _num(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float('nan')


def flag(value, lo=None, hi=None) -> bool:
    """Whether ``value`` lies outside ``[lo, hi]`` (NaN is flagged when a range exists).

    >>> flag(15.0, 20, 110), flag(50.0, 20, 110), flag(1.2, 1.5), flag(float('nan'), 1.5)
    (True, False, True, True)
    """
    if lo is None and hi is None:
        return False
    v = _num(value)
    return not np.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi)


def usual(lo, hi) -> str:
    """The usual range in words.

    >>> usual(20.0, 110.0), usual(1.5, None), usual(None, 10.0), usual(None, None)
    ('20–110', '≥ 1.5', '≤ 10', '')
    """
    if lo is not None and hi is not None:
        return f'{lo:g}–{hi:g}'
    return f'≥ {lo:g}' if lo is not None else f'≤ {hi:g}' if hi is not None else ''


def _figure(fid: str, title: str, caption: str, draw) -> dict:
    """Run ``draw()`` (PNG bytes, or a reason string); never raises."""
    fig = {'id': fid, 'title': title, 'caption': caption, 'png': None, 'reason': None}
    try:
        out = draw()
    except Exception as err:  # noqa: BLE001 - one broken figure must not hide the others
        logger.warning('report figure %r could not be drawn: %s', title, err)
        out = f'could not be drawn ({type(err).__name__}: {err})'
    if isinstance(out, bytes) and out:
        fig['png'] = base64.b64encode(out).decode('ascii')
    else:
        fig['reason'] = out or 'not available'
    return fig


def _geometry(path) -> str:
    img = nib.load(str(path))
    zooms = ' × '.join(f'{z:.2g}' for z in img.header.get_zooms()[:3])
    return f"{' × '.join(str(s) for s in img.shape)} voxels of {zooms} mm"


def inputs_rows(settings, spec) -> list[tuple]:
    """What the run was built from: files, geometry and the key acquisition parameters."""
    def rel(p):
        try:
            return str(Path(p).relative_to(settings.bids_dir))
        except ValueError:
            return str(p)

    counts = ', '.join(f'{spec.volume_types.count(t)} {t}' for t in dict.fromkeys(
        spec.volume_types))
    m0 = {'Separate': f'separate scan {rel(spec.m0_file)}' if spec.m0_file else 'separate',
          'Included': 'm0scan volumes of the series',
          'Estimate': f'single value M0Estimate = {spec.m0_estimate}',
          'Absent': 'none: estimated from the control images'}.get(spec.m0_type, '')
    timing = (f'TI = {spec.pld} s, TI1 = {spec.ti1} s' if spec.label_type == 'PASL' else
              f'PLD = {spec.pld} s, τ = {spec.tau} s')
    return [('ASL series', rel(spec.asl_file)), ('ASL geometry', _geometry(spec.asl_file)),
            ('volumes', f'{len(spec.volume_types)} ({counts})'),
            ('labeling', f'{spec.label_type}, {timing}'),
            ('control/label pairs', spec.n_pairs), ('M0', f'{spec.m0_type} ({m0})'),
            ('background suppression', f'{spec.bs_pulses} pulse(s)'),
            ('T1w', rel(spec.t1w_file)), ('T1w geometry', _geometry(spec.t1w_file))]


def registration_figures(settings, spec, work, prefix) -> list[dict]:
    """ASL reference over the T1w, and the brain mask over the ASL reference."""
    reg = f'{prefix}/register'
    ref = work.value(reg, 'asl_ref', inputs=True) if prefix else None
    t1w = (work.value(reg, 't1w_file', inputs=True) if prefix else None) or spec.t1w_file
    t1w_mask = (work.value(reg, 't1w_mask', inputs=True) if prefix else None) or \
        anat_path(settings, spec, 'anat_mask')
    xfm = out_path(settings, spec, 'xfm')
    missing = 'not available: the registration did not run (see errors)'

    def overlay():
        if ref is None or not xfm.is_file():
            return missing
        from aslproc.utils.registration import resample_to_t1w

        with tempfile.TemporaryDirectory() as tmp:
            on_t1w = Volume.load(resample_to_t1w(ref, t1w, xfm, Path(tmp) / 'ref.nii.gz'))
        mask = Volume.load(t1w_mask) if Path(t1w_mask).is_file() else Volume.load(t1w)
        med = float(np.median(on_t1w.data[mask.inside(0.5)])) if mask.inside(0.5).any() else 1
        return figures.plane_grid(Volume.load(t1w), [(on_t1w, [0.5 * med, med], figures.EDGE)],
                                  box=mask.box(0.5))

    def mask_over_ref():
        mask_file = out_path(settings, spec, 'asl_mask')
        if ref is None or not mask_file.is_file():
            return missing
        mask = Volume.load(mask_file)
        return figures.plane_grid(Volume.load(ref), [(mask, [0.5], figures.EDGE)],
                                  box=mask.box(0.5))

    return [
        _figure('registration', 'ASL reference over the T1w',
                'T1w image with the contours (red) of the ASL reference (the M0 map or the '
                'mean control image) after the rigid ASL → T1w transform, at half and at the '
                'median of its brain intensity. The contours should follow the brain outline '
                'and the grey/white boundaries.', overlay),
        _figure('mask', 'Brain mask over the ASL reference',
                'ASL reference on its own grid with the brain mask (red) carried from the T1w '
                'through the inverse transform.', mask_over_ref),
    ]


def motion_section(settings, spec, work=None, prefix=None) -> dict:
    """Motion figure, the pairs left out and the voxels filled, and one line of numbers
    (from the confounds derivative and the work directory)."""
    path = out_path(settings, spec, 'confounds')
    cols = read_tsv(path) if path.is_file() else {}
    fd = cols.get('framewise_displacement', np.array([]))
    outliers = np.nonzero(np.nan_to_num(fd) > figures.FD_THRESHOLD)[0].tolist()
    summary = (f'{fd.size} volumes; mean FD {np.nanmean(fd):.3f} mm, max {np.nanmax(fd):.3f} '
               f'mm; {len(outliers)} outlier(s) (FD > {figures.FD_THRESHOLD} mm)'
               f"{': volumes ' + ', '.join(map(str, outliers)) if outliers else ''}."
               if np.isfinite(fd).any() else '')
    summary += pairs_summary(cols)
    fig = _figure('motion', 'Head motion',
                  'Rigid-body parameters of each volume relative to its volume-type mean, '
                  'and framewise displacement (Power et al. 2012); outlier volumes are shaded, '
                  'the volumes of pairs left out of the averages are marked in blue.',
                  lambda: figures.motion_figure(cols) if cols else
                  'not available: no confounds file (motion correction did not finish)')
    figs = [fig]
    unreliable = work.value(f'{prefix}/cbf_wf/compute_cbf', 'out_unreliable') if prefix else None
    cbf_file = out_path(settings, spec, 'cbf')
    if unreliable and Path(unreliable).is_file() and cbf_file.is_file():
        filled = Volume.load(unreliable)
        if filled.data.any():
            def draw():
                cbf = Volume.load(cbf_file)
                return figures.plane_grid(cbf, [(filled, [0.5], figures.EDGE)], box=cbf.box())

            figs.append(_figure(
                'motionfill', 'Voxels filled after motion',
                'Plain-average CBF with the outline (red) of the voxels whose control/label '
                'values motion left far noisier than the rest of the brain: their CBF is '
                'interpolated from the reliable voxels around them, not measured.', draw))
    return {'summary': summary, 'figures': figs, 'outliers': outliers}


def pairs_summary(cols: dict) -> str:
    """One sentence on the pair test of the confounds columns ('' when it did not run).

    >>> print(pairs_summary({'pair_excluded': np.array([np.nan, 0, 0, 1, 1]),
    ...                      'pair_deviation': np.array([np.nan, 1, 1, 4.2, 4.2])}).strip())
    ... # doctest: +NORMALIZE_WHITESPACE
    Pair test: 1 of 2 pairs left out of every average (volumes 3, 4;
    deviation 4.2 × the typical pair).
    """
    excluded = cols.get('pair_excluded')
    if excluded is None or not np.isfinite(excluded).any():
        return ''
    n_pairs = int(np.isfinite(excluded).sum() // 2)
    vols = np.flatnonzero(np.nan_to_num(excluded) > 0)
    if not vols.size:
        return f' Pair test: none of the {n_pairs} pairs departed from the others.'
    dev = sorted({round(float(d), 1) for d in cols['pair_deviation'][vols]}, reverse=True)
    return (f' Pair test: {vols.size // 2} of {n_pairs} pairs left out of every average '
            f"(volumes {', '.join(map(str, vols.tolist()))}; deviation "
            f"{', '.join(f'{d:g}' for d in dev)} × the typical pair).")


def _tissue(settings, spec, work, prefix, cbf_file, label) -> np.ndarray | None:
    """P(label) on the ASL grid: the pipeline's own resampling, else redone from outputs."""
    found = work.value(f'{prefix}/{label}_to_asl', 'out_file') if prefix else None
    if found:
        return Volume.load(found).data
    probseg, xfm = anat_path(settings, spec, f'probseg_{label}'), out_path(settings, spec, 'xfm')
    if not (probseg.is_file() and xfm.is_file()):
        return None
    from aslproc.utils.registration import resample_to_asl

    with tempfile.TemporaryDirectory() as tmp:
        return Volume.load(resample_to_asl(probseg, cbf_file, xfm, Path(tmp) / 'p.nii.gz')).data


def cbf_section(settings, spec, work, prefix) -> dict:
    """CBF mosaic, GM/WM histograms and per-map tissue CBF, for every map produced."""
    maps, status, tissue = {}, [], {}
    for key, label, switch in MAPS:
        if key == 'cbf' and spec.multi_delay:
            label = MULTI_DELAY_LABEL
        path = out_path(settings, spec, key)
        if path.is_file():
            maps[label] = (key, path, Volume.load(path))
            status.append((label, 'shown'))
        elif switch and not getattr(settings, switch):
            status.append((label, f'switched off ({SWITCHES[switch]})'))
        elif key == 'cbf_denoised' and spec.multi_delay:
            status.append((label, 'skipped: the denoiser does not take multi-delay series'))
        else:
            status.append((label, 'not produced'))
    mask_file = out_path(settings, spec, 'asl_mask')
    mask = Volume.load(mask_file) if mask_file.is_file() else None
    vmax, box = 100.0, None
    if maps:
        ref = next(iter(maps.values()))[2]  # the plain average (or the fit), when written
        use_mask = mask is not None and mask.data.shape == ref.data.shape
        inside = mask.inside(0.5) if use_mask else ref.data != 0
        vmax = min(robust_max(ref.data[inside & (ref.data > 0)]), CBF_SCALE_CAP)
        box = mask.box(0.5) if mask is not None else ref.box()
    rows = []
    for label, (key, path, vol) in maps.items():
        grid = 'T1w' if key == 'cbf_sr' else 'ASL'
        try:
            gm, wm, brain = _tissue_maps(settings, spec, work, prefix, path, grid, mask)
        except Exception as err:  # noqa: BLE001 - the maps still show without tissue stats
            logger.warning('tissue maps for %s unavailable: %s', path.name, err)
            gm = None
        if gm is None or gm.shape != vol.data.shape:
            rows.append({'map': label, 'grid': grid, 'note': 'tissue maps not available'})
            continue
        m = qc_metrics(vol.data, gm, wm, np.array([]), brain, brain)
        tissue[label] = (vol.data[(gm > GM_THRESHOLD) & (brain > 0)],
                         vol.data[(wm > WM_THRESHOLD) & (brain > 0)])
        rows.append({'map': label, 'grid': grid, 'cells': [
            (m[k], flag(m[k], *rng)) for k, _, _, rng in QC_ROWS[:4]]})
    mosaic = _figure('cbf', 'CBF maps',
                     f'Axial slices at the same positions; one colour scale, 0–{vmax:g} ml/100 '
                     'g/min (99th percentile of the plain-average map in the brain, at most '
                     f'{CBF_SCALE_CAP:g}); CBF below −1 in cyan, zero (outside the map) in '
                     'black. The super-resolved map lies on the T1w grid, the others on the ASL '
                     'grid.',
                     lambda: figures.cbf_mosaic({k: v[2] for k, v in maps.items()}, box=box,
                                                vmax=vmax) if maps else
                     'not available: no CBF map was written')
    residuals = stage_residuals({lab: v[2] for lab, v in maps.items()},
                                {lab: v[1] for lab, v in maps.items()},
                                out_path(settings, spec, 'xfm')) if maps else {}
    res_fig = _figure(
        'residuals', 'What the learned stages removed',
        'Each learned stage\'s input minus its output, on the slices of the CBF maps: the '
        'denoiser\'s on the ASL grid, the super-resolution\'s on the T1w grid (linear '
        'upsampling of its input minus its output). Red: CBF the stage removed, blue: CBF it '
        'added. Noise should look like noise; a lesion-shaped patch means the stage changed '
        'perfusion there (the QC table gives one number per stage).',
        lambda: figures.residual_mosaic(residuals, box=box, scale=residual_scale(residuals)))
    hist = _figure('histograms', 'Grey- and white-matter CBF',
                   f'CBF where P(GM) > {GM_THRESHOLD} and P(WM) > {WM_THRESHOLD} inside the '
                   'brain mask (voxel counts), one panel per map; vertical lines mark the '
                   'means, taken over all values including those off the axis.',
                   lambda: figures.tissue_histograms(tissue, vmax=vmax) if tissue else
                   'not available: no CBF map with tissue maps')
    figs = [mosaic, res_fig, hist] if residuals else [mosaic, hist]
    return {'status': status, 'figures': figs, 'tissue_rows': rows,
            'tissue_header': [f'{lab} ({unit})' if unit else lab
                              for _, lab, unit, _ in QC_ROWS[:4]],
            'tissue_usual': [usual(*rng) for *_, rng in QC_ROWS[:4]]}


def _tissue_maps(settings, spec, work, prefix, path, grid, mask):
    if grid == 'T1w':
        files = [anat_path(settings, spec, k) for k in ('probseg_gm', 'probseg_wm', 'anat_mask')]
        if not all(f.is_file() for f in files):
            return None, None, None
        return tuple(Volume.load(f).data for f in files)
    gm = _tissue(settings, spec, work, prefix, path, 'gm')
    wm = _tissue(settings, spec, work, prefix, path, 'wm')
    brain = mask.data if mask is not None else np.ones_like(gm) if gm is not None else None
    return (gm, wm, brain) if wm is not None else (None, None, None)


def qc_table(settings, spec) -> list[dict]:
    """The run's QC derivative as rows with usual ranges and flags ([] when absent)."""
    path = out_path(settings, spec, 'qc')
    if not path.is_file():
        return []
    with open(path) as f:
        row = next(csv.DictReader(f, delimiter='\t'), {})
    out = []
    for key, label, unit, rng in QC_ROWS:
        if key in row:
            out.append({'metric': label, 'value': row[key], 'unit': unit,
                        'usual': usual(*rng), 'flag': flag(row[key], *rng)})
    return out


def run_context(settings, spec, index: int, work) -> dict:
    """Everything the template shows for the ``index``-th ASL run."""
    prefix = work.run_prefix(index)
    delays = []
    if spec.multi_delay:
        from aslproc.reports.multidelay import delay_section

        delays = delay_section(
            spec, work, prefix, out_path(settings, spec, 'cbf'), out_path(settings, spec, 'att'),
            lambda label: _tissue(settings, spec, work, prefix, out_path(settings, spec, 'cbf'),
                                  label))
    return {'index': index, 'name': Path(spec.asl_file).name, 'delays': delays,
            'inputs': inputs_rows(settings, spec), 'params': spec.sidecar(),
            'registration': registration_figures(settings, spec, work, prefix),
            'motion': motion_section(settings, spec, work, prefix),
            'cbf': cbf_section(settings, spec, work, prefix), 'qc': qc_table(settings, spec)}
