"""Tests of aslproc.bids.query: participants, runs, entities, T1w and M0 selection."""

import re
import shutil

import pytest
from bidsdata import edit_json, make_tiny_bids, run_paths, write_json

from aslproc.bids.query import (
    collect_runs,
    list_participants,
    make_layout,
    select_participants,
)
from aslproc.kinetics import AslMetadataError


def test_participants(tmp_path):
    root = make_tiny_bids(tmp_path, subjects=('03', '01'))
    assert list_participants(root) == ['01', '03']
    assert select_participants(root, None) == ['01', '03']
    assert select_participants(root, ['sub-03', '03']) == ['03']
    with pytest.raises(ValueError, match=re.escape(f'participant label(s) not found in {root}: '
                                                   '02 (available: 01, 03)')):
        select_participants(root, ['01', 'sub-02'])


def test_entities_session_and_separate_m0(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate', subjects=('01', '02'), session='A',
                          run='1', acq='fast')
    layout = make_layout(root)
    (spec,) = collect_runs(root, 'sub-02', layout=layout)
    p = run_paths(root, '02', session='A', run='1', acq='fast')
    assert spec.entities == {'subject': '02', 'session': 'A', 'acquisition': 'fast', 'run': '1'}
    assert spec.asl_file == p['asl'] and spec.aslcontext_file == p['aslcontext']
    assert spec.t1w_file == p['t1w'] and spec.metadata_file == p['json']
    assert spec.m0_file == p['m0'] and spec.m0_tr == 6.0


def test_t1w_of_same_session_preferred(tmp_path):
    make_tiny_bids(tmp_path, session='A')
    root = make_tiny_bids(tmp_path, session='B')
    shutil.rmtree(root / 'sub-01' / 'ses-A' / 'perf')
    (spec,) = collect_runs(root, '01')
    assert spec.t1w_file == run_paths(root, session='B')['t1w']
    shutil.rmtree(root / 'sub-01' / 'ses-B' / 'anat')
    (spec,) = collect_runs(root, '01')
    assert spec.t1w_file == run_paths(root, session='A')['t1w']


def _two_runs(tmp_path):
    make_tiny_bids(tmp_path / 'ds', m0='Separate', run='1')
    return make_tiny_bids(tmp_path / 'ds', m0='Separate', run='2')


def test_intended_for_wins_over_entities(tmp_path):
    root = _two_runs(tmp_path)
    r1, r2 = run_paths(root, run='1'), run_paths(root, run='2')
    edit_json(r1['m0json'], IntendedFor=['perf/sub-01_run-2_asl.nii.gz'])
    edit_json(r2['m0json'], IntendedFor='bids::sub-01/perf/sub-01_run-1_asl.nii.gz')
    specs = {s.entities['run']: s for s in collect_runs(root, '01')}
    assert specs['1'].m0_file == r2['m0'] and specs['2'].m0_file == r1['m0']


def test_one_m0_for_several_runs(tmp_path):
    root = _two_runs(tmp_path)
    r1, r2 = run_paths(root, run='1'), run_paths(root, run='2')
    for p in (r1, r2):
        p['m0'].unlink()
        p['m0json'].unlink()
    shared = root / 'sub-01' / 'perf' / 'sub-01_acq-m0_m0scan.nii.gz'
    shutil.copy(run_paths(make_tiny_bids(tmp_path / 'src', m0='Separate'))['m0'], shared)
    write_json(shared.with_name('sub-01_acq-m0_m0scan.json'), {
        'RepetitionTimePreparation': 5.0,
        'IntendedFor': ['bids::sub-01/perf/sub-01_run-1_asl.nii.gz',
                        'perf/sub-01_run-2_asl.nii.gz']})
    specs = collect_runs(root, '01')
    assert [s.m0_file for s in specs] == [shared, shared]
    assert [s.m0_tr for s in specs] == [5.0, 5.0]


def test_m0_found_by_entities_without_intended_for(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate')
    p = run_paths(root)
    edit_json(p['m0json'], IntendedFor=None)
    (spec,) = collect_runs(root, '01')
    assert spec.m0_file == p['m0']


def test_separate_m0_missing(tmp_path):
    root = make_tiny_bids(tmp_path, m0='Separate')
    p = run_paths(root)
    p['m0'].unlink()
    with pytest.raises(AslMetadataError, match=re.escape(str(p['json'])) + '.*M0Type.*_m0scan'):
        collect_runs(root, '01')


def test_sidecar_inheritance_and_error_names_the_run(tmp_path):
    root = _two_runs(tmp_path)
    write_json(root / 'asl.json', {'LabelingDuration': 1.8})
    for run in ('1', '2'):
        edit_json(run_paths(root, run=run)['json'], LabelingDuration=None)
    assert [s.tau for s in collect_runs(root, '01')] == [1.8, 1.8]
    (root / 'asl.json').unlink()
    edit_json(run_paths(root, run='1')['json'], LabelingDuration=1.8)
    with pytest.raises(AslMetadataError, match=re.escape(str(run_paths(root, run='2')['json']))
                       + '.*LabelingDuration'):
        collect_runs(root, '01')


def test_no_t1w(tmp_path):
    root = make_tiny_bids(tmp_path)
    shutil.rmtree(root / 'sub-01' / 'anat')
    with pytest.raises(AslMetadataError, match='no T1w image found for sub-01'):
        collect_runs(root, '01')


def test_no_asl_run(tmp_path):
    root = make_tiny_bids(tmp_path)
    shutil.rmtree(root / 'sub-01' / 'perf')
    with pytest.raises(AslMetadataError, match='no ASL run found for sub-01'):
        collect_runs(root, 'sub-01')


@pytest.mark.parametrize('parent', ['motion', 'perf', 'anat', 'func', 'ses-X', 'sub-99'])
def test_discovery_ignores_folders_above_the_dataset_root(tmp_path, parent):
    """pybids parses entities from the absolute path; a parent folder named like a datatype,
    a session or a subject must not change what is found."""
    root = make_tiny_bids(tmp_path / parent / 'data', m0='Separate', session='A')
    (spec,) = collect_runs(root, '01')
    p = run_paths(root, session='A')
    assert spec.entities == {'subject': '01', 'session': 'A'}
    assert spec.t1w_file == p['t1w'] and spec.m0_file == p['m0']
