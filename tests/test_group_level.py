"""Group level from template-space derivatives: inclusion, robust-z outliers, mean/SD/count
maps over subjects, the subject × region table and the group report.

The derivatives are written by hand on the template's 2 mm grid with constant CBF per run, so
every group value can be worked out: sub-01 40, sub-02 60, sub-03 two runs of 50 and 70 (60
as a subject), sub-04 and sub-05 are excluded (an outlier, a QC flag)."""

import base64
import csv
import json
import re

import nibabel as nib
import numpy as np
import pytest

from aslproc.cli.run import main
from aslproc.utils.template import template_image

GRID = template_image('mask', 2)
STEM = 'space-MNI152NLin2009aSym_res-2'
QC = ('mean_fd', 'max_fd', 'dice_asl_t1w', 'mean_gm_cbf', 'mean_wm_cbf', 'gm_wm_ratio',
      'pct_negative_gm')


def _run(out, stem, cbf, gm_cbf, *, fd=0.1, half=False):
    """One run: QC row, plain and denoised template-space CBF, its brain mask (the template
    brain, or only its left half), a regional table of two regions."""
    sub = stem.split('_')[0]
    perf = out / sub / 'perf'
    perf.mkdir(parents=True, exist_ok=True)
    qc = dict(mean_fd=fd, max_fd=fd, dice_asl_t1w=0.8, mean_gm_cbf=gm_cbf,
              mean_wm_cbf=gm_cbf / 2.5, gm_wm_ratio=2.5, pct_negative_gm=1.0)
    (perf / f'{stem}_desc-qc_cbf.tsv').write_text(
        '\t'.join(QC) + '\n' + '\t'.join(str(qc[k]) for k in QC) + '\n')
    brain = np.asanyarray(GRID.dataobj) > 0.5
    if half:
        brain[GRID.shape[0] // 2:] = False
    for desc, scale in (('', 1.0), ('_desc-denoised', 1.1)):
        data = np.where(brain, cbf * scale, 0.0).astype(np.float32)
        nib.Nifti1Image(data, GRID.affine).to_filename(perf / f'{stem}_{STEM}{desc}_cbf.nii.gz')
    nib.Nifti1Image(brain.astype(np.uint8), GRID.affine).to_filename(
        perf / f'{stem}_{STEM}_desc-brain_mask.nii.gz')
    (perf / f'{stem}_desc-regions_cbf.tsv').write_text(
        'index\tname\tn_voxels\tcoverage\tn_voxels_gm\tcbf\tcbf_denoised\n'
        f'1\tleft\t10\t1.0\t8\t{cbf}\t{cbf * 1.1}\n2\tright\t10\t0.5\t0\tn/a\tn/a\n')


@pytest.fixture(scope='module')
def group(tmp_path_factory):
    root = tmp_path_factory.mktemp('group')
    bids = root / 'bids'
    bids.mkdir()
    (bids / 'dataset_description.json').write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    out = root / 'out'
    _run(out, 'sub-01', 40.0, 55.0)
    _run(out, 'sub-02', 60.0, 60.0, half=True)
    _run(out, 'sub-03_run-1', 50.0, 58.0)
    _run(out, 'sub-03_run-2', 70.0, 62.0)
    _run(out, 'sub-04', 45.0, 150.0)  # global GM CBF far from the others
    _run(out, 'sub-05', 45.0, 57.0, fd=0.9)  # mean FD above the usual 0.5 mm
    anat = out / 'sub-01' / 'anat'
    anat.mkdir(parents=True)
    (anat / 'sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.json').write_text(
        json.dumps({'NormalizationDiceGM': 0.83}))
    assert main([str(bids), str(out), 'group']) == 0
    return out


def _tsv(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter='\t'))


def test_inclusion_table(group):
    rows = {r['run']: r for r in _tsv(group / 'group_desc-global_cbf.tsv')}
    assert [k for k, r in rows.items() if r['included'] == 'true'] == [
        'sub-01', 'sub-02', 'sub-03_run-1', 'sub-03_run-2']
    assert rows['sub-04']['outlier'] == 'true' and float(rows['sub-04']['gm_robust_z']) > 3.5
    assert 'GM CBF outlier' in rows['sub-04']['reason']
    assert rows['sub-05']['qc_flags'] == 'mean_fd'
    assert rows['sub-05']['outlier'] == 'false'
    assert rows['sub-01']['normalization_dice_gm'] == '0.83'
    assert rows['sub-02']['normalization_dice_gm'] == 'n/a'
    side = json.loads((group / 'group_desc-global_cbf.json').read_text())
    assert set(side) == set(rows['sub-01'])


def test_mean_sd_and_count_over_subjects(group):
    """Subjects 40, 60 (left half only), 60 (runs 50 and 70): mean 53.3 and SD 11.5 on the
    left, 50 and 14.1 on the right, where only two subjects cover the brain."""
    brain = np.asanyarray(GRID.dataobj) > 0.5
    left, right = brain.copy(), brain.copy()
    left[GRID.shape[0] // 2:] = False
    right[: GRID.shape[0] // 2] = False
    load = {s: np.asanyarray(nib.load(group / f'group_{STEM}_stat-{s}_cbf.nii.gz').dataobj)
            for s in ('mean', 'sd', 'count')}
    assert np.allclose(load['mean'][left], 160 / 3, atol=1e-3)
    assert np.allclose(load['sd'][left], np.std([40, 60, 60], ddof=1), atol=1e-3)
    assert np.all(load['count'][left] == 3) and np.all(load['count'][right] == 2)
    assert np.allclose(load['mean'][right], 50.0) and np.allclose(load['sd'][right],
                                                                  np.std([40, 60], ddof=1))
    assert np.all(load['count'][~brain] == 0) and np.all(load['mean'][~brain] == 0)
    denoised = nib.load(group / f'group_{STEM}_stat-mean_desc-denoised_cbf.nii.gz')
    assert np.allclose(np.asanyarray(denoised.dataobj)[left], 1.1 * 160 / 3, atol=1e-3)
    side = json.loads((group / f'group_{STEM}_stat-mean_cbf.json').read_text())
    assert side['Subjects'] == ['sub-01', 'sub-02', 'sub-03'] and side['Units'] == \
        'mL/100 g/min'
    assert set(side['ExcludedRuns']) == {'sub-04', 'sub-05'}


def test_subject_by_region_table(group):
    rows = _tsv(group / 'group_desc-regions_cbf.tsv')
    assert list(rows[0]) == ['participant_id', 'run', 'included', 'map', 'left', 'right']
    assert len(rows) == 6 * 2  # six runs, two maps each
    plain = {r['run']: r for r in rows if r['map'] == 'cbf'}
    assert plain['sub-03_run-2']['left'] == '70.0' and plain['sub-01']['right'] == 'n/a'
    assert plain['sub-04']['included'] == 'false'


def test_group_report(group):
    html = (group / 'group_report.html').read_text()
    figs = dict(re.findall(r'<figure id="fig-([a-z]+)-\d+">.*?(?:base64,([A-Za-z0-9+/=]+)"'
                           r'|</figure>)', html, re.S))
    assert set(figs) == {'distribution', 'groupmean', 'groupsd', 'strips', 'regions'}
    for name, b64 in figs.items():
        assert b64 and base64.b64decode(b64)[:4] == b'\x89PNG', name
    assert '2 of 6 run(s) are excluded' in html and 'GM CBF outlier' in html
    assert (group / 'group_desc-qc_cbf.tsv').is_file()  # the QC table is still written


def test_group_without_template_outputs(tmp_path):
    """After --skip-normalization only the QC tables and the report come out."""
    bids = tmp_path / 'bids'
    bids.mkdir()
    (bids / 'dataset_description.json').write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    out = tmp_path / 'out'
    perf = out / 'sub-01' / 'perf'
    perf.mkdir(parents=True)
    (perf / 'sub-01_desc-qc_cbf.tsv').write_text('mean_gm_cbf\tmean_wm_cbf\n55\t22\n')
    assert main([str(bids), str(out), 'group']) == 0
    assert (out / 'group_desc-global_cbf.tsv').is_file() and (out / 'group_report.html').is_file()
    assert not list(out.glob('group_space-*'))
    assert 'No group map was written' in (out / 'group_report.html').read_text()


def test_learned_stage_numbers_are_shown_but_never_exclude():
    """A flagged learned-stage number (the report shows it) does not drop the run from the
    group maps, which are made from the native-grid maps; a flagged motion number does."""
    from aslproc.reports.context import QC_ROWS, flag
    from aslproc.utils.group import qc_flags

    ranges = {key: rng for key, _, _, rng in QC_ROWS}
    row = {'denoise_data_departure_sd': 5.5, 'sr_data_departure_sd': 7.0}
    assert all(flag(v, *ranges[k]) for k, v in row.items())  # flagged in the report
    assert qc_flags(row) == []
    assert qc_flags({**row, 'mean_fd': 0.9}) == ['mean_fd']
