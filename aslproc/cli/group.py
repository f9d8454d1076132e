"""Group level: the QC table of every processed run and, from the template-space outputs, the
group maps, tables and report (:mod:`aslproc.utils.group`, :mod:`aslproc.reports.group`)."""

from __future__ import annotations

import csv
import logging
import sys

from aslproc.cli.settings import Settings

logger = logging.getLogger(__name__)


def collect_qc_rows(output_dir) -> list[dict]:
    """All ``*_desc-qc_cbf.tsv`` rows under a derivatives directory, sorted by file name."""
    rows = []
    for tsv in sorted(output_dir.glob('sub-*/**/perf/*_desc-qc_cbf.tsv')):
        with open(tsv) as f:
            for row in csv.DictReader(f, delimiter='\t'):
                rows.append({'file': tsv.name.replace('_desc-qc_cbf.tsv', ''), **row})
    return rows


#: QC columns drawn in the group figure, with their axis labels.
FIGURE_COLUMNS = {'mean_gm_cbf': 'GM CBF (ml/100 g/min)', 'mean_wm_cbf': 'WM CBF (ml/100 g/min)',
                  'gm_wm_ratio': 'GM/WM ratio', 'mean_fd': 'mean FD (mm)',
                  'dice_asl_t1w': 'Dice ASL/T1w'}


def group_figure(rows: list[dict], out_file) -> str:
    """One strip of points per QC metric (one point per run), labelled by run."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    cols = [c for c in FIGURE_COLUMNS if any(c in r for r in rows)]
    fig, axes = plt.subplots(1, len(cols), figsize=(2.4 * len(cols), 3.2), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        vals = [_number(r.get(col)) for r in rows]
        ax.plot([0] * len(vals), vals, 'o', alpha=0.7)
        for v, r in zip(vals, rows, strict=True):
            ax.annotate(r['file'].split('_')[0], (0, v), xytext=(6, 0),
                        textcoords='offset points', fontsize=7)
        ax.set_title(FIGURE_COLUMNS[col], fontsize=9)
        ax.set_xticks([])
    fig.tight_layout()
    from pathlib import Path

    from aslproc.bids.derivatives import atomic_fill

    atomic_fill(Path(out_file), lambda tmp: fig.savefig(tmp, dpi=90, format='png'))
    plt.close(fig)
    return str(out_file)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float('nan')


def run_group(settings: Settings) -> int:
    """Write ``OUT/group_desc-qc_cbf.tsv`` and a figure of it (``group_desc-qc_cbf.png``),
    then the template-space group outputs (:func:`write_group_outputs`); status 1 when no
    participant output exists."""
    rows = collect_qc_rows(settings.output_dir)
    if not rows:
        print(f'aslproc: no participant QC tables under {settings.output_dir}; run the '
              'participant level first', file=sys.stderr)
        return 1
    from aslproc.utils.group import write_tsv

    out = write_tsv(settings.output_dir / 'group_desc-qc_cbf.tsv', rows)
    group_figure(rows, settings.output_dir / 'group_desc-qc_cbf.png')
    logger.info('group QC table: %s (%d runs)', out, len(rows))
    try:
        write_group_outputs(settings.output_dir)
    except (OSError, ValueError) as err:  # e.g. maps on different grids: one line, no traceback
        print(f'aslproc: group outputs: {err}', file=sys.stderr)
        return 1
    return 0


def _dice_of_subjects(output_dir) -> dict:
    """Normalization Dice per subject label, from the transforms' sidecars."""
    import json

    found = {}
    for side in sorted(output_dir.glob('sub-*/**/anat/*_from-T1w_to-*_xfm.json')):
        try:
            dice = json.loads(side.read_text()).get('NormalizationDiceGM')
        except (OSError, ValueError):
            continue
        if dice is not None:
            found.setdefault(side.name.split('_')[0][4:], float(dice))
    return found


def write_group_outputs(output_dir) -> dict:
    """Inclusion table, group mean/SD/count maps, the subject × region table and the group
    report; returns what was written."""
    from aslproc.bids.derivatives import atomic_write_json
    from aslproc.reports.group import write_group_report
    from aslproc.utils import group

    runs = group.collect_runs(output_dir)
    decisions = group.decide(runs, _dice_of_subjects(output_dir))
    glob_tsv = group.write_tsv(output_dir / 'group_desc-global_cbf.tsv', decisions)
    atomic_write_json(output_dir / 'group_desc-global_cbf.json', group.GLOBAL_COLUMNS)
    maps = group.write_group_maps(output_dir, runs, decisions)
    names, region_rows = group.region_rows(runs, decisions)
    written = {'global': glob_tsv, 'maps': maps}
    if region_rows:
        written['regions'] = group.write_tsv(
            output_dir / 'group_desc-regions_cbf.tsv', region_rows,
            fields=['participant_id', 'run', 'included', 'map', *names])
        atomic_write_json(output_dir / 'group_desc-regions_cbf.json', group.REGION_COLUMNS)
    elif not maps:
        logger.warning('group: no template-space outputs (participant level run with '
                       '--skip-normalization?); only the QC tables were written')
    written['report'] = write_group_report(output_dir, runs, decisions, maps, names,
                                           region_rows)
    logger.info('group: %d of %d runs included', sum(d['included'] for d in decisions),
                len(decisions))
    return written
