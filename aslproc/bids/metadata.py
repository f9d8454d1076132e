"""Turn the BIDS sidecars of one ASL run into an :class:`~aslproc.bids.spec.AslSpec`, once.

Every BIDS ASL rule that quantification depends on is checked here; a failure raises
:class:`aslproc.kinetics.AslMetadataError` naming the file, the field and what BIDS expects,
so a user can fix the sidecar without reading code. Each derived number (PLD, τ, TI1,
labeling efficiency, background-suppression pulses, M0 repetition time) comes from one
small function with its own doctest.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from aslproc import kinetics
from aslproc.bids.spec import M0_TYPES, VOLUME_TYPES, AslSpec
from aslproc.kinetics import AslMetadataError

logger = logging.getLogger(__name__)

#: Labeling schemes aslproc quantifies.
LABEL_TYPES = ('PCASL', 'CASL', 'PASL')
#: Volumes whose timing defines the perfusion signal (m0scan and noRF volumes do not).
PERFUSION_VOLUMES = ('control', 'label', 'deltam', 'cbf')
#: Entities of the ASL file that output names keep, in BIDS order.
KEPT_ENTITIES = ('subject', 'session', 'acquisition', 'run')
#: Informative sidecar fields carried into ``AslSpec.extra``.
EXTRA_FIELDS = ('MRAcquisitionType', 'PCASLType', 'CASLType', 'PASLType', 'VascularCrushing',
                'TotalAcquiredPairs', 'Manufacturer', 'BolusCutOffTechnique')


def _fail(source, field: str, problem: str, expects: str | None = None) -> AslMetadataError:
    """Build the house error: ``<file>: <field> <problem> (BIDS expects <expects>)``."""
    return AslMetadataError(f'{source}: {field} {problem}'
                            + (f' (BIDS expects {expects})' if expects else ''))


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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


def per_volume_values(value, volume_types, source, field: str, keep) -> list[float]:
    """Values of a field given as one number or as an array with one entry per volume.

    Only the volumes whose type is in ``keep`` count; the result lists their distinct
    values in order of first appearance.

    >>> per_volume_values(1.8, ('control', 'label'), 'x.json', 'PostLabelingDelay',
    ...                   PERFUSION_VOLUMES)
    [1.8]
    >>> per_volume_values([0, 1.8, 1.8], ('m0scan', 'control', 'label'), 'x.json',
    ...                   'PostLabelingDelay', PERFUSION_VOLUMES)
    [1.8]
    """
    expects = 'a number, or an array with one number per volume'
    if _is_number(value):
        return [float(value)]
    if not isinstance(value, (list, tuple)) or not all(_is_number(v) for v in value):
        raise _fail(source, field, f'is {value!r}, not a finite number or array of them',
                    expects)
    if len(value) != len(volume_types):
        raise _fail(source, field, f'has {len(value)} entries but the aslcontext lists '
                    f'{len(volume_types)} volumes', expects)
    picked = [float(v) for v, t in zip(value, volume_types, strict=True) if t in keep]
    return list(dict.fromkeys(picked))


def _single_positive(metadata, volume_types, source, field, what_multi, meaning) -> float:
    if field not in metadata:
        raise _fail(source, field, 'is missing', f'{meaning}: a number, or one per volume')
    values = per_volume_values(metadata[field], volume_types, source, field, PERFUSION_VOLUMES)
    if len(values) > 1:
        raise _fail(source, field, f'has {len(values)} distinct values {values} over the '
                    f'control/label volumes: {what_multi} is not supported yet')
    if not values or values[0] <= 0:
        raise _fail(source, field, f'is {values[0] if values else None!r}',
                    'a positive number of seconds')
    return values[0]


def post_labeling_delay(metadata: dict, volume_types, source) -> float:
    """PostLabelingDelay (s): the one value over the control/label/deltam/cbf volumes.

    m0scan volumes' entries are ignored (scanners often write 0 there); several distinct
    values mean a multi-PLD acquisition, which aslproc does not quantify yet.

    >>> post_labeling_delay({'PostLabelingDelay': [0, 2.0, 2.0]}, ('m0scan', 'control', 'label'),
    ...                     'x.json')
    2.0
    """
    return _single_positive(metadata, volume_types, source, 'PostLabelingDelay', 'multi-PLD',
                            'it in every ASL sidecar: seconds from the end of labeling to the '
                            'readout (TI for PASL)')


def labeling_duration(metadata: dict, volume_types, source) -> float:
    """τ (s) of (P)CASL from LabelingDuration, one number or one entry per volume.

    >>> labeling_duration({'LabelingDuration': 1.8}, ('control', 'label'), 'x.json')
    1.8
    """
    return _single_positive(metadata, volume_types, source, 'LabelingDuration',
                            'more than one labeling duration',
                            'it for PCASL and CASL: the labeling duration τ in seconds')


def bolus_cutoff_delay(metadata: dict, source) -> float:
    """TI1 (s) of PASL from BolusCutOffDelayTime (QUIPSS II: a number; Q2TIPS: the first value).

    Quantification with the white-paper PASL model (eq. 2) needs a bolus cut-off;
    without one the bolus duration is unknown.

    >>> bolus_cutoff_delay({'BolusCutOffFlag': True, 'BolusCutOffDelayTime': 0.7}, 'x.json')
    0.7
    >>> bolus_cutoff_delay({'BolusCutOffFlag': True, 'BolusCutOffDelayTime': [0.7, 1.6]}, 'x.json')
    0.7
    """
    if metadata.get('BolusCutOffFlag') is not True:
        raise _fail(source, 'BolusCutOffFlag', f'is {metadata.get("BolusCutOffFlag")!r}: PASL '
                    'without bolus cut-off cannot be quantified with the white-paper model',
                    'BolusCutOffFlag true with BolusCutOffDelayTime (QUIPSS II or Q2TIPS)')
    value = metadata.get('BolusCutOffDelayTime')
    expects = ('a positive number of seconds (QUIPSS II), or an array whose first value is '
               'TI1 (Q2TIPS)')
    if value is None:
        raise _fail(source, 'BolusCutOffDelayTime', 'is missing', expects)
    ti1 = value[0] if isinstance(value, (list, tuple)) and value else value
    if not _is_number(ti1) or ti1 <= 0:
        raise _fail(source, 'BolusCutOffDelayTime', f'is {value!r}', expects)
    return float(ti1)


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


def slice_timing(metadata: dict, source) -> tuple | None:
    """SliceTiming (s) of a 2D readout, or None for 3D (every slice then has the same PLD).

    >>> slice_timing({'MRAcquisitionType': '2D', 'SliceTiming': [0, 0.04]}, 'x.json')
    (0.0, 0.04)
    >>> slice_timing({'MRAcquisitionType': '3D', 'SliceTiming': [0, 0.04]}, 'x.json') is None
    True
    """
    value = metadata.get('SliceTiming')
    if metadata.get('MRAcquisitionType') != '2D' or value is None:
        if metadata.get('MRAcquisitionType') == '2D':
            logger.warning('%s: 2D readout without SliceTiming; all slices get one PLD', source)
        return None
    if (not isinstance(value, (list, tuple)) or not value
            or not all(_is_number(v) and v >= 0 for v in value)):
        raise _fail(source, 'SliceTiming', f'is {value!r}',
                    'an array of non-negative times (s), one per slice')
    return tuple(float(v) for v in value)


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
    pld = post_labeling_delay(metadata, types, source)
    tau = ti1 = None
    if label_type == 'PASL':
        ti1 = bolus_cutoff_delay(metadata, source)
        if ti1 >= pld:
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
        volume_types=types, label_type=label_type, pld=pld, tau=tau, ti1=ti1,
        slice_timing=slice_timing(metadata, source),
        labeling_efficiency=labeling_efficiency(metadata, label_type, source),
        bs_pulses=bs_pulses, t1_blood=t1b, field_strength=None if field is None else float(field),
        m0_scale=float(m0_scale), extra={k: metadata[k] for k in EXTRA_FIELDS if k in metadata},
        **m0,
    )
