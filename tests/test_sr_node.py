"""The SR interface in a nipype Node on tiny images, and the SR workflow's graph."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest
from nipype.pipeline import engine as pe
from nipype.pipeline.engine.utils import generate_expanded_graph

from aslproc.bids import query
from aslproc.cli.settings import Settings
from aslproc.interfaces.superres import SuperResolve
from aslproc.utils.registration import write_xfm
from aslproc.workflows.superres import init_sr_wf


def _save(data, affine, path):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return str(path)


@pytest.fixture
def tiny_files(tmp_path):
    """Constant CBF 50 on a 4 mm grid (8×8×6), a 2 mm T1w with its mask and GM/WM/CSF maps,
    identity transform."""
    lr_aff, hr_aff = np.diag([4.0, 4.0, 4.0, 1.0]), np.diag([2.0, 2.0, 2.0, 1.0])
    lr_aff[:3, 3] = 1.0
    t1w = np.full((16, 16, 12), 100.0)
    t1w[4:12, 4:12, 3:9] = 60.0
    mask = np.zeros_like(t1w)
    mask[2:14, 2:14, 2:10] = 1
    gm = np.float32(t1w == 60.0)
    return dict(cbf_file=_save(np.full((8, 8, 6), 50.0), lr_aff, tmp_path / 'cbf.nii.gz'),
                t1w_file=_save(t1w, hr_aff, tmp_path / 't1w.nii.gz'),
                gm_file=_save(gm, hr_aff, tmp_path / 'gm.nii.gz'),
                wm_file=_save(mask * (1 - gm), hr_aff, tmp_path / 'wm.nii.gz'),
                csf_file=_save(np.zeros_like(t1w), hr_aff, tmp_path / 'csf.nii.gz'),
                mask_file=_save(mask, hr_aff, tmp_path / 'mask.nii.gz'),
                xfm_file=write_xfm(np.eye(4), tmp_path / 'xfm.mat'))


def test_superresolve_node(tmp_path, tiny_files):
    node = pe.Node(SuperResolve(iters=2, levels=1, seed=3, baseline=True, device='cpu',
                                **tiny_files), name='sr', base_dir=str(tmp_path / 'work'))
    res = node.run()
    out = nib.load(res.outputs.out_file)
    assert out.shape == (16, 16, 12) and np.allclose(out.affine, np.diag([2, 2, 2, 1.0]))
    data = np.asarray(out.dataobj)
    # a constant map stays constant inside the field of view: nothing is painted from the T1w
    np.testing.assert_allclose(data[2:14, 2:14, 2:10], 50.0, atol=1e-3)
    for f in (res.outputs.out_linear, res.outputs.out_cubic):
        np.testing.assert_allclose(np.asarray(nib.load(f).dataobj)[2:14, 2:14, 2:10], 50.0,
                                   atol=1e-3)
    # nothing changed in the values the data fix (QC: sr_data_departure_sd)
    departure = nib.load(res.outputs.out_departure)
    assert departure.shape == (8, 8, 6) and np.allclose(departure.affine,
                                                        nib.load(tiny_files['cbf_file']).affine)
    assert np.abs(np.asarray(departure.dataobj)[2:-2, 2:-2, 2:-2]).max() < 1e-2
    info = res.outputs.info
    assert info['iterations'] == 2 and info['seed'] == 3 and info['device'] == 'cpu'
    assert info['schedule'] == [[4.0, 4.0, 4.0], [2.0, 2.0, 2.0]]
    json.dumps(info)  # goes into the sidecar
    assert info['regressors'].startswith('GM/WM fractions')
    for tissue in ('GM', 'WM'):  # tissue means reported, and not invented from the anatomy
        assert info['tissue_means'][tissue]['after'] == pytest.approx(50.0, abs=1e-2)


def test_superresolve_device_is_not_hashed(tiny_files):
    a = SuperResolve(device='cpu', num_threads=1, **tiny_files)
    b = SuperResolve(device='cuda', num_threads=4, **tiny_files)
    assert a.inputs.get_hashval()[1] == b.inputs.get_hashval()[1]


def test_superresolve_missing_input(tiny_files):
    files = dict(tiny_files)
    files.pop('t1w_file')
    with pytest.raises(ValueError, match='t1w_file'):
        SuperResolve(**files).run()


@pytest.mark.parametrize('baseline', [False, True])
def test_sr_workflow_builds(tmp_path, tiny_bids, baseline):
    spec = query.collect_runs(tiny_bids, '01')[0]
    settings = Settings(bids_dir=tiny_bids, output_dir=tmp_path / 'out',
                        analysis_level='participant', work_dir=tmp_path / 'work')
    fields = {f.name for f in dataclasses.fields(Settings)}
    extra = {'sr_iters': 5, 'sr_levels': 2, 'sr_baseline': baseline}
    if set(extra) <= fields:
        settings = dataclasses.replace(settings, **extra)
    else:  # before the lead adds the fields: the workflow reads them with getattr
        for key, value in extra.items():
            object.__setattr__(settings, key, value)
    wf = init_sr_wf(spec=spec, settings=settings, sources=['bids::sub-01/perf/x.nii.gz'])
    names = {n.name for n in generate_expanded_graph(wf._create_flat_graph()).nodes()}
    assert {'super_resolve', 'ds_cbf_sr', 'sr_meta'} <= names
    assert ({'ds_cbf_srlinear', 'ds_cbf_srcubic'} <= names) == baseline
    node = wf.get_node('super_resolve')
    assert node.inputs.iters == 5 and node.inputs.levels == 2
    assert 'Cui, Gong' in wf.visit_desc() and '5 iterations per level' in wf.visit_desc()
