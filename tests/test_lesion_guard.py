"""The lesion guard's noise level: measured only where the pairs show the noise, and voxel by
voxel."""

import numpy as np

from aslproc.utils.lesion_guard import lesion_guard, voxel_noise_sd


def test_voxels_without_observed_noise_do_not_lower_the_threshold():
    """Half the brain filled after motion (the same ΔM in every pair: its noise map is 0).
    Measured over the whole mask the noise SD falls and the guard puts noise back into a
    denoised map that had no lesion to restore; measured where the noise is observed it
    does not."""
    rng = np.random.default_rng(1)
    mask = np.ones((32, 32, 16))
    plain = 50.0 + rng.normal(0, 10.0, mask.shape)
    noise = rng.normal(0, 10.0, mask.shape)
    observed = np.zeros(mask.shape, bool)
    observed[:, :16] = True
    noise[~observed] = 0.0
    denoised = np.full(mask.shape, 50.0)
    zooms = (3.0, 3.0, 3.0)
    per_unit = np.ones(mask.shape)
    # noise + 1e-9: every voxel counts as observed, the filled half too
    diluted, info_all = lesion_guard(denoised, plain, noise + 1e-9,
                                     voxel_noise_sd(noise, per_unit, mask), mask, zooms)
    kept, info_obs = lesion_guard(denoised, plain, noise,
                                  voxel_noise_sd(noise, per_unit, observed), mask, zooms)
    assert info_obs['threshold'] > 1.5 * info_all['threshold']
    assert np.abs(kept - 50.0).mean() < 0.5 * np.abs(diluted - 50.0).mean()
    assert info_obs['changed_pct'] < 0.5 * info_all['changed_pct']
