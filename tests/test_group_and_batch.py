"""Group level, and batch use: two jobs on different subjects sharing one output directory."""

import csv
import subprocess
import sys

import pytest

from aslproc.cli.run import main
from tests.conftest import make_dataset


def _qc_row(path, **values):
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ['subject', 'mean_gm_cbf', 'mean_wm_cbf', 'gm_wm_ratio', 'mean_fd']
    path.write_text('\t'.join(cols) + '\n' + '\t'.join(str(values.get(c, 'n/a')) for c in cols)
                    + '\n')


def test_group_table_and_figure(tmp_path):
    bids = tmp_path / 'bids'
    bids.mkdir()
    (bids / 'dataset_description.json').write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    out = tmp_path / 'out'
    assert main([str(bids), str(out), 'group']) == 1  # nothing to summarise yet
    _qc_row(out / 'sub-01/perf/sub-01_desc-qc_cbf.tsv', subject='01', mean_gm_cbf=55.0,
            mean_wm_cbf=22.0, gm_wm_ratio=2.5, mean_fd=0.1)
    _qc_row(out / 'sub-02/ses-a/perf/sub-02_ses-a_desc-qc_cbf.tsv', subject='02',
            mean_gm_cbf=61.0, mean_wm_cbf=25.0, gm_wm_ratio=2.44, mean_fd=0.3)
    assert main([str(bids), str(out), 'group']) == 0
    with open(out / 'group_desc-qc_cbf.tsv') as f:
        rows = list(csv.DictReader(f, delimiter='\t'))
    assert [r['file'] for r in rows] == ['sub-01', 'sub-02_ses-a']
    assert rows[1]['mean_gm_cbf'] == '61.0'
    png = out / 'group_desc-qc_cbf.png'
    assert png.read_bytes()[:4] == b'\x89PNG' and png.stat().st_size > 5000


@pytest.mark.slow
def test_two_concurrent_jobs_share_an_output_directory(tmp_path):
    bids = make_dataset(tmp_path / 'data', subjects=2, snr=400.0)
    out = tmp_path / 'out'
    procs = [subprocess.Popen(
        [sys.executable, '-m', 'aslproc.cli.run', str(bids), str(out), 'participant',
         '--participant-label', label, '-w', str(tmp_path / f'work{label}'), '--nprocs', '1',
         '--no-denoise', '--no-sr'], stderr=subprocess.PIPE, text=True)
        for label in ('01', '02')]
    errs = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    for label in ('01', '02'):
        assert (out / f'sub-{label}/perf/sub-{label}_cbf.nii.gz').is_file()
        assert (out / f'sub-{label}.html').is_file()
    assert not list(out.rglob('*.tmp'))
    assert (out / 'dataset_description.json').read_text().startswith('{')
