"""Turn the BIDS sidecars of one ASL run into an :class:`~aslproc.bids.spec.AslSpec`, once.

Every BIDS ASL rule that quantification depends on is checked here; a failure raises
:class:`aslproc.kinetics.AslMetadataError` naming the file, the field and what BIDS expects,
so a user can fix the sidecar without reading code. Each derived number (PLD, τ, TI1,
labeling efficiency, background-suppression pulses, M0 repetition time) comes from one
small function with its own doctest; the timing fields (delays, τ, bolus cut-off, slice
timing, Look-Locker) are read by :mod:`aslproc.bids.timing`.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from aslproc import kinetics
from aslproc.bids import timing
from aslproc.bids.spec import M0_TYPES, VOLUME_TYPES, AslSpec
from aslproc.bids.timing import (  # noqa: F401 - re-exported: part of this module's interface
    PERFUSION_VOLUMES,
    bolus_cutoff_delay,
    labeling_duration,
    per_volume_values,
    post_labeling_delay,
    slice_timing,
)
from aslproc.bids.timing import fail as _fail
from aslproc.bids.timing import is_number as _is_number
from aslproc.kinetics import AslMetadataError

logger = logging.getLogger(__name__)

#: Labeling schemes aslproc quantifies.
LABEL_TYPES = ('PCASL', 'CASL', 'PASL')
#: Entities of the ASL file that output names keep, in BIDS order.
KEPT_ENTITIES = ('subject', 'session', 'acquisition', 'run')
#: Informative sidecar fields carried into ``AslSpec.extra``.
EXTRA_FIELDS = ('MRAcquisitionType', 'PCASLType', 'CASLType', 'PASLType', 'VascularCrushing',
                'TotalAcquiredPairs', 'Manufacturer', 'BolusCutOffTechnique')


def sidecar_path(nifti) -> Path:
    """The JSON sidecar next to a NIfTI file.

    >>> sidecar_path('perf/sub-01_asl.nii.gz').as_posix()
    'perf/sub-01_asl.json'
    """
    nifti = Path(nifti)
    name = nifti.name
    for ext in ('.nii.gz', '.nii'):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return nifti.with_name(name + '.json')


def read_aslcontext(path) -> tuple[str, ...]:
    """Volume types listed in a ``*_aslcontext.tsv`` (column ``volume_type``), validated.

    Raises :class:`AslMetadataError` naming the file when it is missing, has no
    ``volume_type`` column or lists a value outside :data:`VOLUME_TYPES`.
    """
    path = Path(path)
    expects = 'a TSV with a volume_type column, one row per volume, values in ' + ', '.join(
        VOLUME_TYPES)
    if not path.is_file():
        raise _fail(path, 'aslcontext', 'file not found', expects)
    with path.open(newline='') as fobj:
        rows = [r for r in csv.reader(fobj, delimiter='\t') if any(c.strip() for c in r)]
    header = [c.strip() for c in rows[0]] if rows else []
    if 'volume_type' not in header:
        raise _fail(path, 'volume_type', f'column is missing (header: {header})', expects)
    col = header.index('volume_type')
    values = tuple(r[col].strip() if col < len(r) else '' for r in rows[1:])
    bad = [f'row {i + 1}: {v!r}' for i, v in enumerate(values) if v not in VOLUME_TYPES]
    if bad:
        more = f' and {len(bad) - 5} more' if len(bad) > 5 else ''
        raise _fail(path, 'volume_type', f'has invalid values ({", ".join(bad[:5])}{more})',
                    expects)
    if not values:
        raise _fail(path, 'volume_type', 'lists no volumes', expects)
    return values


def check_volume_types(volume_types, source) -> None:
    """Refuse a series without a control/label pair unless it holds deltam or cbf volumes.

    >>> check_volume_types(('label', 'control'), 'x_aslcontext.tsv')
    >>> check_volume_types(('m0scan', 'control'), 'x_aslcontext.tsv')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    aslproc.kinetics.AslMetadataError: x_aslcontext.tsv: volume_type has no control/label pairs...
    """
    has_pair = 'control' in volume_types and 'label' in volume_types
    if not has_pair and not {'deltam', 'cbf'} & set(volume_types):
        raise _fail(source, 'volume_type', 'has no control/label pairs and no deltam or cbf '
                    'volumes, so there is no perfusion signal to quantify',
                    'at least one control and one label volume')
    if has_pair and volume_types.count('control') != volume_types.count('label'):
        logger.warning('%s: %d control but %d label volumes; the unpaired ones are ignored',
                       source, volume_types.count('control'), volume_types.count('label'))


def labeling_efficiency(metadata: dict, label_type: str, source) -> float:
    """α at the labeling plane: LabelingEfficiency, else the white-paper default (Table 1).

    >>> labeling_efficiency({}, 'PCASL', 'x.json')
    0.85
    >>> labeling_efficiency({'LabelingEfficiency': 0.9}, 'PASL', 'x.json')
    0.9
    """
    value = metadata.get('LabelingEfficiency')
    if value is None:
        return kinetics.LABELING_EFFICIENCY[label_type]
    if not _is_number(value) or not 0 < value <= 1:
        raise _fail(source, 'LabelingEfficiency', f'is {value!r}', 'a number in (0, 1]')
    return float(value)


def background_suppression_pulses(metadata: dict, source) -> int:
    """Number of background-suppression pulses (0 without background suppression).

    The ΔM factor they cause is :func:`aslproc.kinetics.background_suppression_factor`
    (0.95 per pulse, white paper), applied by ``AslSpec.bs_factor``.

    >>> background_suppression_pulses({'BackgroundSuppression': False}, 'x.json')
    0
    >>> background_suppression_pulses({'BackgroundSuppression': True,
    ...                                'BackgroundSuppressionNumberPulses': 4}, 'x.json')
    4
    """
    flag = metadata.get('BackgroundSuppression')
    if not isinstance(flag, bool):
        raise _fail(source, 'BackgroundSuppression', f'is {flag!r}', 'a boolean (required)')
    if not flag:
        return 0
    n = metadata.get('BackgroundSuppressionNumberPulses')
    if not _is_number(n) or n < 0 or int(n) != n:
        raise _fail(source, 'BackgroundSuppressionNumberPulses',
                    'is missing' if n is None else f'is {n!r}',
                    'an integer >= 0 when BackgroundSuppression is true; the pulses scale '
                    'ΔM by 0.95 each, so CBF cannot be quantified without the count')
    return int(n)


def m0_repetition_time(metadata: dict, volume_types, source, which: str, m0_type: str) -> float:
    """RepetitionTimePreparation (s) of the volumes of type ``which``, for the M0 correction.

    >>> m0_repetition_time({'RepetitionTimePreparation': [6.0, 4.0, 4.0]},
    ...                    ('m0scan', 'control', 'label'), 'x.json', 'm0scan', 'Included')
    6.0
    """
    field, value = 'RepetitionTimePreparation', metadata.get('RepetitionTimePreparation')
    expects = (f'a positive number of seconds (or one per volume): M0Type "{m0_type}" needs '
               'it to correct the M0 for saturation recovery')
    if which not in volume_types:
        raise _fail(source, field, f'is needed for the {which} volumes (M0Type "{m0_type}") but '
                    'the aslcontext lists none', f'{which} volumes in the aslcontext')
    if value is None:
        raise _fail(source, field, 'is missing', expects)
    values = per_volume_values(value, volume_types, source, field, (which,))
    if any(v <= 0 for v in values):
        raise _fail(source, field, f'is {min(values)!r}', expects)
    if len(values) > 1:
        raise _fail(source, field, f'has {len(values)} distinct values {values} over the '
                    f'{which} volumes; aslproc needs one')
    return values[0]


def _field_and_t1(metadata, source, t1_blood):
    field = metadata.get('MagneticFieldStrength')
    if field is not None and (not _is_number(field) or field <= 0):
        raise _fail(source, 'MagneticFieldStrength', f'is {field!r}', 'a positive number (T)')
    if field is None:
        logger.warning('%s: no MagneticFieldStrength; T1 of blood for 3 T is used', source)
    if t1_blood is None:
        return field, kinetics.t1_blood(field)
    if not _is_number(t1_blood) or t1_blood <= 0:
        raise AslMetadataError(f'T1 of blood must be a positive number of seconds: {t1_blood!r}')
    return field, float(t1_blood)


def _m0_fields(metadata, volume_types, source, aslcontext_file, m0_file, m0_metadata,
               bs_pulses, asl_file) -> dict:
    """M0 file, estimate and repetition time for the run's M0Type."""
    m0_type = metadata.get('M0Type')
    if m0_type not in M0_TYPES:
        raise _fail(source, 'M0Type', 'is missing' if m0_type is None else f'is {m0_type!r}',
                    'one of ' + ', '.join(M0_TYPES))
    out = dict(m0_type=m0_type, m0_file=None, m0_estimate=None, m0_tr=None)
    if m0_type == 'Included':
        if 'm0scan' not in volume_types:
            raise _fail(aslcontext_file, 'volume_type', f'lists no m0scan volume although '
                        f'{source} says M0Type "Included"',
                        'm0scan volumes in the series when M0Type is "Included"')
        out['m0_tr'] = m0_repetition_time(metadata, volume_types, source, 'm0scan', m0_type)
    elif m0_type == 'Separate':
        expected = Path(asl_file).name.replace('_asl.nii', '_m0scan.nii')
        if m0_file is None or not Path(m0_file).is_file():
            raise _fail(source, 'M0Type', 'is "Separate" but no M0 scan was found'
                        + (f' ({m0_file} does not exist)' if m0_file else ''),
                        f'an M0 scan such as {expected} (*_m0scan.nii.gz) whose IntendedFor '
                        'names the ASL file')
        tr = (m0_metadata or {}).get('RepetitionTimePreparation')
        m0_volumes = ('m0scan',) * (len(tr) if isinstance(tr, (list, tuple)) else 1)
        out['m0_file'] = Path(m0_file)
        out['m0_tr'] = m0_repetition_time(m0_metadata or {}, m0_volumes, sidecar_path(m0_file),
                                          'm0scan', m0_type)
    elif m0_type == 'Estimate':
        est = metadata.get('M0Estimate')
        if not _is_number(est) or est <= 0:
            raise _fail(source, 'M0Estimate', 'is missing' if est is None else f'is {est!r}',
                        'a positive number when M0Type is "Estimate"')
        out['m0_estimate'] = float(est)
    else:  # Absent
        if bs_pulses or metadata.get('BackgroundSuppression'):
            raise _fail(source, 'M0Type', 'is "Absent" with BackgroundSuppression true: the '
                        'control images are suppressed and cannot stand in for M0; supply an '
                        'M0 scan', 'M0Type "Included" or "Separate" (or "Estimate" with '
                        'M0Estimate) for background-suppressed data')
        out['m0_tr'] = m0_repetition_time(metadata, volume_types, source, 'control', m0_type)
    return out


def build_spec(asl_file, metadata: dict, aslcontext_file, t1w_file, entities: dict,
               m0_file=None, m0_metadata=None, m0_scale=1.0, t1_blood=None, *,
               metadata_file=None) -> AslSpec:
    """Parse and validate the metadata of one ASL run into an :class:`AslSpec`.

    Parameters
    ----------
    asl_file, aslcontext_file, t1w_file : path-like
        The ASL series, its aslcontext and the subject's T1w image.
    metadata : dict
        Sidecar metadata of the ASL file (after BIDS inheritance).
    entities : dict
        BIDS entities of the ASL file; subject, session, acquisition and run are kept.
    m0_file, m0_metadata : path-like and dict, optional
        The separate M0 scan and its metadata (M0Type "Separate").
    m0_scale : float
        Factor applied to M0 (e.g. a receive-gain difference).
    t1_blood : float, optional
        T1 of blood (s); overrides the value from MagneticFieldStrength.
    metadata_file : path-like, optional
        Sidecar named in error messages; default: the JSON next to ``asl_file``.

    Raises
    ------
    AslMetadataError
        Naming the file and field at fault and what BIDS expects.
    """
    source = Path(metadata_file) if metadata_file else sidecar_path(asl_file)
    aslcontext_file = Path(aslcontext_file)
    types = read_aslcontext(aslcontext_file)
    check_volume_types(types, aslcontext_file)
    label_type = metadata.get('ArterialSpinLabelingType')
    if label_type not in LABEL_TYPES:
        raise _fail(source, 'ArterialSpinLabelingType',
                    'is missing' if label_type is None else f'is {label_type!r}',
                    'one of PCASL, CASL, PASL')
    timing.check_look_locker(metadata, source)
    volume_plds = timing.volume_delays(metadata, types, source)
    pld = max(volume_plds) if volume_plds else post_labeling_delay(metadata, types, source)
    tau = ti1 = ti1s = None
    if label_type == 'PASL':
        ti1, ti1s = bolus_cutoff_delay(metadata, source), timing.bolus_cutoff_end(metadata, source)
        if ti1 >= pld and not volume_plds:
            raise _fail(source, 'BolusCutOffDelayTime', f'({ti1} s) is not shorter than '
                        f'PostLabelingDelay, the inversion time TI ({pld} s); QUIPSS II and '
                        'Q2TIPS need TI1 < TI')
    else:
        tau = labeling_duration(metadata, types, source)
    bs_pulses = background_suppression_pulses(metadata, source)
    field, t1b = _field_and_t1(metadata, source, t1_blood)
    if not _is_number(m0_scale) or m0_scale <= 0:
        raise AslMetadataError(f'M0 scale must be a positive number, got {m0_scale!r}')
    m0 = _m0_fields(metadata, types, source, aslcontext_file, m0_file, m0_metadata,
                    bs_pulses, asl_file)
    return AslSpec(
        asl_file=Path(asl_file), aslcontext_file=aslcontext_file, metadata_file=source,
        t1w_file=Path(t1w_file),
        entities={k: str(entities[k]) for k in KEPT_ENTITIES if entities.get(k) is not None},
        volume_types=types, label_type=label_type, pld=pld, tau=tau, ti1=ti1, ti1s=ti1s,
        volume_plds=volume_plds,
        slice_timing=slice_timing(metadata, source),
        labeling_efficiency=labeling_efficiency(metadata, label_type, source),
        bs_pulses=bs_pulses, t1_blood=t1b, field_strength=None if field is None else float(field),
        m0_scale=float(m0_scale), extra={k: metadata[k] for k in EXTRA_FIELDS if k in metadata},
        **m0,
    )
