"""The group report, ``OUT/group_report.html``: who was included and why, the global CBF
distributions, the template-space mean and SD maps, every subject's CBF on one colour scale,
and the subject × region table as an image. One self-contained page (PNG figures embedded).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.figure import Figure

from aslproc import __version__
from aslproc.reports import figures
from aslproc.reports.context import CBF_SCALE_CAP, _figure
from aslproc.reports.images import Volume, robust_max
from aslproc.utils.group import MAP_LABELS, OUTLIER_Z
from aslproc.utils.template import template_image

logger = logging.getLogger(__name__)

#: Most runs drawn in the per-subject strips (the rest are listed, not drawn).
MAX_STRIPS = 60

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader('aslproc.reports', 'templates'),
    autoescape=jinja2.select_autoescape(['html', 'j2']),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
)


def distribution_figure(decisions: list[dict]) -> bytes:
    """Global GM and WM CBF, one point per run: included (blue, with a box plot), robust-z
    outliers (red) and runs excluded for QC flags (grey crosses), outliers labelled."""
    fig = Figure(figsize=(7.5, 3.4), layout='constrained')
    axes = fig.subplots(1, 2)
    rng = np.random.default_rng(0)
    for ax, key, title in zip(axes, ('mean_gm_cbf', 'mean_wm_cbf'), ('grey matter',
                              'white matter'), strict=True):
        vals = np.array([d[key] for d in decisions], float)
        x = rng.uniform(-0.15, 0.15, len(vals))
        inc = np.array([d['included'] for d in decisions])
        out = np.array([d['outlier'] for d in decisions])
        if np.isfinite(vals[inc]).any():
            ax.boxplot(vals[inc & np.isfinite(vals)], positions=[0], widths=0.5,
                       showfliers=False)
        ax.plot(x[inc], vals[inc], 'o', color='#1f77b4', alpha=0.8, label='included')
        ax.plot(x[out], vals[out], 'o', color='#d62728', label=f'|robust z| > {OUTLIER_Z}')
        ax.plot(x[~inc & ~out], vals[~inc & ~out], 'x', color='#777', label='QC flag')
        for xi, v, d in zip(x, vals, decisions, strict=True):
            if not d['included']:
                ax.annotate(d['run'], (xi, v), xytext=(5, 0), textcoords='offset points',
                            fontsize=7)
        ax.set_title(f'{title} CBF per run', fontsize=9)
        ax.set_ylabel(figures.CBF_LABEL, fontsize=8)
        ax.set_xticks([])
        ax.set_xlim(-0.6, 0.9)
        ax.legend(fontsize=7, loc='best')
    return figures._png(fig)


def region_figure(names: list[str], rows: list[dict]) -> bytes | str:
    """The subject × region table of the plain CBF as an image (runs down, regions across)."""
    rows = [r for r in rows if r['map'] == 'cbf']
    if not rows or not names:
        return 'not available: no regional table was found'
    data = np.array([[_num(r[n]) for n in names] for r in rows])
    vmax = min(robust_max(data[np.isfinite(data) & (data > 0)]), CBF_SCALE_CAP)
    fig = Figure(figsize=(10.0, 1.2 + 0.22 * len(rows)), layout='constrained')
    ax = fig.subplots()
    cmap = figures._cbf_cmap()
    im = ax.imshow(np.ma.masked_invalid(data), aspect='auto', cmap=cmap, vmin=0, vmax=vmax,
                   interpolation='nearest')
    ax.set_yticks(range(len(rows)), [r['run'] + ('' if r['included'] else ' (excluded)')
                                     for r in rows], fontsize=7)
    if len(names) <= 40:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    else:
        ax.set_xlabel(f'{len(names)} regions, in the order of the label table', fontsize=8)
        ax.set_xticks([])
    fig.colorbar(im, ax=ax, label=figures.CBF_LABEL, shrink=0.9)
    return figures._png(fig)


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float('nan')


def _brain_box(res: int):
    mask = template_image('mask', res)
    return Volume.from_image(mask).box(0.5)


def map_figures(maps: list[dict]) -> list[dict]:
    """Mosaics of the group mean maps (one colour scale) and of the SD maps, per space."""
    out = []
    for space, res in sorted({(m['space'], m['res']) for m in maps}):
        these = [m for m in maps if (m['space'], m['res']) == (space, res)]
        vols = {f"{m['label']} (n = {len(m['subjects'])})": Volume.load(m['files']['mean'])
                for m in these}
        sds = {m['label']: Volume.load(m['files']['sd']) for m in these}
        box = _brain_box(res)
        plain = next(iter(vols.values()))
        vmax = min(robust_max(plain.data[plain.data > 0]), CBF_SCALE_CAP)
        svmax = robust_max(np.concatenate([v.data[v.data > 0] for v in sds.values()]))
        out.append(_figure('groupmean', f'Mean CBF in {space} ({res} mm)',
                           f'Mean over the subjects that passed QC, axial slices, one colour '
                           f'scale 0-{vmax:g} ml/100 g/min; black: covered by no subject.',
                           lambda v=vols, b=box, m=vmax: figures.cbf_mosaic(v, box=b, vmax=m)))
        out.append(_figure('groupsd', f'Between-subject SD of CBF in {space} ({res} mm)',
                           f'Standard deviation over subjects (n - 1), 0-{svmax:g} ml/100 g/'
                           'min; 0 where fewer than two subjects cover a voxel.',
                           lambda v=sds, b=box, m=svmax: figures.cbf_mosaic(v, box=b, vmax=m)))
    return out


def strip_figure(runs, decisions, maps: list[dict]) -> dict:
    """Every run's plain template-space CBF in one strip (row) each, on one colour scale."""
    spaces = sorted({(m['space'], m['res']) for m in maps}) or sorted(
        {k for r in runs for k in r.maps})
    if not spaces:
        return _figure('strips', 'CBF of each run', '', lambda:
                       'not available: no template-space CBF map was found')
    key = spaces[0]
    shown = {}
    for run, dec in zip(runs, decisions, strict=True):
        path = run.maps.get(key, {}).get('')
        if path is not None and len(shown) < MAX_STRIPS:
            vol = Volume.load(path)
            if key in run.masks:  # the map inside the run's brain mask, as in the group maps
                mask = Volume.load(run.masks[key])
                vol = Volume(np.where(mask.data > 0, vol.data, 0.0), vol.origin, vol.zooms)
            shown[run.stem + ('' if dec['included'] else ' (excluded)')] = vol
    vals = np.concatenate([v.data[v.data > 0] for v in shown.values()]) if shown else \
        np.array([])
    vmax = min(robust_max(vals), CBF_SCALE_CAP)
    more = sum(1 for r in runs if key in r.maps) - len(shown)
    return _figure('strips', f'CBF of each run in {key[0]} ({key[1]} mm)',
                   f'Plain-average CBF of every run inside its brain mask, one row each, one '
                   f'colour scale 0-{vmax:g} ml/100 g/min'
                   + (f'; {more} more runs not drawn' if more > 0 else '') + '.',
                   lambda: figures.cbf_mosaic(shown, box=_brain_box(key[1]), vmax=vmax)
                   if shown else 'not available: no plain CBF map in template space')


def render_group(output_dir, runs, decisions, maps, region_names, region_rows) -> str:
    """The group report's HTML text."""
    included = [d for d in decisions if d['included']]
    subjects = sorted({d['participant_id'] for d in decisions})
    figs = [_figure('distribution', 'Global grey- and white-matter CBF',
                    'Mean CBF where P(GM) > 0.7 and P(WM) > 0.9 on the ASL grid (the QC table '
                    f'of each run); robust z = (x - median) / (1.4826 MAD), |z| > {OUTLIER_Z} '
                    'is an outlier (from 3 runs on).', lambda: distribution_figure(decisions))]
    figs += map_figures(maps)
    figs.append(strip_figure(runs, decisions, maps))
    figs.append(_figure('regions', 'Regional CBF (subject × region)',
                        'Mean plain-average CBF per region in the subject\'s grey matter, from '
                        'the runs\' desc-regions tables (black: no voxel left to average).',
                        lambda: region_figure(region_names, region_rows)))
    return _ENV.get_template('group.html.j2').render(
        version=__version__, date=time.strftime('%Y-%m-%d %H:%M'), decisions=decisions,
        n_runs=len(decisions), n_included=len(included), subjects=subjects, figures=figs,
        maps=[{'label': m['label'], 'space': m['space'], 'res': m['res'],
               'n': len(m['subjects']), 'files': {k: Path(v).name for k, v in
                                                  m['files'].items()}} for m in maps],
        labels=MAP_LABELS, output_dir=str(output_dir))


def write_group_report(output_dir, runs, decisions, maps, region_names, region_rows) -> Path:
    """Render and write ``OUT/group_report.html`` atomically; returns its path."""
    from aslproc.bids.derivatives import atomic_write_text

    html = render_group(output_dir, runs, decisions, maps, region_names, region_rows)
    out = atomic_write_text(Path(output_dir) / 'group_report.html', html)
    logger.info('group report written to %s (%.0f kB)', out, out.stat().st_size / 1024)
    return out
