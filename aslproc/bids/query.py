"""Find the ASL runs of a participant in a BIDS dataset and describe each as an AslSpec.

pybids indexes the dataset (sidecar inheritance included); the choice of T1w and
M0 for each run is made here, explicitly, and documented per function. pybids is
imported lazily so that ``import aslproc.bids`` stays fast.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aslproc.bids.metadata import KEPT_ENTITIES, build_spec, sidecar_path
from aslproc.bids.spec import AslSpec
from aslproc.kinetics import AslMetadataError

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS = ['.nii', '.nii.gz']


def strip_sub(label: str) -> str:
    """Participant label without a leading ``sub-``.

    >>> strip_sub('sub-01'), strip_sub('01')
    ('01', '01')
    """
    label = str(label).strip()
    return label[4:] if label.startswith('sub-') else label


def list_participants(bids_dir) -> list[str]:
    """Labels (without ``sub-``) of the ``sub-*`` folders of a dataset, sorted."""
    return sorted(p.name[4:] for p in Path(bids_dir).glob('sub-*') if p.is_dir())


def select_participants(bids_dir, requested=None) -> list[str]:
    """The requested participant labels (all when None), checked against the dataset.

    Raises
    ------
    ValueError
        When a requested label has no ``sub-<label>`` folder, listing the labels available.
    """
    available = list_participants(bids_dir)
    if not requested:
        if not available:
            raise ValueError(f'no participants (sub-* folders) found in {bids_dir}')
        return available
    wanted = list(dict.fromkeys(strip_sub(r) for r in requested))
    missing = [w for w in wanted if w not in available]
    if missing:
        raise ValueError(f'participant label(s) not found in {bids_dir}: {", ".join(missing)} '
                         f'(available: {", ".join(available) or "none"})')
    return wanted


def root_anchored_config(root) -> dict:
    """pybids' BIDS configuration with every entity pattern matched below ``root`` only.

    pybids searches its entity patterns in the *absolute* path, so a dataset stored under a
    folder called ``motion``, ``perf``, ``ses-X`` or ``sub-99`` had that folder parsed as
    the datatype, session or subject of every file (and lost its T1w). Anchoring each
    pattern at the dataset root makes discovery depend only on paths relative to it.
    """
    import json
    import re

    import bids.layout

    config = json.loads((Path(bids.layout.__file__).parent / 'config' / 'bids.json').read_text())
    prefix = '^' + re.escape(str(Path(root).absolute())) + '(?=[/\\\\]).*?'
    for entity in config['entities']:
        if entity.get('pattern'):
            entity['pattern'] = prefix + entity['pattern']
    return config


def make_layout(bids_dir):
    """A pybids ``BIDSLayout`` of the raw dataset (no validation, no derivatives).

    Build it once and pass it to :func:`collect_runs` for each participant. Entities are
    parsed from paths relative to ``bids_dir`` (see :func:`root_anchored_config`).
    """
    from bids import BIDSLayout

    return BIDSLayout(str(bids_dir), validate=False, derivatives=False,
                      config=[root_anchored_config(bids_dir)])


def _entities(bids_file) -> dict:
    ents = bids_file.get_entities()
    return {k: str(ents[k]) for k in KEPT_ENTITIES if ents.get(k) is not None}


def find_t1w(layout, entities: dict) -> Path:
    """The T1w image of the run's subject: one of the same session when there is one.

    Several candidates: the first in sorted order is used (and logged).
    """
    sub = entities['subject']
    found = sorted(layout.get(subject=sub, suffix='T1w', datatype='anat',
                              extension=NIFTI_EXTENSIONS), key=lambda f: f.path)
    if not found:
        raise AslMetadataError(f'no T1w image found for sub-{sub} (BIDS: '
                               f'sub-{sub}/[ses-*/]anat/sub-{sub}_*T1w.nii[.gz])')
    same = [f.path for f in found if _entities(f).get('session') == entities.get('session')]
    candidates = same or [f.path for f in found]
    if len(candidates) > 1:
        logger.info('sub-%s: %d T1w images; using %s', sub, len(candidates), candidates[0])
    return Path(candidates[0])


def _intended_paths(value, bids_dir: Path, subject: str) -> set[Path]:
    """Absolute paths named by IntendedFor (a string or a list; relative or BIDS URI).

    >>> sorted(p.as_posix() for p in _intended_paths(
    ...     ['perf/sub-01_asl.nii.gz', 'bids::sub-01/perf/sub-01_run-2_asl.nii.gz'],
    ...     Path('/data'), '01'))
    ['/data/sub-01/perf/sub-01_asl.nii.gz', '/data/sub-01/perf/sub-01_run-2_asl.nii.gz']
    """
    entries = [value] if isinstance(value, str) else list(value or [])
    out = set()
    for entry in entries:
        entry = str(entry)
        if entry.startswith('bids::'):
            out.add(bids_dir / entry[len('bids::'):].lstrip('/'))
        elif '://' not in entry and not entry.startswith('bids:'):
            out.add(bids_dir / f'sub-{subject}' / entry.lstrip('/'))
            if entry.lstrip('/').startswith(f'sub-{subject}/'):  # common mistake: from the root
                out.add(bids_dir / entry.lstrip('/'))
    return out


def find_m0(layout, asl_path: Path, entities: dict):
    """The separate M0 scan of an ASL run and its metadata, or ``(None, None)``.

    First the m0scan whose IntendedFor names the ASL file; else the m0scan with the
    same subject/session/acquisition/run entities, one in ``perf/`` before any other (an
    ``fmap/`` M0, such as a reverse-phase-encoded one, is there for distortion correction).
    """
    bids_dir = Path(layout.root)
    scans = sorted(layout.get(subject=entities['subject'], suffix='m0scan',
                              extension=NIFTI_EXTENSIONS),
                   key=lambda f: (Path(f.path).parent.name != 'perf', f.path))
    target = asl_path.resolve()
    for scan in scans:
        meta = layout.get_metadata(scan.path)
        intended = _intended_paths(meta.get('IntendedFor'), bids_dir, entities['subject'])
        if any(p.resolve() == target for p in intended):
            return Path(scan.path), meta
    for scan in scans:
        if _entities(scan) == entities:
            logger.info('%s: no m0scan names it in IntendedFor; using %s (same entities)',
                        asl_path, scan.path)
            return Path(scan.path), layout.get_metadata(scan.path)
    return None, None


def _metadata_file(layout, asl_path: Path) -> Path:
    sidecar = sidecar_path(asl_path)
    if sidecar.is_file():
        return sidecar
    try:
        nearest = layout.get_nearest(str(asl_path), extension='.json', suffix='asl',
                                     strict=False)
    except Exception:  # pragma: no cover - pybids raises various errors here
        nearest = None
    return Path(nearest) if nearest else sidecar


def collect_runs(bids_dir, participant_label: str, m0_scale=1.0, t1_blood=None,
                 layout=None) -> list[AslSpec]:
    """Every ASL run of one participant, each parsed into an :class:`AslSpec`.

    Parameters
    ----------
    bids_dir : path-like
        Root of the BIDS dataset.
    participant_label : str
        Label with or without ``sub-``.
    m0_scale, t1_blood : float
        Passed to :func:`aslproc.bids.metadata.build_spec`.
    layout : BIDSLayout, optional
        A layout from :func:`make_layout`, to index the dataset only once.

    Raises
    ------
    AslMetadataError
        When the participant has no ASL run or T1w image, or a run's metadata are
        invalid (the message names that run's file).
    """
    label = strip_sub(participant_label)
    layout = layout if layout is not None else make_layout(bids_dir)
    asl_files = sorted(layout.get(subject=label, suffix='asl', extension=NIFTI_EXTENSIONS),
                       key=lambda f: f.path)
    if not asl_files:
        raise AslMetadataError(f'no ASL run found for sub-{label} in {bids_dir} (BIDS: '
                               f'sub-{label}/[ses-*/]perf/sub-{label}_*asl.nii[.gz])')
    specs = []
    for bids_file in asl_files:
        asl_path = Path(bids_file.path)
        ents = _entities(bids_file)
        metadata = layout.get_metadata(bids_file.path)
        stem = asl_path.name.split('_asl.nii')[0]
        aslcontext = asl_path.with_name(f'{stem}_aslcontext.tsv')
        m0_file = m0_meta = None
        if metadata.get('M0Type') == 'Separate':
            m0_file, m0_meta = find_m0(layout, asl_path, ents)
        specs.append(build_spec(
            asl_path, metadata, aslcontext, find_t1w(layout, ents), ents, m0_file=m0_file,
            m0_metadata=m0_meta, m0_scale=m0_scale, t1_blood=t1_blood,
            metadata_file=_metadata_file(layout, asl_path),
        ))
        logger.info('sub-%s: ASL run %s (%s, M0 %s, %d pairs)', label, asl_path.name,
                    specs[-1].label_type, specs[-1].m0_type, specs[-1].n_pairs)
    return specs
