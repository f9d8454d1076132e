"""The noise model of the plain map, and the denoiser's QC number measured in it: how far the
denoised map departs from the plain average at lesion scale, in noise SDs
(:func:`aslproc.utils.qc.data_departure_sd`, :mod:`aslproc.utils.lesion_guard`)."""

from __future__ import annotations

import numpy as np
import pytest

from aslproc.reports.context import DENOISE_DEPARTURE_FLAG as FLAG
from aslproc.utils import cbf as cbfu
from aslproc.utils import lesion_guard as lg
from aslproc.utils.pvreg import robust_sd
from aslproc.utils.qc import data_departure_sd

PARAMS = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
ZOOMS = (3.0, 3.0, 6.0)
SHAPE = (36, 36, 14)


def _head():
    """An ellipsoidal brain whose outer shell has M0 at 8 % of the brain's (partial volume at
    the edge: each voxel of it carries 12 times the CBF noise of the others)."""
    centre, half = (np.array(SHAPE) - 1) / 2, np.array(SHAPE) / 2 - 1
    r = np.linalg.norm((np.indices(SHAPE).T - centre) / half, axis=-1).T
    brain = r < 1.0
    m0 = np.where(brain, np.where(r > 0.86, 80.0, 1000.0), 0.0)
    return brain, m0


def _pairs(cbf, m0, brain, n_pairs, sd_dm, rng):
    """ΔM pairs of a CBF map with white ΔM noise of SD ``sd_dm``."""
    per_unit = cbfu.cbf_map(np.ones(m0.shape), m0, PARAMS, brain)
    dm = np.where(per_unit != 0, cbf / np.where(per_unit != 0, per_unit, 1.0), 0.0)
    return dm[..., None] + rng.normal(0.0, sd_dm, SHAPE + (n_pairs,))


def test_voxel_noise_sd_matches_the_spread_of_the_plain_map_over_draws():
    """The model's SD of each voxel of the plain CBF, from one scan of 8 pairs, against the
    SD of that voxel over 300 scans: within 5 % on average in the brain and in its low-M0
    shell, where the noise is 12 times larger, and within 20 % in every voxel (the SD over
    300 scans is itself uncertain by 4 %)."""
    brain, m0 = _head()
    rng = np.random.default_rng(0)
    cbf = np.where(brain, 50.0, 0.0)
    draws = np.stack([cbfu.cbf_map(_pairs(cbf, m0, brain, 8, 2.0, rng).mean(-1), m0, PARAMS,
                                   brain) for _ in range(300)])
    _, voxel_sd = lg.plain_noise_model(_pairs(cbf, m0, brain, 8, 2.0, rng), m0, brain,
                                       PARAMS)
    ratio = voxel_sd / np.maximum(draws.std(axis=0), 1e-9)
    shell = brain & (m0 < 100)
    for part in (shell, brain & ~shell):
        assert abs(ratio[part].mean() - 1.0) < 0.05
    assert np.all(np.abs(ratio[brain] - 1.0) < 0.2)
    assert voxel_sd[shell].mean() > 10 * voxel_sd[brain & ~shell].mean()


def test_noise_at_lesion_scale_is_one_sd_where_one_sd_of_the_whole_brain_is_not():
    """A noise-only map of another scan smoothed over 10 mm, divided by :func:`noise_sd_map`
    of this one: it stays within the few SDs noise reaches. Divided by one robust SD of the
    whole brain (the lesion guard's threshold until stop 33) the noisy shell reads like
    lesions."""
    brain, m0 = _head()
    rng = np.random.default_rng(1)
    cbf = np.where(brain, 50.0, 0.0)
    noise, voxel_sd = lg.plain_noise_model(_pairs(cbf, m0, brain, 8, 2.0, rng), m0, brain,
                                           PARAMS)
    other, _ = lg.plain_noise_model(_pairs(cbf, m0, brain, 8, 2.0, rng), m0, brain, PARAMS)
    sd = lg.noise_sd_map(voxel_sd, noise, brain, 10.0, ZOOMS)
    smooth = cbfu.smooth_in_mask(other, brain, 10.0, ZOOMS)
    assert np.abs(smooth[brain] / sd[brain]).max() < 4.5
    assert np.abs(smooth[brain]).max() / robust_sd(smooth[brain]) > 6.0


@pytest.mark.parametrize('seed', [2, 3])
def test_denoiser_number_flags_a_filled_lesion_unless_the_guard_put_it_back(seed):
    """A 15 mm deficit (×0.4) in a brain of 60. A denoiser that erased it departs from the
    plain map by far more than noise does (about 11 SDs here); the lesion guard puts it back
    and the number falls below the flag, as does a denoiser that kept it."""
    brain, m0 = _head()
    rng = np.random.default_rng(seed)
    idx = np.indices(SHAPE)
    lesion = ((idx[0] - 12) * 3.0) ** 2 + ((idx[1] - 18) * 3.0) ** 2 + \
        ((idx[2] - 7) * 6.0) ** 2 < 7.5 ** 2
    truth = np.where(brain, np.where(lesion, 24.0, 60.0), 0.0)
    pairs = _pairs(truth, m0, brain, 12, 1.5, rng)
    plain = cbfu.cbf_map(pairs.mean(-1), m0, PARAMS, brain)
    noise, voxel_sd = lg.plain_noise_model(pairs, m0, brain, PARAMS)

    def number(denoised):
        return data_departure_sd(plain - denoised, voxel_sd, noise, brain, ZOOMS)

    kept = truth + np.where(brain, rng.normal(0.0, 1.0, SHAPE), 0.0)  # noise removed only
    erased = np.where(brain, 60.0, 0.0) + (kept - truth)
    guarded, _ = lg.lesion_guard(erased, plain, noise, voxel_sd, brain, ZOOMS)
    assert number(erased) > 2 * FLAG
    assert number(kept) < FLAG
    assert number(guarded) < FLAG
