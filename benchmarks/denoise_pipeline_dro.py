#!/usr/bin/env python3
"""The denoised CBF of the full participant pipeline on the public case, per pair count.

Unlike ``denoise_dro.py`` (the network alone, with a threshold mask), this runs
``aslproc`` end to end, so the denoiser gets the pipeline's own mask and tissue maps
(its tissue-mean restoration included). The case is subsampled to the first k pairs.

    .venv/bin/python benchmarks/denoise_pipeline_dro.py [--pairs 2 8 30] [--out DIR]

Writes ``benchmarks/denoise_pipeline_dro.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from denoise_common import score, subsample_case  # noqa: E402

CASE = HERE.parent.parent / 'shared' / 'dro-public'


def run_case(k: int, out: Path) -> dict:
    """Subsample to k pairs (T1w kept), run the pipeline without SR, score both maps."""
    sub = subsample_case(CASE, k, out / f'case{k}')
    for t1w in (CASE / 'bids').glob('sub-*/anat/*'):
        dst = sub / 'bids' / t1w.relative_to(CASE / 'bids')
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(t1w, dst)
    deriv = out / f'deriv{k}'
    cmd = [str(HERE.parent / '.venv' / 'bin' / 'aslproc'), str(sub / 'bids'), str(deriv),
           'participant', '-w', str(out / f'work{k}'), '--nprocs', '1', '--no-sr',
           '--skip-bids-validation']
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        return {'pairs': k, 'error': proc.stderr[-2000:]}
    return {'pairs': k, 'denoised': score(sub, deriv, 'denoised'),
            'smoothed': score(sub, deriv, 'smoothed')}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--pairs', type=int, nargs='+', default=[2, 8, 30])
    ap.add_argument('--out', type=Path, default=Path('/tmp/aslproc_dn_pipeline'))
    args = ap.parse_args(argv)
    rows = [run_case(k, args.out) for k in args.pairs]
    (HERE / 'denoise_pipeline_dro.json').write_text(json.dumps(
        {'date': date.today().isoformat(), 'rows': rows}, indent=2) + '\n')
    lines = ['| pairs | averaging dB | truth-tuned Gaussian dB | denoised dB | gain vs avg | '
             'gain vs Gaussian | CCC | GM bias % |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f"| {r['pairs']} | failed | | | | | | |")
            continue
        d = r['denoised']
        gain_avg, gain_gauss = d['psnr'] - d['average_psnr'], d['psnr'] - d['gauss_psnr']
        lines.append(f"| {r['pairs']} | {d['average_psnr']} | {d['gauss_psnr']} | {d['psnr']} | "
                     f"{gain_avg:+.2f} | {gain_gauss:+.2f} | {d['ccc']} | {d['gm_bias_pct']} |")
    (HERE / 'denoise_pipeline_dro.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
