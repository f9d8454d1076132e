"""Command line of the phantom generator: ``aslproc-synth OUT [options]`` (or
``python -m aslproc.synth_cli``); one option per field of :class:`aslproc.synth.SynthConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from aslproc.synth import _CHOICES, POSE_DEFAULT, SynthConfig, write_dataset

logger = logging.getLogger(__name__)


def _flag(text: str) -> bool:
    """Boolean option value: 1/true/yes or 0/false/no."""
    if text.lower() not in ('1', 'true', 'yes', '0', 'false', 'no'):
        raise argparse.ArgumentTypeError(f'expected true or false, not {text!r}')
    return text.lower() in ('1', 'true', 'yes')


#: Command-line options: flag, SynthConfig field, type, help; choices and nargs below.
_CLI = [
    ('--subjects', 'subjects', int, 'number of subjects'),
    ('--label', 'label', str.upper, 'labeling type (PASL: FAIR with Q2TIPS bolus cut-off)'),
    ('--m0', 'm0_type', str.capitalize, 'M0Type (Absent only without background suppression)'),
    ('--pairs', 'n_pairs', int, 'control/label pairs'),
    ('--snr', 'snr', float, 'mean brain M0 over the noise SD, per volume'),
    ('--noise', 'noise', str.lower, 'magnitude of complex noise (Rician) or real Gaussian'),
    ('--motion', 'motion_mm', float, 'rigid random walk over the volumes, mm and deg (0: none)'),
    ('--jitter', 'jitter_mm', float, 'independent per-volume jitter SD, mm and deg (0: none)'),
    ('--drift', 'drift_mm', float, 'linear drift reached at the last volume, mm and deg'),
    ('--jerks', 'jerks', int, 'sudden persistent steps of 0.5-2 mm/deg at random volumes'),
    ('--pose', 'pose', float, 'ASL head pose vs the T1w: uniform in +-POSE mm and deg (0: none)'),
    ('--asl-voxel', 'asl_voxel', float, 'ASL voxel, mm, 1 or 3 values (default 4 or FOV/matrix)'),
    ('--matrix', 'asl_matrix', int, 'ASL matrix (default: covers the head)'),
    ('--t1w-voxel', 't1w_voxel', float, 'T1w (and high-resolution truth) voxel size, mm'),
    ('--bs-pulses', 'bs_pulses', int, 'background-suppression pulses (0: none)'),
    ('--bs-residual', 'bs_residual', float, 'static control signal left by background '
     'suppression, fraction of the unsuppressed control'),
    ('--readout', 'readout', str.upper, '3D, or 2D multi-slice (PLD + SliceTiming per slice)'),
    ('--pld', 'pld', float, 'post-labeling delay (PCASL) or inversion time TI (PASL), s'),
    ('--plds', 'plds', float, 'several delays (TIs for PASL), s: a multi-delay series with '
     '--pairs pairs at each'),
    ('--labeling-efficiency', 'labeling_efficiency', float, 'labeling efficiency (default: '
     'white paper)'),
    ('--tau', 'tau', float, 'PCASL labeling duration, s'),
    ('--ti1', 'ti1', float, 'PASL bolus cut-off delay time TI1, s'),
    ('--m0-tr', 'm0_tr', float, 'RepetitionTimePreparation of the M0 scan, s'),
    ('--field-strength', 'field_strength', float, 'magnetic field strength, T'),
    ('--lesions', 'lesions', int, 'focal CBF lesions per subject: N, or MIN MAX'),
    ('--perfusion', 'perfusion', str.lower, 'perfusion preset: standard, or heterogeneous '
     '(lesion benchmark: territories, 6-25 mm lesions, GM/WM border)'),
    ('--still-twin', 'still_twin', _flag, 'draw the motion but image every volume at the '
     'reference position: the motion-free twin, same noise'),
    ('--seed', 'seed', int, 'random seed (subject i uses the seed sequence [seed, i])'),
]
_NARGS = {'asl_voxel': '+', 'asl_matrix': 3, 'lesions': '+', 'plds': '+'}


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='aslproc-synth', description='Write a phantom BIDS ASL dataset (OUT/bids) and its '
        'ground truth (OUT/truth).', formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('out', type=Path, help='output folder')
    defaults = {f.name: f.default for f in dataclasses.fields(SynthConfig)}
    defaults['pose'] = POSE_DEFAULT
    for flag, field, kind, text in _CLI:
        p.add_argument(flag, dest=field, type=kind, help=text, default=defaults[field],
                       choices=_CHOICES.get(field), nargs=_NARGS.get(field),
                       metavar='N' if field in _NARGS else None)
    return p


def main(argv=None) -> int:
    """Parse the options, write the dataset, print OUT."""
    parser = _build_parser()
    args = vars(parser.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    out = args.pop('out')
    try:
        config = SynthConfig(**args)
    except ValueError as err:
        parser.error(str(err))
    print(write_dataset(out, config))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
