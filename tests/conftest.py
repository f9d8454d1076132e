"""Shared fixtures: tiny synthetic BIDS datasets made with aslproc's own generator."""

from __future__ import annotations

import pytest

from aslproc.synth import SynthConfig, write_dataset

#: The smallest dataset that still exercises every stage: 3 mm T1w, 6 mm ASL, 4 pairs.
TINY = dict(subjects=1, n_pairs=4, snr=20.0, t1w_voxel=3.0, asl_voxel=6.0, seed=11)


def make_dataset(root, **overrides):
    """Write a tiny synthetic dataset under ``root`` and return its ``bids`` directory."""
    cfg = SynthConfig(**{**TINY, **overrides})
    return write_dataset(root, cfg) / 'bids'


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (the CI machine has two cores), then restore."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope='session')
def tiny_bids(tmp_path_factory):
    """One-subject PCASL dataset with M0 included (session-wide, read-only)."""
    return make_dataset(tmp_path_factory.mktemp('tiny'))
