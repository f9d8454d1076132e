"""Atlases in template space, and mean CBF per region.

Default atlas: the 300 regions of Seitzman et al. (2020, NeuroImage 206:116290), whose
centres (MNI mm), radii (4-5 mm), networks and anatomical labels nilearn ships as package data
(``fetch_coords_seitzman_2018``: no download). Each region is a sphere of its radius on the
template grid; where two spheres would share a voxel it goes to the nearer centre. The
coordinates are used as published, on the MNI152NLin2009aSym grid, as nilearn does.

A user atlas (``--atlas FILE.nii.gz --atlas-labels FILE.tsv``) is a 3D integer label image in
MNI152NLin2009aSym space (any grid: it is carried onto the output grid by nearest neighbour in
world coordinates) and a BIDS ``dseg.tsv``-style table with at least the columns ``index``
and ``name``; extra columns are copied into the regional tables.

Regional CBF: for each region, the mean of each CBF map over the region's voxels that lie in
the ASL field of view, in the run's brain mask, and in the subject's own grey matter
(P(GM) > 0.5 after normalization), with the voxel counts and the coverage (share of the
region's voxels in the ASL field of view), so that a partly imaged region is visible as such.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

logger = logging.getLogger(__name__)

#: P(GM) above which a template-space voxel counts as grey matter for the regional means.
GM_THRESHOLD = 0.5
#: Name of the default atlas (sidecars, report).
SEITZMAN = 'Seitzman2018'
#: Columns of every regional table after the label columns.
COUNT_COLUMNS = ('n_voxels', 'coverage', 'n_voxels_gm')


class AtlasError(ValueError):
    """An atlas or its label table that aslproc cannot use."""


def read_labels(path) -> list[dict]:
    """Rows of a label table (``index``, ``name``, any other columns), ``index`` as int.

    Index 0 (background) is dropped. Errors name the file, the row and the field.
    """
    path = Path(path)
    try:
        with open(path, newline='') as f:
            reader = csv.DictReader(f, delimiter='\t')
            rows = list(reader)
            fields = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise AtlasError(f'{path}: cannot read the label table ({err})') from None
    for col in ('index', 'name'):
        if col not in fields:
            raise AtlasError(f'{path}: no "{col}" column (the label table needs tab-separated '
                             f'"index" and "name" columns; found {fields})')
    out, seen = [], set()
    for n, row in enumerate(rows, start=2):
        try:
            index = int(str(row['index']).strip())
        except ValueError:
            raise AtlasError(f'{path}, line {n}: index {row["index"]!r} is not an '
                             'integer') from None
        if index in seen:
            raise AtlasError(f'{path}, line {n}: index {index} is listed twice')
        seen.add(index)
        if index != 0:
            out.append({**{k: (v if v is not None else '') for k, v in row.items()},
                        'index': index})
    if not out:
        raise AtlasError(f'{path}: the label table lists no region (index > 0)')
    return out


def _label_image(path) -> nib.Nifti1Image:
    try:
        img = nib.load(os.fspath(path))
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # noqa: BLE001 - any unreadable file ends in one line
        raise AtlasError(f'{path}: cannot read the atlas image ({err})') from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise AtlasError(f'{path}: the atlas must be a 3D label image, got shape {data.shape}')
    if not np.all(np.isfinite(data)) or not np.allclose(data, np.rint(data)) or data.min() < 0:
        raise AtlasError(f'{path}: the atlas must hold non-negative integer labels')
    return nib.Nifti1Image(np.rint(data).astype(np.int32), img.affine)


def _listing(values, limit: int = 10) -> str:
    values = sorted(values)
    more = f' and {len(values) - limit} more' if len(values) > limit else ''
    return ', '.join(str(v) for v in values[:limit]) + more


def check_atlas(atlas_file, labels_file) -> list[dict]:
    """Check that a user atlas and its label table match; return the table's rows.

    Every label of the image must be in the table and every row of the table in the image;
    the labelled voxels must lie mostly inside the template's field of view (an atlas in
    MNI space). Errors name the file and what does not match.
    """
    rows = read_labels(labels_file)
    img = _label_image(atlas_file)
    data = np.asanyarray(img.dataobj)
    present = set(np.unique(data[data > 0]).tolist())
    listed = {r['index'] for r in rows}
    if not present:
        raise AtlasError(f'{atlas_file}: the atlas has no labelled voxel')
    if present - listed:
        raise AtlasError(f'{atlas_file}: labels {_listing(present - listed)} are not in '
                         f'{labels_file} (column "index")')
    if listed - present:
        raise AtlasError(f'{labels_file}: indices {_listing(listed - present)} do not occur '
                         f'in {atlas_file}')
    idx = np.argwhere(data > 0)
    world = idx @ img.affine[:3, :3].T + img.affine[:3, 3]
    inside = np.all((world >= [-98, -134, -72]) & (world <= [98, 98, 116]), axis=1).mean()
    if inside < 0.5:
        raise AtlasError(f'{atlas_file}: only {100 * inside:.0f} % of the labelled voxels lie '
                         'in the MNI152 template box; the atlas must be in MNI152NLin2009aSym '
                         'space (world coordinates in mm)')
    return rows


def seitzman_rois() -> list[dict]:
    """The 300 Seitzman regions in the order of nilearn's file: index (1-300), name, network,
    anatomical region, centre (x, y, z in mm) and radius (mm)."""
    from nilearn import datasets

    b = datasets.fetch_coords_seitzman_2018(ordered_regions=False)
    xyz = np.asarray(b.rois[['x', 'y', 'z']], dtype=float)
    rows = []
    for k, (centre, radius, net, region) in enumerate(
            zip(xyz, b.radius, b.networks, b.regions, strict=True), start=1):
        rows.append({'index': k, 'name': f'{k:03d}_{net}_{region}', 'network': str(net),
                     'region': str(region), 'x': float(centre[0]), 'y': float(centre[1]),
                     'z': float(centre[2]), 'radius': float(radius)})
    return rows


def sphere_atlas(rows: list[dict], affine: np.ndarray, shape: tuple) -> np.ndarray:
    """Label image (int32) of spheres (``x``, ``y``, ``z``, ``radius`` mm) on a grid; a voxel
    inside several spheres goes to the nearest centre (relative to its radius; a tie to the
    first).

    >>> aff = np.eye(4); aff[:3, 3] = -5
    >>> rows = [{'index': 1, 'x': -2, 'y': 0, 'z': 0, 'radius': 2.5},
    ...         {'index': 2, 'x': 2, 'y': 0, 'z': 0, 'radius': 2.5}]
    >>> lab = sphere_atlas(rows, aff, (11, 11, 11))
    >>> [int((lab == k).sum()) for k in (1, 2)], int(lab[5, 5, 5])
    ([81, 72], 1)
    """
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    inv = np.linalg.inv(affine)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    for row in rows:
        centre = np.array([row['x'], row['y'], row['z']], float)
        r = float(row['radius'])
        c_vox = inv[:3, :3] @ centre + inv[:3, 3]
        half = np.ceil(r / zooms) + 1
        lo = np.clip(np.floor(c_vox - half), 0, np.asarray(shape)).astype(int)
        hi = np.clip(np.ceil(c_vox + half) + 1, 0, np.asarray(shape)).astype(int)
        if np.any(hi <= lo):
            continue
        idx = np.stack(np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)),
                                   indexing='ij'), axis=-1)
        world = idx @ affine[:3, :3].T + affine[:3, 3]
        dist = np.sqrt(((world - centre) ** 2).sum(-1)) / r
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        take = (dist <= 1.0) & (dist < best[box])
        labels[box][take] = int(row['index'])
        best[box][take] = dist[take]
    return labels


def _to_grid(img: nib.Nifti1Image, affine: np.ndarray, shape: tuple) -> np.ndarray:
    """Nearest-neighbour resampling of a label image onto a grid, in world coordinates."""
    m = np.linalg.inv(img.affine) @ affine
    data = np.asanyarray(img.dataobj)
    return ndi.affine_transform(data, m[:3, :3], m[:3, 3], shape, order=0, cval=0,
                                mode='constant').astype(np.int32)


def write_labels(rows: list[dict], out_file) -> str:
    """Write label rows as a TSV (``index`` and ``name`` first, ``n/a`` for blanks)."""
    fields = list(dict.fromkeys(['index', 'name', *(k for r in rows for k in r)]))
    with open(out_file, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=fields, delimiter='\t', restval='n/a',
                           lineterminator='\n')
        w.writeheader()
        w.writerows(rows)
    return os.fspath(out_file)


def prepare_atlas(reference, out_atlas, out_labels, *, atlas_file=None,
                  labels_file=None) -> tuple[str, str]:
    """The atlas on the grid of ``reference`` (a template image) and its label table.

    Without ``atlas_file`` the Seitzman spheres are drawn; otherwise the user atlas is
    checked (:func:`check_atlas`) and carried onto the grid by nearest neighbour.
    """
    ref = nib.load(os.fspath(reference))
    shape = ref.shape[:3]
    if atlas_file:
        rows = check_atlas(atlas_file, labels_file)
        labels = _to_grid(_label_image(atlas_file), ref.affine, shape)
    else:
        rows = seitzman_rois()
        labels = sphere_atlas(rows, ref.affine, shape)
    lost = sorted({r['index'] for r in rows} - set(np.unique(labels).tolist()))
    if lost:
        logger.warning('%d atlas region(s) have no voxel on the %s mm grid: %s', len(lost),
                       f'{ref.header.get_zooms()[0]:g}', _listing(lost))
    nib.Nifti1Image(labels, ref.affine).to_filename(os.fspath(out_atlas))
    return os.fspath(out_atlas), write_labels(rows, out_labels)


def regional_means(atlas: np.ndarray, indices, maps: dict, *, gm: np.ndarray,
                   mask: np.ndarray, fov: np.ndarray,
                   gm_threshold: float = GM_THRESHOLD) -> list[dict]:
    """Voxel counts, coverage and mean of each map per region (arrays on one grid).

    Returns one dict per index: ``n_voxels`` (voxels of the region), ``coverage`` (share
    of them in the field of view ``fov``), ``n_voxels_gm`` (those also in ``mask`` with
    ``gm > gm_threshold``: the voxels averaged) and, for each map, its mean there (NaN when
    no voxel is left).

    >>> atlas = np.array([1, 1, 1, 1, 2, 2, 0])
    >>> cbf = np.array([10., 20., 30., 99., 50., 70., 5.])
    >>> fov = np.array([1, 1, 1, 0, 1, 1, 1], bool)
    >>> gm = np.array([.9, .9, .2, .9, .9, .6, .9])
    >>> rows = regional_means(atlas, [1, 2, 3], {'cbf': cbf}, gm=gm, mask=np.ones(7, bool),
    ...                       fov=fov)
    >>> [(r['n_voxels'], r['coverage'], r['n_voxels_gm'], r['cbf']) for r in rows[:2]]
    [(4, 0.75, 2, 15.0), (2, 1.0, 2, 60.0)]
    >>> rows[2]['n_voxels'], bool(np.isnan(rows[2]['cbf']))
    (0, True)
    """
    atlas = np.asarray(atlas).ravel().astype(np.int64)
    top = int(max(atlas.max(initial=0), max(indices, default=0))) + 1
    fov = np.asarray(fov, bool).ravel()
    sel = fov & np.asarray(mask, bool).ravel() & (np.asarray(gm).ravel() > gm_threshold)
    n_all = np.bincount(atlas, minlength=top)
    n_fov = np.bincount(atlas[fov], minlength=top)
    n_sel = np.bincount(atlas[sel], minlength=top)
    means = {}
    for name, data in maps.items():
        values = np.asarray(data, float).ravel()
        ok = sel & np.isfinite(values)
        sums = np.bincount(atlas[ok], weights=values[ok], minlength=top)
        counts = np.bincount(atlas[ok], minlength=top)
        with np.errstate(invalid='ignore', divide='ignore'):
            means[name] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    rows = []
    for k in indices:
        row = {'n_voxels': int(n_all[k]),
               'coverage': round(float(n_fov[k] / n_all[k]), 4) if n_all[k] else float('nan'),
               'n_voxels_gm': int(n_sel[k])}
        row.update({name: float(m[k]) for name, m in means.items()})
        rows.append(row)
    return rows


def _load(path) -> np.ndarray:
    data = np.asanyarray(nib.load(os.fspath(path)).dataobj)
    return data.reshape(data.shape[:3])


def regional_table(atlas_file, labels_file, gm_file, mask_file, fov_file, cbf_files,
                   map_names, out_file) -> str:
    """File layer of :func:`regional_means`: one TSV row per region of the label table.

    Columns: the label table's, then ``n_voxels``, ``coverage``, ``n_voxels_gm`` and one
    column of mean CBF (ml/100 g/min) per map (``map_names``), ``n/a`` where undefined.
    """
    if len(cbf_files) != len(map_names):
        raise ValueError(f'{len(cbf_files)} CBF maps for {len(map_names)} names')
    atlas = _load(atlas_file)
    labels = read_labels(labels_file)
    maps = {}
    for name, path in zip(map_names, cbf_files, strict=True):
        maps[name] = _load(path)
        if maps[name].shape != atlas.shape:
            raise ValueError(f'{path}: grid {maps[name].shape} differs from the atlas '
                             f'{atlas.shape}')
    stats = regional_means(atlas, [r['index'] for r in labels], maps, gm=_load(gm_file),
                           mask=_load(mask_file) > 0, fov=_load(fov_file) > 0)
    rows = []
    for label, stat in zip(labels, stats, strict=True):
        rows.append({**label, **{k: _fmt(v) for k, v in stat.items()}})
    return write_labels(rows, out_file)


def _fmt(value):
    """TSV text of a number: ``n/a`` for NaN, 4 decimals for floats.

    >>> _fmt(float('nan')), _fmt(3), _fmt(2.123456)
    ('n/a', 3, 2.1235)
    """
    if isinstance(value, float):
        return 'n/a' if not np.isfinite(value) else round(value, 4)
    return value
