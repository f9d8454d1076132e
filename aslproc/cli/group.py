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


def run_group(settings: Settings) -> int:
    """Write ``OUT/group_desc-qc_cbf.tsv``; status 1 when no participant output exists."""
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
    logger.info('group QC table: %s (%d runs)', out, len(rows))
    return 0
