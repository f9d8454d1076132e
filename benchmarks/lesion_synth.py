#!/usr/bin/env python3
"""The lesion benchmark (issue 12): every native-grid CBF map at 2, 4, 8 and all pairs, on
heterogeneous simulator subjects and on the public reference cases.

    .venv/bin/python benchmarks/lesion_synth.py [--pairs 2 4 8 0] [--extra NAME=WEIGHTS ...]
        [--no-dro] [--name lesion_synth]

Simulator subjects: :data:`aslproc.synth.PERFUSION` ``'heterogeneous'`` (±25 % smooth field,
4 territories with their own CBF and ATT, 4-6 lesions of 6-25 mm, hypo ×0.2-0.6 or hyper
×1.5-2.0, half on the GM/WM border), seeds 9201-9203 (never used in training), 30 pairs, 3D
readout without background suppression (score.py's reference ignores both), SNR 200-300 (this
simulator's SNR is the mean brain M0 over the noise SD per volume; at 250 the 64×76×24 case's
plain map at 12 pairs is about as noisy as the public lesion case's at SNR 100). Public cases:
``../shared/dro-lesion`` (12 pairs) and ``../shared/dro-public`` (30 pairs), measured only.

Maps, made as the pipeline makes them on data without motion (``denoise_common``): ``plain``
(``_cbf``), ``smoothed`` (5 mm FWHM in the mask), ``denoised`` (the shipped network with the
tissue-mean gain: the default ``desc-denoised``), ``pvcGM`` (the opt-in ``--pvc`` GM map), and
any ``--extra`` weight file. Scores: score.py's PSNR, CCC and GM bias, its truth-tuned
Gaussian of the plain map, and per-lesion contrast errors (:func:`denoise_common.
lesion_contrasts`, lesions ≥ 8 mm). Writes ``benchmarks/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from denoise_common import (  # noqa: E402
    lesion_contrasts,
    make_derivatives,
    score,
    subsample_case,
    tissue_fractions,
)

from aslproc.models import infer  # noqa: E402
from aslproc.synth import SynthConfig, write_dataset  # noqa: E402
from aslproc.utils import cbf as cbfu  # noqa: E402
from aslproc.utils.pvc import partial_volume_correct  # noqa: E402
from aslproc.utils.quantify import save_like  # noqa: E402

SHARED = HERE.parent.parent / 'shared'
CASES = {
    'pcasl-3.1x3.1x7.9-snr250': dict(label='PCASL', asl_matrix=(64, 76, 24), snr=250.0,
                                     seed=9201),
    'pasl-3.5x3.5x6-snr300': dict(label='PASL', asl_voxel=(3.5, 3.5, 6.0), snr=300.0,
                                  seed=9202),
    'pcasl-4mm-snr200': dict(label='PCASL', asl_voxel=4.0, snr=200.0, seed=9203),
}
DRO = {'dro-lesion': 12, 'dro-public': 30}


def simulate(cname: str, out: Path) -> Path:
    """Write the simulator case ``cname`` of :data:`CASES` (30 pairs, no motion) to ``out``."""
    write_dataset(out, SynthConfig(n_pairs=30, pose=False, lesions=(4, 6),
                                   perfusion='heterogeneous', t1w_voxel=2.0, **CASES[cname]))
    return out


def extra_maps(deriv: Path, tissue: tuple) -> None:
    """The smoothed (5 mm) and the opt-in PVC GM map from the plain map, and a copy of the
    plain map as ``desc-plain`` (score.py scores ``--desc`` maps)."""
    perf = deriv / 'sub-01' / 'perf'
    img = nib.load(str(perf / 'sub-01_cbf.nii.gz'))
    cbf = np.asarray(img.dataobj, np.float32)
    mask = np.asarray(nib.load(str(perf / 'sub-01_mask.nii.gz')).dataobj, np.float32)
    zooms = img.header.get_zooms()[:3]
    shutil.copy(perf / 'sub-01_cbf.nii.gz', perf / 'sub-01_desc-plain_cbf.nii.gz')
    save_like(cbfu.smooth_in_mask(cbf, mask, 5.0, zooms), img,
              perf / 'sub-01_desc-smoothed_cbf.nii.gz')
    gm, wm = (np.asarray(nib.load(f).dataobj, np.float32) for f in tissue)
    pvc_gm, _ = partial_volume_correct(cbf, gm, wm, mask, zooms)
    save_like(pvc_gm, img, perf / 'sub-01_desc-pvcGM_cbf.nii.gz')


def denoiser_maps(extra: list, adapt: int) -> dict:
    """Denoised maps to make (name → :func:`denoise_common.make_derivatives` entry): the
    default, each ``NAME=WEIGHTS`` of ``extra`` and, with ``adapt`` steps, the adaptation."""
    weights = {'denoised': None, **dict(e.split('=', 1) for e in extra)}
    if adapt:
        weights['adapted'] = {'weights': None, 'adapt_steps': adapt}
    return weights


def run(case: Path, name: str, k: int, tmp: Path, weights: dict, tissue: tuple) -> list:
    """All maps of one case at ``k`` pairs, scored."""
    sub = subsample_case(case, k, tmp / f'{name}-{k}')
    deriv = tmp / f'{name}-deriv{k}'
    make_derivatives(sub, deriv, weights, nlm=False, tissue=tissue)
    extra_maps(deriv, tissue)
    rows = []
    for desc in ('plain', 'smoothed', *weights, 'pvcGM'):
        r = score(sub, deriv, desc)
        les = lesion_contrasts(sub, deriv / 'sub-01' / 'perf' / f'sub-01_desc-{desc}_cbf.nii.gz')
        rows.append({'case': name, 'pairs': k, 'map': desc, **r, 'lesions': les,
                     'max_lesion_err_pct': max((abs(x['err_pct']) for x in les), default=None)})
        print(json.dumps({key: v for key, v in rows[-1].items() if key != 'lesions'}),
              flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pairs', type=int, nargs='+', default=[2, 4, 8, 0], help='0: all')
    p.add_argument('--extra', nargs='*', default=[], help='NAME=WEIGHTS extra models')
    p.add_argument('--adapt', type=int, default=0, metavar='STEPS',
                   help='also score the opt-in per-scan adaptation (--denoise-adapt STEPS) as '
                   'map "adapted"')
    p.add_argument('--no-dro', action='store_true', help='skip the public reference cases')
    p.add_argument('--cases', nargs='*', default=list(CASES), help='simulator cases to run')
    p.add_argument('--name', default='lesion_synth', help='output file stem in benchmarks/')
    args = p.parse_args(argv)
    weights = denoiser_maps(args.extra, args.adapt)
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        jobs = [(simulate(c, tmp / c), c, 30) for c in args.cases]
        if not args.no_dro:
            jobs += [(SHARED / d, d, n) for d, n in DRO.items()]
        for full, cname, n_all in jobs:
            tissue = tissue_fractions(full / 'bids/sub-01/anat/sub-01_T1w.nii.gz',
                                      full / 'bids/sub-01/perf/sub-01_asl.nii.gz',
                                      tmp / f'{cname}-tissue')
            for k in args.pairs:
                rows += run(full, cname, k or n_all, tmp, weights, tissue)
    _, info = infer.load_denoiser()
    result = {'date': datetime.date.today().isoformat(), 'machine': platform.platform(),
              'model': info['name'], 'sha256': info['sha256'], 'rows': rows}
    (HERE / f'{args.name}.json').write_text(json.dumps(result, indent=1) + '\n')
    md = table(rows, result)
    (HERE / f'{args.name}.md').write_text(md)
    print(md)
    return 0


def table(rows: list, result: dict) -> str:
    """One line per case, pairs and map: PSNR, gain over the truth-tuned Gaussian of the plain
    map, CCC, GM bias, the worst per-lesion contrast error and the number of lesions."""
    lines = [f"Lesion benchmark ({result['date']}, {result['machine']}, model "
             f"{result['model']}); lesions ≥ 8 mm; Gaussian = truth-tuned Gaussian of the plain "
             'map (score.py).', '',
             '| case | pairs | map | PSNR | vs plain | vs Gaussian | CCC | GM bias % | '
             'worst lesion err % | hypo errs % | hyper errs % |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        own = r.get('own_average_psnr') or r['psnr']
        gauss = r.get('own_gauss_psnr')
        hypo = ', '.join(f"{x['err_pct']:+.0f}" for x in r['lesions'] if x['kind'] == 'hypo')
        hyper = ', '.join(f"{x['err_pct']:+.0f}" for x in r['lesions'] if x['kind'] == 'hyper')
        worst = r['max_lesion_err_pct']
        vs_gauss = '' if gauss is None else f"{r['psnr'] - gauss:+.2f}"
        lines.append(
            f"| {r['case']} | {r['pairs']} | {r['map']} | {r['psnr']:.2f} | "
            f"{r['psnr'] - own:+.2f} | {vs_gauss} | {r['ccc']:.3f} | {r['gm_bias_pct']:+.1f} | "
            f"{'' if worst is None else f'{worst:.0f}'} | {hypo} | {hyper} |")
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    raise SystemExit(main())
