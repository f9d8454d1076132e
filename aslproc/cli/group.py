"""Group level: one table of the QC rows of every processed run."""

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
    fig.savefig(out_file, dpi=90)
    plt.close(fig)
    return str(out_file)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float('nan')


def run_group(settings: Settings) -> int:
    """Write ``OUT/group_desc-qc_cbf.tsv`` and a figure of it (``group_desc-qc_cbf.png``);
    status 1 when no participant output exists."""
    rows = collect_qc_rows(settings.output_dir)
    if not rows:
        print(f'aslproc: no participant QC tables under {settings.output_dir}; run the '
              'participant level first', file=sys.stderr)
        return 1
    fields = list(dict.fromkeys(k for r in rows for k in r))
    out = settings.output_dir / 'group_desc-qc_cbf.tsv'
    with open(out, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=fields, delimiter='\t', restval='n/a',
                           lineterminator='\n')
        w.writeheader()
        w.writerows(rows)
    group_figure(rows, settings.output_dir / 'group_desc-qc_cbf.png')
    logger.info('group QC table: %s (%d runs)', out, len(rows))
    return 0
