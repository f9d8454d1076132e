"""Control/label pairs that head motion has spoiled as a whole, left out of the average.

Realignment and motion-compensated subtraction handle the motion of a volume at its edges; a
pair whose ΔM is off *across the brain* (a jerk during the acquisition of one of its volumes,
a volume realigned wrongly) adds an error no averaging removes. Such a pair is found by the
structure of its ΔM against the others (as SCORE does with CBF, Dolui et al. 2017): the
deviation of pair k is the median over the brain of ``(ΔM_k − median_j ΔM_j)²``, the typical
voxel's squared difference from the consensus (a median, so the few voxels at the rim of the
head that motion corrupts in every pair do not decide). A pair is excluded when its deviation
is more than :data:`MAX_DEVIATION_RATIO` times the median deviation of the pairs *and* a
robust outlier among them (more than :data:`MIN_ROBUST_Z` MADs above the median). Twice the
typical deviation is where leaving a pair out costs less noise (the mean of P − 1 pairs instead
of P) than the error it adds; the robust z keeps a series of equally good pairs intact, and a
series in which nothing moved is never tested. At most half of the pairs are excluded, and
never when there are fewer than :data:`MIN_PAIRS`.

Excluded pairs keep their volumes in the series; their aslcontext entries become
:data:`EXCLUDED` so that every step that averages control and label volumes skips them, and the
confounds TSV and the report list them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Volume type given to the control and label volume of an excluded pair.
EXCLUDED = 'excluded'
#: A pair's deviation must exceed this multiple of the median deviation to be excluded.
MAX_DEVIATION_RATIO = 2.0
#: ... and be this many (normal-consistent) MADs above the median.
MIN_ROBUST_Z = 3.5
#: Fewest pairs for which pairs are tested at all.
MIN_PAIRS = 4


def pair_volumes(volume_types: Sequence[str]) -> list[tuple[int, int]]:
    """(control, label) volume indices of each pair: the k-th control with the k-th label.

    >>> pair_volumes(['m0scan', 'label', 'control', 'label', 'control'])
    [(2, 1), (4, 3)]
    """
    kinds = [str(v).lower() for v in volume_types]
    ctl = [i for i, k in enumerate(kinds) if k == 'control']
    lab = [i for i, k in enumerate(kinds) if k == 'label']
    return list(zip(ctl, lab, strict=False))


def pair_deviations(series: np.ndarray, volume_types: Sequence[str], mask: np.ndarray
                    ) -> np.ndarray:
    """Median over ``mask`` of each pair's squared ΔM difference from the pairs' median ΔM.

    >>> rng = np.random.default_rng(0)
    >>> s = 100 + rng.normal(0, 1, (10, 10, 4, 12)); s[..., 1::2] -= 1
    >>> s[..., 4] += rng.normal(0, 3, (10, 10, 4))          # one spoiled control volume
    >>> d = pair_deviations(s, ['control', 'label'] * 6, np.ones((10, 10, 4), bool))
    >>> int(np.argmax(d)), bool(d[2] > 5 * np.median(d))
    (2, True)
    """
    pairs = pair_volumes(volume_types)
    if not pairs:
        return np.zeros(0)
    inside = mask > 0
    dm = np.stack([series[..., c][inside] - series[..., lab][inside] for c, lab in pairs],
                  axis=-1).astype(np.float64)
    consensus = np.median(dm, axis=-1, keepdims=True)
    return np.median((dm - consensus) ** 2, axis=0)


def excluded_pairs(deviations: np.ndarray) -> np.ndarray:
    """Boolean per pair: spoiled (see the module docstring), at most half of them.

    >>> excluded_pairs(np.array([1.0, 1.02, 0.98, 1.01, 3.5, 0.99])).tolist()
    [False, False, False, False, True, False]
    >>> excluded_pairs(np.array([1.0, 1.02, 0.98, 1.01, 1.1, 0.99])).tolist()  # none > 2×
    [False, False, False, False, False, False]
    """
    dev = np.asarray(deviations, dtype=float)
    out = np.zeros(dev.shape, dtype=bool)
    if dev.size < MIN_PAIRS:
        return out
    med = float(np.median(dev))
    mad = 1.4826 * float(np.median(np.abs(dev - med)))
    with np.errstate(divide='ignore', invalid='ignore'):
        z = (dev - med) / mad if mad > 0 else np.where(dev > med, np.inf, 0.0)
    candidates = np.flatnonzero((dev > MAX_DEVIATION_RATIO * med) & (z > MIN_ROBUST_Z))
    worst_first = candidates[np.argsort(dev[candidates])[::-1]]
    out[worst_first[:dev.size // 2]] = True
    return out


def reject_pairs(series: np.ndarray, volume_types: Sequence[str], mask: np.ndarray
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Test the pairs of a motion-corrected series and mark the spoiled ones.

    Returns
    -------
    volume_types : list of str
        The aslcontext with the control and label of each excluded pair set to
        :data:`EXCLUDED`.
    deviations : ndarray (P,)
        Each pair's deviation over the median deviation (1: a typical pair).
    excluded : ndarray (P,) bool
    """
    types = [str(v) for v in volume_types]
    dev = pair_deviations(series, types, mask)
    if dev.size == 0:
        return types, dev, np.zeros(0, dtype=bool)
    med = float(np.median(dev))
    rel = dev / med if med > 0 else np.ones_like(dev)
    bad = excluded_pairs(dev)
    for k, (c, lab) in enumerate(pair_volumes(types)):
        if bad[k]:
            types[c] = types[lab] = EXCLUDED
    if bad.any():
        logger.info('Pair rejection: %d of %d pairs excluded (deviation %s × the typical '
                    'pair)', bad.sum(), bad.size, ', '.join(f'{r:.1f}' for r in rel[bad]))
    return types, rel, bad
