"""The training CLI in --quick mode runs in seconds, exports weights and lowers the loss."""

import csv

import numpy as np

from aslproc.models import infer
from aslproc.training import train_denoiser


def test_quick_training(tmp_path):
    out = tmp_path / 'run'
    assert train_denoiser.main(['--out', str(out), '--seed', '0', '--steps', '30',
                                '--lambda', '0.2', '--quick']) == 0
    rows = list(csv.DictReader(open(out / 'loss.csv')))
    assert len(rows) >= 4
    meta = infer.load_denoiser(out / 'denoiser.pt')[1]['metadata']
    assert meta['val_loss_final'] < meta['val_loss_initial']
    assert all(np.isfinite(float(r['loss'])) for r in rows)
    assert meta['lambda'] == 0.2 and meta['channels'] and meta['normalisation']['cbf_scale']


def test_logged_seconds_of_an_interrupted_run(tmp_path):
    """A run resumed from a checkpoint reports the training time its log recorded up to it."""
    log = tmp_path / 'loss.csv'
    log.write_text('step,loss,noise,kinetic,val_loss,lr,seconds\n'
                   '50,1,1,1,,0.001,40.5\n100,1,1,1,0.2,0.001,80.0\n150,1,1,1,,0.001,120.0\n')
    assert train_denoiser._logged_seconds(log, 100) == 80.0
    assert train_denoiser._logged_seconds(log, 149) == 80.0
    assert train_denoiser._logged_seconds(log, 10) == 0.0


def test_twin_samples_share_the_truth_and_not_the_noise():
    """Paired samples: same slice, crop, augmentation and target; disjoint pairs."""
    from aslproc.training import data
    from aslproc.utils import denoise as dnu

    subjects = [data.make_subject(np.random.default_rng([0, i]), n_pairs=6, quick=True)
                for i in range(2)]
    b = data.batch(np.random.default_rng(5), subjects, dnu.PLAIN_CHANNELS, 8, 24, paired=True)
    assert b['inputs'].shape == (8, 4, 24, 24)
    for k in ('cbf_true', 'mask', 'm0', 'to_x'):
        assert np.array_equal(b[k][0::2], b[k][1::2]), k
    assert not np.array_equal(b['noise'][0::2], b['noise'][1::2])
    x_true = b['noisy'] - b['noise']  # the clean normalised ΔM: the same for both twins
    assert np.allclose(x_true[0::2], x_true[1::2], atol=1e-5)


def test_quick_training_with_the_bias_term(tmp_path):
    out = tmp_path / 'run'
    assert train_denoiser.main(['--out', str(out), '--steps', '10', '--quick',
                                '--bias-weight', '2']) == 0
    rows = list(csv.DictReader(open(out / 'loss.csv')))
    assert all(np.isfinite(float(r['bias'])) for r in rows)
    assert infer.load_denoiser(out / 'denoiser.pt')[1]['metadata']['bias_weight'] == 2.0
