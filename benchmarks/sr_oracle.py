"""Where the SR error comes from, on the simulator: guide tissue maps and input noise.

For the ``synth3mm``/``synth4mm`` cases of ``benchmarks/sr_data.py`` it runs the CPU default
(:func:`aslproc.utils.superres.super_resolve`, guided detail, 0 GAN iterations) on three
native-grid inputs (the plain average, the shipped denoiser's map, and the noise-free CBF the
simulator's acquisition sees) with three pairs of GM/WM regressors (the pipeline's Atropos
probabilities, those split by the T1w intensity, :mod:`aslproc.utils.pv_fractions`, and the
simulator's true hard labels) and scores each as
``benchmarks/sr_synth.py`` does. It also splits the squared error of the noise-free input
by (true tissue, Atropos label), which shows which voxels the guide gets wrong. The true
labels are an oracle: they measure the ceiling, and nothing in the pipeline uses them.
Writes ``sr_oracle.json`` and ``sr_oracle.md``.

    python benchmarks/sr_data.py /tmp/srb && python benchmarks/sr_oracle.py /tmp/srb
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import sr_data  # noqa: E402
import sr_synth  # noqa: E402

from aslproc.synth import SynthConfig, simulate_subject  # noqa: E402
from aslproc.utils import pv_fractions, superres  # noqa: E402

HERE = Path(__file__).parent
LABELS = {0: 'outside', 1: 'GM', 2: 'WM', 3: 'CSF'}


def clean_input(case: Path, plain: np.ndarray) -> np.ndarray:
    """The noise-free native-grid CBF of the case (same simulator draw as sr_data.py)."""
    info = json.loads((case / 'info.json').read_text())
    cfg = SynthConfig(t1w_voxel=1.0, asl_voxel=info['asl_voxel'], n_pairs=30, snr=100.0,
                      seed=info['seed'], lesions=(2, 3))
    sim = simulate_subject(np.random.default_rng([info['seed'], 0]), cfg)
    return np.where(plain != 0, sim.truth['cbf'], 0).astype(np.float32)


def error_split(x, ref, seg, label) -> list:
    """Share of the GM+WM mean squared error by (true class, Atropos label)."""
    sel = (seg == 1) | (seg == 2)
    n = int(sel.sum())
    rows = []
    for t in (1, 2):
        for a in range(4):
            s = (seg == t) & (label == a)
            if s.sum():
                rows.append(dict(truth=LABELS[t], atropos=LABELS[a], voxels=int(s.sum()),
                                 mse=round(float(((x - ref)[s] ** 2).sum() / n), 2),
                                 mean_err=round(float((x - ref)[s].mean()), 2)))
    return rows


def run_case(case: Path) -> dict:
    load = lambda k: np.asarray(nib.load(str(case / f'{k}.nii.gz')).dataobj, np.float32)  # noqa: E731
    lr_img, t1 = nib.load(str(case / 'cbf.nii.gz')), nib.load(str(case / 't1w.nii.gz'))
    sr_data.add_tissue(case)
    plain = np.asarray(lr_img.dataobj, np.float32)
    inputs = {'plain': plain, 'denoised': load(sr_data.add_denoised(case).name[:-7]),
              'noise-free': clean_input(case, plain)}
    ref, seg, lesion, t1w = (load(k) for k in ('truth_cbf', 'truth_seg', 'truth_lesion', 't1w'))
    gm, wm, csf = (load(k) for k in ('gm', 'wm', 'csf'))
    ras, mask = superres.ras_xfm(case / 'xfm.mat'), load('mask') > 0
    guides = {'Atropos': (gm, wm),
              'Atropos + T1w fractions': pv_fractions.intensity_fractions(t1w, gm, wm, csf, mask),
              'true labels': ((seg == 1) * 1.0, (seg == 2) * 1.0)}
    vox = superres.t1w_to_asl_voxels(lr_img.affine, t1.affine, ras)
    atropos = np.argmax(np.stack([1 - gm - wm - csf, gm, wm, csf]), 0)
    rows, split = [], {}
    for name, lr in inputs.items():
        lin = superres.resample(lr, vox, t1w.shape, 1)
        rows.append(dict(input=name, method='linear', **sr_synth.score(lin, ref, seg, lesion)))
        for gname, (g, w) in guides.items():
            out, _ = superres.super_resolve(lr, lr_img.affine, t1w, t1.affine, ras, mask,
                                            config=superres.default_config('cpu', 0, 0),
                                            gm=np.float32(g), wm=np.float32(w))
            rows.append(dict(input=name, method=f'guided, {gname}',
                             **sr_synth.score(out, ref, seg, lesion)))
            if name == 'noise-free':
                split.setdefault('linear', error_split(lin, ref, seg, atropos))
                if gname != 'true labels':
                    split[gname] = error_split(out, ref, seg, atropos)
    return {'rows': rows, 'error_split': split}


def to_markdown(result: dict) -> str:
    lines = [f"SR error sources on the simulator ({result['machine']}, {result['date']}; "
             'CPU default, 0 GAN iterations). PSNR/SSIM in GM+WM vs the 1 mm truth; bias '
             'and lesion contrast errors in %.', '',
             '| ASL | input | method | PSNR | SSIM | GM bias | WM bias | hypo err | hyper err |',
             '|---|---|---|---|---|---|---|---|---|']
    for case, res in result['cases'].items():
        for r in res['rows']:
            lines.append(f"| {case} | {r['input']} | {r['method']} | {r['psnr']:.2f} | "
                         f"{r['ssim']:.3f} | {r['gm_bias_pct']:+.1f} | {r['wm_bias_pct']:+.1f}"
                         f" | {r.get('lesion_hypo_err_pct', float('nan')):+.1f} | "
                         f"{r.get('lesion_hyper_err_pct', float('nan')):+.1f} |")
    lines += ['', 'Noise-free input: squared error by voxel class (share of the GM+WM MSE) '
              'and mean error (ml/100 g/min) of the guided detail with the Atropos maps and '
              'with the T1w fractions.', '',
              '| ASL | true class | Atropos label | voxels | linear MSE | Atropos MSE '
              '| mean err | fractions MSE | mean err |', '|---|---|---|---|---|---|---|---|---|']
    for case, res in result['cases'].items():
        sp = res['error_split']
        for lin, a, f in zip(sp['linear'], sp['Atropos'], sp['Atropos + T1w fractions'],
                             strict=True):
            lines.append(f"| {case} | {a['truth']} | {a['atropos']} | {a['voxels']} | "
                         f"{lin['mse']:.1f} | {a['mse']:.1f} | {a['mean_err']:+.1f} | "
                         f"{f['mse']:.1f} | {f['mean_err']:+.1f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('data', type=Path, help='folder written by benchmarks/sr_data.py')
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = {'machine': f'{platform.machine()}, torch {torch.__version__}',
              'date': date.today().isoformat(),
              'cases': {n: run_case(args.data / n) for n in ('synth3mm', 'synth4mm')}}
    (HERE / 'sr_oracle.json').write_text(json.dumps(result, indent=2) + '\n')
    (HERE / 'sr_oracle.md').write_text(to_markdown(result))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
