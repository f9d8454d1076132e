"""Pairs spoiled as a whole are left out; a series of equally good pairs keeps them all."""

from __future__ import annotations

import numpy as np

from aslproc.utils import pair_rejection as pr
from aslproc.utils.cbf import mean_delta_m
from aslproc.utils.motion import pair_columns, write_confounds

TYPES = ['m0scan'] + ['label', 'control'] * 8


def _series(seed=0, spoil=()):
    """Static 100, ΔM 1, noise SD 1 (label first); volumes in ``spoil`` carry a brain-wide
    error (a volume imaged during a jerk)."""
    rng = np.random.default_rng(seed)
    data = 100 + rng.normal(0, 1.0, (16, 16, 6, len(TYPES)))
    data[..., 0] = 120
    data[..., 1::2] -= 1.0
    for t in spoil:
        data[..., t] += rng.normal(0, 3.0, data.shape[:3])
    return data.astype(np.float32)


def test_pairs_are_the_kth_control_with_the_kth_label():
    assert pr.pair_volumes(TYPES)[:2] == [(2, 1), (4, 3)]


def test_equally_good_pairs_are_all_kept():
    data = _series()
    types, rel, bad = pr.reject_pairs(data, TYPES, np.ones(data.shape[:3], bool))
    assert types == TYPES and not bad.any()
    assert np.allclose(rel, 1.0, atol=0.15)


def test_a_spoiled_volume_excludes_its_pair_and_only_it():
    data = _series(spoil=(6,))  # the control of the third pair
    mask = np.ones(data.shape[:3], bool)
    types, rel, bad = pr.reject_pairs(data, TYPES, mask)
    assert bad.tolist() == [False, False, True] + [False] * 5
    assert types[5] == types[6] == pr.EXCLUDED and types.count(pr.EXCLUDED) == 2
    assert rel[2] > 5
    # every average skips the excluded pair: ΔM is the mean of the other seven
    kept = [t for t in range(len(TYPES)) if t not in (5, 6)]
    expected = mean_delta_m(data[..., kept], [TYPES[t] for t in kept])
    assert np.allclose(mean_delta_m(data, types), expected)
    assert abs(mean_delta_m(data, types).mean() - 1.0) < abs(mean_delta_m(data, TYPES).mean()
                                                                - 1.0) + 0.05


def test_at_most_half_of_the_pairs_go():
    data = _series(spoil=(2, 4, 6, 8, 10, 12))
    _, _, bad = pr.reject_pairs(data, TYPES, np.ones(data.shape[:3], bool))
    assert bad.sum() <= 4


def test_too_few_pairs_are_not_tested():
    assert not pr.excluded_pairs(np.array([1.0, 1.0, 9.0])).any()


def test_the_confounds_list_the_pair_test(tmp_path):
    data = _series(spoil=(6,))
    types, rel, bad = pr.reject_pairs(data, TYPES, np.ones(data.shape[:3], bool))
    out = write_confounds(np.zeros((len(TYPES), 6)), tmp_path / 'c.tsv',
                          pair_columns(TYPES, rel, bad))
    lines = [line.split('\t') for line in open(out).read().splitlines()]
    head = lines[0]
    assert head[-2:] == ['pair_deviation', 'pair_excluded']
    excluded = [row[-1] for row in lines[1:]]
    assert excluded[0] == 'n/a'  # the M0 volume is in no pair
    assert [i for i, v in enumerate(excluded) if v == '1'] == [5, 6]
