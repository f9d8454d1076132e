"""--output-spaces, --skip-normalization and --atlas on the command line (fMRIPrep style)."""

import json

import nibabel as nib
import numpy as np
import pytest

from aslproc.cli.parser import parse_args
from aslproc.utils.template import Space, parse_spaces


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / 'ds'
    root.mkdir()
    (root / 'dataset_description.json').write_text(json.dumps({'Name': 'x',
                                                               'BIDSVersion': '1.9.0'}))
    return root


@pytest.fixture
def atlas(tmp_path):
    data = np.zeros((10, 10, 10), np.int16)
    data[2:5, 2:5, 2:5], data[6:9, 6:9, 6:9] = 1, 2
    aff = np.diag([5.0, 5.0, 5.0, 1.0])
    aff[:3, 3] = -25
    path = tmp_path / 'atlas.nii.gz'
    nib.Nifti1Image(data, aff).to_filename(path)
    labels = tmp_path / 'atlas.tsv'
    labels.write_text('index\tname\n1\tone\n2\ttwo\n')
    return path, labels


def _args(bids, tmp_path, *extra):
    return parse_args([str(bids), str(tmp_path / 'out'), 'participant', *extra])


def test_default_normalizes_to_the_2mm_template(bids, tmp_path):
    s = _args(bids, tmp_path)
    assert s.output_spaces == ('asl', 'MNI152NLin2009aSym:res-2') and s.normalize
    assert s.atlas is None
    assert json.loads(s.dumps())['output_spaces'] == ['asl', 'MNI152NLin2009aSym:res-2']


@pytest.mark.parametrize('spaces,expected,normalize', [
    (['T1w'], ('T1w',), False),
    (['MNI152NLin2009aSym'], ('MNI152NLin2009aSym:res-2',), True),
    (['asl', 'MNI152NLin2009aSym:res-1', 'T1w', 'MNI152NLin2009aSym:res-2'],
     ('asl', 'MNI152NLin2009aSym:res-1', 'T1w', 'MNI152NLin2009aSym:res-2'), True),
])
def test_output_spaces(bids, tmp_path, spaces, expected, normalize):
    s = _args(bids, tmp_path, '--output-spaces', *spaces)
    assert s.output_spaces == expected and s.normalize == normalize


def test_skip_normalization_drops_the_template(bids, tmp_path):
    s = _args(bids, tmp_path, '--skip-normalization')
    assert s.output_spaces == ('asl',) and not s.normalize
    assert parse_spaces(s.output_spaces) == (Space('asl'),)


def test_user_atlas_is_accepted(bids, tmp_path, atlas):
    s = _args(bids, tmp_path, '--atlas', str(atlas[0]), '--atlas-labels', str(atlas[1]))
    assert s.atlas == atlas[0] and s.atlas_labels == atlas[1]


@pytest.mark.parametrize('extra,message', [
    (['--output-spaces', 'MNI152NLin2009cAsym'], "unknown output space 'MNI152NLin2009cAsym'"),
    (['--output-spaces', 'MNI152NLin2009aSym:res-3'], "unknown modifier 'res-3'"),
    (['--output-spaces', 'T1w:res-2'], 'T1w takes no modifiers'),
    (['--skip-normalization', '--output-spaces', 'MNI152NLin2009aSym'],
     '--skip-normalization contradicts'),
])
def test_bad_spaces_exit_2(bids, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        _args(bids, tmp_path, *extra)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_atlas_options_exit_2(bids, tmp_path, capsys, atlas):
    cases = [
        (['--atlas', str(atlas[0])], '--atlas and --atlas-labels go together'),
        (['--atlas-labels', str(atlas[1])], '--atlas and --atlas-labels go together'),
        (['--atlas', str(atlas[0]), '--atlas-labels', str(atlas[1]), '--skip-normalization'],
         '--atlas needs a template output space'),
    ]
    wrong = tmp_path / 'wrong.tsv'
    wrong.write_text('index\tname\n1\tone\n')
    cases.append((['--atlas', str(atlas[0]), '--atlas-labels', str(wrong)],
                  f'labels 2 are not in {wrong}'))
    nameless = tmp_path / 'nameless.tsv'
    nameless.write_text('index\tlabel\n1\tone\n2\ttwo\n')
    cases.append((['--atlas', str(atlas[0]), '--atlas-labels', str(nameless)],
                  f'{nameless}: no "name" column'))
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            _args(bids, tmp_path, *extra)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err and 'Traceback' not in err, err


@pytest.mark.parametrize('spaces,pvc', [
    (('asl',), False),
    (('asl', 'T1w', 'MNI152NLin2009aSym:res-1', 'MNI152NLin2009aSym:res-2'), True),
])
def test_spaces_are_wired_as_asked(tmp_path, spaces, pvc):
    """The graph builds and expands for each list of spaces: one resampling node and one sink
    per map and space, the regional table on the first template grid, nothing without one."""
    from nipype.pipeline.engine.utils import generate_expanded_graph

    from aslproc.bids import query
    from aslproc.cli.settings import Settings
    from aslproc.workflows.base import init_single_subject_wf
    from tests.conftest import make_dataset

    bids = make_dataset(tmp_path / 'ds', n_pairs=2)
    settings = Settings(bids_dir=bids, output_dir=tmp_path / 'out', analysis_level='participant',
                        work_dir=tmp_path / 'work', denoise=True, sr=False, pvc=pvc,
                        output_spaces=spaces)
    wf = init_single_subject_wf(subject='01', runs=query.collect_runs(bids, '01'),
                                settings=settings)
    nodes = {n.fullname.split('.', 1)[1]: n for n in
             generate_expanded_graph(wf._create_flat_graph()).nodes()}
    names = {k.rsplit('.', 1)[-1] for k in nodes}
    if spaces == ('asl',):
        assert not any('MNI' in n or 'T1w' in n or n in ('normalize', 'regions') for n in names)
        assert 'regions' not in wf.visit_desc()
        return
    maps = ('cbf', 'cbf_smoothed', 'cbf_denoised', 'cbf_pvc_gm', 'cbf_pvc_wm', 'asl_mask')
    for tag in ('T1w', 'MNI152NLin2009aSym_res1', 'MNI152NLin2009aSym_res2'):
        assert {f'{k}_to_{tag}' for k in maps} <= names
        assert {f'ds_{k}_{tag}' for k in maps} <= names
    assert {'normalize', 'template_res1', 'template_res2', 'atlas', 'regions',
            'fov_MNI152NLin2009aSym_res1', 'ds_xfm_to_template', 'ds_regions'} <= names
    assert 'fov_MNI152NLin2009aSym_res2' not in names  # regions on the first template grid
    assert nodes['template_wf.normalize'].inputs.res == 1
    region = next(n for k, n in nodes.items() if k.endswith('.regions'))
    assert region.inputs.map_names == ['cbf', 'cbf_smoothed', 'cbf_denoised', 'cbf_pvcGM']
    sink = next(n for k, n in nodes.items() if k.endswith('ds_cbf_pvc_wm_MNI152NLin2009aSym_res1'))
    assert sink.inputs.naming == {'space': 'MNI152NLin2009aSym', 'res': '1', 'desc': 'pvcWM'}
    text = wf.visit_desc()
    assert 'MNI152NLin2009aSym' in text and 'Seitzman' in text and 'single linear' in text
