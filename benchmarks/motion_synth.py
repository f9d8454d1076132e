#!/usr/bin/env python3
"""Motion benchmark on the project's simulator: plain CBF of a moving series against its
motion-free twin.

Usage::

    .venv/bin/python benchmarks/motion_synth.py [--seeds 9101 9102] [--pairs 4 12 30]

Each case is simulated twice from the same random stream (:mod:`aslproc.synth`): once with
every volume imaged from the 1 mm anatomy and perfusion at its own pose (per-volume jitter,
slow drift, sudden jerks), once as the still twin (same noise, every volume at the reference
pose). Both go through the pipeline's motion step (:func:`aslproc.utils.motion.correct_motion`
and, by default, :func:`aslproc.utils.motion_residue.compensate_motion_residue`); CBF comes
from the plain pair average with the series' own M0 (:func:`aslproc.utils.cbf.cbf_map`) and is
scored against the true CBF in the brain (GM + WM): PSNR, |GM bias|, and the difference to the
twin. Rows: none (no realignment), realigned, realigned + compensation, and the pipeline's
default (:func:`aslproc.utils.motion.motion_robust_steps`: compensation, the pair test, and
the fill of the voxels that motion left without a usable ΔM). "realigned" includes the
pair-aware subtraction (:mod:`aslproc.utils.pair_subtraction`) unless ``--per-volume``.
With ``--denoise`` the default's series also goes through the denoiser as the pipeline's
denoise node runs it (:func:`aslproc.utils.denoise.denoise_file` with the instability map;
the true brain mask and tissue fractions stand in for the pipeline's own) and is scored
against the default's plain map (#13 target: +3 dB, never below).

Writes ``benchmarks/motion_synth.json`` and ``benchmarks/motion_synth.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

from aslproc import synth
from aslproc.utils.cbf import cbf_map, m0_map, mean_delta_m
from aslproc.utils.motion import correct_motion, motion_robust_steps
from aslproc.utils.motion_residue import compensate_motion_residue
from aslproc.utils.quantify import static_mean, unreliable_and_filled

HERE = Path(__file__).resolve().parent
MOTIONS = {
    'jitter 0.3': dict(jitter_mm=0.3),
    'jitter 1.0': dict(jitter_mm=1.0),
    'jitter 0.3 + drift 1 + 2 jerks': dict(jitter_mm=0.3, drift_mm=1.0, jerks=2),
}
BACKGROUND = {'no BS': dict(bs_pulses=0), 'BS, static 10 %': dict(bs_pulses=4, bs_residual=0.1)}


def score(cbf: np.ndarray, truth: np.ndarray, brain: np.ndarray, gm: np.ndarray) -> dict:
    """PSNR (peak of the truth in the brain) and GM bias (%) of a CBF map."""
    rmse = float(np.sqrt(np.mean((cbf[brain] - truth[brain]) ** 2)))
    return {'psnr': round(float(20 * np.log10(truth[brain].max() / rmse)), 2),
            'gm_bias_pct': round(float(100 * (cbf[gm].mean() / truth[gm].mean() - 1)), 2)}


def series_m0(series: np.ndarray, sim) -> np.ndarray:
    """The M0 map the pipeline takes from a series with M0 volumes included."""
    return m0_map(series, sim.volume_types, dict(
        m0_type='Included', m0_estimate=None, m0_tr=sim.metadata['RepetitionTimePreparation'][0],
        t1_tissue=1.33, m0_scale=1.0))


def plain_cbf(series: np.ndarray, sim, ratio: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """CBF of the plain pair average, with the M0 taken from the series as the pipeline does;
    with ``ratio`` (the instability map) the unreliable voxels are filled as in the pipeline.
    Returns the map and the mask of filled voxels."""
    m0 = series_m0(series, sim)
    cbf = cbf_map(mean_delta_m(series, sim.volume_types), m0, sim.quant_params)
    if ratio is None:
        return cbf, np.zeros(cbf.shape, bool)
    return unreliable_and_filled(cbf, ratio, m0, np.ones(cbf.shape), sim.volume_types,
                                 static_mean(series, sim.volume_types))


def denoised_cbf(series: np.ndarray, sim, ratio: np.ndarray) -> np.ndarray:
    """CBF of the denoiser on a motion-handled series, through the pipeline's file layer."""
    import tempfile

    import nibabel as nib

    from aslproc.utils.denoise import denoise_file

    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key, arr in (('asl', series), ('m0', series_m0(series, sim)),
                         ('mask', sim.truth['seg'] > 0), ('ratio', ratio),
                         ('gm', sim.truth['pvgm']), ('wm', sim.truth['pvwm'])):
            files[key] = f'{tmp}/{key}.nii.gz'
            nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), sim.asl_affine), files[key])
        out, _ = denoise_file(files['asl'], list(sim.volume_types), files['m0'], files['mask'],
                              dict(sim.quant_params), f'{tmp}/cbf.nii.gz', f'{tmp}/dm.nii.gz',
                              device='cpu', gm_file=files['gm'], wm_file=files['wm'],
                              instability_file=files['ratio'])
        return np.asarray(nib.load(out).dataobj, dtype=np.float32)


def run_case(config: synth.SynthConfig, seed: int, denoise: bool = False,
             pair_aware: bool = True) -> dict:
    """One simulated subject and its twin through the three motion treatments."""
    rng_args = [seed, 0]
    sim = synth.simulate_subject(np.random.default_rng(rng_args), config)
    twin = synth.simulate_subject(np.random.default_rng(rng_args),
                                  dataclasses.replace(config, still_twin=True))
    brain = sim.truth['seg'] > 0
    brain &= sim.truth['seg'] < 3
    gm = sim.truth['seg'] == 1
    truth = sim.truth['cbf']
    row = {'twin': score(plain_cbf(twin.asl, twin)[0], truth, brain, gm)}
    row['none'] = score(plain_cbf(sim.asl, sim)[0], truth, brain, gm)
    start = time.perf_counter()
    corrected, params, reference = correct_motion(sim.asl, sim.asl_affine, sim.volume_types,
                                                  pair_aware=pair_aware)
    row['seconds_realign'] = round(time.perf_counter() - start, 1)
    row['realigned'] = score(plain_cbf(corrected, sim)[0], truth, brain, gm)
    start = time.perf_counter()
    head = reference > 0.05 * np.percentile(reference, 99)
    compensated, changed = compensate_motion_residue(corrected, sim.asl_affine,
                                                     sim.volume_types, params, head)
    row['seconds_compensate'] = round(time.perf_counter() - start, 1)
    row['compensated'] = score(plain_cbf(compensated, sim)[0], truth, brain, gm)
    row['compensated_fraction'] = round(float(changed[head].mean()), 3)
    robust, types, ratio, (_, excluded) = motion_robust_steps(
        corrected, sim.asl_affine, sim.volume_types, params, reference)
    filled, unreliable = plain_cbf(robust, dataclasses.replace(sim, volume_types=tuple(types)),
                                   ratio)
    row['filled'] = score(filled, truth, brain, gm)
    row['filled_fraction'] = round(float(unreliable[brain].mean()), 3)
    row['pairs_excluded'] = int(excluded.sum())
    if denoise:
        start = time.perf_counter()
        den = denoised_cbf(robust, dataclasses.replace(sim, volume_types=tuple(types)), ratio)
        row['seconds_denoise'] = round(time.perf_counter() - start, 1)
        row['denoised'] = score(den, truth, brain, gm)
        row['denoised']['vs_plain_db'] = round(row['denoised']['psnr'] - row['filled']['psnr'], 2)
    for key in ('none', 'realigned', 'compensated', 'filled'):
        row[key]['vs_twin_db'] = round(row[key]['psnr'] - row['twin']['psnr'], 2)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seeds', type=int, nargs='+', default=[9101, 9102])
    ap.add_argument('--pairs', type=int, nargs='+', default=[4, 12, 30])
    ap.add_argument('--name', default='motion_synth')
    ap.add_argument('--per-volume', action='store_true',
                    help='realign volume by volume, without the pair-aware subtraction')
    ap.add_argument('--denoise', action='store_true',
                    help="also score the denoiser on the default's series")
    args = ap.parse_args(argv)
    rows = []
    for bg_name, bg in BACKGROUND.items():
        for mo_name, mo in MOTIONS.items():
            for pairs in args.pairs:
                for seed in args.seeds:
                    config = synth.SynthConfig(asl_matrix=(64, 76, 24), n_pairs=pairs, snr=100,
                                               pose=0, lesions=(2, 3), seed=seed, **bg, **mo)
                    row = dict(background=bg_name, motion=mo_name, pairs=pairs, seed=seed,
                               **run_case(config, seed, args.denoise, not args.per_volume))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    meta = {'date': date.today().isoformat(), 'machine': platform.platform(),
            'cpu_count': __import__('os').cpu_count(), 'matrix': [64, 76, 24], 'snr': 100}
    (HERE / f'{args.name}.json').write_text(json.dumps({'meta': meta, 'rows': rows}, indent=1))
    (HERE / f'{args.name}.md').write_text(table(rows, meta))
    return 0


def table(rows: list, meta: dict) -> str:
    """Markdown table, one line per background/motion/pairs, mean over seeds."""
    lines = [f"Motion benchmark on the simulator ({meta['date']}, {meta['machine']}, "
             f"matrix {meta['matrix']}, SNR {meta['snr']}); PSNR of plain CBF in dB, mean over "
             'seeds; Δ = difference to the still twin; bias = max |GM bias| over seeds.', '',
             '| background | motion | pairs | twin | none Δ | realigned Δ | compensated Δ | '
             'compensated max abs GM bias % | + filled Δ (default) | filled max abs GM bias % | '
             'filled % of brain | pairs left out | realign s | compensate s |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    if all('denoised' in r for r in rows):
        lines[-2] += ' denoised Δ plain (min over seeds) | denoised max abs GM bias % |'
        lines[-1] += '---|---|'
    keys = sorted({(r['background'], r['motion'], r['pairs']) for r in rows},
                  key=lambda k: (k[0], k[1], k[2]))
    for key in keys:
        sel = [r for r in rows if (r['background'], r['motion'], r['pairs']) == key]
        def mean(f, sel=sel):
            return np.mean([f(r) for r in sel])

        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {mean(lambda r: r['twin']['psnr']):.2f} | "
            f"{mean(lambda r: r['none']['vs_twin_db']):+.2f} | "
            f"{mean(lambda r: r['realigned']['vs_twin_db']):+.2f} | "
            f"{mean(lambda r: r['compensated']['vs_twin_db']):+.2f} | "
            f"{max(abs(r['compensated']['gm_bias_pct']) for r in sel):.1f} | "
            f"{mean(lambda r: r['filled']['vs_twin_db']):+.2f} | "
            f"{max(abs(r['filled']['gm_bias_pct']) for r in sel):.1f} | "
            f"{mean(lambda r: 100 * r['filled_fraction']):.1f} | "
            f"{sum(r['pairs_excluded'] for r in sel)} | "
            f"{mean(lambda r: r['seconds_realign']):.1f} | "
            f"{mean(lambda r: r['seconds_compensate']):.1f} |"
            + (f" {mean(lambda r: r['denoised']['vs_plain_db']):+.2f} "
               f"({min(r['denoised']['vs_plain_db'] for r in sel):+.2f}) | "
               f"{max(abs(r['denoised']['gm_bias_pct']) for r in sel):.1f} |"
               if all('denoised' in r for r in sel) else ''))
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    raise SystemExit(main())
