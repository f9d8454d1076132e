"""Multi-delay metadata (issue #14): PLD/TI arrays, Q2TIPS, Look-Locker, one test per error."""

import re

import pytest
from bidsdata import edit_json, make_tiny_bids, run_paths, spec_of

from aslproc.kinetics import AslMetadataError


def names(path, field):
    """Regex that requires the message to name ``path`` and ``field``."""
    return rf'{re.escape(str(path))}.*{field}'


def test_multi_ti_pasl_with_q2tips(tmp_path):
    # TIs shorter than TI1 are fine with several TIs (the bolus is still arriving there)
    root = make_tiny_bids(tmp_path, label='PASL', m0='Separate', n_pairs=3, extra_meta={
        'PostLabelingDelay': [0.3, 0.3, 1.2, 1.2, 2.4, 2.4],
        'BolusCutOffDelayTime': [0.7, 1.6], 'LookLocker': False})
    spec = spec_of(root)
    assert spec.multi_delay and spec.delays == (0.3, 1.2, 2.4)
    assert (spec.ti1, spec.ti1s, spec.pairs_per_delay) == (0.7, 1.6, (1, 1, 1))
    params = spec.fit_params()
    assert params['volume_plds'] == [0.3, 0.3, 1.2, 1.2, 2.4, 2.4] and 'pld' not in params
    side = spec.sidecar()
    assert side['PostLabelingDelay'] == [0.3, 1.2, 2.4] and side['PairsPerDelay'] == [1, 1, 1]
    assert side['BolusCutOffDelayTime'] == 0.7


def test_single_ti_pasl_still_needs_ti1_below_ti(tmp_path):
    root = make_tiny_bids(tmp_path, label='PASL', extra_meta={'PostLabelingDelay': 0.6})
    with pytest.raises(AslMetadataError, match='BolusCutOffDelayTime.*not shorter'):
        spec_of(root)


def test_pairs_per_delay_counts_blocks(tmp_path):
    plds = [0] + [0.5] * 4 + [1.0] * 4 + [1.5] * 2
    spec = spec_of(make_tiny_bids(tmp_path, n_pairs=5, extra_meta={'PostLabelingDelay': plds}))
    assert spec.delays == (0.5, 1.0, 1.5) and spec.pairs_per_delay == (2, 2, 1)


def test_look_locker_refused(tmp_path):
    root = make_tiny_bids(tmp_path, extra_meta={'LookLocker': True})
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'], 'LookLocker')
                       + '.*is true.*BIDS expects LookLocker false'):
        spec_of(root)
    edit_json(run_paths(root)['json'], LookLocker='yes')
    with pytest.raises(AslMetadataError, match='LookLocker is .yes. .BIDS expects a boolean'):
        spec_of(root)


def test_control_and_label_of_a_pair_need_one_delay(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Absent', n_pairs=2,
                          extra_meta={'PostLabelingDelay': [1.0, 1.5, 1.5, 1.0]})
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'],
                                                     'PostLabelingDelay')
                       + '.*control volume 0 but 1.5 s for label volume 1'):
        spec_of(root)


def test_non_positive_delay_refused(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Absent', n_pairs=2,
                          extra_meta={'PostLabelingDelay': [0.0, 0.0, 1.5, 1.5]})
    with pytest.raises(AslMetadataError, match='PostLabelingDelay has the delay 0.0'):
        spec_of(root)


def test_cbf_volumes_at_several_delays_refused(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Estimate', n_pairs=1,
                          extra_meta={'PostLabelingDelay': [1.0, 2.0]})
    run_paths(root)['aslcontext'].write_text('volume_type\ncbf\ncbf\n')
    with pytest.raises(AslMetadataError, match='PostLabelingDelay takes 2 values over a series '
                       'with cbf volumes'):
        spec_of(root)


@pytest.mark.parametrize('value', [[1.6, 0.7], [0.7, 1.6, 2.0], [0.7, 'x']])
def test_bad_q2tips_array(tmp_path, value):
    root = make_tiny_bids(tmp_path, label='PASL', extra_meta={'BolusCutOffDelayTime': value})
    with pytest.raises(AslMetadataError, match=names(run_paths(root)['json'],
                                                     'BolusCutOffDelayTime')):
        spec_of(root)
