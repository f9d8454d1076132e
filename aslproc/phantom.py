"""Digital head phantom: anatomy and perfusion maps for :mod:`aslproc.synth`.

The template head (:class:`Anatomy`) is loaded by :mod:`aslproc.mni_head` from the MNI152 2009
tissue maps that nilearn ships, with a head shell around the brain.

Each subject differs from the template by a random affine (scaling, shear) and a smooth random
displacement of a few millimetres, and carries its own perfusion: GM and WM CBF levels, a smooth
multiplicative field, focal hypo/hyper-perfused spheres (absent from the T1w on purpose, so
learned stages cannot learn to paint lesions from anatomy), a smooth arterial transit time map,
and M0 from proton densities times a smooth coil sensitivity.

Everything here is a pure function of a random generator and arrays; the only I/O is reading
nilearn's shipped templates (cached). The tissue properties below describe the phantom, not the
quantification, whose constants live in :mod:`aslproc.kinetics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from aslproc import kinetics

#: Tissue classes of the phantom, in the order of the ``fractions`` arrays.
TISSUES = ('gm', 'wm', 'csf', 'skull', 'scalp')
#: Proton density relative to water (M0 per unit volume).
PROTON_DENSITY = {'gm': 0.89, 'wm': 0.73, 'csf': 1.0, 'skull': 0.05, 'scalp': 0.7}
#: T1-weighted intensity (WM = 1): WM bright, GM mid, CSF and bone dark, fat-rich scalp bright.
T1W_INTENSITY = {'gm': 0.62, 'wm': 1.0, 'csf': 0.15, 'skull': 0.07, 'scalp': 0.85}
#: T1 (s) at 3 T relative to the grey-matter T1 of :func:`aslproc.kinetics.t1_tissue`
#: (WM 0.83 s, CSF 4.2 s, bone/scalp about 0.3-0.4 s); other fields scale with GM.
T1_RELATIVE = {'gm': 1.0, 'wm': 0.624, 'csf': 3.16, 'skull': 0.23, 'scalp': 0.28}
#: Head shell layers outside the brain, as distances (mm) from the brain surface.
SHELL_MM = {'csf': (0.0, 2.5), 'skull': (2.5, 8.0), 'scalp': (8.0, 14.0)}


@dataclass(frozen=True)
class Anatomy:
    """Tissue fractions of one head on a regular grid (world coordinates in mm, RAS).

    Attributes
    ----------
    gm, wm, csf, skull, scalp : ndarray, float32, shape (X, Y, Z)
        Volume fraction of each tissue in each voxel (their sum is at most 1; the rest is air).
    t1 : ndarray, float32
        The MNI152 T1 template intensity (0-1, brain only), warped like the fractions.
    affine : ndarray, shape (4, 4)
        Voxel-to-world matrix of the grid.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    skull: np.ndarray
    scalp: np.ndarray
    t1: np.ndarray
    affine: np.ndarray

    @property
    def shape(self) -> tuple:
        return self.gm.shape

    @property
    def voxel_mm(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(0))

    @property
    def brain(self) -> np.ndarray:
        """Brain fraction (GM + WM + CSF inside the skull)."""
        return self.gm + self.wm + self.csf

    @property
    def mask(self) -> np.ndarray:
        """Binary brain mask: voxels that are more than half brain."""
        return self.brain > 0.5

    def fractions(self) -> dict:
        return {name: getattr(self, name) for name in TISSUES}

    def seg(self) -> np.ndarray:
        """Hard labels (uint16): 1 GM, 2 WM, 3 CSF where the brain fraction exceeds 0.5, else 0."""
        return segment(self.gm, self.wm, self.csf)


def segment(gm, wm, csf) -> np.ndarray:
    """Label of the largest of three fractions (1 GM, 2 WM, 3 CSF) where their sum exceeds 0.5.

    >>> segment(np.array([0.6, 0.1, 0.1]), np.array([0.3, 0.2, 0.0]), np.array([0.1, 0.5, 0.1]))
    array([1, 3, 0], dtype=uint16)
    """
    stack = np.stack([gm, wm, csf])
    return np.where(stack.sum(0) > 0.5, stack.argmax(0) + 1, 0).astype(np.uint16)


def tissue_t1(tissue: str, field_strength: float | None) -> float:
    """T1 (s) of a phantom tissue at a field strength.

    >>> tissue_t1('gm', 3.0)
    1.33
    >>> round(tissue_t1('wm', 3.0), 2)
    0.83
    """
    return kinetics.t1_tissue(field_strength) * T1_RELATIVE[tissue]


def smooth_field(rng: np.random.Generator, shape: tuple, n_ctrl: int = 5) -> np.ndarray:
    """Smooth random field with zero mean and maximum absolute value 1 (float32).

    Gaussian random coefficients on ``n_ctrl`` control points per axis are interpolated with
    separable normalised Gaussian kernels, so the cost is a few tensor products (milliseconds
    for a million voxels) and the wavelength is about the field of view over ``n_ctrl``.

    >>> f = smooth_field(np.random.default_rng(0), (20, 30, 10))
    >>> f.shape, round(float(np.abs(f).max()), 6), abs(float(f.mean())) < 1e-6
    ((20, 30, 10), 1.0, True)
    """
    field = rng.standard_normal((n_ctrl,) * len(shape))
    for n in shape:
        x = np.linspace(0.0, 1.0, n)[:, None]
        ctrl = np.linspace(-0.1, 1.1, n_ctrl)[None, :]
        basis = np.exp(-0.5 * ((x - ctrl) / (ctrl[0, 1] - ctrl[0, 0])) ** 2)
        basis /= basis.sum(1, keepdims=True)
        # contract the first remaining control axis; the new axis goes last
        field = np.tensordot(field, basis, axes=([0], [1]))
    field = field - field.mean()
    return (field / np.abs(field).max()).astype(np.float32)


def rigid_matrix(params, centre=(0.0, 0.0, 0.0)) -> np.ndarray:
    """4×4 rigid transform from (tx, ty, tz in mm, rx, ry, rz in degrees) about ``centre``.

    Rotations are applied about x, then y, then z; the translation is added last.

    >>> m = rigid_matrix([1, 2, 3, 0, 0, 90], centre=(10, 0, 0))
    >>> (m @ [10, 0, 0, 1]).round(6).tolist()
    [11.0, 2.0, 3.0, 1.0]
    >>> (m @ [11, 0, 0, 1]).round(6).tolist()
    [11.0, 3.0, 3.0, 1.0]
    """
    tx, ty, tz, rx, ry, rz = (float(p) for p in params)
    cx, sx = np.cos(np.radians(rx)), np.sin(np.radians(rx))
    cy, sy = np.cos(np.radians(ry)), np.sin(np.radians(ry))
    cz, sz = np.cos(np.radians(rz)), np.sin(np.radians(rz))
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rot = rot_z @ rot_y @ rot_x
    c = np.asarray(centre, dtype=float)
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = c - rot @ c + [tx, ty, tz]
    return out


def random_rigid(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Six rigid parameters uniform in ±``amplitude`` (mm for shifts, degrees for rotations)."""
    return rng.uniform(-amplitude, amplitude, 6)


def brain_centre(anat: Anatomy) -> np.ndarray:
    """World coordinates (mm) of the centroid of the brain mask."""
    idx = np.array(ndimage.center_of_mass(anat.mask))
    return anat.affine[:3, :3] @ idx + anat.affine[:3, 3]


def random_anatomy(rng: np.random.Generator, base: Anatomy, scale: float = 0.06,
                   shear: float = 0.03, warp_mm: float = 3.0):
    """A new head: ``base`` under a random affine and a smooth random displacement.

    Each output point ``x`` takes the tissue of template point
    ``c + A (x - c) + d(x)``, with ``c`` the brain centre, ``A`` the identity plus uniform
    scalings in ±``scale`` and shears in ±``shear``, and ``d`` a smooth field whose largest
    component is ``warp_mm`` per axis. The grid and affine stay those of ``base``.
    Returns the new :class:`Anatomy` and ``{'affine': A, 'warp_mm': warp_mm}`` for the record.
    """
    mat = np.eye(3) + np.diag(rng.uniform(-scale, scale, 3))
    off = rng.uniform(-shear, shear, (3, 3))
    mat += off - np.diag(np.diag(off))
    centre = brain_centre(base)
    inv = np.linalg.inv(base.affine)
    shape = base.shape
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = base.affine[:3, :3] @ grid + base.affine[:3, 3:4]
    src = centre[:, None] + mat @ (world - centre[:, None])
    for axis in range(3):
        src[axis] += warp_mm * smooth_field(rng, shape).ravel()
    coords = (inv[:3, :3] @ src + inv[:3, 3:4]).reshape((3,) + shape)
    warped = {name: ndimage.map_coordinates(getattr(base, name), coords, order=1, cval=0.0)
              for name in (*TISSUES, 't1')}
    return Anatomy(affine=base.affine.copy(), **warped), dict(affine=mat.tolist(), warp_mm=warp_mm)


def _place_lesions(rng, anat, n, radius, hypo, hyper, border_fraction=0.0):
    """Non-overlapping spheres centred in GM-rich voxels (a ``border_fraction`` of them on the
    GM/WM border: GM within 2 mm of WM); returns (factor map, labels, ids, list)."""
    factor = np.ones(anat.shape, np.float32)
    labels = np.zeros(anat.shape, np.uint8)
    ids = np.zeros(anat.shape, np.uint16)
    vox = anat.voxel_mm
    world_idx = np.ogrid[tuple(slice(0, s) for s in anat.shape)]
    candidates = np.argwhere(anat.gm > 0.6)
    border = None
    if border_fraction > 0:
        reach = int(max(np.round(2.0 / vox.min()), 1))
        near_wm = ndimage.binary_dilation(anat.wm > 0.5, iterations=reach)
        border = np.argwhere((anat.gm > 0.6) & near_wm)
    tissue = np.isin(anat.seg(), (1, 2))  # labelled where the truth segmentation says GM or WM
    placed = []
    for _ in range(50 * max(n, 1)):
        if len(placed) >= n or not len(candidates):
            break
        on_border = border is not None and len(border) > 0 and rng.random() < border_fraction
        pool = border if on_border else candidates
        centre = pool[rng.integers(len(pool))]
        r = float(rng.uniform(*radius))
        if any(np.linalg.norm((centre - p['centre_vox']) * vox) < r + p['radius_mm']
               for p in placed):
            continue
        dist2 = sum(((w - c) * v) ** 2 for w, c, v in zip(world_idx, centre, vox, strict=True))
        sphere = dist2 <= r**2
        if anat.brain[sphere].mean() < 0.8:
            continue
        kind = 'hypo' if rng.random() < 0.5 else 'hyper'
        f = float(rng.uniform(*(hypo if kind == 'hypo' else hyper)))
        factor[sphere] = f
        labels[sphere & tissue] = 1 if kind == 'hypo' else 2
        ids[sphere & tissue] = len(placed) + 1
        world = (anat.affine[:3, :3] @ centre + anat.affine[:3, 3]).round(2).tolist()
        placed.append(dict(kind=kind, factor=f, radius_mm=r, centre_vox=centre.tolist(),
                           centre_mm=world, border=bool(on_border)))
    return factor, labels, ids, placed


def territory_fields(rng: np.random.Generator, anat: Anatomy, n: int, cbf=(0.75, 1.25),
                     att_s=(-0.3, 0.3), edge_mm: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` territory-like regions (nearest of ``n`` random brain points), each with its own
    CBF factor and ATT offset (s), with borders softened by a Gaussian of ``edge_mm``.

    >>> from aslproc.mni_head import load_anatomy
    >>> f, a = territory_fields(np.random.default_rng(0), load_anatomy(4.0), 3)
    >>> 0.75 <= float(f.min()) and float(f.max()) <= 1.25, float(np.abs(a).max()) <= 0.3
    (True, True)
    """
    pts = np.argwhere(anat.mask)
    seeds = pts[rng.choice(len(pts), n, replace=False)] * anat.voxel_mm
    factors, offsets = rng.uniform(*cbf, n), rng.uniform(*att_s, n)
    axes = [np.arange(s) * v for s, v in zip(anat.shape, anat.voxel_mm, strict=True)]
    nearest = np.zeros(anat.shape, np.intp)
    best = np.full(anat.shape, np.inf)
    for k, c in enumerate(seeds):
        d2 = sum(((a - ck) ** 2).reshape([-1 if i == j else 1 for j in range(3)])
                 for i, (a, ck) in enumerate(zip(axes, c, strict=True)))
        closer = d2 < best
        nearest[closer], best[closer] = k, d2[closer]
    sigma = edge_mm / anat.voxel_mm
    return (ndimage.gaussian_filter(factors[nearest], sigma).astype(np.float32),
            ndimage.gaussian_filter(offsets[nearest], sigma).astype(np.float32))


def perfusion_maps(rng: np.random.Generator, anat: Anatomy, *, gm_cbf=(60.0, 8.0),
                   wm_cbf=(22.0, 4.0), cbf_variation=0.15, n_lesions=(1, 3),
                   lesion_radius=(8.0, 20.0), hypo=(0.3, 0.6), hyper=(1.5, 2.0),
                   att_range=(0.7, 1.6), wm_att_delay=0.3, m0_scale=1000.0, coil=0.2,
                   territories: int = 0, border_fraction: float = 0.0) -> dict:
    """True perfusion of one head on the anatomy grid.

    Parameters
    ----------
    gm_cbf, wm_cbf : (mean, sd)
        Normal distributions (ml/100 g/min) of this subject's GM and WM CBF; CSF has none.
    cbf_variation : float
        Amplitude of the smooth multiplicative CBF field (0.15: within ±15 %).
    n_lesions, lesion_radius : (min, max)
        Number of focal lesions (inclusive) and their radius range (mm).
    hypo, hyper : (min, max)
        CBF factor range of hypo- and hyper-perfused lesions.
    att_range : (min, max)
        Arterial transit time (s); the smooth field spans the range minus ``wm_att_delay``,
        which is added in proportion to the WM fraction.
    m0_scale, coil : float
        M0 of pure water, and the amplitude of the smooth receive-coil sensitivity.
    territories : int
        Territory-like regions with their own CBF and ATT (:func:`territory_fields`); 0: none.
    border_fraction : float
        Share of the lesions centred on the GM/WM border rather than inside GM.

    Returns
    -------
    dict
        ``cbf`` (ml/100 g/min), ``att`` (s), ``m0`` (equilibrium M0 times coil sensitivity),
        ``lesion`` (uint8: 0 none, 1 hypo, 2 hyper), ``lesion_id`` (uint16: 0 none, k the k-th
        lesion of ``info['lesions']``), all float32 except the labels, and ``info``
        (``gm_cbf``, ``wm_cbf``, ``lesions``).
    """
    shape = anat.shape
    f_gm = max(float(rng.normal(*gm_cbf)), 5.0)
    f_wm = max(float(rng.normal(*wm_cbf)), 2.0)
    cbf = (anat.gm * f_gm + anat.wm * f_wm) * (1.0 + cbf_variation * smooth_field(rng, shape))
    lo, hi = att_range
    att = lo + (hi - lo - wm_att_delay) * (smooth_field(rng, shape, 4) + 1.0) / 2.0
    att = att + wm_att_delay * anat.wm
    pd = sum(PROTON_DENSITY[t] * frac for t, frac in anat.fractions().items())
    m0 = m0_scale * pd * (1.0 + coil * smooth_field(rng, shape, 3))
    n = int(rng.integers(n_lesions[0], n_lesions[1] + 1))
    factor, lesion, ids, placed = _place_lesions(rng, anat, n, lesion_radius, hypo, hyper,
                                                 border_fraction)
    if territories:  # drawn last: the other maps do not depend on it
        t_cbf, t_att = territory_fields(rng, anat, territories)
        cbf, att = cbf * t_cbf, np.maximum(att + t_att, 0.1)
    return dict(cbf=(cbf * factor).astype(np.float32), att=att.astype(np.float32),
                m0=m0.astype(np.float32), lesion=lesion, lesion_id=ids,
                info=dict(gm_cbf=f_gm, wm_cbf=f_wm, lesions=placed))


def recovery(anat: Anatomy, tr: float, field_strength: float | None) -> np.ndarray:
    """Fraction of M0 recovered after a saturation and ``tr`` seconds, mixing tissues by M0.

    .. math:: r = \\sum_t v_t PD_t (1 - e^{-TR/T1_t}) / \\sum_t v_t PD_t

    Air (no tissue) gets 1. With ``tr = inf`` the result is 1 everywhere.
    """
    w = {t: PROTON_DENSITY[t] * frac for t, frac in anat.fractions().items()}
    num = sum(w[t] * np.float32(1.0 - np.exp(-tr / tissue_t1(t, field_strength))) for t in w)
    den = sum(w.values())
    return np.where(den > 0, num / np.maximum(den, 1e-12), 1.0).astype(np.float32)


def add_noise(rng: np.random.Generator, signal, sigma: float, kind: str = 'rician'):
    """``signal`` plus noise of SD ``sigma``: magnitude of complex Gaussian noise (Rician) or
    real Gaussian noise (``kind='gaussian'``); float32, unchanged when ``sigma`` is 0.

    >>> add_noise(np.random.default_rng(0), np.ones(3, np.float32), 0.0).tolist()
    [1.0, 1.0, 1.0]
    """
    signal = np.asarray(signal, np.float32)
    if sigma == 0:
        return signal
    real = signal + np.float32(sigma) * rng.standard_normal(signal.shape, dtype=np.float32)
    if kind == 'gaussian':
        return real
    return np.hypot(real, np.float32(sigma) * rng.standard_normal(signal.shape, np.float32))


def t1w_image(rng: np.random.Generator, anat: Anatomy, bias: float = 0.15, noise: float = 0.02,
              scale: float = 1000.0) -> np.ndarray:
    """T1-weighted head image (float32): tissue intensities, smooth bias field, Rician noise.

    Perfusion lesions are deliberately invisible here. ``noise`` is the noise SD as a fraction
    of the WM intensity, ``bias`` the amplitude of the multiplicative bias field.
    """
    img = sum(T1W_INTENSITY[t] * frac for t, frac in anat.fractions().items())
    img = img * (1.0 + bias * smooth_field(rng, anat.shape, 3))
    return scale * add_noise(rng, img, noise)


def scanner_motion(rng: np.random.Generator, n_volumes: int, jitter_mm: float = 0.0,
                   drift_mm: float = 0.0, jerks: int = 0) -> np.ndarray:
    """Motion as scanners see it, on top of the slow random walk: (n_volumes, 6) rigid
    parameters (mm and degrees), zero when all three options are 0 (nothing is drawn then,
    so the random stream of older configurations is unchanged).

    - ``jitter_mm``: independent per-volume jitter, normal with that SD on each axis;
    - ``drift_mm``: a linear drift reaching that size (RMS over the six parameters, random
      direction) at the last volume;
    - ``jerks``: that many sudden steps at random volumes (after the first), each of 0.5-2
      mm/degrees (RMS) in a random direction, kept for the rest of the series.

    >>> m = scanner_motion(np.random.default_rng(0), 25, 0.3, 1.0, 2)
    >>> m.shape, bool(np.abs(m).max() > 0)
    ((25, 6), True)
    >>> float(np.abs(scanner_motion(np.random.default_rng(0), 25)).max())
    0.0
    """
    motion = np.zeros((n_volumes, 6))
    if jitter_mm:
        motion += rng.normal(0, jitter_mm, (n_volumes, 6))
    if drift_mm:
        direction = rng.normal(size=6)
        ramp = np.linspace(0, 1, n_volumes)[:, None]
        motion += ramp * drift_mm * direction / np.linalg.norm(direction) * np.sqrt(6)
    for _ in range(jerks):
        start = int(rng.integers(1, max(n_volumes, 2)))
        direction = rng.normal(size=6)
        size = rng.uniform(0.5, 2.0)
        motion[start:] += size * direction / np.linalg.norm(direction) * np.sqrt(6)
    return motion
