"""Tests of aslproc.bids.validate with the real bids-validator-deno (about 0.5 s a call)."""

import json
from pathlib import Path

import pytest
from bidsdata import edit_json, make_tiny_bids, run_paths

from aslproc.bids.derivatives import write_derivative_description
from aslproc.bids.validate import BidsValidationError, find_validator, parse_report, validate_bids

CONFIG = Path(__file__).resolve().parents[1] / 'bids_validator_config.json'

try:
    find_validator()
except FileNotFoundError:  # pragma: no cover - the validator is a declared dependency
    pytest.skip('bids-validator-deno is not installed', allow_module_level=True)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return make_tiny_bids(tmp_path_factory.mktemp('valid'), m0='Separate', bs_pulses=2)


def test_tiny_dataset_is_valid(tiny):
    warnings = validate_bids(tiny)
    assert all(isinstance(w, str) for w in warnings)
    assert any(w.startswith('README_FILE_SMALL') for w in warnings)


def test_config_ignores_readme_warnings(tiny):
    assert json.loads(CONFIG.read_text())['ignore']
    warnings = validate_bids(tiny, config_file=CONFIG)
    assert not any(w.startswith('README') for w in warnings)


def test_missing_required_sidecar_field(tmp_path):
    root = make_tiny_bids(tmp_path)
    edit_json(run_paths(root)['json'], ArterialSpinLabelingType=None)
    expected = (r'SIDECAR_KEY_REQUIRED \(ArterialSpinLabelingType\): .*missing a key listed as '
                r'required.*/sub-01/perf/sub-01_asl.nii.gz')
    with pytest.raises(BidsValidationError, match=expected):
        validate_bids(root, config_file=CONFIG)


def test_missing_dataset_description(tmp_path):
    root = make_tiny_bids(tmp_path)
    (root / 'dataset_description.json').unlink()
    with pytest.raises(BidsValidationError, match='MISSING_DATASET_DESCRIPTION.*dataset_descr'):
        validate_bids(root)


def test_derivative_description_is_valid(tmp_path, tiny):
    out = tmp_path / 'out'
    write_derivative_description(tiny, out, '0.1.0')
    validate_bids(out, derivative=True)
    with pytest.raises(BidsValidationError, match='UNSUPPORTED_DATASET_TYPE'):
        validate_bids(tiny, derivative=True)


def test_parse_report_truncates_file_lists():
    issues = [{'code': 'X', 'severity': 'error', 'location': f'/f{i}.nii'} for i in range(8)]
    issues.append({'code': 'Y', 'severity': 'ignore', 'location': '/g.nii'})
    errors, warnings = parse_report({'issues': {'issues': issues, 'codeMessages': {'X': 'Bad.'}}})
    assert errors == ['X: Bad. [/f0.nii, /f1.nii, /f2.nii, /f3.nii, /f4.nii and 3 more]']
    assert warnings == []


def test_not_a_folder(tmp_path):
    with pytest.raises(BidsValidationError, match='not found'):
        validate_bids(tmp_path / 'nope')
