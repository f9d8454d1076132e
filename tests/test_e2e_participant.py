"""A full participant run on a tiny synthetic dataset (the one end-to-end run CI always does).

Two subjects: sub-01 is valid, sub-02 has lost its PostLabelingDelay. The run must
finish sub-01 completely, name sub-02's file and field on stderr, exit 1, and a
second run must reuse nipype's cache.
"""

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from aslproc.bids.naming import derivative_path
from aslproc.bids.validate import validate_bids
from aslproc.cli.run import main
from aslproc.utils.template import TEMPLATE, Space
from aslproc.workflows.outputs import OUTPUTS, space_key
from tests.conftest import make_dataset

#: Outputs a run with default options must write (the learned stages included).
DEFAULT = ('anat_mask', 'probseg_gm', 'probseg_wm', 'probseg_csf', 'asl_mask', 'cbf',
           'cbf_smoothed', 'cbf_denoised', 'cbf_sr', 'confounds', 'qc', 'xfm', 'motion_filled')
#: Normalization is on by default (issue #15): transforms, template-space maps, regions.
DEFAULT += ('xfm_to_template', 'xfm_from_template', 'regions',
            *(space_key(k, Space(TEMPLATE, 2))
              for k in ('cbf', 'cbf_smoothed', 'cbf_denoised', 'asl_mask')))


ROOT = Path(__file__).resolve().parents[1]


def entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT, resolved to this environment's console scripts: the run
    below is the image's exact command line, outside a container."""
    line = next(ln for ln in (ROOT / 'Dockerfile').read_text().splitlines()
                if ln.startswith('ENTRYPOINT'))
    cmd = json.loads(line.split(None, 1)[1])
    return [str(Path(sys.executable).parent / cmd[0]), *cmd[1:]]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('e2e')
    # SNR 400 per volume and 4 pairs: CBF noise ~15 ml/100 g/min, so the map is checkable.
    bids = make_dataset(root / 'data', subjects=2, motion_mm=0.5, snr=400.0)
    side = bids / 'sub-02' / 'perf' / 'sub-02_asl.json'
    meta = json.loads(side.read_text())
    del meta['PostLabelingDelay']
    side.write_text(json.dumps(meta))
    out, work = root / 'out', root / 'work'
    argv = [str(bids), str(out), 'participant', '-w', str(work), '--nprocs', '2',
            '--skip-bids-validation']
    proc = subprocess.run([*entrypoint(), *argv], capture_output=True, text=True)
    return dict(bids=bids, out=out, work=work, argv=argv, proc=proc,
                truth=root / 'data' / 'truth')


def test_exit_status_and_error_line(run):
    proc = run['proc']
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith('aslproc: sub-02 failed')]
    assert line, proc.stderr[-3000:]
    assert 'sub-02_asl.json' in line[0] and 'PostLabelingDelay' in line[0]
    assert 'sub-01 failed' not in proc.stderr


def test_outputs_match_the_table(run):
    ents = {'subject': '01'}
    for key in DEFAULT:
        o = OUTPUTS[key]
        path = derivative_path(run['out'], ents, datatype=o.datatype, suffix=o.suffix,
                               extension=o.extension, **o.naming)
        assert path.is_file(), key
        if o.extension == '.nii.gz':
            side = json.loads(path.with_name(path.name[:-7] + '.json').read_text())
            assert side['Description'] == o.description
            if o.units:
                assert side['Units'] == o.units and side['PostLabelingDelay'] == 1.8
    written = {p.name for p in (run['out'] / 'sub-01').rglob('*') if p.is_file()}
    expected = set()
    for key in DEFAULT:
        o = OUTPUTS[key]
        name = derivative_path(run['out'], ents, datatype=o.datatype, suffix=o.suffix,
                               extension=o.extension, **o.naming).name
        expected |= {name, name[: -len(o.extension)] + '.json'}  # every output has a sidecar
    assert written - expected == set(), 'files not in the outputs table'
    assert not any((run['out'] / 'sub-02').rglob('*_cbf.nii.gz'))
    assert (run['out'] / 'sub-01.html').is_file() and (run['out'] / 'sub-02.html').is_file()
    desc = json.loads((run['out'] / 'dataset_description.json').read_text())
    assert desc['DatasetType'] == 'derivative' and desc['GeneratedBy'][0]['Name'] == 'aslproc'


def test_cbf_is_quantitative(run):
    cbf = nib.load(str(run['out'] / 'sub-01/perf/sub-01_cbf.nii.gz')).get_fdata()
    truth = nib.load(str(run['truth'] / 'sub-01_cbf.nii.gz')).get_fdata()
    seg = nib.load(str(run['truth'] / 'sub-01_seg.nii.gz')).get_fdata()
    gm = (seg == 1) & (cbf != 0)
    assert gm.sum() > 20
    bias = (np.median(cbf[gm]) - np.median(truth[gm])) / np.median(truth[gm])
    assert abs(bias) < 0.2
    assert np.corrcoef(cbf[gm | (seg == 2)], truth[gm | (seg == 2)])[0, 1] > 0.5
    qc = (run['out'] / 'sub-01/perf/sub-01_desc-qc_cbf.tsv').read_text().splitlines()
    row = dict(zip(qc[0].split('\t'), qc[1].split('\t'), strict=True))
    assert float(row['mean_gm_cbf']) > float(row['mean_wm_cbf']) > 0
    assert 0.3 < float(row['dice_asl_t1w']) <= 1


def test_learned_stages_are_recorded(run):
    perf = run['out'] / 'sub-01' / 'perf'
    dn = json.loads((perf / 'sub-01_desc-denoised_cbf.json').read_text())
    assert len(dn['DenoisingModelSHA256']) == 64 and dn['Units'] == 'mL/100 g/min'
    assert dn['LesionGuardFWHM'] == 10.0 and dn['DenoiserAdaptationSteps'] == 0
    sr = json.loads((perf / 'sub-01_space-T1w_desc-sr_cbf.json').read_text())
    assert sr['SRDevice'] == 'cpu' and 'SRIterationsPerLevel' in sr
    t1w = nib.load(str(run['bids'] / 'sub-01/anat/sub-01_T1w.nii.gz'))
    assert nib.load(str(perf / 'sub-01_space-T1w_desc-sr_cbf.nii.gz')).shape == t1w.shape
    qc = (perf / 'sub-01_desc-qc_cbf.tsv').read_text().splitlines()
    row = dict(zip(qc[0].split('\t'), qc[1].split('\t'), strict=True))
    # one QC number per learned stage; both keep their data, so neither is flagged
    assert 0 < float(row['denoise_data_departure_sd']) < 3
    assert 0 <= float(row['sr_data_departure_sd']) < 3


def test_output_is_a_valid_derivative_dataset(run):
    validate_bids(run['out'], derivative=True)


def test_rerun_reuses_the_cache(run):
    """A second run re-executes no computing node: their nipype result files stay as they were
    (only the data sinks, which are cheap and always run, write again)."""
    results = {p: p.stat().st_mtime_ns for p in (run['work'] / 'sub_01_wf').rglob('result_*.pklz')
               if not p.name.startswith('result_ds_')}
    assert len(results) > 15
    stamp = (run['out'] / 'sub-01/perf/sub-01_cbf.nii.gz').read_bytes()
    assert main(run['argv'] + ['--participant-label', '01']) == 0
    rerun = [p.parent.name for p, t in results.items() if p.stat().st_mtime_ns != t]
    assert rerun == []
    assert (run['out'] / 'sub-01/perf/sub-01_cbf.nii.gz').read_bytes() == stamp


def test_template_space_outputs_and_group_level(run, tmp_path):
    """Normalization is on by default: the template-space CBF (ASL -> T1w -> template in one
    step) matches the true CBF carried from the T1w grid to the template (0.80 on this case; a
    4 mm shift brings it to 0.65), the regional table covers the 300 spheres, and the group
    level runs on the output."""
    from scipy import ndimage

    from aslproc.utils.normalize import resample_to_space
    from aslproc.utils.template import template_image, write_template

    perf, anat = run['out'] / 'sub-01' / 'perf', run['out'] / 'sub-01' / 'anat'
    std = nib.load(str(perf / 'sub-01_space-MNI152NLin2009aSym_res-2_cbf.nii.gz'))
    assert std.shape == (99, 117, 95)
    side = json.loads((perf / 'sub-01_space-MNI152NLin2009aSym_res-2_cbf.json').read_text())
    assert side['Interpolation'] == 'linear' and side['PostLabelingDelay'] == 1.8
    mask = np.asanyarray(nib.load(str(
        perf / 'sub-01_space-MNI152NLin2009aSym_res-2_desc-brain_mask.nii.gz')).dataobj)
    assert set(np.unique(mask).tolist()) == {0, 1}
    brain = np.asanyarray(template_image('mask', 2).dataobj) > 0.5
    inside = mask > 0
    assert 2 * (inside & brain).sum() / (inside.sum() + brain.sum()) > 0.8
    ref = write_template('T1', 2, tmp_path / 'ref.nii.gz')
    xfm = anat / 'sub-01_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5'
    truth = nib.load(resample_to_space(run['truth'] / 'sub-01_hrcbf.nii.gz', ref, [str(xfm)],
                                       tmp_path / 'truth.nii.gz')).get_fdata()
    truth = ndimage.gaussian_filter(truth, 6.0 / 2.355 / 2.0)  # the 6 mm ASL voxel
    cbf = std.get_fdata()
    assert np.corrcoef(truth[inside], cbf[inside])[0, 1] > 0.7
    assert abs(np.median(cbf[inside]) / np.median(truth[inside]) - 1) < 0.15
    with open(perf / 'sub-01_desc-regions_cbf.tsv') as f:
        rows = f.read().splitlines()
    assert len(rows) == 301 and rows[0].startswith('index\tname\tnetwork\tregion')
    # The group level runs on this output; sub-01 moved 0.5 mm per volume (mean FD above the
    # usual 0.5 mm), so it is reported as excluded and no group map is written (the maps of
    # included subjects: tests/test_e2e_group.py and tests/test_group_level.py).
    assert main([str(run['bids']), str(run['out']), 'group']) == 0
    for name in ('group_desc-global_cbf.tsv', 'group_desc-regions_cbf.tsv', 'group_report.html'):
        assert (run['out'] / name).is_file(), name
    glob = (run['out'] / 'group_desc-global_cbf.tsv').read_text()
    assert 'mean_fd outside the usual range' in glob
    assert not list(run['out'].glob('group_space-*'))
    validate_bids(run['out'], derivative=True)
