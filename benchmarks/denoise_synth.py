"""Denoiser accuracy on held-out simulator subjects (with focal lesions), 2, 4, 8, all pairs.

    python benchmarks/denoise_synth.py [--extra NAME=FILE ...]

The subjects use seeds never used in training (9001-9003) and are written with
:func:`aslproc.synth.write_dataset`, so ``truth/sub-01_gtlesion`` lets score.py measure the
lesion contrast. 3D readouts without background suppression only: score.py's reference
quantification ignores SliceTiming and background suppression. Writes
``benchmarks/denoise_synth.json`` and ``benchmarks/denoise_synth.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from denoise_common import make_derivatives, markdown, score, subsample_case, tissue_fractions  # noqa: E402

from aslproc.models import infer  # noqa: E402
from aslproc.synth import SynthConfig, write_dataset  # noqa: E402

HERE = Path(__file__).parent
CASES = {
    'pcasl-64x76x24-snr250': dict(label='PCASL', asl_matrix=(64, 76, 24), snr=250.0, seed=9001),
    'pasl-3.5x3.5x6-snr300': dict(label='PASL', asl_voxel=(3.5, 3.5, 6.0), snr=300.0,
                                  seed=9002),
    'pcasl-4mm-snr120': dict(label='PCASL', asl_voxel=4.0, snr=120.0, seed=9003),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pairs', type=int, nargs='+', default=[2, 4, 8, 0], help='0: all (30)')
    p.add_argument('--extra', nargs='*', default=[], help='NAME=WEIGHTS extra models')
    p.add_argument('--name', default='denoise_synth', help='output file stem in benchmarks/')
    args = p.parse_args(argv)
    weights = {'denoised': None, 'cnn': {'weights': None, 'tissue_refine': False},
               **dict(e.split('=', 1) for e in args.extra)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cname, kw in CASES.items():
            full = Path(tmp) / cname
            write_dataset(full, SynthConfig(n_pairs=30, pose=False, lesions=(2, 3),
                                            t1w_voxel=2.0, **kw))
            tissue = tissue_fractions(full / 'bids/sub-01/anat/sub-01_T1w.nii.gz',
                                      full / 'bids/sub-01/perf/sub-01_asl.nii.gz',
                                      Path(tmp) / f'{cname}-tissue')
            for k in args.pairs:
                case = subsample_case(full, k or 10**6, Path(tmp) / f'{cname}-{k}')
                deriv = Path(tmp) / f'{cname}-deriv{k}'
                make_derivatives(case, deriv, weights, tissue=tissue)
                for method in [*weights, 'nlm']:
                    r = score(case, deriv, method)
                    rows.append({'case': cname, 'pairs': k or 'all', 'method': method, **r})
                    print(json.dumps(rows[-1]))
                b = rows[-1]
                rows.append({'case': cname, 'pairs': k or 'all', 'method': 'average',
                             'psnr': b['average_psnr'], 'ccc': b['average_ccc']})
                rows.append({'case': cname, 'pairs': k or 'all',
                             'method': f"gauss_oracle ({b['gauss_fwhm']} mm)",
                             'psnr': b['gauss_psnr'], 'ccc': b['gauss_ccc']})
    _, info = infer.load_denoiser()
    result = {'date': datetime.date.today().isoformat(), 'machine': platform.platform(),
              'model': info['name'], 'sha256': info['sha256'], 'rows': rows}
    (HERE / f'{args.name}.json').write_text(json.dumps(result, indent=2) + '\n')
    md = markdown(rows, f'Denoiser on held-out simulator subjects ({result["date"]}, model '
                  f'{info["name"]})')
    (HERE / f'{args.name}.md').write_text(md)
    print(md)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
