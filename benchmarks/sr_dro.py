"""SR benchmark on the public DRO case, scored by ``/work/shared/bench/score.py sr``.

Builds the plain-average CBF on the ASL grid (``benchmarks/sr_data.py``; identity transform,
no motion), super-resolves it on the CPU with each budget (iterations per level; 0 = the
T1w-guided detail alone), writes ``DERIV/sub-01/perf/sub-01_space-T1w_desc-sr_cbf.nii.gz``
and runs the scorer twice: against its own plain-averaging baseline and with
``--lr-desc plain`` (our input interpolated, isolating the SR stage). Measures only: nothing
here is tuned on this case. Writes ``sr_dro.json`` and ``sr_dro.md``.

    python benchmarks/sr_dro.py /tmp/srb --iters 0 40
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import sr_data  # noqa: E402

from aslproc.utils import superres  # noqa: E402

HERE = Path(__file__).parent
SCORE = '/work/shared/bench/score.py'


def _score(deriv: Path, lr_desc: str | None) -> dict:
    cmd = [sys.executable, SCORE, 'sr', str(sr_data.PUBLIC), str(deriv)]
    cmd += ['--lr-desc', lr_desc] if lr_desc else []
    lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    return {'row': json.loads(lines[0]), 'summary': json.loads(lines[-1])['summary']}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('data', type=Path, help='work folder (public/ is built there if missing)')
    p.add_argument('--iters', type=int, nargs='+', default=[0, 40])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--guide', choices=('tissue', 't1w'), default='tissue',
                   help='detail regressors: GM/WM probabilities (pipeline default) or the T1w')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stderr)
    torch.set_num_threads(args.threads)
    case = args.data / 'public'
    if not (case / 'cbf.nii.gz').exists():
        sr_data.make_public(case)
    deriv = case / 'deriv'
    tissue = sr_data.add_tissue(case) if args.guide == 'tissue' else (None, None)
    out = deriv / 'sub-01' / 'perf' / 'sub-01_space-T1w_desc-sr_cbf.nii.gz'
    machine = platform.processor() or platform.machine()
    result = {'machine': f'{machine}, torch {torch.__version__}',
              'date': date.today().isoformat(), 'threads': args.threads, 'guide': args.guide,
              'runs': []}
    for n in args.iters:
        t0 = time.perf_counter()
        res = superres.superres_file(case / 'cbf.nii.gz', case / 't1w.nii.gz', case / 'xfm.mat',
                                     case / 'mask.nii.gz', out, iters=n, device='cpu',
                                     gm_file=tissue[0], wm_file=tissue[1])
        run = {'iters': n, 'time_s': round(time.perf_counter() - t0, 1),
               'levels': res['info']['levels'], 'consistency': res['info']['consistency'],
               'score': _score(deriv, None), 'score_lr_plain': _score(deriv, 'plain')}
        result['runs'].append(run)
        logging.info('iters %d: %s', n, run['score_lr_plain']['summary'])
    (HERE / 'sr_dro.json').write_text(json.dumps(result, indent=2) + '\n')
    lines = [f"SR on the public DRO case ({result['machine']}, {result['date']}; CPU, "
             f"{args.threads} thread; guide {args.guide}), score.py sr --lr-desc plain.", '',
             '| method | iters/level | time s | PSNR | SSIM | hypo err % | hyper err % |',
             '|---|---|---|---|---|---|---|']
    s0 = result['runs'][0]['score_lr_plain']
    for name in ('nearest', 'linear', 'spline'):
        lines.append(f"| {name} | | | {s0['summary'][name + '_psnr']:.2f} | "
                     f"{s0['summary'][name + '_ssim']:.3f} | | |")
    for run in result['runs']:
        s, row = run['score_lr_plain']['summary'], run['score_lr_plain']['row']
        lines.append(f"| {'SR' if run['iters'] else 'guided only'} | {run['iters']} | "
                     f"{run['time_s']} | {s['psnr']:.2f} | {s['ssim']:.3f} | "
                     f"{row.get('lesion_hypo_err_pct', '')} | "
                     f"{row.get('lesion_hyper_err_pct', '')} |")
    (HERE / 'sr_dro.md').write_text('\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
