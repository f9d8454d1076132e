#!/usr/bin/env python3
"""GM CBF and ATT of the five reference layouts (bids-examples asl001-asl005) end to end.

Usage::

    .venv/bin/python benchmarks/reference_layouts.py [--voxel 4] [--snr 100] [--names asl003 ...]

Each layout is the real scanner's sidecars and aslcontext with images from the project's
simulator (:func:`tests.realmeta.write_reference_dataset`: ATT 0.5-2.0 s for the two
multi-delay layouts). The pipeline runs with its defaults (``aslproc BIDS OUT participant
--nprocs 2 --no-sr --skip-normalization``: super-resolution and template space do not change
the native maps scored here). Scores, over the truth segmentation's GM voxels of the ASL grid:
the bias of the mean CBF (and ATT) against the mean of the truth sampled on the same grid, and
the same for the voxels whose GM fraction is at least 0.7 ("pure GM"), which separates the
estimator from partial volume (a mixed voxel's ΔM/M0 weights each tissue by its M0).

Writes ``benchmarks/reference_layouts.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from aslproc.cli.run import main as aslproc_main  # noqa: E402
from tests.realmeta import MULTI_DELAY, NAMES, write_reference_dataset  # noqa: E402


def _load(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj, dtype=np.float64)


def run_layout(name: str, voxel: float, snr: float, tmp: Path) -> dict:
    """One layout through the participant pipeline; its GM biases and the wall time."""
    root = tmp / name
    bids = write_reference_dataset(name, root, voxel_mm=voxel, snr=snr)
    sub = next(p.name[4:] for p in bids.iterdir() if p.name.startswith('sub-'))
    out = root / 'out'
    start = time.perf_counter()
    rc = aslproc_main([str(bids), str(out), 'participant', '-w', str(root / 'work'),
                       '--nprocs', '2', '--skip-bids-validation', '--no-sr',
                       '--skip-normalization'])
    row = {'layout': name, 'voxel_mm': voxel, 'snr': snr, 'exit': rc,
           'seconds': round(time.perf_counter() - start, 1)}
    if rc:
        return row
    perf, truth = out / f'sub-{sub}' / 'perf', root / 'truth'
    seg = _load(truth / f'sub-{sub}_seg.nii.gz')
    cbf = _load(perf / f'sub-{sub}_cbf.nii.gz')
    gm_fraction = _load(truth / f'sub-{sub}_pvgm.nii.gz')
    masks = {'gm': (seg == 1) & (cbf != 0), 'pure_gm': (gm_fraction >= 0.7) & (cbf != 0)}
    maps = [('cbf', cbf, _load(truth / f'sub-{sub}_cbf.nii.gz'))]
    if name in MULTI_DELAY:
        maps.append(('att', _load(perf / f'sub-{sub}_att.nii.gz'),
                     _load(truth / f'sub-{sub}_att.nii.gz')))
    for kind, est, true in maps:
        for region, mask in masks.items():
            row[f'{region}_{kind}_bias_pct'] = round(
                100 * (est[mask].mean() / true[mask].mean() - 1), 2)
    row['gm_voxels'] = int(masks['gm'].sum())
    return row


def table(rows: list[dict]) -> str:
    head = ('| layout | exit | s | GM CBF bias | pure-GM CBF bias | GM ATT bias | '
            'pure-GM ATT bias | GM voxels |')
    lines = [head, '|' + '---|' * 8]

    def pct(r, k):
        return f'{r[k]:+.1f} %' if k in r else ''
    for r in rows:
        lines.append(f"| {r['layout']} | {r['exit']} | {r['seconds']:.0f} | "
                     f"{pct(r, 'gm_cbf_bias_pct')} | {pct(r, 'pure_gm_cbf_bias_pct')} | "
                     f"{pct(r, 'gm_att_bias_pct')} | {pct(r, 'pure_gm_att_bias_pct')} | "
                     f"{r.get('gm_voxels', '')} |")
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--voxel', type=float, default=4.0, help='in-plane ASL voxel (mm)')
    p.add_argument('--snr', type=float, default=100.0)
    p.add_argument('--names', nargs='+', default=list(NAMES), choices=NAMES)
    p.add_argument('--out', type=Path, default=HERE / 'reference_layouts')
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_layout(n, args.voxel, args.snr, Path(tmp)) for n in args.names]
    meta = {'date': date.today().isoformat(), 'machine': platform.node(),
            'processor': platform.processor(), 'voxel_mm': args.voxel, 'snr': args.snr,
            'rows': rows}
    args.out.with_suffix('.json').write_text(json.dumps(meta, indent=2) + '\n')
    args.out.with_suffix('.md').write_text(table(rows))
    print(table(rows))
    return 0 if all(r['exit'] == 0 for r in rows) else 1


if __name__ == '__main__':
    raise SystemExit(main())
