"""Tests of aslproc.bids.derivatives: a reproducible dataset_description.json, atomic writes."""

import json
import os
import threading

from bidsdata import make_tiny_bids, write_json

from aslproc.bids.derivatives import (
    CONTAINER_ENV,
    atomic_copy,
    atomic_write_json,
    atomic_write_text,
    write_derivative_description,
)


def test_description_content(tmp_path, monkeypatch):
    monkeypatch.delenv(CONTAINER_ENV, raising=False)
    root = make_tiny_bids(tmp_path / 'bids')
    desc = json.loads(write_derivative_description(root, tmp_path / 'out', '1.2.3').read_text())
    assert desc['DatasetType'] == 'derivative' and desc['BIDSVersion']
    assert desc['GeneratedBy'] == [{'Name': 'aslproc', 'Version': '1.2.3',
                                    'CodeURL': desc['GeneratedBy'][0]['CodeURL']}]
    assert desc['License'] == 'CC0' and 'SourceDatasets' not in desc


def test_description_doi_and_container(tmp_path, monkeypatch):
    monkeypatch.setenv(CONTAINER_ENV, 'aslproc:1.2.3')
    src = tmp_path / 'bids'
    write_json(src / 'dataset_description.json', {
        'Name': 'x', 'BIDSVersion': '1.9.0', 'DatasetDOI': 'doi:10.18112/openneuro.ds1.v1'})
    desc = json.loads(write_derivative_description(src, tmp_path / 'out', '1.2.3').read_text())
    assert desc['GeneratedBy'][0]['Container'] == {'Type': 'docker', 'Tag': 'aslproc:1.2.3'}
    assert desc['SourceDatasets'] == [{'DOI': 'doi:10.18112/openneuro.ds1.v1',
                                       'URL': 'https://doi.org/10.18112/openneuro.ds1.v1'}]
    assert 'License' not in desc


def test_description_is_byte_identical_and_leaves_no_temp_files(tmp_path, monkeypatch):
    monkeypatch.delenv(CONTAINER_ENV, raising=False)
    root = make_tiny_bids(tmp_path / 'bids')
    out = tmp_path / 'out'
    first = write_derivative_description(root, out, '1.0').read_bytes()
    os.utime(out / 'dataset_description.json', (0, 0))
    assert write_derivative_description(root, out, '1.0').read_bytes() == first
    assert (out / 'dataset_description.json').stat().st_mtime == 0  # identical: not rewritten
    assert sorted(p.name for p in out.iterdir()) == ['.bidsignore', 'dataset_description.json']


def test_concurrent_writers(tmp_path):
    target = tmp_path / 'sub' / 'x.json'
    payloads = [{'writer': i, 'data': list(range(2000))} for i in range(8)]
    threads = [threading.Thread(target=atomic_write_json, args=(target, p)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(target.read_text()) in payloads
    assert [p.name for p in target.parent.iterdir()] == ['x.json']


def test_atomic_text_and_copy(tmp_path):
    src = atomic_write_text(tmp_path / 'a.txt', 'one')
    atomic_write_text(src, 'two')
    assert src.read_text() == 'two'
    os.chmod(src, 0o640)
    dst = atomic_copy(src, tmp_path / 'deep' / 'b.txt')
    assert dst.read_text() == 'two' and (dst.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in dst.parent.iterdir()) == ['b.txt']
