"""Derivative naming and the atomic data sink."""

import json

import nibabel as nib
import numpy as np
from nipype.pipeline import engine as pe

from aslproc.interfaces.bids import DerivativesDataSink
from aslproc.utils.sink import write_derivative
from aslproc.workflows.outputs import OUTPUTS, sidecar


def _img(path, shape=(2, 2, 2)):
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(path))
    return path


def test_write_derivative_names_and_sidecar(tmp_path):
    src = _img(tmp_path / 'cbf.nii')
    out = write_derivative(src, tmp_path / 'out', {'subject': '01', 'session': 'a', 'run': 1},
                           datatype='perf', suffix='cbf', naming={'desc': 'smoothed'},
                           meta={'Units': 'mL/100 g/min'}, sources=['bids:raw:x'])
    assert out == tmp_path / 'out/sub-01/ses-a/perf/sub-01_ses-a_run-1_desc-smoothed_cbf.nii.gz'
    assert nib.load(str(out)).shape == (2, 2, 2)
    side = json.loads(out.with_name(out.name.replace('.nii.gz', '.json')).read_text())
    assert side == {'Units': 'mL/100 g/min', 'Sources': ['bids:raw:x']}
    assert not list(out.parent.glob('.*tmp'))


def test_rewrite_is_safe(tmp_path):
    src = _img(tmp_path / 'm.nii.gz')
    a = write_derivative(src, tmp_path, {'subject': '01'}, datatype='anat', suffix='mask',
                         naming={'desc': 'brain'})
    b = write_derivative(src, tmp_path, {'subject': '01'}, datatype='anat', suffix='mask',
                         naming={'desc': 'brain'})
    assert a == b and a.read_bytes() == src.read_bytes()


def test_sink_node(tmp_path):
    src = _img(tmp_path / 'x.nii.gz')
    node = pe.Node(DerivativesDataSink(
        in_file=str(src), base_directory=str(tmp_path / 'out'), entities={'subject': '02'},
        datatype='perf', suffix='xfm', extension='.mat',
        naming={'from': 'asl', 'to': 'T1w', 'mode': 'image'}), name='ds', base_dir=tmp_path)
    res = node.run()
    assert res.outputs.out_file.endswith('perf/sub-02_from-asl_to-T1w_mode-image_xfm.mat')


def test_table_sidecars():
    assert sidecar('cbf', {'PostLabelingDelay': 1.8})['Units'] == 'mL/100 g/min'
    assert sidecar('cbf', {'PostLabelingDelay': 1.8})['PostLabelingDelay'] == 1.8
    assert 'PostLabelingDelay' not in sidecar('anat_mask', {'PostLabelingDelay': 1.8})
    assert 'framewise_displacement' in sidecar('confounds')
    assert {o.datatype for o in OUTPUTS.values()} == {'anat', 'perf'}
