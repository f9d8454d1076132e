"""SR detail regressors on the reference cases: Atropos posteriors, T1w fractions, intercept.

Reruns the CPU-default super-resolution of a finished participant run (``aslproc BIDS OUT
participant``, for example by ``benchmarks/pipeline_dro.py``) on that run's own inputs (its
``desc-denoised_cbf``, the BIDS T1w, its ASL→T1w transform, brain mask and GM/WM/CSF
probabilities) twice: with the GM/WM posteriors alone (the regressors up to 2026-12-04), and
with the CSF map too, which splits CSF-labelled border voxels by their T1w intensity
(:mod:`aslproc.utils.pv_fractions`), and the latter once more with a constant in the
CBF-on-tissue fit (``FitConfig.free_intercept``, the fit up to stop 28). Each output is
scored by ``../shared/bench/score.py sr --lr-desc denoised`` (our input interpolated,
isolating the SR stage), lesion rows included. Measures only; no parameter is fitted to
these cases (the intercept was dropped for a physical reason, shown by a unit test, and
these rows were looked at beside the simulator's when it was). Writes
``sr_guides_dro.json``/``.md``.

    python benchmarks/sr_guides_dro.py dro-lesion=/tmp/pl_lesion/out dro-public=/tmp/pl_public/out
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
from datetime import date
from pathlib import Path
from unittest import mock

import torch

from aslproc.utils import superres

HERE = Path(__file__).parent
SHARED = HERE.parent.parent / 'shared'
SCORE = SHARED / 'bench' / 'score.py'
KEYS = ('psnr', 'linear_psnr', 'ssim', 'linear_ssim', 'lesion_hypo_err_pct',
        'lesion_hyper_err_pct', 'linear_lesion_hypo_err_pct', 'linear_lesion_hyper_err_pct')


def rerun(case: str, out: Path, variant: str, work: Path) -> dict:
    """SR of ``out``'s denoised map with one set of regressors, scored by score.py."""
    perf, anat = out / 'sub-01' / 'perf', out / 'sub-01' / 'anat'
    deriv = work / case / variant
    dst = deriv / 'sub-01' / 'perf'
    dst.mkdir(parents=True, exist_ok=True)
    lr = dst / 'sub-01_desc-denoised_cbf.nii.gz'
    if not lr.exists():
        lr.symlink_to(perf / 'sub-01_desc-denoised_cbf.nii.gz')
    t1w = SHARED / case / 'bids' / 'sub-01' / 'anat' / 'sub-01_T1w.nii.gz'
    default_config = superres.default_config

    def config(*a, **k):
        cfg = default_config(*a, **k)
        return dataclasses.replace(cfg, free_intercept=True) if variant == 'intercept' else cfg

    probs = {t: anat / f'sub-01_label-{t}_probseg.nii.gz' for t in ('GM', 'WM', 'CSF')}
    with mock.patch.object(superres, 'default_config', config):  # restored on failure too
        res = superres.superres_file(
            lr, t1w, perf / 'sub-01_from-asl_to-T1w_mode-image_xfm.mat',
            anat / 'sub-01_desc-brain_mask.nii.gz', dst / 'sub-01_space-T1w_desc-sr_cbf.nii.gz',
            device='cpu', num_threads=1, gm_file=probs['GM'], wm_file=probs['WM'],
            csf_file=None if variant == 'posteriors' else probs['CSF'])
    cmd = [sys.executable, str(SCORE), 'sr', str(SHARED / case), str(deriv), '--lr-desc',
           'denoised']
    row = json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                    check=True).stdout.splitlines()[0])
    flat = {**{f'linear_{k}': v for k, v in row['linear'].items()}, **row['project'], **row}
    return {k: flat[k] for k in KEYS if k in flat} | {'time_s': res['info']['time_s']}


def to_markdown(result: dict) -> str:
    lines = [f"SR detail regressors on the reference cases ({result['machine']}, "
             f"{result['date']}; CPU default, input `desc-denoised_cbf`; `score.py sr "
             "--lr-desc denoised`). Lesion contrast errors in %, linear interpolation in "
             'brackets.', '',
             '| case | regressors | PSNR (linear) | gain dB | SSIM (linear) | gain '
             '| hypo err | hyper err |', '|---|---|---|---|---|---|---|---|']
    for case, rows in result['cases'].items():
        for name, r in rows.items():
            les = [f"{r[f'lesion_{k}_err_pct']:+.1f} ({r[f'linear_lesion_{k}_err_pct']:+.1f})"
                   if f'lesion_{k}_err_pct' in r else '' for k in ('hypo', 'hyper')]
            lines.append(f"| {case} | {name} | {r['psnr']:.2f} ({r['linear_psnr']:.2f}) | "
                         f"{r['psnr'] - r['linear_psnr']:+.2f} | {r['ssim']:.3f} "
                         f"({r['linear_ssim']:.3f}) | {r['ssim'] - r['linear_ssim']:+.3f} | "
                         f"{les[0]} | {les[1]} |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', help='CASE=OUT: a ../shared case and its aslproc output')
    p.add_argument('--work', type=Path, default=Path('/tmp/sr_guides_dro'))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = {'machine': f'{platform.machine()}, torch {torch.__version__}',
              'date': date.today().isoformat(), 'cases': {}}
    for item in args.runs:
        case, out = item.split('=', 1)
        result['cases'][case] = {
            'Atropos posteriors': rerun(case, Path(out), 'posteriors', args.work),
            'T1w fractions, fit with intercept (stop 28)': rerun(case, Path(out), 'intercept',
                                                                 args.work),
            'T1w fractions (default)': rerun(case, Path(out), 'fractions', args.work)}
    (HERE / 'sr_guides_dro.json').write_text(json.dumps(result, indent=2) + '\n')
    (HERE / 'sr_guides_dro.md').write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
