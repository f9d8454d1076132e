"""Timing fields of an ASL sidecar: post-labeling delays, labeling duration, bolus cut-off,
slice timing, Look-Locker readout.

Split from :mod:`aslproc.bids.metadata` (which builds the :class:`~aslproc.bids.spec.AslSpec`)
so that each stays small. Every function checks one field and raises
:class:`aslproc.kinetics.AslMetadataError` naming the file, the field and what BIDS expects.

A series is *multi-delay* when ``PostLabelingDelay`` is an array whose entries over the
control, label, deltam and cbf volumes take more than one value (multi-PLD PCASL/CASL, or
multi-TI PASL, where the field holds the inversion times); the entries of m0scan and noRF
volumes are ignored, as BIDS allows any value there.
"""

from __future__ import annotations

import logging
import math

from aslproc.kinetics import AslMetadataError

logger = logging.getLogger(__name__)

#: Volumes whose timing defines the perfusion signal (m0scan and noRF volumes do not).
PERFUSION_VOLUMES = ('control', 'label', 'deltam', 'cbf')


def fail(source, field: str, problem: str, expects: str | None = None) -> AslMetadataError:
    """Build the house error: ``<file>: <field> <problem> (BIDS expects <expects>)``."""
    return AslMetadataError(f'{source}: {field} {problem}'
                            + (f' (BIDS expects {expects})' if expects else ''))


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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
    if is_number(value):
        return [float(value)]
    if not isinstance(value, (list, tuple)) or not all(is_number(v) for v in value):
        raise fail(source, field, f'is {value!r}, not a finite number or array of them',
                   expects)
    if len(value) != len(volume_types):
        raise fail(source, field, f'has {len(value)} entries but the aslcontext lists '
                   f'{len(volume_types)} volumes', expects)
    picked = [float(v) for v, t in zip(value, volume_types, strict=True) if t in keep]
    return list(dict.fromkeys(picked))


def _single_positive(metadata, volume_types, source, field, what_multi, meaning) -> float:
    if field not in metadata:
        raise fail(source, field, 'is missing', f'{meaning}: a number, or one per volume')
    values = per_volume_values(metadata[field], volume_types, source, field, PERFUSION_VOLUMES)
    if len(values) > 1:
        raise fail(source, field, f'has {len(values)} distinct values {values} over the '
                   f'control/label volumes: {what_multi} is not supported yet')
    if not values or values[0] <= 0:
        raise fail(source, field, f'is {values[0] if values else None!r}',
                   'a positive number of seconds')
    return values[0]


def post_labeling_delay(metadata: dict, volume_types, source) -> float:
    """PostLabelingDelay (s): the one value over the control/label/deltam/cbf volumes.

    m0scan volumes' entries are ignored (scanners often write 0 there). A multi-delay
    series (several distinct values) is read with :func:`volume_delays` instead.

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
        raise fail(source, 'BolusCutOffFlag', f'is {metadata.get("BolusCutOffFlag")!r}: PASL '
                   'without bolus cut-off cannot be quantified with the white-paper model',
                   'BolusCutOffFlag true with BolusCutOffDelayTime (QUIPSS II or Q2TIPS)')
    value = metadata.get('BolusCutOffDelayTime')
    expects = ('a positive number of seconds (QUIPSS II), or an array whose first value is '
               'TI1 (Q2TIPS)')
    if value is None:
        raise fail(source, 'BolusCutOffDelayTime', 'is missing', expects)
    ti1 = value[0] if isinstance(value, (list, tuple)) and value else value
    if not is_number(ti1) or ti1 <= 0:
        raise fail(source, 'BolusCutOffDelayTime', f'is {value!r}', expects)
    return float(ti1)


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
            or not all(is_number(v) and v >= 0 for v in value)):
        raise fail(source, 'SliceTiming', f'is {value!r}',
                   'an array of non-negative times (s), one per slice')
    return tuple(float(v) for v in value)




def volume_delays(metadata: dict, volume_types, source) -> tuple | None:
    """PostLabelingDelay (s) of every volume of a multi-delay series, else None.

    A series is multi-delay when the field is an array whose entries over the control,
    label, deltam and cbf volumes take two or more values (multi-PLD (P)CASL; for PASL the
    entries are the inversion times TI). The result has one entry per volume, 0.0 for m0scan
    and noRF volumes, whose entries are ignored. The k-th control volume pairs with the k-th
    label volume (as in :func:`aslproc.utils.cbf.pairwise_delta_m`), so both must have the
    same delay.

    >>> volume_delays({'PostLabelingDelay': [0, 1.5, 1.5, 2.0, 2.0]},
    ...               ('m0scan', 'control', 'label', 'control', 'label'), 'x.json')
    (0.0, 1.5, 1.5, 2.0, 2.0)
    >>> volume_delays({'PostLabelingDelay': 1.8}, ('control', 'label'), 'x.json') is None
    True
    >>> volume_delays({'PostLabelingDelay': [1.5, 2.0]}, ('control', 'label'), 'x.json')
    Traceback (most recent call last):
    ...
    aslproc.kinetics.AslMetadataError: x.json: PostLabelingDelay is 1.5 s for control volume 0 \
but 2.0 s for label volume 1, which is paired with it (BIDS expects the same delay for both \
volumes of a control/label pair)
    """
    field, value = 'PostLabelingDelay', metadata.get('PostLabelingDelay')
    if not isinstance(value, (list, tuple)):
        return None
    distinct = per_volume_values(value, volume_types, source, field, PERFUSION_VOLUMES)
    if len(distinct) < 2:
        return None
    if min(distinct) <= 0:
        raise fail(source, field, f'has the delay {min(distinct)!r} for a perfusion volume',
                   'positive numbers of seconds for the control, label, deltam and cbf volumes')
    if 'cbf' in volume_types:
        raise fail(source, field, f'takes {len(distinct)} values over a series with cbf '
                   'volumes: CBF maps quantified at different delays cannot be combined',
                   'one delay for cbf volumes')
    delays = tuple(float(v) if t in PERFUSION_VOLUMES else 0.0
                   for v, t in zip(value, volume_types, strict=True))
    controls = [i for i, t in enumerate(volume_types) if t == 'control']
    labels = [i for i, t in enumerate(volume_types) if t == 'label']
    for c, lab in zip(controls, labels, strict=False):
        if delays[c] != delays[lab]:
            raise fail(source, field, f'is {delays[c]} s for control volume {c} but '
                       f'{delays[lab]} s for label volume {lab}, which is paired with it',
                       'the same delay for both volumes of a control/label pair')
    return delays


def bolus_cutoff_end(metadata: dict, source) -> float | None:
    """TI1s (s), the end of the Q2TIPS saturation train: the second value of
    BolusCutOffDelayTime when it is an array, else None (QUIPSS II).

    The bolus duration of the kinetic model is TI1 either way; TI1s is checked and recorded.

    >>> bolus_cutoff_end({'BolusCutOffDelayTime': [0.7, 1.6]}, 'x.json')
    1.6
    >>> bolus_cutoff_end({'BolusCutOffDelayTime': 0.7}, 'x.json') is None
    True
    """
    value = metadata.get('BolusCutOffDelayTime')
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        return None
    expects = 'for Q2TIPS an array [TI1, TI1s] of seconds with TI1 < TI1s'
    if len(value) > 2 or not all(is_number(v) for v in value) or not 0 < value[0] < value[1]:
        raise fail(source, 'BolusCutOffDelayTime', f'is {list(value)!r}', expects)
    return float(value[1])


def check_look_locker(metadata: dict, source) -> None:
    """Refuse a Look-Locker readout (``LookLocker: true``), which aslproc does not model.

    >>> check_look_locker({'LookLocker': False}, 'x.json')
    >>> check_look_locker({'LookLocker': True}, 'x.json')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    aslproc.kinetics.AslMetadataError: x.json: LookLocker is true: ...
    """
    value = metadata.get('LookLocker')
    if value is None or value is False:
        return
    if value is not True:
        raise fail(source, 'LookLocker', f'is {value!r}', 'a boolean')
    raise fail(source, 'LookLocker', 'is true: a Look-Locker readout samples every delay after '
               'one labeling, and its readout pulses attenuate the label, which the kinetic '
               'model of aslproc does not include', 'LookLocker false or absent for the '
               'sequences aslproc quantifies; Look-Locker data need a model of the readout '
               'flip angle (e.g. FSL BASIL)')
