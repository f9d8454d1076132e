#!/usr/bin/env python3
"""Lesion contrast over repeated draws of k pairs: how much of a map's lesion error is bias
(perfusion the stage removed) and how much is the noise that no estimator can remove.

    .venv/bin/python benchmarks/lesion_repeats.py [--pairs 2 4 8] [--draws 12] [--adapt STEPS]
        [--extra NAME=WEIGHTS ...] [--cases ...] [--no-dro] [--name lesion_repeats]
    .venv/bin/python benchmarks/lesion_repeats.py --from-json benchmarks/lesion_repeats.json

The lesion benchmark (``lesion_synth.py``) scores one draw of noise per row: the first k
pairs. Its per-lesion contrast errors at 2-8 pairs mix two things, which this benchmark
separates by drawing ``--draws`` random sets of k pairs (without replacement, seeded) from
each case and making every map from each draw exactly as ``lesion_synth.py`` does:

* the **mean error** over the draws is the map's *bias*: what a stage systematically adds or
  removes (a denoiser that fills lesions in has a mean error toward −100 % of the contrast
  departure);
* the **SD** over the draws is its noise. The plain map's SD is a floor: its lesion ROI mean
  is an unbiased estimate, and with white noise and the ROI known (the benchmark knows it,
  a denoiser does not) no unbiased estimate of the ROI mean has lower variance, while a
  biased one buys its lower variance by pulling the lesion toward its surround.

Cases: the three simulator cases of ``lesion_synth.py`` (30 pairs each) and
``../shared/dro-lesion`` (12 pairs; with k = 8 its draws overlap heavily, so its SD is an
underestimate). Writes ``benchmarks/<name>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from denoise_common import (  # noqa: E402
    lesion_contrasts,
    make_derivatives,
    subsample_case,
    tissue_fractions,
)
from lesion_synth import CASES, SHARED, denoiser_maps, extra_maps, simulate  # noqa: E402

from aslproc.models import infer  # noqa: E402

#: Within this contrast error (%) a lesion counts as kept (issue 12's target).
TARGET_PCT = 15.0


def draws(case: Path, name: str, n_all: int, k: int, n_draws: int, tmp: Path, weights: dict,
          tissue: tuple) -> dict:
    """Per-lesion contrast errors of every map over ``n_draws`` random sets of ``k`` pairs:
    {map: {lesion id: [err %, ...]}} and the lesions' descriptions."""
    errs: dict = {}
    lesions: dict = {}
    for r in range(n_draws):
        rng = np.random.default_rng([9300, k, r])
        which = {int(i) for i in rng.choice(n_all, size=k, replace=False)}
        sub = subsample_case(case, k, tmp / f'{name}-{k}', which=which)
        deriv = tmp / f'{name}-deriv{k}-{r}'
        make_derivatives(sub, deriv, weights, nlm=False, tissue=tissue)
        extra_maps(deriv, tissue)
        for desc in ('plain', 'smoothed', *weights):
            for les in lesion_contrasts(
                    sub, deriv / 'sub-01' / 'perf' / f'sub-01_desc-{desc}_cbf.nii.gz'):
                errs.setdefault(desc, {}).setdefault(les['lesion'], []).append(les['err_pct'])
                lesions[les['lesion']] = {key: les[key] for key in
                                          ('kind', 'diameter_mm', 'border', 'voxels',
                                           'ref_contrast')}
        print(json.dumps({'case': name, 'pairs': k, 'draw': r, 'pairs_used': sorted(which),
                          **{d: {str(i): e[-1] for i, e in v.items()} for d, v in errs.items()}}),
              flush=True)
    return {'errors': errs, 'lesions': lesions}


def summarise(name: str, k: int, res: dict) -> list:
    """One row per lesion and map: mean error (bias), SD (noise), share of draws within the
    target, and the plain map's SD beside it (the floor)."""
    rows = []
    for lid, info in sorted(res['lesions'].items()):
        floor = float(np.std(res['errors']['plain'][lid], ddof=1))
        for desc, per in res['errors'].items():
            e = np.asarray(per[lid], float)
            rows.append({'case': name, 'pairs': k, 'lesion': lid, **info, 'map': desc,
                         'mean_err_pct': round(float(e.mean()), 1),
                         'sd_err_pct': round(float(e.std(ddof=1)), 1),
                         'rms_err_pct': round(float(np.sqrt((e ** 2).mean())), 1),
                         'within_target': round(float((np.abs(e) <= TARGET_PCT).mean()), 2),
                         'plain_sd_pct': round(floor, 1), 'draws': int(e.size)})
    return rows


def table(rows: list, result: dict) -> str:
    """Markdown: per case, pairs and lesion, each map's mean ± SD and its share within 15 %."""
    maps = list(dict.fromkeys(r['map'] for r in rows))
    head = ' | '.join(f'{m} mean ± SD (≤15 %)' for m in maps)
    lines = [f"Lesion contrast error over {result['draws']} random draws of k pairs "
             f"({result['date']}, {result['machine']}, model {result['model']}). Mean = bias, "
             'SD = noise; the plain map\'s SD is the floor of an unbiased estimate.', '',
             f'| case | pairs | lesion | true ratio | {head} |',
             '|---|---|---|---|' + '---|' * len(maps)]
    key = lambda r: (r['case'], r['pairs'], r['lesion'])  # noqa: E731
    for group in dict.fromkeys(key(r) for r in rows):
        sel = {r['map']: r for r in rows if key(r) == group}
        first = next(iter(sel.values()))
        cells = ' | '.join(
            f"{sel[m]['mean_err_pct']:+.0f} ± {sel[m]['sd_err_pct']:.0f} "
            f"({100 * sel[m]['within_target']:.0f} %)" if m in sel else '' for m in maps)
        border = ', border' if first['border'] else ''
        lines.append(f"| {group[0]} | {group[1]} | {group[2]} {first['kind']} "
                     f"{first['diameter_mm']:.0f} mm{border}, {first['voxels']} vox | "
                     f"{first['ref_contrast']:.2f} | {cells} |")
    return '\n'.join(lines) + '\n'


#: A lesion is *measurable* at k pairs when the plain map's SD over the draws is within this
#: (%): only there can a bias of the target's size be told from the noise.
MEASURABLE_SD_PCT = TARGET_PCT


def summary(rows: list) -> str:
    """Markdown: per map and pair count, over the measurable lesions, the mean |bias|, the
    lesions with |bias| over the target, and the mean RMS error beside the plain map's."""
    maps = list(dict.fromkeys(r['map'] for r in rows))
    lines = [f'Measurable lesions: plain SD ≤ {MEASURABLE_SD_PCT:.0f} %. "RMS worse": lesions '
             'whose RMS error over the draws exceeds the plain map\'s (all lesions).', '',
             '| map | pairs | measurable | mean abs bias % | bias > 15 % | mean RMS % '
             '(all lesions) | RMS worse than plain |', '|---|---|---|---|---|---|---|']
    for m in maps:
        for k in sorted({r['pairs'] for r in rows}):
            sel = [r for r in rows if r['map'] == m and r['pairs'] == k]
            plain = {(r['case'], r['lesion']): r['rms_err_pct'] for r in rows
                     if r['map'] == 'plain' and r['pairs'] == k}
            meas = [r for r in sel if r['plain_sd_pct'] <= MEASURABLE_SD_PCT]
            worse = sum(r['rms_err_pct'] > plain[(r['case'], r['lesion'])] for r in sel)
            bias = [abs(r['mean_err_pct']) for r in meas]
            lines.append(f"| {m} | {k} | {len(meas)} of {len(sel)} | {np.mean(bias):.1f} | "
                         f"{sum(b > TARGET_PCT for b in bias)} | "
                         f"{np.mean([r['rms_err_pct'] for r in sel]):.1f} | {worse} |")
    return '\n'.join(lines) + '\n'


#: Definition (a) of the lesion target counts only lesions whose plain SD is within this (%):
#: there one draw of the unbiased plain map is within the target in about 95 % of draws.
SINGLE_DRAW_SD_PCT = TARGET_PCT / 2


def definitions(rows: list) -> str:
    """Markdown: each map and pair count against the three readings of the 15 % lesion
    target that the closing decision of issue 12 has to choose between.

    (a) one draw: cells (lesion × draw) beyond the target, on lesions whose plain SD is
    ≤ :data:`SINGLE_DRAW_SD_PCT`; (b) bias: measurable lesions (plain SD ≤
    :data:`MEASURABLE_SD_PCT`) whose mean error over the draws is beyond the target;
    (c) (b), and also the measurable lesions whose RMS error exceeds the plain map's. (b)
    and (c) are met at a count of 0; (a) at no more cells than the plain map's own (about
    5 % of them: its noise alone).
    """
    maps = list(dict.fromkeys(r['map'] for r in rows))
    lines = ['The 15 % lesion target read three ways (counts of failures). '
             f'(a) one draw, lesions with plain SD ≤ {SINGLE_DRAW_SD_PCT:.1f} %: '
             'lesion-draw cells beyond 15 %; (b) measurable lesions (plain SD ≤ '
             f'{MEASURABLE_SD_PCT:.0f} %) with |bias| > 15 %; (c) (b) plus measurable lesions '
             "whose RMS error exceeds the plain map's. (b) and (c) are met at 0, (a) at no "
             "more cells than the plain map's (its own noise).", '',
             '| map | pairs | (a) cells over 15 % | (b) biased lesions | (c) (b) + RMS worse '
             '| met |', '|---|---|---|---|---|---|']

    def cells_over(sel):
        single = [r for r in sel if r['plain_sd_pct'] <= SINGLE_DRAW_SD_PCT]
        return (sum(round((1 - r['within_target']) * r['draws']) for r in single),
                sum(r['draws'] for r in single))

    pair_counts = sorted({r['pairs'] for r in rows})
    plain_rows = {k: [r for r in rows if r['map'] == 'plain' and r['pairs'] == k]
                  for k in pair_counts}
    for m in maps:
        for k in pair_counts:
            plain = {(r['case'], r['lesion']): r['rms_err_pct'] for r in plain_rows[k]}
            floor, _ = cells_over(plain_rows[k])
            sel = [r for r in rows if r['map'] == m and r['pairs'] == k]
            over, cells = cells_over(sel)
            meas = [r for r in sel if r['plain_sd_pct'] <= MEASURABLE_SD_PCT]
            biased = sum(abs(r['mean_err_pct']) > TARGET_PCT for r in meas)
            worse = sum(abs(r['mean_err_pct']) > TARGET_PCT
                        or r['rms_err_pct'] > plain[(r['case'], r['lesion'])] for r in meas)
            met = ', '.join(name for name, ok in (('a', over <= floor), ('b', biased == 0),
                                                  ('c', worse == 0)) if ok) or 'none'
            lines.append(f'| {m} | {k} | {over} of {cells} | {biased} of {len(meas)} | '
                         f'{worse} of {len(meas)} | {met} |')
    return '\n'.join(lines) + '\n'


def render(rows: list, result: dict) -> str:
    """The benchmark's markdown: the per-lesion table, the summary and the three readings."""
    return table(rows, result) + '\n' + summary(rows) + '\n' + definitions(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pairs', type=int, nargs='+', default=[2, 4, 8])
    p.add_argument('--draws', type=int, default=12)
    p.add_argument('--adapt', type=int, default=0, metavar='STEPS',
                   help='also the opt-in per-scan adaptation, as map "adapted"')
    p.add_argument('--extra', nargs='*', default=[], help='NAME=WEIGHTS extra models')
    p.add_argument('--cases', nargs='*', default=list(CASES), help='simulator cases to run')
    p.add_argument('--no-dro', action='store_true', help='skip ../shared/dro-lesion')
    p.add_argument('--name', default='lesion_repeats', help='output file stem in benchmarks/')
    p.add_argument('--from-json', type=Path, default=None,
                   help='only re-render the tables of an earlier run\'s JSON')
    args = p.parse_args(argv)
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
        rows = result['rows']
        args.from_json.with_suffix('.md').write_text(render(rows, result))
        print(summary(rows) + '\n' + definitions(rows))
        return 0
    weights = denoiser_maps(args.extra, args.adapt)
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        jobs = [(simulate(c, tmp / c), c, 30) for c in args.cases]
        if not args.no_dro:
            jobs.append((SHARED / 'dro-lesion', 'dro-lesion', 12))
        for full, cname, n_all in jobs:
            tissue = tissue_fractions(full / 'bids/sub-01/anat/sub-01_T1w.nii.gz',
                                      full / 'bids/sub-01/perf/sub-01_asl.nii.gz',
                                      tmp / f'{cname}-tissue')
            for k in args.pairs:
                res = draws(full, cname, n_all, k, args.draws, tmp, weights, tissue)
                rows += summarise(cname, k, res)
    _, info = infer.load_denoiser()
    result = {'date': datetime.date.today().isoformat(), 'machine': platform.platform(),
              'model': info['name'], 'sha256': info['sha256'], 'draws': args.draws,
              'target_pct': TARGET_PCT, 'rows': rows}
    (HERE / f'{args.name}.json').write_text(json.dumps(result, indent=1) + '\n')
    md = render(rows, result)
    (HERE / f'{args.name}.md').write_text(md)
    print(md)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
