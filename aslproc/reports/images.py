"""Images for the report: volumes in RAS+ orientation, world-space cuts and bounding boxes.

Every figure draws slices at world positions (mm), so maps on different grids (the ASL
grid and the T1w grid of the super-resolved map) line up in the same panel layout.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nibabel as nib
import numpy as np

logger = logging.getLogger(__name__)

#: Axis index, plane name and the two in-plane world axes (horizontal, vertical) of a cut.
PLANES = ((0, 'sagittal', (1, 2)), (1, 'coronal', (0, 2)), (2, 'axial', (0, 1)))


@dataclass(frozen=True)
class Volume:
    """A 3D image reoriented to RAS+, with the world position of voxel (0, 0, 0).

    Attributes
    ----------
    data : ndarray (X, Y, Z)
        Voxel values (float32); a 4D input is averaged over its last axis.
    origin : ndarray (3,)
        World coordinates (mm) of the centre of the first voxel.
    zooms : ndarray (3,)
        Voxel size (mm) along x, y, z.

    Examples
    --------
    >>> v = Volume(np.zeros((4, 5, 6), np.float32), np.array([-2., -2., 0.]), np.ones(3))
    >>> v.index(2, 3.4), v.extent(2)
    (3, (-2.5, 1.5, -2.5, 2.5))
    """

    data: np.ndarray
    origin: np.ndarray
    zooms: np.ndarray

    @classmethod
    def from_image(cls, img) -> Volume:
        """Reorient a nibabel image to the closest RAS+ axes (obliquity is ignored)."""
        img = nib.as_closest_canonical(img)
        data = np.asanyarray(img.dataobj, dtype=np.float32)
        if data.ndim == 4:
            data = data.mean(axis=3)
        data = np.nan_to_num(data.reshape(data.shape[:3]))
        zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
        return cls(data, np.asarray(img.affine[:3, 3], dtype=float), zooms)

    @classmethod
    def load(cls, path) -> Volume:
        """Read a NIfTI file."""
        return cls.from_image(nib.load(str(path)))

    def index(self, axis: int, mm: float) -> int:
        """Voxel index nearest to world coordinate ``mm`` along ``axis`` (clipped)."""
        k = int(round((mm - self.origin[axis]) / self.zooms[axis]))
        return int(np.clip(k, 0, self.data.shape[axis] - 1))

    def plane(self, axis: int, mm: float) -> np.ndarray:
        """The cut at ``mm`` as (vertical, horizontal), for ``imshow(origin='lower')``."""
        return np.take(self.data, self.index(axis, mm), axis=axis).T

    def extent(self, axis: int) -> tuple:
        """``imshow`` extent (left, right, bottom, top) in mm of a cut normal to ``axis``."""
        h, v = next(p[2] for p in PLANES if p[0] == axis)
        lo = self.origin - self.zooms / 2
        hi = lo + self.zooms * np.asarray(self.data.shape)
        return tuple(float(x) for x in (lo[h], hi[h], lo[v], hi[v]))

    def box(self, threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """World bounding box (lo, hi) of the voxels above ``threshold`` (all when none)."""
        idx = np.argwhere(self.data > threshold)
        if not idx.size:
            idx = np.array([[0, 0, 0], np.asarray(self.data.shape) - 1])
        lo = self.origin + self.zooms * idx.min(axis=0)
        hi = self.origin + self.zooms * idx.max(axis=0)
        return lo, hi

    def inside(self, threshold: float = 0.0) -> np.ndarray:
        """Boolean mask of the voxels above ``threshold``."""
        return self.data > threshold


def cuts(lo: float, hi: float, n: int) -> list[float]:
    """``n`` evenly spaced positions (mm) between 12 % and 88 % of ``[lo, hi]``.

    >>> cuts(0.0, 100.0, 3)
    [12.0, 50.0, 88.0]
    """
    return [round(float(x), 2) for x in np.linspace(lo + 0.12 * (hi - lo),
                                                    lo + 0.88 * (hi - lo), n)]


def robust_max(values: np.ndarray, q: float = 99.0, step: float = 10.0) -> float:
    """Upper limit of a colour scale: the ``q``-th percentile, rounded up to ``step``.

    >>> robust_max(np.arange(0.0, 101.0))
    100.0
    >>> robust_max(np.array([]))
    100.0
    """
    values = values[np.isfinite(values)]
    if not values.size:
        return 100.0
    top = float(np.percentile(values, q))
    return max(step, float(np.ceil(top / step) * step))
