"""Two subjects through the participant level (normalization on, the default) and the group
level: template-space CBF maps and regional tables per subject, then the group mean/SD/count
maps, the global and subject × region tables and the group report; the derivatives validate.

Small and still: 4 pairs, 4 mm ASL voxels (at 6 mm partial volume pulls the GM/WM ratio
under the QC range of 1.5 and the group level rightly excludes the run), 3 mm T1w, little
motion (both pass QC), no SR."""

import csv

import nibabel as nib
import numpy as np
import pytest

from aslproc.bids.validate import validate_bids
from aslproc.cli.run import main
from tests.conftest import make_dataset

STD = 'space-MNI152NLin2009aSym_res-2'
#: About 2.5 min on the 2-core CI machine; the default e2e run (tests/test_e2e_participant.py)
#: already normalizes and runs the group level on one subject.
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def out(tmp_path_factory):
    root = tmp_path_factory.mktemp('e2e_group')
    bids = make_dataset(root / 'data', subjects=2, motion_mm=0.1, snr=400.0,
                        asl_voxel=4.0)
    out = root / 'out'
    argv = [str(bids), str(out), 'participant', '-w', str(root / 'work'), '--nprocs', '2',
            '--skip-bids-validation', '--no-sr']
    assert main(argv) == 0
    assert main([str(bids), str(out), 'group']) == 0
    return out


def _tsv(path):
    with open(path) as f:
        return list(csv.DictReader(f, delimiter='\t'))


def test_participant_template_outputs(out):
    for sub in ('01', '02'):
        perf = out / f'sub-{sub}' / 'perf'
        for name in (f'{STD}_cbf', f'{STD}_desc-denoised_cbf', f'{STD}_desc-brain_mask'):
            assert (perf / f'sub-{sub}_{name}.nii.gz').is_file(), name
        rows = _tsv(perf / f'sub-{sub}_desc-regions_cbf.tsv')
        assert len(rows) == 300 and 'cbf' in rows[0] and 'coverage' in rows[0]
        assert (out / f'sub-{sub}' / 'anat' /
                f'sub-{sub}_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5').is_file()


def test_group_outputs(out):
    glob = {r['participant_id']: r for r in _tsv(out / 'group_desc-global_cbf.tsv')}
    assert set(glob) == {'sub-01', 'sub-02'}
    assert all(r['included'] == 'true' for r in glob.values()), glob
    for desc in ('', '_desc-denoised'):
        mean = nib.load(out / f'group_{STD}_stat-mean{desc}_cbf.nii.gz').get_fdata()
        sd = nib.load(out / f'group_{STD}_stat-sd{desc}_cbf.nii.gz').get_fdata()
        count = np.asanyarray(nib.load(out / f'group_{STD}_stat-count{desc}_cbf.nii.gz').dataobj)
        both = count == 2
        assert both.sum() > 10000 and count.max() == 2
        assert 20 < np.median(mean[both]) < 100 and np.all(sd[both] >= 0)
        assert np.median(sd[both]) < np.median(mean[both])
    regions = _tsv(out / 'group_desc-regions_cbf.tsv')
    assert {r['participant_id'] for r in regions} == {'sub-01', 'sub-02'}
    assert len(list(regions[0])) == 4 + 300
    html = (out / 'group_report.html').read_text()
    assert 'All 2 run(s) passed QC' in html and html.count('data:image/png;base64') >= 5


def test_derivatives_validate(out):
    validate_bids(out, derivative=True)
