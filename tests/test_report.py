"""The per-subject HTML report, rendered for a tiny synthetic run.

One participant run (learned stages switched off) is made once for the module; the other
cases re-render its report from copies of the outputs, which takes seconds.
"""

import base64
import dataclasses
import io
import logging
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
from matplotlib import image as mpimg

from aslproc.bids import query
from aslproc.cli.parser import parse_args
from aslproc.cli.run import main
from aslproc.reports.capture import WarningCollector
from aslproc.reports.report import write_report
from tests.conftest import make_dataset

SECTIONS = ('summary', 'errors', 'run-0', 'registration-0', 'motion-0', 'cbf-0', 'qc-0',
            'methods')
FIGURES = ('registration', 'mask', 'motion', 'cbf', 'histograms', 'normalization')
PNG = re.compile(r'<figure id="fig-([a-z]+)-0">.*?(?:base64,([A-Za-z0-9+/=]+)"|</figure>)',
                 re.S)


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('report')
    bids = make_dataset(root / 'data', snr=400.0)
    out, work = root / 'out', root / 'work'
    argv = [str(bids), str(out), 'participant', '-w', str(work), '--nprocs', '1',
            '--no-denoise', '--no-sr', '--skip-bids-validation']
    from aslproc.bids import checks

    original = checks.check_asl_data

    def check_and_warn(spec):  # a warning raised while the subject runs reaches the report
        logging.getLogger('aslproc.bids.checks').warning('test warning: M0 looks odd')
        return original(spec)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checks, 'check_asl_data', check_and_warn)
        status = main(argv)
    assert status == 0
    settings = parse_args(argv)
    runs = query.collect_runs(bids, '01')
    return dict(root=root, out=out, argv=argv, settings=settings, runs=runs,
                html=(out / 'sub-01.html').read_text())


def _figures(html) -> dict:
    return {m.group(1): m.group(2) for m in PNG.finditer(html)}


def _variant(run, name, **changes):
    """A copy of the run's output directory and settings pointing at it."""
    out = run['root'] / name
    shutil.copytree(run['out'], out)
    return dataclasses.replace(run['settings'], output_dir=out, **changes), out


def test_sections_present(run):
    html = run['html']
    for sec in SECTIONS:
        assert f'<section id="{sec}"' in html, sec
    assert 'sub-01_asl.nii.gz' in html and 'PCASL' in html and 'PLD = 1.8 s' in html
    assert 'Included' in html and 'control/label pairs' in html
    assert 'switched off (--no-denoise)' in html and 'switched off (--no-sr)' in html
    assert 'Results were generated with aslproc' in html  # methods text
    assert len(html.encode()) < 3_000_000


def test_every_figure_is_a_nonempty_png(run):
    found = _figures(run['html'])
    assert set(found) == set(FIGURES)
    for name, b64 in found.items():
        assert b64, f'{name} has no image'
        png = base64.b64decode(b64)
        assert png[:8] == b'\x89PNG\r\n\x1a\n', name
        img = mpimg.imread(io.BytesIO(png), format='png')
        assert img.shape[0] > 150 and img.shape[1] > 300, name
        assert img[..., :3].std() > 0.05, f'{name} is blank'


def test_stage_times_and_qc(run):
    html = run['html']
    row = re.search(r'<td>head-motion correction</td><td>done</td>\s*<td class="num">([\d.]+)',
                    html)
    assert row and float(row.group(1)) > 0
    assert '<table class="qc">' in html and 'mean GM CBF' in html and 'usual range' in html
    assert 'Tissue CBF of each map' in html


def test_run_warnings_are_listed(run):
    errors = run['html'].split('<section id="errors">')[1].split('</section>')[0]
    assert 'test warning: M0 looks odd' in errors


def test_flags_and_learned_maps(run):
    settings, out = _variant(run, 'learned', denoise=True, sr=True)
    perf, anat = out / 'sub-01' / 'perf', out / 'sub-01' / 'anat'
    shutil.copy(perf / 'sub-01_cbf.nii.gz', perf / 'sub-01_desc-denoised_cbf.nii.gz')
    gm = nib.load(anat / 'sub-01_label-GM_probseg.nii.gz')
    wm = np.asarray(nib.load(anat / 'sub-01_label-WM_probseg.nii.gz').dataobj)
    sr = 60.0 * np.asarray(gm.dataobj) + 20.0 * wm
    nib.Nifti1Image(sr.astype('float32'), gm.affine).to_filename(
        perf / 'sub-01_space-T1w_desc-sr_cbf.nii.gz')
    qc = perf / 'sub-01_desc-qc_cbf.tsv'
    head, row = qc.read_text().splitlines()[:2]
    values = dict(zip(head.split('\t'), row.split('\t'), strict=True))
    values['mean_gm_cbf'] = '12.5'  # below the usual 20-110
    qc.write_text(head + '\n' + '\t'.join(values[k] for k in head.split('\t')) + '\n')
    html = write_report(settings, '01', run['runs'], elapsed=10.0).read_text()
    assert re.search(r'<tr class="flag"><td>mean GM CBF</td><td class="num">12.5<', html)
    assert '<td>denoised</td><td>shown</td>' in html
    assert '<td>super-resolved</td><td>shown</td>' in html
    assert re.search(r'<td>super-resolved</td><td>T1w</td>\s*<td class="num">', html)
    assert '--no-denoise)' not in html
    before = mpimg.imread(io.BytesIO(base64.b64decode(_figures(run['html'])['cbf'])))
    after = mpimg.imread(io.BytesIO(base64.b64decode(_figures(html)['cbf'])))
    assert after.shape[0] > 1.5 * before.shape[0]  # four rows of maps instead of two
    # what each learned stage removed, one row per stage
    res = mpimg.imread(io.BytesIO(base64.b64decode(_figures(html)['residuals'])))
    assert res.shape[0] > 1.5 * before.shape[0] / 2 and 'What the learned stages removed' in html
    assert 'denoiser: plain − denoised' not in run['html']


def test_missing_outputs_are_stated(run):
    settings, out = _variant(run, 'missing', denoise=True)
    for p in (out / 'sub-01' / 'perf').glob('*'):
        if 'confounds' in p.name or 'cbf' in p.name:
            p.unlink()
    html = write_report(settings, '01', run['runs']).read_text()
    assert '<td>denoised</td><td>not produced</td>' in html
    assert 'not available: no confounds file' in html
    assert 'not available: no CBF map was written' in html
    assert 'No QC table was written' in html
    assert set(_figures(html)) == set(FIGURES)


def test_failed_participant(run, tmp_path):
    settings = dataclasses.replace(run['settings'], output_dir=tmp_path,
                                   work_dir=tmp_path / 'work')
    html = write_report(settings, '02', [], error='sub-02_asl.json: PostLabelingDelay is '
                        'missing', warnings=['the M0 scale looks odd']).read_text()
    assert 'This participant failed.' in html and 'PostLabelingDelay is missing' in html
    assert 'the M0 scale looks odd' in html
    assert 'No ASL run was found' in html and 'not run (the run stopped before it)' in html


def test_warning_collector_detaches():
    log = logging.getLogger('aslproc.test_report')
    c = WarningCollector().start()
    log.warning('kept %d', 1)
    log.error('kept too')
    log.info('dropped')
    assert [r['message'] for r in c.stop()] == ['kept 1', 'kept too']
    log.warning('after stop')
    assert len(c.records) == 2
