"""Argument parsing: ``_build_parser`` defines options, ``parse_args`` checks them together."""

from __future__ import annotations

import argparse
import os
from functools import partial
from pathlib import Path

from aslproc import __version__
from aslproc.cli.settings import Settings


def _path_exists(path, parser):
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise parser.error(f'path does not exist: <{p}>')
    return p


def _positive_int(value, parser):
    try:
        n = int(value)
    except ValueError:
        raise parser.error(f'not an integer: {value!r}') from None
    if n < 1:
        raise parser.error(f'expected a positive integer, got {n}')
    return n


def _nonneg_float(value, parser):
    try:
        x = float(value)
    except ValueError:
        raise parser.error(f'not a number: {value!r}') from None
    if not x >= 0 or x == float('inf'):
        raise parser.error(f'expected a finite number >= 0, got {value}')
    return x


def _nonneg_int(value, parser):
    n = _positive_int(value, parser) if str(value).strip() != '0' else 0
    return n


def _positive_float(value, parser):
    x = _nonneg_float(value, parser)
    if x == 0:
        raise parser.error('expected a number > 0, got 0')
    return x


def _build_parser() -> argparse.ArgumentParser:
    """The aslproc argument parser (BIDS-Apps positional order)."""
    parser = argparse.ArgumentParser(
        prog='aslproc',
        description='aslproc: ASL perfusion MRI preprocessing, CBF quantification, learned '
        'denoising and super-resolution, as a BIDS App.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    exists = partial(_path_exists, parser=parser)
    pos_int = partial(_positive_int, parser=parser)
    nonneg = partial(_nonneg_float, parser=parser)
    positive = partial(_positive_float, parser=parser)
    nonneg_int = partial(_nonneg_int, parser=parser)

    parser.add_argument('bids_dir', type=exists,
                        help='root of the input BIDS dataset (ASL, M0 and T1w images)')
    parser.add_argument('output_dir', type=Path,
                        help='where the BIDS-derivative outputs and reports are written')
    parser.add_argument('analysis_level', choices=['participant', 'group'],
                        help='"participant" processes subjects; "group" summarises their QC')
    parser.add_argument('--version', action='version', version=f'aslproc {__version__}')

    g = parser.add_argument_group('Selecting data')
    g.add_argument('--participant-label', '--participant_label', nargs='+', default=[],
                   metavar='LABEL',
                   help='subjects to process (with or without "sub-"); default: all')
    g.add_argument('--skip-bids-validation', '--skip_bids_validation', action='store_true',
                   help='do not run the BIDS validator on the input first')

    g = parser.add_argument_group('Resources')
    g.add_argument('-w', '--work-dir', type=Path, default=Path('work'),
                   help='nipype working directory (cache: a re-run reuses finished steps)')
    g.add_argument('--nprocs', '--n-cpus', type=pos_int, default=os.cpu_count() or 1,
                   help='maximum number of processes run at once')
    g.add_argument('--omp-nthreads', type=pos_int, default=None,
                   help='threads per process for ANTs and torch (default: min(nprocs, 8))')
    g.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto',
                   help='where the learned stages run; auto uses CUDA when available')

    g = parser.add_argument_group('Quantification')
    g.add_argument('--m0-scale', type=positive, default=1.0,
                   help='multiply the M0 by this factor (e.g. a receive-gain difference)')
    g.add_argument('--t1-blood', type=positive, default=None,
                   help='T1 of arterial blood in s (default from MagneticFieldStrength: '
                   '1.65 s at 3 T, 1.35 s at 1.5 T)')
    g.add_argument('--motion-compensation', action=argparse.BooleanOptionalAction, default=True,
                   help='after realignment, regress each voxel\'s control/label series on its '
                   'own displacement and remove the motion residue where it is significant '
                   '(p < 0.01), leave out pairs whose ΔM departs from the others across the '
                   'brain (listed in the confounds TSV), and fill the CBF of voxels that motion '
                   'left far noisier than the brain from the reliable voxels around them '
                   '(motion_filled_pct in the QC TSV); off: subtract the realigned volumes as '
                   'they are. A series in which nothing moved is never changed')
    g.add_argument('--pvc', action='store_true',
                   help='also write partial-volume corrected GM and WM CBF (desc-pvcGM_cbf, '
                   'desc-pvcWM_cbf): local linear regression of the plain CBF on the GM/WM '
                   'fractions (Asllani et al. 2008), as BASIL and ExploreASL offer. A tissue-'
                   'class model: a focal lesion is spread over the kernel (see the README)')
    g.add_argument('--smooth-fwhm', type=nonneg, default=5.0,
                   help='FWHM in mm of the Gaussian kernel of the smoothed CBF (0: none)')
    g.add_argument('--att-smooth', type=nonneg, default=8.0, metavar='MM',
                   help='multi-delay series: SD in mm of the in-brain Gaussian smoothing of ΔM '
                   'that the arterial transit time is fitted to; each voxel\'s CBF is then '
                   'fitted to its own data at that time (0: fit both to the voxel alone, '
                   'noisy at clinical SNR)')

    g = parser.add_argument_group('Learned stages')
    g.add_argument('--denoise', action=argparse.BooleanOptionalAction, default=True,
                   help='write desc-denoised_cbf with the shipped CNN denoiser')
    g.add_argument('--denoise-pv', action=argparse.BooleanOptionalAction, default=False,
                   help='opt-in tissue model inside desc-denoised: after the CNN, replace its '
                   'output by a local partial-volume (GM/WM) fit of the plain average wherever '
                   'the two agree (3-12 mm windows). Better on flat-tissue phantoms, but it '
                   'fills in part of a focal deficit; off by default')
    g.add_argument('--denoise-adapt', type=nonneg_int, default=0, metavar='STEPS',
                   help='opt-in: fine-tune the denoiser on the scan itself for STEPS steps '
                   '(Noise2Noise between random halves of its pairs; about 1 s a step on one '
                   'CPU thread at 64x76x24; 100 is a good value). Removes more noise, '
                   'especially after motion, but smooths focal lesions more; needs 4 pairs '
                   '(default: 0, off)')
    g.add_argument('--lesion-guard', type=nonneg, default=10.0, metavar='MM',
                   help='scale (mm FWHM) of the lesion guard: what the denoiser removed at '
                   'this scale beyond one noise SD of the scan is restored from the plain '
                   'average (default: 10; 0 turns it off)')
    g.add_argument('--sr', action=argparse.BooleanOptionalAction, default=True,
                   help='write space-T1w_desc-sr_cbf with the per-subject super-resolution')
    g.add_argument('--sr-iters', type=nonneg_int, default=None,
                   help='GAN iterations per pyramid level of the super-resolution (default: '
                   'the published 2000 on a CUDA GPU; 0 on the CPU, i.e. the T1w-guided '
                   'detail layer without the GAN; about 40 takes 1-3 min on a CPU)')
    g.add_argument('--sr-levels', type=pos_int, default=None,
                   help='number of pyramid levels from the ASL grid to the T1w grid (default: '
                   'from the resolution ratio, scale factor about 0.75 per level)')
    g.add_argument('--sr-baseline', action='store_true',
                   help='also write linear and cubic-spline resampling of the CBF to the T1w '
                   'grid (space-T1w_desc-srlinear_cbf, desc-srcubic), for comparison')

    g = parser.add_argument_group('Standard space and regions')
    g.add_argument('--output-spaces', nargs='+', default=None, metavar='SPACE',
                   help='spaces of the CBF maps, fMRIPrep style: asl (the ASL grid, always '
                   'written), T1w (the T1w grid), MNI152NLin2009aSym[:res-1|:res-2] (the ICBM '
                   '2009a symmetric template nilearn ships; no res means res-2). A template '
                   'space normalizes the T1w and writes the regional CBF table (default: asl '
                   'MNI152NLin2009aSym:res-2)')
    g.add_argument('--skip-normalization', action='store_true',
                   help='no spatial normalization: drops the template from the default output '
                   'spaces (no template-space maps, no regional table)')
    g.add_argument('--atlas', type=exists, default=None, metavar='FILE.nii.gz',
                   help='label image in MNI152NLin2009aSym space for the regional CBF table '
                   '(default: the Seitzman 2018 300 spheres shipped with nilearn); needs '
                   '--atlas-labels')
    g.add_argument('--atlas-labels', type=exists, default=None, metavar='FILE.tsv',
                   help='tab-separated label table of --atlas with columns index and name '
                   '(BIDS dseg.tsv); every label of the image must be listed and every row '
                   'must occur in the image')

    g = parser.add_argument_group('Other')
    g.add_argument('-v', '--verbose', action='count', default=0,
                   help='more log output (-v: info, -vv: debug)')
    return parser


def parse_args(argv=None) -> Settings:
    """Parse and cross-check the command line; a bad combination exits with status 2."""
    parser = _build_parser()
    opts = parser.parse_args(argv)
    bids_dir = opts.bids_dir
    out = opts.output_dir.expanduser().absolute()
    work = opts.work_dir.expanduser().absolute()
    if out == bids_dir:
        parser.error('the output directory must not be the input BIDS directory')
    if _inside(work, bids_dir):
        parser.error(f'the work directory <{work}> must not be inside the input dataset')
    if not (bids_dir / 'dataset_description.json').exists():
        parser.error(f'<{bids_dir}> is not a BIDS dataset: no dataset_description.json')
    labels = tuple(lbl[4:] if lbl.startswith('sub-') else lbl for lbl in opts.participant_label)
    spaces = _output_spaces(opts, parser)
    nthreads = opts.omp_nthreads or min(opts.nprocs, 8)
    return Settings(
        bids_dir=bids_dir, output_dir=out, analysis_level=opts.analysis_level,
        participant_label=labels, work_dir=work, nprocs=opts.nprocs,
        omp_nthreads=min(nthreads, opts.nprocs), skip_bids_validation=opts.skip_bids_validation,
        m0_scale=opts.m0_scale, t1_blood=opts.t1_blood, smooth_fwhm=opts.smooth_fwhm,
        motion_compensation=opts.motion_compensation, pvc=opts.pvc,
        device=opts.device, denoise=opts.denoise, denoise_pv=opts.denoise_pv,
        denoise_adapt=opts.denoise_adapt, lesion_guard=opts.lesion_guard, sr=opts.sr,
        sr_iters=opts.sr_iters, sr_levels=opts.sr_levels, sr_baseline=opts.sr_baseline,
        verbose=opts.verbose, att_smooth=opts.att_smooth, output_spaces=spaces,
        atlas=opts.atlas, atlas_labels=opts.atlas_labels,
    )


def _output_spaces(opts, parser) -> tuple:
    """The checked ``--output-spaces`` (strings), with ``--skip-normalization`` and the
    atlas options checked against them; exits through ``parser.error``."""
    from aslproc.utils.atlas import AtlasError, check_atlas
    from aslproc.utils.template import DEFAULT_SPACES, SpaceError, parse_spaces

    try:
        spaces = parse_spaces(opts.output_spaces or DEFAULT_SPACES)
    except SpaceError as err:
        parser.error(f'--output-spaces: {err}')
    if opts.skip_normalization:
        if opts.output_spaces and any(s.is_template for s in spaces):
            parser.error('--skip-normalization contradicts the template space in '
                         '--output-spaces; drop one of them')
        spaces = tuple(s for s in spaces if not s.is_template)
    if bool(opts.atlas) != bool(opts.atlas_labels):
        parser.error('--atlas and --atlas-labels go together: the label image and its table '
                     '(index and name columns)')
    if opts.atlas:
        if not any(s.is_template for s in spaces):
            parser.error('--atlas needs a template output space (MNI152NLin2009aSym), but '
                         'normalization is off')
        try:
            check_atlas(opts.atlas, opts.atlas_labels)
        except AtlasError as err:
            parser.error(f'--atlas: {err}')
    return tuple(str(s) for s in spaces)


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False
