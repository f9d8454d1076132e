"""Benchmark inputs for the super-resolution stage, built without the full pipeline.

``public``: plain-average CBF on the ASL grid of the public DRO case (volume 0 is M0 with a
10 s TR, 30 pairs, PCASL PLD 1.8 s, τ 1.8 s, α 0.85, T1 blood 1.65 s), zero where M0 is below
10 % of its maximum (as ``score.py`` masks its own baseline); its T1w is world-aligned with the
ASL, so the transform is the identity. ``synth``: the project's simulator with a 1 mm T1w and
3 or 4 mm ASL voxels, a random head pose (the ASL→T1w transform written from the simulator's
pose), 30 pairs at SNR 100 (as the public case), the plain-average CBF from the noisy
series, and the 1 mm truth.

Each case is a folder with ``cbf.nii.gz`` (ASL grid), ``t1w.nii.gz``, ``xfm.mat`` (ITK,
T1w→ASL points), ``mask.nii.gz`` (T1w grid brain mask: the T1w thresholded inside the
upsampled LR support, no truth used), ``gm.nii.gz``/``wm.nii.gz`` (tissue probabilities by the
pipeline's own brain mask and Atropos segmentation of the T1w, :func:`add_tissue`) and, for
synth, ``truth_*.nii.gz``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from aslproc import kinetics
from aslproc.synth import SynthConfig, simulate_subject
from aslproc.utils import cbf as cbfu
from aslproc.utils.registration import write_xfm

sys.path.insert(0, str(Path(__file__).parent))
from denoise_common import segment_t1w, tissue_fractions  # noqa: E402

logger = logging.getLogger(__name__)

PUBLIC = Path('/work/shared/dro-public')
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _save(data, affine, path):
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    nib.save(img, str(path))
    return path


def _mask_from(t1w, t1_aff, lr, lr_aff, ras_t1_to_asl):
    """A rough T1w-grid brain mask: LR support (resampled) and T1w above 25 % of its p98."""
    m = np.linalg.inv(lr_aff) @ ras_t1_to_asl @ t1_aff
    sup = ndimage.affine_transform((lr != 0).astype(np.float32), m[:3, :3], m[:3, 3],
                                   output_shape=t1w.shape, order=1) > 0.5
    thr = 0.25 * np.percentile(t1w[sup], 98)
    mask = ndimage.binary_opening(sup & (t1w > thr), iterations=1)
    return ndimage.binary_fill_holes(mask).astype(np.uint8)


def add_tissue(case: Path) -> tuple[Path, Path]:
    """GM and WM probabilities of ``case/t1w.nii.gz`` as the pipeline computes them (cached)."""
    return segment_t1w(case / 't1w.nii.gz', case)


def add_denoised(case: Path) -> Path:
    """``cbf_denoised.nii.gz``: the shipped denoiser on the case's series, as the pipeline runs
    it (tissue fractions resampled onto the ASL grid through the case's transform). Cached."""
    from aslproc.utils import denoise as dnu

    out = case / 'cbf_denoised.nii.gz'
    if out.exists():
        return out
    gm, wm = tissue_fractions(case / 't1w.nii.gz', case / 'cbf.nii.gz', case, case / 'xfm.mat')
    meta = json.loads((case / 'asl.json').read_text())
    dnu.denoise_file(case / 'asl.nii.gz', meta['volume_types'], case / 'm0.nii.gz',
                     case / 'masklr.nii.gz', meta['params'], out, case / 'dm_denoised.nii.gz',
                     device='cpu', num_threads=1, gm_file=gm, wm_file=wm)
    return out


def make_public(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    img = nib.load(str(PUBLIC / 'bids/sub-01/perf/sub-01_asl.nii.gz'))
    data = np.asarray(img.dataobj, np.float32)
    types = (PUBLIC / 'bids/sub-01/perf/sub-01_aslcontext.tsv').read_text().split()[1:]
    dm = cbfu.mean_delta_m(data, types)
    m0 = data[..., 0] * kinetics.m0_saturation_correction(10.0, kinetics.t1_tissue(3.0))
    params = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    cbf = cbfu.cbf_map(dm, m0, params, (m0 > 0.1 * m0.max()).astype(np.uint8))
    _save(cbf, img.affine, out / 'cbf.nii.gz')
    t1 = nib.load(str(PUBLIC / 'bids/sub-01/anat/sub-01_T1w.nii.gz'))
    t1w = np.asarray(t1.dataobj, np.float32)
    _save(t1w, t1.affine, out / 't1w.nii.gz')
    write_xfm(np.eye(4), out / 'xfm.mat')
    _save(_mask_from(t1w, t1.affine, cbf, img.affine, np.eye(4)), t1.affine, out / 'mask.nii.gz')
    # the scorer's layout, to run score.py sr on DERIV with --lr-desc plain
    deriv = out / 'deriv' / 'sub-01' / 'perf'
    deriv.mkdir(parents=True, exist_ok=True)
    _save(cbf, img.affine, deriv / 'sub-01_desc-plain_cbf.nii.gz')
    add_tissue(out)
    return out


def make_synth(out: Path, asl_voxel: float, seed: int = 3) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cfg = SynthConfig(t1w_voxel=1.0, asl_voxel=asl_voxel, n_pairs=30, snr=100.0, seed=seed,
                      lesions=(2, 3))
    sim = simulate_subject(np.random.default_rng([seed, 0]), cfg)
    types = sim.volume_types
    dm = cbfu.mean_delta_m(sim.asl, types)
    m0 = cbfu.m0_map(sim.asl, types, dict(m0_type='Included', m0_tr=cfg.m0_tr,
                                          t1_tissue=kinetics.t1_tissue(3.0), m0_scale=1.0))
    mask_lr = (m0 > 0.1 * m0.max()).astype(np.uint8)
    cbf = cbfu.cbf_map(dm, m0, sim.quant_params, mask_lr)
    _save(cbf, sim.asl_affine, out / 'cbf.nii.gz')
    for name, arr in (('asl', sim.asl), ('m0', m0), ('masklr', mask_lr)):
        _save(arr, sim.asl_affine, out / f'{name}.nii.gz')
    (out / 'asl.json').write_text(json.dumps(dict(volume_types=list(types), params={
        k: (np.asarray(v).tolist() if k == 'pld' else v) for k, v in sim.quant_params.items()})))
    _save(sim.t1w, sim.t1w_affine, out / 't1w.nii.gz')
    head = np.linalg.inv(np.asarray(sim.info['asl_to_t1w']))  # T1w→ASL points (RAS)
    write_xfm(_FLIP @ head @ _FLIP, out / 'xfm.mat')
    _save(_mask_from(sim.t1w, sim.t1w_affine, cbf, sim.asl_affine, head), sim.t1w_affine,
          out / 'mask.nii.gz')
    for k in ('cbf', 'seg', 'lesion'):
        _save(sim.hr_truth[k], sim.t1w_affine, out / f'truth_{k}.nii.gz')
    (out / 'info.json').write_text(json.dumps(dict(asl_voxel=asl_voxel, seed=seed,
                                                   pose=sim.info['pose'])))
    add_tissue(out)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('out', type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    make_public(args.out / 'public')
    for v in (3.0, 4.0):
        make_synth(args.out / f'synth{int(v)}mm', v)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
