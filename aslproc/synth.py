"""Phantom BIDS ASL datasets with known truth, for the demo, the tests and denoiser training.

Each subject is a warped MNI152 head (:mod:`aslproc.phantom`) with its own perfusion, imaged as
a T1w and as an ASL series. ΔM comes from :func:`aslproc.kinetics.forward`, the pipeline's own
model, so quantifying the noise-free ΔM gives back the true CBF wherever the bolus has arrived.
Control = M0 × saturation recovery after the ASL TR (× a 7 % residual with background
suppression); label = control − ΔM. Each volume reaches the ASL grid through a Gaussian PSF
(FWHM one ASL voxel: partial volume), a rigid head pose relative to the T1w, an optional rigid
random walk per volume, and noise of SD mean-brain-M0 / SNR (complex, so Rician magnitude; or
real Gaussian). A 2D readout uses each slice's PLD (PLD + SliceTiming).

Not modelled: B0 distortion and susceptibility dropout, T2/T2* decay and readout blurring,
slice profiles and the exact k-space PSF, multi-compartment exchange (single-compartment
Buxton model with T1 tissue = T1 blood), bolus dispersion, intravascular and macrovascular
signal, tissue-specific background suppression (a uniform residual), spatially varying
labeling efficiency, physiological noise and drift, intra-volume motion and spin history (a 2D
slice-wise PLD follows the slice each tissue occupies at the reference position). ASL-grid truth
(``cbf``, ``att``, ``cleandm``, ``cleanm0``, ``seg``, ``pvgm``/``pvwm`` partial volumes) is at the
reference head position (no motion); ``hr*`` and ``gtlesion`` truth is on the T1w grid.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from aslproc import kinetics, mni_head, phantom

logger = logging.getLogger(__name__)

#: Control signal left by background suppression, as a fraction of the unsuppressed control.
BS_RESIDUAL = 0.07
#: Readout time (s) of a 3D volume, and of one slice of a 2D readout.
READOUT_3D, READOUT_SLICE = 0.5, 0.04
#: Head pose amplitude (mm and degrees) when ``pose=True``.
POSE_DEFAULT = 3.0
M0_TYPES = ('Included', 'Separate', 'Estimate', 'Absent')  #: The BIDS M0Type values.
#: Perfusion presets (keyword arguments of :func:`aslproc.phantom.perfusion_maps`):
#: 'heterogeneous' is the lesion benchmark's (issue 12): a ±25 % smooth field, 4 territories
#: with their own CBF (×0.75-1.25) and ATT (±0.3 s), lesions of 6-25 mm diameter, hypo
#: ×0.2-0.6 or hyper ×1.5-2.0, half of them on the GM/WM border.
PERFUSION = {'standard': {},
             'heterogeneous': dict(cbf_variation=0.25, territories=4, lesion_radius=(3.0, 12.5),
                                   hypo=(0.2, 0.6), border_fraction=0.5)}
_CHOICES = {'label': ('PCASL', 'PASL'), 'm0_type': M0_TYPES, 'readout': ('3D', '2D'),
            'noise': ('rician', 'gaussian'), 'perfusion': tuple(PERFUSION)}


@dataclass(frozen=True)
class SynthConfig:
    """All options of the generator; each field is one command-line option, documented in
    :mod:`aslproc.synth_cli` (``aslproc-synth --help``). Strings are
    case-insensitive; ``pose=True`` means ±3 mm and degrees; ``att_range=None`` means 0.7-1.6 s
    for PCASL and 0.4-1.0 s for PASL (nearer labeling slab); ``asl_voxel``/``asl_matrix``
    default to 4 mm covering the head.
    ``plds`` (several delays, or TIs for PASL) makes a multi-delay series of ``n_pairs`` pairs
    per delay, in blocks; ``slice_timing`` replaces the 2D readout's default (40 ms a slice).

    >>> c = SynthConfig(label='pasl', m0_type='separate', asl_matrix=(64, 76, 24))
    >>> c.label, c.m0_type, c.pose_mm, [round(v, 3) for v in c.asl_voxel]
    ('PASL', 'Separate', 3.0, [3.062, 3.053, 7.833])
    """

    subjects: int = 1
    label: str = 'PCASL'
    m0_type: str = 'Included'
    n_pairs: int = 10
    snr: float = 100.0
    motion_mm: float = 0.0
    jitter_mm: float = 0.0
    drift_mm: float = 0.0
    jerks: int = 0
    pose: bool | float = True
    asl_voxel: float | tuple | None = None
    asl_matrix: tuple | None = None
    t1w_voxel: float = 2.0
    bs_pulses: int = 0
    bs_residual: float = BS_RESIDUAL
    readout: str = '3D'
    pld: float = 1.8
    tau: float = 1.8
    ti1: float = 0.8
    field_strength: float = 3.0
    noise: str = 'rician'
    lesions: tuple = (1, 3)
    still_twin: bool = False
    seed: int = 0
    m0_tr: float = 6.0
    att_range: tuple | None = None
    perfusion: str = 'standard'
    plds: tuple = ()
    slice_timing: tuple = ()
    labeling_efficiency: float | None = None

    def __post_init__(self):
        put = functools.partial(object.__setattr__, self)
        for name in ('plds', 'slice_timing'):
            put(name, tuple(float(v) for v in np.atleast_1d(getattr(self, name))))
        put('label', self.label.upper())
        put('m0_type', self.m0_type.capitalize())
        put('readout', self.readout.upper())
        put('noise', self.noise.lower())
        put('perfusion', self.perfusion.lower())
        put('lesions', tuple(int(n) for n in np.atleast_1d(self.lesions)[[0, -1]]))
        fov = mni_head.fov_mm(self.t1w_voxel)
        default = fov / np.asarray(self.asl_matrix) if self.asl_matrix else 4.0
        vox = np.broadcast_to(default if self.asl_voxel is None else self.asl_voxel, (3,))
        put('asl_voxel', tuple(float(v) for v in vox))
        matrix = np.ceil(fov / vox - 1e-6) if self.asl_matrix is None else self.asl_matrix
        put('asl_matrix', tuple(int(m) for m in matrix))
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f'{name} must be one of {allowed}, not {getattr(self, name)!r}')
        if min(self.subjects, self.n_pairs) < 1 or self.snr <= 0:
            raise ValueError('subjects and n_pairs must be >= 1 and snr > 0')
        if self.m0_type == 'Absent' and self.bs_pulses:
            raise ValueError('M0Type Absent needs control images without background suppression')
        if min(self.motion_mm, self.jitter_mm, self.drift_mm, self.jerks) < 0:
            raise ValueError('motion_mm, jitter_mm, drift_mm and jerks must be >= 0')
        if not 0 < self.bs_residual <= 1:
            raise ValueError('bs_residual must be in (0, 1]')
        if self.slice_timing and len(self.slice_timing) != self.asl_matrix[2]:
            raise ValueError(f'slice_timing needs one entry per slice ({self.asl_matrix[2]})')

    @property
    def delays(self) -> tuple:
        """The delays of the series (s): ``plds``, else ``(pld,)``."""
        return self.plds or (self.pld,)

    @property
    def pose_mm(self) -> float:
        """Head pose amplitude in mm and degrees (0 for none)."""
        is_flag = isinstance(self.pose, bool)
        return (POSE_DEFAULT * self.pose) if is_flag else float(self.pose)


@dataclass
class SubjectSim:
    """One simulated subject, fully in memory (for training without disk I/O).

    ``t1w`` (float32) and the ``hr_truth`` maps share ``t1w_affine``; ``asl`` (float32,
    X×Y×Z×T) and the ``truth`` maps share ``asl_affine``. ``volume_types`` is the aslcontext
    column, ``m0`` the separate M0 scan (else None), ``metadata``/``m0_metadata``/
    ``t1w_metadata`` the sidecars. Truth maps: ``cbf``, ``att``, ``cleandm``, ``cleanm0``,
    ``seg`` (plus ``lesion`` on the T1w grid). ``quant_params`` are the
    :func:`aslproc.kinetics.quantify` parameters (per-slice ``pld`` for 2D), ``info`` the
    values recorded in params.json (pose, motion, noise SD, CBF levels, lesions).
    """

    subject: str
    t1w: np.ndarray
    t1w_affine: np.ndarray
    asl: np.ndarray
    asl_affine: np.ndarray
    volume_types: tuple
    m0: np.ndarray | None
    metadata: dict
    m0_metadata: dict | None
    t1w_metadata: dict
    truth: dict
    hr_truth: dict
    quant_params: dict
    info: dict

    def delta_m(self) -> np.ndarray:
        """Control minus label of each pair, shape (pairs, X, Y, Z)."""
        types = np.array(self.volume_types)
        return np.moveaxis(self.asl[..., types == 'control'] - self.asl[..., types == 'label'],
                           -1, 0)


def _sidecar(config: SynthConfig, n_slices: int) -> dict:
    """asl.json without the M0 fields; ``RepetitionTimePreparation`` is the ASL TR here."""
    st = [round(k * READOUT_SLICE, 4) for k in range(n_slices)] if config.readout == '2D' else []
    st = list(config.slice_timing) if st and config.slice_timing else st
    readout = n_slices * READOUT_SLICE if st else READOUT_3D
    labeling = config.tau if config.label == 'PCASL' else 0.0
    md = dict(ArterialSpinLabelingType=config.label, PostLabelingDelay=config.pld,
              BackgroundSuppression=config.bs_pulses > 0, M0Type=config.m0_type,
              TotalAcquiredPairs=config.n_pairs,
              RepetitionTimePreparation=round(labeling + max(config.delays) + readout + 0.3,
                                              2),
              MagneticFieldStrength=config.field_strength, MRAcquisitionType=config.readout,
              EchoTime=0.014 if st else 0.0112, FlipAngle=90,
              LabelingEfficiency=config.labeling_efficiency
              or kinetics.LABELING_EFFICIENCY[config.label],
              VascularCrushing=False, AcquisitionVoxelSize=list(config.asl_voxel))
    if config.label == 'PCASL':
        md.update(LabelingDuration=config.tau, PCASLType='balanced',
                  LabelingLocationDescription='90 mm below the AC-PC line (simulated)')
    else:
        md.update(BolusCutOffFlag=True, BolusCutOffDelayTime=config.ti1,
                  BolusCutOffTechnique='Q2TIPS', PASLType='FAIR', LabelingSlabThickness=100)
    if n := config.bs_pulses:
        md.update(BackgroundSuppressionNumberPulses=n, BackgroundSuppressionPulseTime=[
            round(labeling + config.pld * (k + 1) / (n + 1), 3) for k in range(n)])
    if st:
        md['SliceTiming'] = st
    return md


class _Imager:
    """Partial-volume imaging of T1w-grid maps on the ASL grid (centred on the T1w field of
    view) at a given head position: each map is blurred once (cached by name) so that, with
    the fine voxel, the PSF FWHM is one ASL voxel, then sampled trilinearly at the ASL voxel
    centres moved by the inverse head transform.
    """

    def __init__(self, anat: phantom.Anatomy, config: SynthConfig):
        vox, self.shape = np.asarray(config.asl_voxel), config.asl_matrix
        centre = anat.affine[:3, :3] @ ((np.asarray(anat.shape) - 1) / 2) + anat.affine[:3, 3]
        self.affine = np.diag([*vox, 1.0])
        self.affine[:3, 3] = centre - vox * (np.asarray(self.shape) - 1) / 2
        self.anat, fine = anat, anat.voxel_mm
        self.sigma = np.sqrt(np.clip(vox**2 - fine**2, 0, None)) / 2.355 / fine
        self.centre = phantom.brain_centre(anat)
        self._blurred = {}

    def head(self, params) -> np.ndarray:
        return phantom.rigid_matrix(params, self.centre)

    def sample(self, name, data, head) -> np.ndarray:
        if name not in self._blurred:
            self._blurred[name] = ndimage.gaussian_filter(np.float32(data), self.sigma)
        m = np.linalg.inv(self.anat.affine) @ np.linalg.inv(head) @ self.affine
        return ndimage.affine_transform(self._blurred[name], m[:3, :3], m[:3, 3], self.shape,
                                        order=1)

    def slice_index(self, head) -> np.ndarray:
        """ASL slice (last axis) that each T1w-grid voxel lies in at head position ``head``."""
        m = (np.linalg.inv(self.affine) @ head @ self.anat.affine)[2]
        idx = np.ogrid[tuple(slice(0, s) for s in self.anat.shape)]
        z = m[3] + sum(m[a] * idx[a] for a in range(3))
        return np.clip(np.rint(z), 0, self.shape[2] - 1).astype(int)


def simulate_subject(rng: np.random.Generator, config: SynthConfig,
                     subject: str = '01') -> SubjectSim:
    """Simulate one subject from its random stream ``rng``, fully in memory.

    ``subject`` is the label (without ``sub-``) used in IntendedFor. The only I/O is reading
    nilearn's templates once; :func:`write_dataset` passes ``default_rng([config.seed, i])``.
    """
    anat, anat_info = phantom.random_anatomy(rng, mni_head.load_anatomy(config.t1w_voxel))
    att_range = config.att_range or ((0.7, 1.6) if config.label == 'PCASL' else (0.4, 1.0))
    t1w = phantom.t1w_image(rng, anat)  # drawn first: the T1w never depends on the perfusion
    maps = phantom.perfusion_maps(rng, anat, n_lesions=config.lesions, att_range=att_range,
                                  **PERFUSION[config.perfusion])
    imager = _Imager(anat, config)
    head0 = imager.head(pose := phantom.random_rigid(rng, config.pose_mm))
    n_m0, delays = int(config.m0_type == 'Included'), config.delays
    types = ['m0scan'] * n_m0 + ['control', 'label'] * config.n_pairs * len(delays)
    delay_of = [0] * n_m0 + [k for k in range(len(delays)) for _ in range(2 * config.n_pairs)]
    steps = rng.normal(0, config.motion_mm / np.sqrt(len(types)), (len(types), 6))
    motion = np.cumsum(np.concatenate([np.zeros((1, 6)), steps[1:]]), 0)
    motion = motion + phantom.scanner_motion(rng, len(types), config.jitter_mm,
                                             config.drift_mm, config.jerks)
    md = _sidecar(config, imager.shape[2])
    tr, st = md['RepetitionTimePreparation'], md.get('SliceTiming')
    params = dict(label_type=config.label, pld=config.pld, tau=config.tau, ti1=config.ti1,
                  t1_blood=kinetics.t1_blood(config.field_strength),
                  alpha=md['LabelingEfficiency']
                  * kinetics.background_suppression_factor(config.bs_pulses),
                  lam=kinetics.BLOOD_BRAIN_PARTITION)
    quant_params = dict(params, pld=config.pld + np.asarray(st) if st else config.pld)
    # 2D: each tissue voxel takes the PLD of the slice it lies in at the reference position
    offset = np.asarray(st)[imager.slice_index(head0)] if st else 0.0
    m0 = maps['m0']
    dms = [np.float32(kinetics.forward(maps['cbf'], m0, dict(params, pld=d + offset),
                                       maps['att'])) for d in delays]
    ctrl = m0 * phantom.recovery(anat, tr, config.field_strength)
    ctrl = ctrl * (config.bs_residual if config.bs_pulses else 1.0)
    m0_vol = m0 * phantom.recovery(anat, config.m0_tr, config.field_strength)
    truth = {k: imager.sample(k, v, head0) for k, v in
             (('cbf', maps['cbf']), ('att', maps['att']), ('cleandm', dms[0]), ('cleanm0', m0))}
    if config.plds:  # the clean ΔM of every delay, (X, Y, Z, D)
        md['PostLabelingDelay'] = [0.0] * n_m0 + [delays[k] for k in delay_of[n_m0:]]
        truth['cleandm'] = np.stack([imager.sample(f'dm{k}', d, head0)
                                     for k, d in enumerate(dms)], -1)
    pv = {k: imager.sample(k, getattr(anat, k), head0) for k in ('gm', 'wm', 'csf')}
    truth['seg'] = phantom.segment(pv['gm'], pv['wm'], pv['csf'])
    truth.update(pvgm=pv['gm'], pvwm=pv['wm'])  # partial-volume fractions on the ASL grid
    truth['lesion'] = imager.sample('lesion', maps['lesion'] > 0, head0)  # lesion fraction
    hr_truth = dict(cbf=maps['cbf'], att=maps['att'], cleanm0=m0, seg=anat.seg(),
                    cleandm=np.stack(dms, -1) if config.plds else dms[0],
                    lesion=maps['lesion'].astype(np.uint16), lesionid=maps['lesion_id'])
    sigma = float(truth['cleanm0'][truth['seg'] > 0].mean() / config.snr)
    asl = np.empty(imager.shape + (len(types),), np.float32)
    for t, kind in enumerate(types):
        head = head0 if config.still_twin else imager.head(motion[t]) @ head0
        clean = imager.sample(*(('m0_vol', m0_vol) if kind == 'm0scan' else ('ctrl', ctrl)), head)
        if kind == 'label':
            k = delay_of[t]
            clean = clean - imager.sample(f'dm{k}' if k else 'dm', dms[k], head)
        asl[..., t] = phantom.add_noise(rng, clean, sigma, config.noise)
    m0_scan, m0_md = None, None
    if config.m0_type == 'Included':
        md['RepetitionTimePreparation'] = [config.m0_tr] + [tr] * (len(types) - 1)
    elif config.m0_type == 'Separate':
        m0_scan = phantom.add_noise(rng, imager.sample('m0_vol', m0_vol, head0), sigma,
                                    config.noise)
        m0_md = {k: md[k] for k in ('MagneticFieldStrength', 'MRAcquisitionType', 'EchoTime',
                                    'FlipAngle', 'AcquisitionVoxelSize', 'SliceTiming') if k in md}
        m0_md.update(RepetitionTimePreparation=config.m0_tr,
                     IntendedFor=f'perf/sub-{subject}_asl.nii.gz')
    elif config.m0_type == 'Estimate':
        md['M0Estimate'] = round(float(truth['cleanm0'][truth['seg'] == 1].mean()), 3)
    info = dict(maps['info'], pose=pose.round(4).tolist(), motion=motion.round(4).tolist(),
                noise_sd=sigma, anatomy=anat_info,
                asl_to_t1w=np.linalg.inv(head0).round(6).tolist())
    return SubjectSim(
        subject=subject, t1w=t1w, t1w_affine=anat.affine.copy(), asl=asl, asl_affine=imager.affine,
        volume_types=tuple(types), m0=m0_scan, metadata=md, m0_metadata=m0_md,
        t1w_metadata=dict(MagneticFieldStrength=config.field_strength, MRAcquisitionType='3D'),
        truth=truth, hr_truth=hr_truth, quant_params=quant_params, info=info)


def _write(path: Path, obj, affine=None, tr=None) -> None:
    """Write a NIfTI (when ``affine`` is given), a text file (str) or a JSON file."""
    if affine is not None:
        img = nib.Nifti1Image(obj, affine)
        img.header.set_xyzt_units('mm', 'sec')
        img.set_qform(affine, 1)
        img.set_sform(affine, 1)
        if tr is not None:
            img.header['pixdim'][4] = tr
        nib.save(img, path)
    else:
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=2) + '\n')


_README = ('# aslproc synthetic ASL dataset\n\nDigital phantom (warped MNI152 2009 heads, known '
           'perfusion) made by `aslproc-synth`; the ground truth and the generator '
           'arguments are in ../truth (params.json). Not real data: use to test and train.\n')


def write_subject(sim: SubjectSim, bids: Path, truth: Path) -> None:
    """Write one simulated subject into a BIDS tree and its truth folder."""
    sub = f'sub-{sim.subject}'
    anat, perf = bids / sub / 'anat', bids / sub / 'perf'
    for d in (anat, perf, truth):
        d.mkdir(parents=True, exist_ok=True)
    _write(anat / f'{sub}_T1w.nii.gz', np.rint(sim.t1w).astype(np.int16), sim.t1w_affine)
    _write(anat / f'{sub}_T1w.json', sim.t1w_metadata)
    tr = float(np.max(sim.metadata['RepetitionTimePreparation']))
    _write(perf / f'{sub}_asl.nii.gz', sim.asl, sim.asl_affine, tr=tr)
    _write(perf / f'{sub}_asl.json', sim.metadata)
    _write(perf / f'{sub}_aslcontext.tsv', '\n'.join(('volume_type', *sim.volume_types)) + '\n')
    if sim.m0 is not None:
        _write(perf / f'{sub}_m0scan.nii.gz', sim.m0, sim.asl_affine)
        _write(perf / f'{sub}_m0scan.json', sim.m0_metadata)
    for name, data in sim.truth.items():
        _write(truth / f'{sub}_{name}.nii.gz', data, sim.asl_affine)
    for name, data in sim.hr_truth.items():  # the lesion labels are 'gtlesion'
        _write(truth / f"{sub}_{'gt' if name == 'lesion' else 'hr'}{name}.nii.gz", data,
               sim.t1w_affine)


def write_dataset(out_dir, config: SynthConfig) -> Path:
    """Simulate ``config.subjects`` subjects and write ``out_dir/bids`` and ``out_dir/truth``.

    Subject ``i`` (from 0) uses ``np.random.default_rng([config.seed, i])``, so a subject is
    the same whatever the number of subjects. Existing files are overwritten.
    """
    out = Path(out_dir)
    bids, truth = out / 'bids', out / 'truth'
    record = {'args': dataclasses.asdict(config), 'subjects': {}}
    labels = [f'{i + 1:02d}' for i in range(config.subjects)]
    for i, label in enumerate(labels):
        sim = simulate_subject(np.random.default_rng([config.seed, i]), config, label)
        write_subject(sim, bids, truth)
        record['subjects'][f'sub-{label}'] = sim.info
        logger.info('wrote sub-%s', label)
    _write(bids / 'dataset_description.json', {
        'Name': 'aslproc synthetic ASL phantom', 'BIDSVersion': '1.9.0', 'DatasetType': 'raw',
        'License': 'CC0', 'GeneratedBy': [{'Name': 'aslproc.synth'}]})
    _write(bids / 'README', _README)
    rows = ['participant_id', *record['subjects']]
    _write(bids / 'participants.tsv', ''.join(f'{r}\n' for r in rows))
    _write(bids / 'participants.json', {'participant_id': {'Description': 'Phantom label'}})
    _write(truth / 'params.json', record)
    return out

