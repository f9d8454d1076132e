"""Write ``OUT/sub-<label>.html``: one self-contained page (figures embedded as PNG).

Sections: summary (inputs, parameters, versions, stage run times, device), errors and
warnings, then per ASL run registration, motion, CBF maps and QC, and the methods text.
The HTML comes from ``templates/report.html.j2``; this module only gathers values.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import jinja2

from aslproc import __version__
from aslproc.reports.context import MAPS, out_path, run_context, sidecar_of
from aslproc.reports.workdir import WorkDir, node_rows, stage_rows

logger = logging.getLogger(__name__)

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader('aslproc.reports', 'templates'),
    autoescape=jinja2.select_autoescape(['html', 'j2']),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
)


def provenance_of(settings) -> dict:
    """Versions recorded in the work directory at the start of the run (else now)."""
    recorded = Path(settings.work_dir) / 'aslproc_settings.json'
    try:
        return json.loads(recorded.read_text())['provenance']
    except (OSError, ValueError, KeyError):
        from aslproc.cli.provenance import provenance

        return provenance()


def device_summary(settings, runs) -> str:
    """The device setting and, when a learned stage ran, the device it recorded."""
    used = set()
    for spec in runs:
        for key, _, switch in MAPS:
            if switch:
                meta = sidecar_of(out_path(settings, spec, key))
                used |= {str(v) for k, v in meta.items() if k.endswith('Device')}
    text = f'--device {settings.device}'
    if used:
        text += f"; learned stages ran on {', '.join(sorted(used))}"
    elif not (settings.denoise or settings.sr):
        text += ' (both learned stages switched off: CPU only)'
    torch = sys.modules.get('torch')
    if torch is not None and torch.cuda.is_available():
        text += f'; GPU: {torch.cuda.get_device_name(0)}'
    return text


def _warnings(items) -> list[dict]:
    return [w if isinstance(w, dict) else {'level': 'WARNING', 'source': '', 'message': str(w)}
            for w in items or ()]


def render(settings, subject: str, runs: list, *, methods: str = '', error=None,
           elapsed: float | None = None, warnings=()) -> str:
    """The report's HTML text."""
    work = WorkDir(settings.work_dir, subject)
    sections = []
    for i, spec in enumerate(runs):
        try:
            sections.append(run_context(settings, spec, i, work))
        except Exception as err:  # noqa: BLE001 - show what could not be drawn
            logger.warning('report section for %s failed: %s', spec.asl_file, err)
            sections.append({'index': i, 'name': Path(spec.asl_file).name,
                             'error': f'{type(err).__name__}: {err}'})
    started = time.time() - elapsed if elapsed is not None else None
    normalization = _normalization(settings, runs, work)
    return _ENV.get_template('report.html.j2').render(
        normalization=normalization,
        subject=subject, version=__version__, provenance=provenance_of(settings),
        settings=settings.to_dict(), device=device_summary(settings, runs), runs=sections,
        stages=stage_rows(work, settings, started=started, failed=bool(error)),
        nodes=node_rows(work), methods=methods, error=error, elapsed=elapsed,
        warnings=_warnings(warnings), date=time.strftime('%Y-%m-%d %H:%M'))


def _normalization(settings, runs, work):
    """The spatial-normalization panel (None when off or when it cannot be gathered)."""
    from aslproc.reports.normalization import normalization_section

    try:
        return normalization_section(settings, runs, work)
    except Exception as err:  # noqa: BLE001 - the rest of the report still shows
        logger.warning('report: normalization panel failed: %s', err)
        return None


def write_report(settings, subject: str, runs: list, *, methods: str = '', error=None,
                 elapsed: float | None = None, warnings=()) -> Path:
    """Render the subject's report to ``OUT/sub-<subject>.html`` and return its path.

    Parameters
    ----------
    settings : Settings
        Resolved settings (output and work directories, switches).
    subject : str
        Participant label without ``sub-``.
    runs : list of AslSpec
        The subject's ASL runs (empty when the inputs could not be read).
    methods : str
        Methods text of the workflow (paragraphs separated by blank lines).
    error : str or None
        Why the subject failed, in one line.
    elapsed : float or None
        Wall time of the subject (s).
    warnings : sequence of dict or str
        Warnings logged during the run (see :class:`~aslproc.reports.capture.WarningCollector`).
    """
    html = render(settings, subject, runs, methods=methods, error=error, elapsed=elapsed,
                  warnings=warnings)
    out = Path(settings.output_dir) / f'sub-{subject}.html'
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.tmp')
    tmp.write_text(html, encoding='utf-8')
    tmp.replace(out)
    logger.info('report written to %s (%.0f kB)', out, out.stat().st_size / 1024)
    return out
