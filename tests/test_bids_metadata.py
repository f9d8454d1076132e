"""Tests of aslproc.bids.metadata: sidecars -> AslSpec, and one test per error message."""

import re

import pytest
from bidsdata import edit_json, make_tiny_bids, run_paths, spec_of

from aslproc import kinetics
from aslproc.bids.metadata import read_aslcontext
from aslproc.kinetics import AslMetadataError


def names(path, field):
    """Regex that requires the message to name ``path`` and ``field``."""
    return rf'{re.escape(str(path))}.*{field}|{field}.*{re.escape(str(path))}'


@pytest.mark.parametrize('m0', ['Included', 'Separate', 'Estimate', 'Absent'])
@pytest.mark.parametrize('label', ['PCASL', 'CASL', 'PASL'])
def test_valid_runs(tmp_path, label, m0):
    spec = spec_of(make_tiny_bids(tmp_path, label=label, m0=m0))
    assert spec.label_type == label and spec.m0_type == m0
    assert spec.pld == 1.8 and spec.n_pairs == 3
    assert spec.labeling_efficiency == kinetics.LABELING_EFFICIENCY[label]
    assert spec.t1_blood == 1.65 and spec.field_strength == 3.0
    assert spec.bs_pulses == 0 and spec.slice_timing is None
    assert spec.entities == {'subject': '01'}
    if label == 'PASL':
        assert (spec.tau, spec.ti1) == (None, 0.8)
    else:
        assert (spec.tau, spec.ti1) == (1.8, None)
    expected_tr = {'Included': 4.0, 'Separate': 6.0, 'Estimate': None, 'Absent': 4.0}[m0]
    assert spec.m0_tr == expected_tr
    assert spec.m0_estimate == (1000.0 if m0 == 'Estimate' else None)
    assert (spec.m0_file is not None) == (m0 == 'Separate')
    assert spec.volume_types.count('m0scan') == (1 if m0 == 'Included' else 0)


def test_per_volume_arrays_and_overrides(tmp_path):
    root = make_tiny_bids(tmp_path, bs_pulses=4, n_pairs=2, extra_meta={
        'PostLabelingDelay': [0, 2.0, 2.0, 2.0, 2.0], 'LabelingDuration': [0, 1.5, 1.5, 1.5, 1.5],
        'RepetitionTimePreparation': [8.0, 4.0, 4.0, 4.0, 4.0], 'LabelingEfficiency': 0.8,
        'MagneticFieldStrength': 1.5, 'MRAcquisitionType': '2D',
        'SliceTiming': [0, 0.04, 0.08, 0.12]})
    spec = spec_of(root, m0_scale=2.0)
    assert (spec.pld, spec.tau, spec.m0_tr) == (2.0, 1.5, 8.0)
    assert spec.t1_blood == 1.35 and spec.labeling_efficiency == 0.8 and spec.m0_scale == 2.0
    assert spec.bs_pulses == 4 and spec.alpha == pytest.approx(0.8 * 0.95**4)
    assert spec.slice_timing == (0.0, 0.04, 0.08, 0.12)
    assert spec_of(root, t1_blood=1.5).t1_blood == 1.5


def test_q2tips_ti1_and_3d_slice_timing_dropped(tmp_path):
    root = make_tiny_bids(tmp_path, label='PASL', extra_meta={
        'BolusCutOffDelayTime': [0.7, 1.6], 'SliceTiming': [0, 0.1, 0.2, 0.3]})
    spec = spec_of(root)
    assert spec.ti1 == 0.7 and spec.slice_timing is None


def test_read_aslcontext(tmp_path):
    path = tmp_path / 'x_aslcontext.tsv'
    path.write_text('volume_type\nm0scan\ncontrol\nlabel\n\n')
    assert read_aslcontext(path) == ('m0scan', 'control', 'label')
    path.write_text('volume_type\ncontrol\nlabl\n')
    with pytest.raises(AslMetadataError, match=names(path, 'volume_type') + ".*'labl'"):
        read_aslcontext(path)
    path.write_text('type\ncontrol\n')
    with pytest.raises(AslMetadataError, match=names(path, 'volume_type')):
        read_aslcontext(path)


@pytest.mark.parametrize(('label', 'field'), [('PCASL', 'PostLabelingDelay'),
                                              ('PCASL', 'LabelingDuration'),
                                              ('CASL', 'LabelingDuration'),
                                              ('PCASL', 'ArterialSpinLabelingType'),
                                              ('PCASL', 'M0Type'),
                                              ('PCASL', 'BackgroundSuppression'),
                                              ('PASL', 'BolusCutOffDelayTime')])
def test_missing_required_field(tmp_path, label, field):
    root = make_tiny_bids(tmp_path, label=label, drop=(field,))
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'], field)):
        spec_of(root)


def test_multi_pld_is_a_multi_delay_spec(tmp_path):
    """Issue #14: a PLD array with two delays is no longer refused (it was: "multi-PLD is
    not supported yet"); several labeling durations still are."""
    root = make_tiny_bids(tmp_path, n_pairs=2,
                          extra_meta={'PostLabelingDelay': [0, 1.5, 1.5, 2.0, 2.0]})
    spec = spec_of(root)
    assert spec.multi_delay and spec.delays == (1.5, 2.0) and spec.pld == 2.0
    assert spec.volume_plds == (0.0, 1.5, 1.5, 2.0, 2.0)
    edit_json(run_paths(root)['json'], LabelingDuration=[0, 1.5, 1.5, 1.8, 1.8])
    with pytest.raises(AslMetadataError, match='LabelingDuration.*more than one labeling'):
        spec_of(root)


@pytest.mark.parametrize('pld', [0, -1.0, [0, 1.8, 1.8]])
def test_bad_pld_values(tmp_path, pld):
    root = make_tiny_bids(tmp_path, extra_meta={'PostLabelingDelay': pld})
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'],
                                                     'PostLabelingDelay')):
        spec_of(root)


@pytest.mark.parametrize(('m0', 'tr'), [('Included', 0), ('Included', None),
                                        ('Absent', None), ('Absent', -4.0),
                                        ('Included', float('nan'))])
def test_repetition_time_preparation(tmp_path, m0, tr):
    root = make_tiny_bids(tmp_path, m0=m0, extra_meta={'RepetitionTimePreparation': tr})
    with pytest.raises(AslMetadataError,
                       match=names(run_paths(root)['json'], 'RepetitionTimePreparation')):
        spec_of(root)


def test_repetition_time_preparation_separate(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate')
    p = run_paths(root)
    edit_json(p['m0json'], RepetitionTimePreparation=None)
    with pytest.raises(AslMetadataError, match=names(p['m0json'], 'RepetitionTimePreparation')):
        spec_of(root)


def test_estimate_needs_no_tr(tmp_path):
    spec = spec_of(make_tiny_bids(tmp_path, m0='Estimate', drop=('RepetitionTimePreparation',)))
    assert spec.m0_tr is None


def test_no_control_label_pairs(tmp_path):
    root = make_tiny_bids(tmp_path)
    p = run_paths(root)
    p['aslcontext'].write_text('volume_type\nm0scan\n' + 'control\n' * 6)
    with pytest.raises(AslMetadataError, match=names(p['aslcontext'], 'no control/label pairs')):
        spec_of(root)


def test_deltam_series_needs_no_pairs(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Estimate')
    run_paths(root)['aslcontext'].write_text('volume_type\n' + 'deltam\n' * 6)
    assert spec_of(root).volume_types == ('deltam',) * 6


def test_included_without_m0scan_volume(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Absent', extra_meta={'M0Type': 'Included'})
    p = run_paths(root)
    with pytest.raises(AslMetadataError, match=names(p['aslcontext'], 'M0Type')):
        spec_of(root)


def test_separate_m0_missing(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Absent', extra_meta={'M0Type': 'Separate'})
    with pytest.raises(AslMetadataError,
                       match=names(run_paths(root)['json'], 'M0Type') + '.*_m0scan.nii.gz'):
        spec_of(root)


def test_estimate_without_value(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Estimate', drop=('M0Estimate',))
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'], 'M0Estimate')):
        spec_of(root)


def test_background_suppression_without_pulse_count(tmp_path):
    root = make_tiny_bids(tmp_path, bs_pulses=3, drop=('BackgroundSuppressionNumberPulses',))
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'],
                                                     'BackgroundSuppressionNumberPulses')):
        spec_of(root)


def test_pasl_without_bolus_cutoff(tmp_path):
    root = make_tiny_bids(tmp_path, label='PASL', extra_meta={'BolusCutOffFlag': False},
                          drop=('BolusCutOffDelayTime', 'BolusCutOffTechnique'))
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'], 'BolusCutOffFlag')
                       + '.*white-paper model'):
        spec_of(root)


def test_pasl_ti1_not_before_ti(tmp_path):
    root = make_tiny_bids(tmp_path, label='PASL', extra_meta={'BolusCutOffDelayTime': 2.0})
    with pytest.raises(AslMetadataError, match='BolusCutOffDelayTime.*not shorter'):
        spec_of(root)


def test_absent_with_background_suppression_refused(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Absent', bs_pulses=2)
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'], 'M0Type')
                       + '.*cannot stand in for M0.*supply an M0'):
        spec_of(root)


def test_bad_numbers(tmp_path):
    root = make_tiny_bids(tmp_path, extra_meta={'LabelingEfficiency': 1.5})
    with pytest.raises(AslMetadataError, match='LabelingEfficiency'):
        spec_of(root)
    with pytest.raises(AslMetadataError, match='M0 scale'):
        spec_of(make_tiny_bids(tmp_path / 'b'), m0_scale=0)


def test_absent_needs_control_volumes(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Absent')
    run_paths(root)['aslcontext'].write_text('volume_type\n' + 'deltam\n' * 6)
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'],
                                                     'RepetitionTimePreparation') + '.*control'):
        spec_of(root)
