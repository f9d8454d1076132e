"""Every top-level workflow builds and expands without running (miswired graphs fail here)."""

import pytest
from nipype.pipeline.engine.utils import generate_expanded_graph

from aslproc.bids import query
from aslproc.cli.settings import Settings
from aslproc.workflows.base import init_single_subject_wf
from tests.conftest import make_dataset


@pytest.mark.parametrize('label,m0', [
    ('PCASL', 'Included'), ('PCASL', 'Separate'), ('PASL', 'Estimate'), ('PCASL', 'Absent'),
])
@pytest.mark.parametrize('denoise,sr', [(True, True), (False, False)])
def test_subject_workflow_builds(tmp_path, label, m0, denoise, sr):
    bids = make_dataset(tmp_path / 'ds', label=label, m0_type=m0, n_pairs=2)
    runs = query.collect_runs(bids, '01')
    settings = Settings(bids_dir=bids, output_dir=tmp_path / 'out', analysis_level='participant',
                        work_dir=tmp_path / 'work', denoise=denoise, sr=sr)
    wf = init_single_subject_wf(subject='01', runs=runs, settings=settings)
    graph = generate_expanded_graph(wf._create_flat_graph())
    names = {n.name for n in graph.nodes()}
    assert {'hmc', 'register', 'compute_cbf', 'smooth', 'brain_mask', 'segment'} <= names
    assert 'ds_cbf' in names and 'ds_xfm' in names
    assert ('ds_cbf_denoised' in names) == denoise
    assert ('ds_cbf_sr' in names) == sr
    if sr:  # the SR's detail regressors: all three tissue maps of the segmentation
        feeds = {(u.name, dst) for u, v, d in graph.edges(data=True)
                 if v.name == 'super_resolve' for _, dst in d['connect']}
        assert {('segment', f'{t}_file') for t in ('gm', 'wm', 'csf')} <= feeds, feeds
    text = wf.visit_desc()
    assert m0 in text and ('pulsed' if label == 'PASL' else 'pseudo-continuous') in text


@pytest.mark.parametrize('pvc,compensate', [(True, False), (False, True)])
def test_pvc_and_motion_compensation_are_wired_as_asked(tmp_path, pvc, compensate):
    bids = make_dataset(tmp_path / 'ds', n_pairs=2)
    runs = query.collect_runs(bids, '01')
    settings = Settings(bids_dir=bids, output_dir=tmp_path / 'out', analysis_level='participant',
                        work_dir=tmp_path / 'work', denoise=False, sr=False, pvc=pvc,
                        motion_compensation=compensate)
    wf = init_single_subject_wf(subject='01', runs=runs, settings=settings)
    graph = generate_expanded_graph(wf._create_flat_graph())
    nodes = {n.name: n for n in graph.nodes()}
    assert ({'pvc', 'ds_cbf_pvc_gm', 'ds_cbf_pvc_wm'} <= set(nodes)) == pvc
    if pvc:
        meta = nodes['ds_cbf_pvc_gm'].inputs.meta
        assert meta['PartialVolumeCorrection'].startswith('linear regression')
        assert 'Partial-volume corrected' in wf.visit_desc()
    assert nodes['hmc'].inputs.compensate == compensate
    assert ('motion-compensated subtraction' in wf.visit_desc()) == compensate


@pytest.mark.parametrize('label,plds', [('PCASL', (0.5, 1.0, 1.5)), ('PASL', (0.9, 1.5, 2.1))])
def test_multidelay_workflow_fits_and_skips_the_denoiser(tmp_path, label, plds):
    bids = make_dataset(tmp_path / 'ds', label=label, plds=plds, n_pairs=1, m0_type='Separate')
    runs = query.collect_runs(bids, '01')
    assert runs[0].multi_delay
    settings = Settings(bids_dir=bids, output_dir=tmp_path / 'out', analysis_level='participant',
                        work_dir=tmp_path / 'work', denoise=True, sr=True)
    wf = init_single_subject_wf(subject='01', runs=runs, settings=settings)
    graph = generate_expanded_graph(wf._create_flat_graph())
    nodes = {n.name: n for n in graph.nodes()}
    assert {'fit_multidelay', 'ds_att', 'ds_cbf', 'ds_cbf_sr'} <= set(nodes)
    assert 'compute_cbf' not in nodes and 'denoise' not in nodes
    assert nodes['fit_multidelay'].inputs.params['volume_plds']
    text = wf.visit_desc()
    assert 'arterial transit time' in text and 'denoiser was not applied' in text


@pytest.mark.parametrize('denoise', [True, False])
def test_qc_row_gets_both_learned_stage_numbers(tmp_path, denoise):
    """The QC node reads the plain map's noise model and what the SR changed, whether the SR
    works on the denoised map or (``--no-denoise``) on the plain map, which once closed a
    loop between quantification and SR."""
    bids = make_dataset(tmp_path / 'ds', n_pairs=2)
    settings = Settings(bids_dir=bids, output_dir=tmp_path / 'out', analysis_level='participant',
                        work_dir=tmp_path / 'work', denoise=denoise, sr=True)
    wf = init_single_subject_wf(subject='01', runs=query.collect_runs(bids, '01'),
                                settings=settings)
    graph = generate_expanded_graph(wf._create_flat_graph())
    feeds = {(u.name, src, dst) for u, v, d in graph.edges(data=True) if v.name == 'qc'
             for src, dst in d['connect']}
    assert ('super_resolve', 'out_departure', 'sr_departure_file') in feeds
    assert {('compute_cbf', f'out_{k}', f'{k}_file') for k in ('noise', 'noise_sd')} <= feeds
    assert (('denoise', 'out_cbf', 'denoised_file') in feeds) == denoise
