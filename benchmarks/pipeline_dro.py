#!/usr/bin/env python3
"""Time the participant pipeline per node and score its CBF against a reference case.

Usage::

    .venv/bin/python benchmarks/pipeline_dro.py [CASE] [--out DIR] [--nprocs N] \
        [--aslproc-args '--no-sr']

CASE is a folder with ``bids/`` and ``truth/`` (default ``../shared/dro-public``; the
phantom generator writes the same layout). Runs ``aslproc CASE/bids OUT participant``,
reads every node's run time from nipype's result files in the work directory, runs
``../shared/bench/score.py cbf`` (and ``--desc smoothed``/``denoised`` when present), and
writes ``benchmarks/pipeline_dro.json`` and ``benchmarks/pipeline_dro.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import platform
import shlex
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCORE = ROOT.parent / 'shared' / 'bench' / 'score.py'


def node_times(work: Path) -> dict:
    """Seconds each node ran, from nipype's ``result_<node>.pklz`` files (cached nodes too)."""
    times = {}
    for res in sorted(work.rglob('result_*.pklz')):
        try:
            with gzip.open(res, 'rb') as f:
                result = pickle.load(f)
            dur = getattr(result.runtime, 'duration', None)
        except Exception:  # noqa: BLE001 - a partial cache should not stop the benchmark
            continue
        if dur is not None:
            rel = res.parent.relative_to(work).as_posix()
            times[rel] = round(float(dur), 2)
    return times


def score(case: Path, out: Path, desc: str | None) -> dict | None:
    """Summary line of score.py (None when the derivative is absent)."""
    cmd = [sys.executable, str(SCORE), 'cbf', str(case), str(out)]
    if desc:
        cmd += ['--desc', desc]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if not lines or 'summary' not in lines[-1] or not lines[-1]['summary'].get('scored'):
        return None
    return {'summary': lines[-1]['summary'], 'rows': lines[:-1]}


def score_sr(case: Path, out: Path, lr_desc: str | None) -> dict | None:
    """Summary line of ``score.py sr`` (None without a ``space-T1w_desc-sr_cbf``)."""
    if not any(out.rglob('*space-T1w_desc-sr_cbf.nii.gz')):
        return None
    cmd = [sys.executable, str(SCORE), 'sr', str(case), str(out)]
    cmd += ['--lr-desc', lr_desc] if lr_desc else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith('{')]
    return lines[-1].get('summary') if lines else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('case', nargs='?', type=Path, default=ROOT.parent / 'shared' / 'dro-public')
    ap.add_argument('--out', type=Path, default=Path('/tmp/aslproc_bench_pipeline'))
    ap.add_argument('--nprocs', type=int, default=2)
    ap.add_argument('--name', default='pipeline_dro')
    ap.add_argument('--aslproc-args', default='',
                    help='extra aslproc options in one quoted string, e.g. "--no-sr"')
    args = ap.parse_args(argv)
    out, work = args.out / 'out', args.out / 'work'
    cmd = [str(ROOT / '.venv' / 'bin' / 'aslproc'), str(args.case / 'bids'), str(out),
           'participant', '-w', str(work), '--nprocs', str(args.nprocs),
           *shlex.split(args.aslproc_args)]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode:
        print(proc.stderr[-4000:], file=sys.stderr)
    result = {
        'date': date.today().isoformat(), 'machine': f'{platform.node()} '
        f'({platform.processor() or platform.machine()}, 2 cores)', 'case': str(args.case),
        'command': ' '.join(cmd), 'exit': proc.returncode, 'wall_s': round(wall, 1),
        'node_s': node_times(work),
        'scores': {d or 'plain': score(args.case, out, d) for d in (None, 'smoothed', 'denoised')},
        'sr': {f'vs_{d or "plain_average"}': score_sr(args.case, out, d)
               for d in (None, 'denoised')},
    }
    (HERE / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    (HERE / f'{args.name}.md').write_text(markdown(result))
    print(markdown(result))
    return proc.returncode


def markdown(r: dict) -> str:
    """Markdown tables: scores against the case's baselines, then node run times."""
    lines = [f"## Participant pipeline on `{Path(r['case']).name}` ({r['date']})", '',
             f"Machine: {r['machine']}. Wall time {r['wall_s']} s, exit {r['exit']}.", '',
             '| map | PSNR dB | RMSE | CCC | GM bias % | avg baseline dB | Gauss oracle dB |',
             '|---|---|---|---|---|---|---|']
    for name, s in r['scores'].items():
        if not s:
            continue
        m = s['summary']
        bias = s['rows'][0].get('gm_bias_pct', 'n/a') if s['rows'] else 'n/a'
        lines.append(f"| {name} | {m['psnr']} | {m['rmse']} | {m['ccc']} | {bias} | "
                     f"{m['average_psnr']} | {m['gauss_psnr']} |")
    srs = {k: v for k, v in r.get('sr', {}).items() if v}
    if srs:
        lines += ['', '| SR (`score.py sr`) | PSNR dB | SSIM | linear PSNR | linear SSIM |',
                  '|---|---|---|---|---|']
        lines += [f"| {k} | {v['psnr']} | {v['ssim']} | {v['linear_psnr']} | "
                  f"{v['linear_ssim']} |" for k, v in srs.items()]
    lines += ['', '| node | seconds |', '|---|---|']
    for node, sec in sorted(r['node_s'].items(), key=lambda kv: -kv[1]):
        lines.append(f'| {node} | {sec} |')
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    sys.exit(main())
