"""Per-scan self-supervised adaptation of the denoiser (Noise2Noise between halves of pairs).

The shipped network was trained on the project's simulator; a scan's own noise (its
resampling after motion correction, its coil, its spatial correlation) and its perfusion
texture differ. This fine-tunes a copy of the network on the scan itself: at each step the
pairs are split at random into two disjoint halves, the network denoises the mean ΔM of one
half and is scored against the mean ΔM of the other (noisy, but with noise independent of
its input, so the minimum of the expected loss is the clean ΔM; Lehtinen et al., 2018). Both
are in the network's CBF-like units (:func:`aslproc.utils.denoise.build_inputs`), so the loss
is the kinetic-model CBF error. No tissue model and no truth enter.

It removes more noise than the shipped network (benchmarks/RESULTS.md) and also smooths
focal lesions more, hence opt-in (``--denoise-adapt STEPS``).
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch

from aslproc.utils.denoise import build_inputs

logger = logging.getLogger(__name__)

#: Adam learning rate of the adaptation (measured: 1e-4 for 25-200 steps).
ADAPT_LR = 1e-4
#: Fewest pairs that give two halves of at least two pairs.
MIN_PAIRS = 4


def noise2noise_finetune(model: torch.nn.Module, pairs: np.ndarray, m0: np.ndarray,
                         mask: np.ndarray, params: dict, channels, *, steps: int,
                         lr: float = ADAPT_LR, seed: int = 0, noise_mask=None,
                         device='cpu') -> tuple[torch.nn.Module, dict]:
    """A copy of ``model`` fine-tuned on one scan's pairs (module docstring); ``model`` is
    left unchanged. Returns the copy (eval mode) and the first and last losses.

    Raises ValueError with fewer than :data:`MIN_PAIRS` pairs.
    """
    n = pairs.shape[-1]
    if n < MIN_PAIRS:
        raise ValueError(f'denoiser adaptation needs at least {MIN_PAIRS} control/label pairs '
                         f'(two halves of two), got {n}')
    device = torch.device(device)
    tuned = copy.deepcopy(model).to(device).train()
    opt = torch.optim.Adam(tuned.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    weight = torch.from_numpy(np.ascontiguousarray(np.moveaxis(mask > 0, -1, 0))).float()
    weight = weight[:, None].to(device)
    losses = []
    half = n // 2
    for _ in range(int(steps)):
        order = rng.permutation(n)
        a, b = order[:half], order[half:2 * half]
        inputs, norm = build_inputs(pairs[..., a], m0, mask, params, channels,
                                    noise_mask=noise_mask)
        _, target = build_inputs(pairs[..., b], m0, mask, params, channels[:1],
                                 noise_mask=noise_mask)
        x = torch.from_numpy(inputs).to(device)
        xa = torch.from_numpy(norm['x'])[:, None].to(device)
        xb = torch.from_numpy(target['x'])[:, None].to(device)
        w = weight
        if rng.random() < 0.5:  # the network was trained with flips: keep it symmetric
            x, xa, xb, w = (t.flip(-1) for t in (x, xa, xb, w))
        loss = (((xa - tuned(x) - xb) ** 2) * w).sum() / w.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    tuned.eval()
    info = {'steps': int(steps), 'lr': lr, 'seed': seed,
            'loss_first': round(losses[0], 6) if losses else None,
            'loss_last': round(float(np.mean(losses[-10:])), 6) if losses else None}
    logger.info('denoiser adapted to the scan: %d steps, loss %.5f -> %.5f', steps,
                info['loss_first'] or 0.0, info['loss_last'] or 0.0)
    return tuned, info
