"""Command-line parsing: valid calls give Settings, bad ones exit with status 2."""

import json

import pytest

from aslproc import __version__
from aslproc.cli.parser import parse_args


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / 'ds'
    root.mkdir()
    desc = {'Name': 'x', 'BIDSVersion': '1.9.0'}
    (root / 'dataset_description.json').write_text(json.dumps(desc))
    return root


def test_minimal_call(bids, tmp_path):
    s = parse_args([str(bids), str(tmp_path / 'out'), 'participant'])
    assert s.analysis_level == 'participant'
    assert s.smooth_fwhm == 5.0 and s.device == 'auto' and s.denoise and s.sr
    # tissue-class models are opt-in; motion-compensated subtraction is on
    assert not s.denoise_pv and not s.pvc and s.motion_compensation
    # the lesion guard is on at 10 mm; the per-scan adaptation is opt-in
    assert s.lesion_guard == 10.0 and s.denoise_adapt == 0
    assert s.participant_label == ()
    assert s.omp_nthreads <= s.nprocs


def test_options(bids, tmp_path):
    s = parse_args([str(bids), str(tmp_path / 'out'), 'participant', '--participant_label',
                    'sub-01', '02', '--no-denoise', '--no-sr', '--m0-scale', '10',
                    '--smooth-fwhm', '0', '--nprocs', '4', '--omp-nthreads', '2', '-w',
                    str(tmp_path / 'w'), '--device', 'cpu', '-vv', '--t1-blood', '1.5',
                    '--sr-iters', '50', '--sr-levels', '3', '--sr-baseline'])
    assert (s.sr_iters, s.sr_levels, s.sr_baseline) == (50, 3, True)
    assert parse_args([str(bids), str(tmp_path / 'o'), 'participant', '--sr-iters', '0']
                      ).sr_iters == 0
    assert s.participant_label == ('01', '02')
    assert not s.denoise and not s.sr
    opted = parse_args([str(bids), str(tmp_path / 'o'), 'participant', '--denoise-pv', '--pvc',
                        '--no-motion-compensation', '--denoise-adapt', '100',
                        '--lesion-guard', '0'])
    assert opted.denoise_pv and opted.pvc and not opted.motion_compensation
    assert (opted.denoise_adapt, opted.lesion_guard) == (100, 0.0)
    assert (s.m0_scale, s.smooth_fwhm, s.nprocs, s.omp_nthreads) == (10.0, 0.0, 4, 2)
    assert s.work_dir == tmp_path / 'w' and s.verbose == 2 and s.t1_blood == 1.5
    assert json.loads(s.dumps())['participant_label'] == ['01', '02']


@pytest.mark.parametrize('extra', [
    ['--nprocs', '0'],
    ['--nprocs', 'two'],
    ['--m0-scale', '-1'],
    ['--m0-scale', '0'],
    ['--smooth-fwhm', 'nan'],
    ['--device', 'tpu'],
    ['--denoise-adapt', '-5'],
    ['--lesion-guard', '-1'],
])
def test_bad_values_exit_2(bids, tmp_path, extra, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids), str(tmp_path / 'out'), 'participant', *extra])
    assert exc.value.code == 2
    assert 'aslproc: error:' in capsys.readouterr().err


def test_bad_paths_exit_2(bids, tmp_path, capsys):
    for argv in ([str(tmp_path / 'missing'), str(tmp_path / 'o'), 'participant'],
                 [str(bids), str(bids), 'participant'],
                 [str(bids), str(tmp_path / 'o'), 'participant', '-w', str(bids / 'work')],
                 [str(bids), str(tmp_path / 'o'), 'subject']):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2


def test_not_bids(tmp_path):
    (tmp_path / 'raw').mkdir()
    with pytest.raises(SystemExit):
        parse_args([str(tmp_path / 'raw'), str(tmp_path / 'o'), 'participant'])


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(['--version'])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out
