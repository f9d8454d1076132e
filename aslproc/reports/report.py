"""Write ``OUT/sub-<label>.html``: inputs, methods, CBF maps, motion, QC and errors."""

from __future__ import annotations

import base64
import csv
import logging
from pathlib import Path

import jinja2
import nibabel as nib
import numpy as np

from aslproc import __version__
from aslproc.bids.naming import derivative_path
from aslproc.reports import figures
from aslproc.workflows.outputs import OUTPUTS

logger = logging.getLogger(__name__)

#: Usual ranges; values outside are flagged in the QC table.
QC_RANGES = {'mean_gm_cbf': (20.0, 110.0), 'gm_wm_ratio': (1.5, None),
             'pct_negative_gm': (None, 10.0), 'dice_asl_t1w': (0.6, None),
             'max_fd': (None, 3.0)}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader('aslproc.reports', 'templates'),
    autoescape=jinja2.select_autoescape(['html', 'j2']),
)


def _out_path(settings, spec, key):
    o = OUTPUTS[key]
    return derivative_path(settings.output_dir, spec.entities, datatype=o.datatype,
                           suffix=o.suffix, extension=o.extension, **o.naming)


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode('ascii')


def _read_tsv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f, delimiter='\t'))


def _flag(key, value) -> bool:
    lo, hi = QC_RANGES.get(key, (None, None))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return (lo is not None and v < lo) or (hi is not None and v > hi)


def run_section(settings, spec) -> dict:
    """Figures and tables of one ASL run (missing outputs are reported as such)."""
    sec = {'name': Path(spec.asl_file).name, 'spec': spec.sidecar(), 'figures': [], 'qc': [],
           'missing': []}
    maps = {}
    for key, label in (('cbf', 'plain average'), ('cbf_smoothed', 'smoothed'),
                       ('cbf_denoised', 'denoised')):
        p = _out_path(settings, spec, key)
        if p.exists():
            maps[label] = np.asarray(nib.load(str(p)).dataobj, dtype=np.float32)
        else:
            sec['missing'].append(label)
    if maps:
        sec['figures'].append(('CBF maps (common colour scale)', _b64(figures.cbf_mosaic(maps))))
    conf = _out_path(settings, spec, 'confounds')
    if conf.exists():
        rows = _read_tsv(conf)
        cols = {k: np.array([float('nan') if r[k] == 'n/a' else float(r[k]) for r in rows])
                for k in rows[0]} if rows else {}
        if cols:
            sec['figures'].append(('Head motion', _b64(figures.motion_plot(cols))))
    qc = _out_path(settings, spec, 'qc')
    if qc.exists():
        row = _read_tsv(qc)[0]
        sec['qc'] = [(k, v, _flag(k, v)) for k, v in row.items()]
    return sec


def write_report(settings, subject: str, runs: list, *, methods: str = '', error=None,
                 elapsed: float | None = None) -> Path:
    """Render the subject's report to ``OUT/sub-<subject>.html`` and return its path."""
    sections = []
    for spec in runs:
        try:
            sections.append(run_section(settings, spec))
        except Exception as err:  # noqa: BLE001 - show what could not be drawn
            logger.warning('report section for %s failed: %s', spec.asl_file, err)
            sections.append({'name': Path(spec.asl_file).name, 'error': str(err)})
    html = _ENV.get_template('report.html.j2').render(
        subject=subject, version=__version__, settings=settings.to_dict(), runs=sections,
        methods=methods, error=error, elapsed=elapsed,
        stages={'denoise': settings.denoise, 'sr': settings.sr})
    out = settings.output_dir / f'sub-{subject}.html'
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.tmp')
    tmp.write_text(html, encoding='utf-8')
    tmp.replace(out)
    return out
