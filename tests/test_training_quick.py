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
