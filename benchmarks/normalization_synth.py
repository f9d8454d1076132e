#!/usr/bin/env python3
"""Spatial normalization on the project's simulator: time and Dice of the warped grey matter.

Usage::

    .venv/bin/python benchmarks/normalization_synth.py [--seeds 1 2 3 4] [--voxels 2 1]

Each subject is a simulated head (:func:`aslproc.synth.simulate_subject`: the MNI152 2009a
anatomy under a random affine of ±6 % scale and ±3 % shear and a smooth warp of up to 3 mm,
with its own T1w contrast, bias field and noise). The simulator's T1w sits in template
coordinates, which flatters any method (no normalization at all already overlaps well), so
every subject is also run with a random rigid head pose written into the T1w header (±10 mm,
±10°; rows "posed").

The steps are the pipeline's own functions, in its order: the brain mask, whose template
registration (affine + SyN) normalization reuses (:func:`aslproc.utils.anat.brain_mask`), the
Atropos segmentation (:func:`aslproc.utils.anat.segment_tissues`), then the normalization node
(:func:`aslproc.utils.normalize.normalize_t1w`: composite transforms, warped T1w and GM, Dice).
Scores: Dice of the warped GM probability (> 0.5) with the template GM (> 0.5), the target
measure (≥ 0.75); the same for the simulator's true GM labels warped with the same transform;
and, as the floor, the Dice of the subject's GM read at the same world positions without any
normalization. Times are wall seconds of each step with ``--threads`` ITK threads.

Writes ``benchmarks/normalization_synth.json`` and ``benchmarks/normalization_synth.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np

from aslproc import phantom, synth
from aslproc.utils.anat import brain_mask, segment_tissues
from aslproc.utils.normalize import gm_dice, normalize_t1w, resample_to_space
from aslproc.utils.registration import ants_threads, write_xfm
from aslproc.utils.template import template_image, write_template

HERE = Path(__file__).resolve().parent
POSE_MM = 10.0


def _save(data, affine, path) -> str:
    nib.Nifti1Image(np.asarray(data, np.float32), affine).to_filename(path)
    return str(path)


def run_case(seed: int, voxel: float, posed: bool, threads: int, tmp: Path) -> dict:
    """One subject through the pipeline's anatomical and normalization steps."""
    cfg = synth.SynthConfig(subjects=1, n_pairs=1, t1w_voxel=voxel, seed=seed)
    sim = synth.simulate_subject(np.random.default_rng([seed, 0]), cfg)
    pose = np.eye(4)
    if posed:
        params = phantom.random_rigid(np.random.default_rng([seed, 99]), POSE_MM)
        pose = phantom.rigid_matrix(params)
    affine = pose @ sim.t1w_affine
    t1w = _save(sim.t1w, affine, tmp / 'T1w.nii.gz')
    true_gm = _save(sim.hr_truth['seg'] == 1, affine, tmp / 'truegm.nii.gz')
    times = {}
    start = time.perf_counter()
    brain_mask(t1w, tmp / 'mask.nii.gz', out_xfm_prefix=str(tmp / 'x_'), num_threads=threads)
    times['registration_s'] = time.perf_counter() - start
    start = time.perf_counter()
    gm, *_ = segment_tissues(t1w, tmp / 'mask.nii.gz', tmp / 'gm.nii.gz', tmp / 'wm.nii.gz',
                             tmp / 'csf.nii.gz', num_threads=threads)
    times['segmentation_s'] = time.perf_counter() - start
    start = time.perf_counter()
    out = normalize_t1w(t1w, gm, tmp / 'x_0GenericAffine.mat', tmp / 'x_1Warp.nii.gz',
                        tmp / 'x_1InverseWarp.nii.gz', res=2,
                        out_to_template=tmp / 'to.h5', out_from_template=tmp / 'from.h5',
                        out_t1w=tmp / 't1w_std.nii.gz', out_gm=tmp / 'gm_std.nii.gz',
                        num_threads=threads)
    times['normalization_node_s'] = time.perf_counter() - start
    template_gm = np.asanyarray(template_image('GM', 2).dataobj)
    ref = write_template('T1', 2, tmp / 'ref.nii.gz')
    with ants_threads(threads):
        truth = resample_to_space(true_gm, ref, [str(tmp / 'to.h5')], tmp / 'true_std.nii.gz')
        same = write_xfm(np.eye(4), tmp / 'identity.mat')
        ident = resample_to_space(gm, ref, [same], tmp / 'gm_ident.nii.gz')
    return {'seed': seed, 'voxel_mm': voxel, 'posed': posed,
            'dice_gm': out['dice_gm'],
            'dice_true_gm': gm_dice(nib.load(truth).get_fdata(), template_gm),
            'dice_no_normalization': gm_dice(nib.load(ident).get_fdata(), template_gm),
            **{k: round(v, 1) for k, v in times.items()},
            'total_s': round(sum(times.values()), 1)}


def table(rows: list[dict]) -> str:
    """Markdown table of the cases and their means."""
    head = ('| T1w voxel | pose | subjects | GM Dice (target ≥ 0.75) | true-GM Dice | no '
            'normalization | registration s | segmentation s | normalization node s |')
    lines = [head, '|' + '---|' * 9]
    groups = {}
    for r in rows:
        groups.setdefault((r['voxel_mm'], r['posed']), []).append(r)
    for (voxel, posed), rs in groups.items():
        def m(k, rs=rs):
            return np.mean([r[k] for r in rs])
        lo = min(r['dice_gm'] for r in rs)
        lines.append(f"| {voxel:g} mm | {'±10 mm/°' if posed else 'as simulated'} | "
                     f"{len(rs)} | {m('dice_gm'):.3f} (min {lo:.3f}) | {m('dice_true_gm'):.3f}"
                     f" | {m('dice_no_normalization'):.3f} | {m('registration_s'):.0f} | "
                     f"{m('segmentation_s'):.0f} | {m('normalization_node_s'):.1f} |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3, 4])
    p.add_argument('--voxels', type=float, nargs='+', default=[2.0, 1.0],
                   help='T1w voxel sizes (mm); 1 mm cases use the first two seeds')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', type=Path, default=HERE / 'normalization_synth')
    args = p.parse_args(argv)
    rows = []
    for voxel in args.voxels:
        seeds = args.seeds if voxel >= 2 else args.seeds[:2]
        for seed in seeds:
            for posed in (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    rows.append(run_case(seed, voxel, posed, args.threads, Path(tmp)))
                print(json.dumps(rows[-1]), flush=True)
    record = {'date': date.today().isoformat(), 'machine': platform.node(),
              'cpus': os.cpu_count(), 'threads': args.threads,
              'processor': platform.processor() or platform.machine(), 'rows': rows}
    args.out.with_suffix('.json').write_text(json.dumps(record, indent=2) + '\n')
    args.out.with_suffix('.md').write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
