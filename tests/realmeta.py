"""BIDS datasets with the real scanners' metadata of bids-examples asl001–asl005 and images
from aslproc's simulator (see tests/data/bids_examples/SOURCE.md).

:func:`write_reference_dataset` reads a folder's sidecars and aslcontext, derives the
simulator's settings from them (labeling, delays and pairs per delay, bolus, background
suppression, labeling efficiency, readout and SliceTiming, M0 type and its TR), simulates one
subject and writes its volumes in the order the real aslcontext lists them, under the real
sidecars, copied unchanged. Truth maps go to ``<root>/truth`` as with :mod:`aslproc.synth`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from aslproc import mni_head
from aslproc.synth import SynthConfig, simulate_subject, write_subject

logger = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parent / 'data' / 'bids_examples'
NAMES = ('asl001', 'asl002', 'asl003', 'asl004', 'asl005')
#: Multi-delay layouts among them (PASL multi-TI, PCASL multi-PLD).
MULTI_DELAY = ('asl003', 'asl004')
#: ASL voxel (mm) of the simulated images; 2D readouts keep their real number of slices.
VOXEL_MM = 6.0
PERFUSION = ('control', 'label', 'deltam', 'cbf')


def _files(name: str) -> dict:
    root = DATA / name
    sub = next(p for p in root.iterdir() if p.name.startswith('sub-'))
    perf = sub / 'perf'
    found = {'root': root, 'sub': sub, 'label': sub.name[4:],
             'asl': next(perf.glob('*_asl.json')), 'context': next(perf.glob('*_aslcontext.tsv')),
             'm0': next(perf.glob('*_m0scan.json'), None),
             'fmap_m0': next((sub / 'fmap').glob('*_m0scan.json'), None)
             if (sub / 'fmap').is_dir() else None}
    return found


def volume_types(context: Path) -> list[str]:
    """The aslcontext column (blank lines at the end ignored)."""
    rows = [r.strip() for r in context.read_text().splitlines()]
    return [r for r in rows[1:] if r]


def config_for(name: str, voxel_mm: float = VOXEL_MM, **overrides) -> SynthConfig:
    """Simulator settings that match the real sidecar of ``name`` (see the module doc), with
    in-plane ASL voxels of ``voxel_mm``."""
    f = _files(name)
    md = json.loads(f['asl'].read_text())
    types = volume_types(f['context'])
    pld = md['PostLabelingDelay']
    perf_plds = ([d for d, t in zip(pld, types, strict=True) if t in PERFUSION]
                 if isinstance(pld, list) else [pld])
    delays = sorted(set(perf_plds))
    n_controls = types.count('control')
    n_pairs = (n_controls // len(delays)) if n_controls else int(md['TotalAcquiredPairs'])
    m0_md = json.loads(f['m0'].read_text()) if f['m0'] else md
    m0_tr = m0_md['RepetitionTimePreparation']
    m0_tr = m0_tr[types.index('m0scan')] if isinstance(m0_tr, list) else m0_tr
    fov = mni_head.fov_mm(3.0)
    st = md.get('SliceTiming') if md.get('MRAcquisitionType') == '2D' else None
    bolus = md.get('BolusCutOffDelayTime', 0.8)
    kw = dict(
        label=md['ArterialSpinLabelingType'], m0_type=md['M0Type'], n_pairs=n_pairs,
        snr=200.0, t1w_voxel=3.0, bs_pulses=int(md.get('BackgroundSuppressionNumberPulses', 0)),
        readout=md.get('MRAcquisitionType', '3D'), pld=float(max(delays)),
        plds=tuple(delays) if len(delays) > 1 else (), tau=float(md.get('LabelingDuration', 1.8)),
        ti1=float(bolus[0] if isinstance(bolus, list) else bolus),
        field_strength=float(md.get('MagneticFieldStrength', 3.0)), m0_tr=float(m0_tr),
        labeling_efficiency=md.get('LabelingEfficiency'), seed=14,
        att_range=(0.5, 2.0) if len(delays) > 1 else None, lesions=(0, 0))
    if st:
        xy = np.ceil(np.asarray(fov[:2]) / voxel_mm).astype(int)
        kw.update(asl_matrix=(int(xy[0]), int(xy[1]), len(st)), slice_timing=tuple(st))
    else:
        kw.update(asl_voxel=voxel_mm)
    return SynthConfig(**{**kw, **overrides})


def _reorder(sim, types: list[str], plds) -> np.ndarray:
    """The simulated volumes in the order of the real aslcontext (same type and delay)."""
    sim_plds = sim.metadata['PostLabelingDelay']
    sim_plds = sim_plds if isinstance(sim_plds, list) else [sim_plds] * len(sim.volume_types)
    pool: dict = {}
    for i, (t, d) in enumerate(zip(sim.volume_types, sim_plds, strict=True)):
        pool.setdefault((t, 0.0 if t == 'm0scan' else float(d)), []).append(i)
    out = []
    for t, d in zip(types, plds, strict=True):
        if t == 'deltam':  # GE: one ΔM volume averaged over the acquired pairs
            out.append(sim.delta_m().mean(axis=0))
        else:
            out.append(sim.asl[..., pool[(t, 0.0 if t == 'm0scan' else float(d))].pop(0)])
    return np.stack(out, axis=-1).astype(np.float32)


def write_reference_dataset(name: str, root, voxel_mm: float = VOXEL_MM, **overrides) -> Path:
    """Write ``<root>/bids`` (one subject, the real sidecars, simulated images) and
    ``<root>/truth``; return the ``bids`` directory."""
    f = _files(name)
    cfg = config_for(name, voxel_mm, **overrides)
    types = volume_types(f['context'])
    md = json.loads(f['asl'].read_text())
    pld = md['PostLabelingDelay']
    plds = pld if isinstance(pld, list) else [pld] * len(types)
    sim = simulate_subject(np.random.default_rng([cfg.seed, 0]), cfg, f['label'])
    sim.asl = _reorder(sim, types, plds)
    root = Path(root)
    bids, truth = root / 'bids', root / 'truth'
    write_subject(sim, bids, truth)  # simulated images (and sidecars, replaced below)
    sub = bids / f['sub'].name
    for src in f['root'].rglob('*'):
        if src.is_file():
            dst = bids / src.relative_to(f['root'])
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    if f['fmap_m0']:  # the reverse-phase M0: another noisy copy of the M0 (no distortion)
        rng = np.random.default_rng([cfg.seed, 1])
        img = sim.m0 + rng.normal(0, 0.01 * float(np.mean(sim.m0)), sim.m0.shape)
        import nibabel as nib

        out = sub / 'fmap' / f['fmap_m0'].name.replace('.json', '.nii.gz')
        nib.save(nib.Nifti1Image(img.astype(np.float32), sim.asl_affine), out)
    (truth / 'params.json').write_text(json.dumps({'reference': name, 'config': {
        k: v for k, v in vars(cfg).items()}}, indent=2, default=str) + '\n')
    return bids
