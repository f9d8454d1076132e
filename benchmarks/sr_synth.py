"""SR benchmark on the project's simulator: 3 and 4 mm ASL, 1 mm T1w, known 1 mm truth.

For each ASL voxel size and each budget (iterations per level; 0 = the T1w-guided detail
alone, no GAN) it runs :func:`aslproc.utils.superres.super_resolve` on the CPU and scores
the result, the linear and cubic-spline upsamplings of the same input, against the true 1 mm
CBF: PSNR and SSIM inside GM+WM as ``/work/shared/bench/score.py sr`` computes them, GM and
WM mean bias (%), and the contrast error (%) of the focal lesions, which the T1w does not
show. Inputs come from ``benchmarks/sr_data.py``. Writes ``sr_synth.json`` and ``sr_synth.md``.

    python benchmarks/sr_synth.py /tmp/srb --iters 0 20 40
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).parent))
import sr_data  # noqa: E402

from aslproc.utils import superres  # noqa: E402

HERE = Path(__file__).parent


def score(x, ref, seg, lesion=None) -> dict:
    """PSNR/SSIM in GM+WM (peak = reference max), tissue bias and lesion contrast errors."""
    mask = (seg == 1) | (seg == 2)
    sl = tuple(slice(max(0, a.min() - 2), a.max() + 3) for a in np.nonzero(mask))
    a, b = x[mask].astype(float), ref[mask].astype(float)
    out = {'psnr': 20 * np.log10(b.max() / np.sqrt(np.mean((a - b) ** 2))),
           'ssim': structural_similarity(np.where(mask, x, 0)[sl], np.where(mask, ref, 0)[sl],
                                         data_range=float(b.max()))}
    for k, name in ((1, 'gm'), (2, 'wm')):
        t = seg == k
        out[f'{name}_mean'] = x[t].mean()
        out[f'{name}_bias_pct'] = 100 * (x[t].mean() - ref[t].mean()) / ref[t].mean()
    if lesion is not None:
        rest = (seg == 1) & (lesion == 0)
        for k, name in ((1, 'hypo'), (2, 'hyper')):
            roi = (seg == 1) & (lesion == k)
            if roi.sum() >= 3:
                cx, cr = x[roi].mean() / x[rest].mean(), ref[roi].mean() / ref[rest].mean()
                out[f'lesion_{name}_err_pct'] = 100 * (cx - cr) / cr
    return {k: round(float(v), 4) for k, v in out.items()}


def tissue_inputs(case: Path, guide: str) -> dict:
    """``gm``/``wm`` keyword arguments of super_resolve for ``guide='tissue'`` (else none)."""
    if guide != 'tissue':
        return {}
    sr_data.add_tissue(case)
    return {k: np.asarray(nib.load(str(case / f'{k}.nii.gz')).dataobj, np.float32)
            for k in ('gm', 'wm')}


def run_case(case: Path, iters: list, seed: int = 0, guide: str = 'tissue',
             source: str = 'plain') -> dict:
    lr_file = sr_data.add_denoised(case) if source == 'denoised' else case / 'cbf.nii.gz'
    lr_img, t1 = nib.load(str(lr_file)), nib.load(str(case / 't1w.nii.gz'))
    lr, t1w = (np.asarray(i.dataobj, np.float32) for i in (lr_img, t1))
    ras, mask = superres.ras_xfm(case / 'xfm.mat'), nib.load(str(case / 'mask.nii.gz'))
    mask = np.asarray(mask.dataobj) > 0
    ref, seg, lesion = (np.asarray(nib.load(str(case / f'truth_{k}.nii.gz')).dataobj)
                        for k in ('cbf', 'seg', 'lesion'))
    vox = superres.t1w_to_asl_voxels(lr_img.affine, t1.affine, ras)
    rows = {'linear': score(
        superres.resample(lr, vox, t1w.shape, 1), ref, seg, lesion),
        'cubic': score(superres.resample(lr, vox, t1w.shape, 3), ref, seg, lesion), 'sr': []}
    tissue = tissue_inputs(case, guide)
    for n in iters:
        t0 = time.perf_counter()
        out, info = superres.super_resolve(lr, lr_img.affine, t1w, t1.affine, ras, mask,
                                           config=superres.default_config('cpu', n, seed),
                                           **tissue)
        rows['sr'].append(dict(iters=n, time_s=round(time.perf_counter() - t0, 1),
                               levels=info['levels'], **score(out, ref, seg, lesion)))
        logging.info('%s iters %d: %s', case.name, n, rows['sr'][-1])
    return rows


def to_markdown(result: dict) -> str:
    lines = [f"SR on the simulator ({result['machine']}, {result['date']}; CPU, "
             f"{result['threads']} thread; guide {result.get('guide', 't1w')}, input "
             f"{result.get('input', 'plain')}). "
             'PSNR/SSIM in GM+WM vs the 1 mm truth; bias in %.',
             '', '| ASL | method | iters/level | time s | PSNR | SSIM | GM bias | WM bias '
             '| hypo err | hyper err |', '|---|---|---|---|---|---|---|---|---|---|']
    for case, rows in result['cases'].items():
        entries = [('linear', '', '', rows['linear']), ('cubic', '', '', rows['cubic'])]
        entries += [('SR' if r['iters'] else 'guided only', r['iters'], r['time_s'], r)
                    for r in rows['sr']]
        for name, it, t, r in entries:
            lines.append(f"| {case} | {name} | {it} | {t} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                         f"{r['gm_bias_pct']:+.1f} | {r['wm_bias_pct']:+.1f} | "
                         f"{r.get('lesion_hypo_err_pct', float('nan')):+.1f} | "
                         f"{r.get('lesion_hyper_err_pct', float('nan')):+.1f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('data', type=Path, help='folder written by benchmarks/sr_data.py')
    p.add_argument('--iters', type=int, nargs='+', default=[0, 20, 40])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--guide', choices=('tissue', 't1w'), default='tissue',
                   help='detail regressors: GM/WM probabilities (pipeline default) or the T1w')
    p.add_argument('--input', choices=('plain', 'denoised'), default='plain',
                   help="the native-grid CBF: plain average, or the shipped denoiser's (the "
                        "pipeline's default)")
    p.add_argument('--name', default='sr_synth', help='output file stem in benchmarks/')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s', stream=sys.stderr)
    torch.set_num_threads(args.threads)
    machine = platform.processor() or platform.machine()
    result = {'machine': f'{machine}, torch {torch.__version__}',
              'date': date.today().isoformat(), 'threads': args.threads, 'guide': args.guide,
              'input': args.input, 'cases': {}}
    for name in ('synth3mm', 'synth4mm'):
        result['cases'][name] = run_case(args.data / name, args.iters, guide=args.guide,
                                         source=args.input)
    (HERE / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    (HERE / f'{args.name}.md').write_text(to_markdown(result))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
