"""DenoiseASL in a nipype Node, and the denoising workflow builds and expands."""

import nibabel as nib
import numpy as np
from nipype.pipeline import engine as pe
from nipype.pipeline.engine.utils import generate_expanded_graph

from aslproc.bids import query
from aslproc.cli.settings import Settings
from aslproc.interfaces.denoise import DenoiseASL
from aslproc.models import infer
from aslproc.workflows.denoise import init_denoise_wf

PARAMS = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)


def test_denoise_node(tmp_path):
    rng = np.random.default_rng(0)
    shape = (12, 11, 3)
    m0 = np.full(shape, 100.0, np.float32)
    # dM = 0.6 % of M0 (CBF 51.8) plus noise, 4 pairs: control 100, label 99.4
    vols = [m0]
    for _ in range(4):
        vols += [m0 + rng.normal(0, 0.2, shape), m0 - 0.6 + rng.normal(0, 0.2, shape)]
    mask = np.zeros(shape, np.float32)
    mask[2:10, 2:9] = 1
    aff = np.diag([3.0, 3.0, 6.0, 1.0])
    files = {}
    gm = np.zeros(shape, np.float32)
    gm[2:10, 2:5] = 1
    for key, arr in (('asl', np.stack(vols, -1)), ('m0', m0), ('mask', mask), ('gm', gm),
                     ('wm', mask - gm)):
        files[key] = str(tmp_path / f'{key}.nii.gz')
        nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), aff), files[key])
    node = pe.Node(DenoiseASL(asl_file=files['asl'], m0_file=files['m0'],
                              mask_file=files['mask'], params=PARAMS, device='cpu',
                              gm_file=files['gm'], wm_file=files['wm'],
                              volume_types=['m0scan'] + ['control', 'label'] * 4),
                   name='denoise', base_dir=str(tmp_path))
    res = node.run()
    cbf = nib.load(res.outputs.out_cbf).get_fdata()
    assert np.all(cbf[mask == 0] == 0) and np.isfinite(cbf).all()
    assert abs(np.median(cbf[mask > 0]) - 51.8) < 10
    assert res.outputs.model_sha256 == infer.weights_sha256(infer.DEFAULT_WEIGHTS)
    assert res.outputs.model_name.startswith('aslproc-denoiser')


def test_denoise_workflow_builds(tmp_path, tiny_bids):
    spec = query.collect_runs(tiny_bids, '01')[0]
    settings = Settings(bids_dir=tiny_bids, output_dir=tmp_path / 'out',
                        analysis_level='participant', work_dir=tmp_path / 'work')
    wf = init_denoise_wf(spec=spec, settings=settings, sources=['bids::sub-01/perf/x'])
    graph = generate_expanded_graph(wf._create_flat_graph())
    names = {n.name for n in graph.nodes()}
    assert {'denoise', 'denoise_meta', 'ds_cbf_denoised'} <= names
    assert 'DeepASL' in wf.visit_desc() and str(spec.n_pairs) in wf.visit_desc()
    node = wf.get_node('denoise')
    assert node.inputs.device == 'auto' and node.inputs.params['label_type'] == spec.label_type
    # the weight file is an explicit (hashed) input: a new model invalidates nipype's cache
    assert node.inputs.weights == str(infer.DEFAULT_WEIGHTS.resolve())
    assert not node.inputs.trait('weights').nohash
    # no tissue-class model inside the default map: the regression is opt-in
    assert not node.inputs.tissue_refine and 'partial-volume regression' not in wf.visit_desc()
    assert wf.get_node('denoise_meta').inputs.meta['DenoisingPartialVolumeRegression'] is False


def test_denoise_workflow_with_opt_in_pv_regression(tmp_path, tiny_bids):
    spec = query.collect_runs(tiny_bids, '01')[0]
    settings = Settings(bids_dir=tiny_bids, output_dir=tmp_path / 'out',
                        analysis_level='participant', work_dir=tmp_path / 'work',
                        denoise_pv=True)
    wf = init_denoise_wf(spec=spec, settings=settings)
    assert wf.get_node('denoise').inputs.tissue_refine
    assert 'partial-volume regression' in wf.visit_desc()
    meta = wf.get_node('denoise_meta').inputs.meta
    assert meta['DenoisingPartialVolumeRegression'] is True
    assert meta['DenoisingPartialVolumeWidthsMM'][-1] == 12.0
