"""Per-scan Noise2Noise adaptation of the denoiser and the lesion guard in denoise_file."""

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from aslproc.models import infer
from aslproc.models.adapt import noise2noise_finetune
from aslproc.utils import cbf as cbfu
from aslproc.utils import denoise as dnu

PARAMS = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
SHAPE = (32, 32, 4)


def _scan(n_pairs, seed=0):
    """Smooth ΔM (0.3-0.9 % of M0) with noise: pairs, M0, mask and the clean ΔM."""
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(rng.normal(0, 1, SHAPE), 4)
    clean = 0.6 + 0.3 * clean / np.abs(clean).max()
    pairs = clean[..., None] + rng.normal(0, 0.5, (*SHAPE, n_pairs))
    return pairs.astype(np.float32), np.full(SHAPE, 100.0), np.ones(SHAPE), clean


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_finetune_learns_the_scan_and_leaves_the_shipped_model_alone():
    model, info = infer.load_denoiser()
    before = _weights(model).clone()
    pairs, m0, mask, clean = _scan(8)
    tuned, fit = noise2noise_finetune(model, pairs, m0, mask, PARAMS, info['channels'],
                                      steps=40, lr=3e-4)
    assert torch.equal(_weights(model), before)
    assert not torch.equal(_weights(tuned), before)
    assert fit['steps'] == 40 and fit['loss_last'] < fit['loss_first']
    errors = {}
    for name, net in (('shipped', model), ('tuned', tuned)):
        dm = dnu.denoise_pairs(net, pairs, m0, mask, PARAMS, info['channels'])
        errors[name] = float(np.sqrt(np.mean((dm - clean) ** 2)))
    noisy = float(np.sqrt(np.mean((pairs.mean(-1) - clean) ** 2)))
    assert errors['tuned'] < errors['shipped'] < noisy


def test_finetune_needs_two_halves_of_two_pairs():
    model, info = infer.load_denoiser()
    pairs, m0, mask, _ = _scan(3)
    with pytest.raises(ValueError, match='at least 4'):
        noise2noise_finetune(model, pairs, m0, mask, PARAMS, info['channels'], steps=1)


def _deficit_scan(tmp_path, seed):
    """A 36 mm deficit at a quarter of the perfusion, 8 noisy pairs (noise SD 1.2 % of M0)."""
    rng = np.random.default_rng(seed)
    shape = (40, 40, 6)
    m0 = np.full(shape, 100.0, np.float32)
    dm = np.full(shape, 0.6)
    dm[14:26, 14:26, :] = 0.15
    vols = [m0]
    for _ in range(8):
        vols += [m0 + rng.normal(0, 1.2, shape), m0 - dm + rng.normal(0, 1.2, shape)]
    aff = np.diag([3.0, 3.0, 3.0, 1.0])
    files = {}
    for key, arr in (('asl', np.stack(vols, -1)), ('m0', m0), ('mask', np.ones(shape))):
        files[key] = str(tmp_path / f'{key}{seed}.nii.gz')
        nib.save(nib.Nifti1Image(np.asarray(arr, np.float32), aff), files[key])
    true = cbfu.cbf_map(dm, m0, PARAMS, np.ones(shape))
    return files, ['m0scan'] + ['control', 'label'] * 8, true


def test_denoise_file_guard_restores_an_erased_deficit(tmp_path):
    """A deep, wide deficit the network partly smooths over is restored by the guard, and
    only there: with the guard off the deficit is shallower. Averaged over six noise draws,
    because on one draw the network's fill-in can sit at the guard's noise threshold."""
    inner, outside = (slice(17, 23), slice(17, 23)), (slice(0, 8), slice(0, 8))
    err = {0.0: [], 10.0: []}
    for seed in range(3, 9):
        files, types, true = _deficit_scan(tmp_path, seed)
        maps = {}
        for fwhm in err:
            cbf, _ = dnu.denoise_file(files['asl'], types, files['m0'], files['mask'], PARAMS,
                                      tmp_path / f'cbf{seed}_{fwhm}.nii.gz',
                                      tmp_path / f'dm{seed}_{fwhm}.nii.gz',
                                      device='cpu', guard_fwhm=fwhm)
            maps[fwhm] = np.asarray(nib.load(cbf).dataobj)
            err[fwhm].append(abs(maps[fwhm][inner].mean() - true[inner].mean()))
        assert abs(maps[10.0][outside].mean() - maps[0.0][outside].mean()) < 1.0
    # 5.0 -> 4.0 ml/100 g/min of fill-in (one pass at one threshold for the brain, before
    # stop 33: 5.0 -> 4.7; stop-17 weights: 6.4 -> 5.5)
    assert np.mean(err[10.0]) < 0.9 * np.mean(err[0.0])
