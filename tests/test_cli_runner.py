"""The participant runner's worker processes survive a parent that has already run torch."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_multiproc_workers_run_torch_after_the_parent_did(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'tests.torch_then_multiproc', str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith('finished')
