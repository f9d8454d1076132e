"""Shared helpers of the denoiser benchmarks: subsample a case, make derivatives, score them.

Derivatives are made without the full pipeline (the cases have no motion): plain-average ΔM,
M0 from the m0scan volume (saturation-corrected with its TR), a mask (M0 > 10 % of its
maximum, dilated once), GM/WM fractions from the pipeline's segmentation of the T1w,
then ``sub-01_cbf`` (plain), ``desc-denoised`` (shipped model through
:func:`aslproc.utils.denoise.denoise_file`), ``desc-nlm`` (scikit-image non-local means of
the mean ΔM, sigma from ``estimate_sigma``) and optionally other weight files. Each is scored
by the project-independent ``/work/shared/bench/score.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from aslproc import kinetics
from aslproc.utils import cbf as cbfu
from aslproc.utils import denoise as dnu
from aslproc.utils.quantify import save_like

SCORE = '/work/shared/bench/score.py'


def subsample_case(case: Path, k: int, out: Path, which: set | None = None) -> Path:
    """Copy of ``case`` (bids/ + truth/) with only the M0 volumes and the first ``k`` pairs,
    or the pairs numbered ``which`` (0-based; ``k`` is then ignored) for repeated draws."""
    keep_pair = (lambda i: i < k) if which is None else set(which).__contains__
    bids = out / 'bids'
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(case / 'bids', bids, ignore=shutil.ignore_patterns('*T1w*'))
    os.symlink(case / 'truth', out / 'truth')
    for asl in bids.glob('sub-*/perf/*_asl.nii.gz'):
        ctx_file = Path(str(asl).replace('_asl.nii.gz', '_aslcontext.tsv'))
        types = ctx_file.read_text().split()[1:]
        keep, n = [], {'control': 0, 'label': 0}
        for i, t in enumerate(types):
            if t in n:
                n[t] += 1
                if not keep_pair(n[t] - 1):
                    continue
            keep.append(i)
        img = nib.load(str(asl))
        data = np.asarray(img.dataobj)[..., keep]
        nib.save(nib.Nifti1Image(data, img.affine, img.header), str(asl))
        ctx_file.write_text('\n'.join(['volume_type'] + [types[i] for i in keep]) + '\n')
        side = Path(str(asl).replace('.nii.gz', '.json'))
        meta = json.loads(side.read_text())
        if isinstance(meta.get('RepetitionTimePreparation'), list):
            meta['RepetitionTimePreparation'] = [meta['RepetitionTimePreparation'][i]
                                                 for i in keep]
        meta['TotalAcquiredPairs'] = sum(types[i] == 'label' for i in keep)
        side.write_text(json.dumps(meta, indent=2))
    return out


def quant_params(meta: dict) -> dict:
    """quantify parameters from an asl.json (as AslSpec would give, no BS here)."""
    label = meta['ArterialSpinLabelingType']
    bs = kinetics.background_suppression_factor(meta.get('BackgroundSuppressionNumberPulses'))
    alpha = meta.get('LabelingEfficiency', kinetics.LABELING_EFFICIENCY[label]) * bs
    pld = meta['PostLabelingDelay']
    if meta.get('SliceTiming'):
        pld = (pld + np.asarray(meta['SliceTiming'])).tolist()
    return dict(label_type=label, pld=pld, tau=meta.get('LabelingDuration', 1.8),
                ti1=meta.get('BolusCutOffDelayTime', 0.8),
                t1_blood=kinetics.t1_blood(meta.get('MagneticFieldStrength')), alpha=alpha,
                lam=kinetics.BLOOD_BRAIN_PARTITION)


def segment_t1w(t1w: Path, out: Path) -> tuple[Path, Path]:
    """GM and WM probabilities on the T1w grid by the pipeline's own brain mask and Atropos
    segmentation (:mod:`aslproc.utils.anat`), cached as ``out/gm.nii.gz``, ``out/wm.nii.gz``."""
    from aslproc.utils import anat

    out.mkdir(parents=True, exist_ok=True)
    gm, wm = out / 'gm.nii.gz', out / 'wm.nii.gz'
    if not (gm.exists() and wm.exists()):
        mask = anat.brain_mask(t1w, out / 'brainmask.nii.gz', num_threads=2)
        anat.segment_tissues(t1w, mask, gm, wm, out / 'csf.nii.gz', num_threads=2)
    return gm, wm


def tissue_fractions(t1w: Path, asl_ref: Path, out: Path, xfm: Path | None = None
                     ) -> tuple[str, str]:
    """GM and WM fractions on the ASL grid by the pipeline's anatomical path, cached in ``out``.

    :func:`segment_t1w`, then the pipeline's resampling onto the grid of ``asl_ref`` (3D, or
    4D: its first volume) through the ASL → T1w transform ``xfm``; identity by default (cases
    without motion that share world coordinates).
    """
    from aslproc.utils import registration

    files = {n: out / f'{n}_asl.nii.gz' for n in ('gm', 'wm')}
    if all(f.exists() for f in files.values()):
        return str(files['gm']), str(files['wm'])
    probs = segment_t1w(t1w, out)
    ref = out / 'asl_ref.nii.gz'
    img = nib.load(str(asl_ref))
    data = np.asarray(img.dataobj, np.float32)
    nib.save(nib.Nifti1Image(data[..., 0] if data.ndim == 4 else data, img.affine), str(ref))
    xfm = xfm or registration.write_xfm(np.eye(4), out / 'identity.mat')
    for name, prob in zip(('gm', 'wm'), probs, strict=True):
        registration.resample_to_asl(prob, ref, xfm, files[name])
    return str(files['gm']), str(files['wm'])


def make_derivatives(case: Path, deriv: Path, weights: dict, nlm: bool = True,
                     tissue: tuple | None = None) -> dict:
    """Write plain, NLM and one ``desc-<name>`` CBF per entry of ``weights`` (name → weight
    file, or a dict of :func:`aslproc.utils.denoise.denoise_file` options).

    ``tissue`` (GM, WM fraction files on the ASL grid, :func:`tissue_fractions`) is passed to
    the denoiser as in the pipeline: models with tissue-model inputs need it, and it turns on
    the tissue-mean restoration and the adaptive partial-volume regression (an entry's
    ``{'tissue_refine': False}`` turns the latter off).
    """
    from aslproc.models import infer

    perf = case / 'bids' / 'sub-01' / 'perf'
    out = deriv / 'sub-01' / 'perf'
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((perf / 'sub-01_asl.json').read_text())
    types = (perf / 'sub-01_aslcontext.tsv').read_text().split()[1:]
    img = nib.load(str(perf / 'sub-01_asl.nii.gz'))
    data = np.asarray(img.dataobj, dtype=np.float32)
    m0i = cbfu.volume_indices(types, 'm0scan')
    tr = meta['RepetitionTimePreparation']
    tr = tr[m0i[0]] if isinstance(tr, list) else tr
    m0 = data[..., m0i].mean(-1) * kinetics.m0_saturation_correction(tr, kinetics.t1_tissue(
        meta.get('MagneticFieldStrength')))
    mask = ndimage.binary_dilation(m0 > 0.1 * m0.max()).astype(np.float32)
    params = quant_params(meta)
    n_sl = data.shape[2]
    qp = dict(params, pld=np.asarray(params['pld']).reshape(1, 1, -1)
              if np.ndim(params['pld']) else params['pld'])
    files = {n: str(out / f'sub-01_{n}.nii.gz') for n in ('m0', 'mask')}
    save_like(m0, img, files['m0'])
    save_like(mask, img, files['mask'])
    pairs = cbfu.pairwise_delta_m(data, types)
    save_like(cbfu.cbf_map(pairs.mean(-1), m0, qp, mask), img, out / 'sub-01_cbf.nii.gz')
    timing = {}
    asl = str(perf / 'sub-01_asl.nii.gz')
    for name, wfile in weights.items():
        import time
        opts = dict(wfile) if isinstance(wfile, dict) else {'weights': wfile}
        t0 = time.perf_counter()
        dnu.denoise_file(asl, types, files['m0'], files['mask'], params,
                         out / f'sub-01_desc-{name}_cbf.nii.gz',
                         deriv / f'{name}_deltam.nii.gz', device='cpu', num_threads=1,
                         gm_file=tissue and tissue[0], wm_file=tissue and tissue[1],
                         **opts)
        timing[name] = time.perf_counter() - t0
    if nlm:
        from skimage.restoration import denoise_nl_means, estimate_sigma
        to_x = dnu.to_normalised(qp, m0, mask, n_sl)
        dm = pairs.mean(-1) * to_x
        sigma = float(estimate_sigma(dm))
        den = denoise_nl_means(dm, patch_size=3, patch_distance=5, h=0.8 * sigma,
                               sigma=sigma, fast_mode=True)
        den = den / to_x
        save_like(cbfu.cbf_map(np.float32(den), m0, qp, mask), img,
                  out / 'sub-01_desc-nlm_cbf.nii.gz')
    del infer
    return timing


def score(case: Path, deriv: Path, desc: str) -> dict:
    """Run score.py and return its first subject row merged with the summary."""
    res = subprocess.run([sys.executable, SCORE, 'cbf', str(case), str(deriv), '--desc', desc],
                         capture_output=True, text=True, check=False)
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith('{')]
    if not lines:
        raise RuntimeError(res.stderr)
    row, summ = lines[0], lines[-1]['summary']
    les = {k: v for k, v in row.items() if k.startswith('lesion_')}
    return dict(psnr=summ['psnr'], rmse=summ['rmse'], ccc=summ['ccc'],
                gm_bias_pct=row['gm_bias_pct'], average_psnr=summ['average_psnr'],
                average_ccc=summ['average_ccc'], gauss_psnr=summ['gauss_psnr'],
                gauss_ccc=summ['gauss_ccc'], gauss_fwhm=row['gauss_oracle']['fwhm'],
                own_average_psnr=summ.get('own_average_psnr'),
                own_gauss_psnr=summ.get('own_gauss_oracle_psnr'), **les)


def markdown(rows: list, title: str) -> str:
    """A markdown table of benchmark rows (one per case, pair count and method)."""
    cols = ['case', 'pairs', 'method', 'psnr', 'rmse', 'ccc', 'gm_bias_pct',
            'lesion_hypo_err_pct', 'lesion_hyper_err_pct', 'average_psnr', 'gauss_psnr']
    out = [f'### {title}', '', '| ' + ' | '.join(cols) + ' |',
           '|' + '---|' * len(cols)]
    for r in rows:
        out.append('| ' + ' | '.join(str(r.get(c, '')) for c in cols) + ' |')
    return '\n'.join(out) + '\n'


def lesion_contrasts(case: Path, map_file: Path, min_diameter_mm: float = 8.0,
                     shell_mm: float = 10.0) -> list[dict]:
    """Per-lesion contrast error of a native-grid CBF map (issue 12's definition).

    Contrast = mean CBF of the lesion's GM voxels over the mean of the GM within
    ``shell_mm`` around it (outside every lesion), in the map and in score.py's reference
    (white-paper CBF of the noise-free twin); error = map / reference − 1, in %. Lesions come
    from ``truth/sub-01_hrlesionid`` (the simulator: one id per lesion, diameter from
    params.json) or ``truth/sub-01_gtlesion`` (the public lesion case: 1 hypo, 2 hyper, 12 mm);
    those smaller than ``min_diameter_mm`` are skipped.
    """
    sys.path.insert(0, str(Path(SCORE).parent))
    import score as sc  # noqa: PLC0415 - the independent scorer's own reference

    truth = case / 'truth'
    meta = json.loads((case / 'bids/sub-01/perf/sub-01_asl.json').read_text())
    ref = sc.wp_cbf(nib.load(str(truth / 'sub-01_cleandm.nii.gz')).get_fdata(),
                    nib.load(str(truth / 'sub-01_cleanm0.nii.gz')).get_fdata(), meta)
    grid = nib.load(str(truth / 'sub-01_cleandm.nii.gz'))
    seg = nib.load(str(truth / 'sub-01_seg.nii.gz')).get_fdata()
    m0 = nib.load(str(truth / 'sub-01_cleanm0.nii.gz')).get_fdata()
    gm = (seg == 1) & (m0 > 0.1 * m0.max())
    x = np.asarray(nib.load(str(map_file)).dataobj, dtype=np.float64)
    ids_file = truth / 'sub-01_hrlesionid.nii.gz'
    if ids_file.exists():
        params = json.loads((truth / 'params.json').read_text())
        info = next(iter(params['subjects'].values()))['lesions']
        sizes = {k + 1: (les['kind'], 2 * les['radius_mm'], les.get('border', False))
                 for k, les in enumerate(info)}
    else:
        ids_file = truth / 'sub-01_gtlesion.nii.gz'
        sizes = {1: ('hypo', 12.0, False), 2: ('hyper', 12.0, False)}
        if not ids_file.exists():  # a case without lesions (dro-public)
            return []
    lab_img = nib.load(str(ids_file))
    ids = sc.resample_to(np.asarray(lab_img.dataobj, np.float64), lab_img.affine, ref.shape,
                         grid.affine, 0).round().astype(int)
    vox = np.sqrt((grid.affine[:3, :3] ** 2).sum(0))
    out = []
    for k, (kind, diameter, border) in sizes.items():
        roi = gm & (ids == k)
        if diameter < min_diameter_mm or roi.sum() < 3:
            continue
        dist = ndimage.distance_transform_edt(ids != k, sampling=vox)
        shell = gm & (ids == 0) & (dist <= shell_mm)
        if shell.sum() < 3:
            continue
        cx, cr = x[roi].mean() / x[shell].mean(), ref[roi].mean() / ref[shell].mean()
        out.append({'lesion': k, 'kind': kind, 'diameter_mm': round(diameter, 1),
                    'border': border, 'voxels': int(roi.sum()), 'ref_contrast': round(cr, 3),
                    'contrast': round(cx, 3), 'err_pct': round(100 * (cx / cr - 1), 1)})
    return out
