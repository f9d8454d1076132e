"""Denoiser accuracy and speed on the public ASLDRO case, for 2, 4, 8 and all pairs.

    python benchmarks/denoise_dro.py [--case /work/shared/dro-public] [--extra NAME=FILE ...]

Writes ``benchmarks/denoise_dro.json`` and ``benchmarks/denoise_dro.md``. Methods: plain
averaging and the truth-tuned best Gaussian (both from score.py), non-local means
(scikit-image), the shipped denoiser with its partial-volume regression (``denoised``), the CNN
alone (``cnn``) and any ``--extra`` weight files.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from denoise_common import make_derivatives, markdown, score, subsample_case, tissue_fractions  # noqa: E402

from aslproc.models import infer  # noqa: E402
from aslproc.utils import denoise as dnu  # noqa: E402

HERE = Path(__file__).parent


def speed(n_slices: int = 24) -> dict:
    """Wall time of :func:`denoise_pairs` (4 symmetries) on 128×128×``n_slices``, 1 thread."""
    torch.set_num_threads(1)
    model, info = infer.load_denoiser()
    rng = np.random.default_rng(0)
    pairs = rng.normal(1.0, 2.0, (128, 128, n_slices, 8)).astype(np.float32)
    m0 = np.full((128, 128, n_slices), 100.0, np.float32)
    params = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    gm = np.clip(rng.normal(0.5, 0.3, m0.shape), 0, 1).astype(np.float32)
    run = lambda sym, p=pairs, m=m0, g=gm: dnu.denoise_pairs(  # noqa: E731
        model, p, m, m > 0, params, info['channels'], 'cpu', symmetric=sym, gm=g, wm=1 - g)
    run(False, pairs[:, :, :2], m0[:, :, :2], gm[:, :, :2])
    out = {}
    for sym in (True, False):
        t = time.perf_counter()
        run(sym)
        ms = (time.perf_counter() - t) * 1000
        key = 'symmetric' if sym else 'single_pass'
        out[f'{key}_ms_per_volume_128x128x{n_slices}'] = round(ms, 1)
        out[f'{key}_ms_per_slice_128'] = round(ms / n_slices, 1)
    out['peak_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out['threads'] = 1
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--case', type=Path, default=Path('/work/shared/dro-public'))
    p.add_argument('--pairs', type=int, nargs='+', default=[2, 4, 8, 0], help='0: all')
    p.add_argument('--extra', nargs='*', default=[], help='NAME=WEIGHTS extra models')
    p.add_argument('--name', default='denoise_dro', help='output file stem in benchmarks/')
    args = p.parse_args(argv)
    weights = {'denoised': None, 'cnn': {'weights': None, 'tissue_refine': False},
               **dict(e.split('=', 1) for e in args.extra)}
    rows, timing = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tissue = tissue_fractions(next((args.case / 'bids').glob('sub-01/anat/*_T1w.nii.gz')),
                                  next((args.case / 'bids').glob('sub-01/perf/*_asl.nii.gz')),
                                  Path(tmp) / 'tissue')
        for k in args.pairs:
            kk = k or 10**6
            case = subsample_case(args.case, kk, Path(tmp) / f'case{k}')
            deriv = Path(tmp) / f'deriv{k}'
            timing[k or 'all'] = make_derivatives(case, deriv, weights, tissue=tissue)
            for method in [*weights, 'nlm']:
                r = score(case, deriv, method)
                rows.append({'case': args.case.name, 'pairs': k or 'all', 'method': method, **r})
                print(json.dumps(rows[-1]))
            base = rows[-1]
            rows.append({'case': args.case.name, 'pairs': k or 'all', 'method': 'average',
                         'psnr': base['average_psnr'], 'ccc': base['average_ccc']})
            rows.append({'case': args.case.name, 'pairs': k or 'all',
                         'method': f"gauss_oracle ({base['gauss_fwhm']} mm)",
                         'psnr': base['gauss_psnr'], 'ccc': base['gauss_ccc']})
    _, info = infer.load_denoiser()
    result = {'date': datetime.date.today().isoformat(), 'machine': platform.platform(),
              'cpu': platform.processor() or platform.machine(), 'model': info['name'],
              'sha256': info['sha256'], 'rows': rows, 'file_seconds': timing,
              'speed': speed()}
    (HERE / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    md = markdown(rows, f'Denoiser on {args.case.name} ({result["date"]}, model '
                  f'{info["name"]})') + '\nSpeed: ' + json.dumps(result['speed']) + '\n'
    (HERE / f'{args.name}.md').write_text(md)
    print(md)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
