"""Triangle meshes of 3D masks for the 3D view (plain arrays; the page builds plotly ``Mesh3d``).

Meshes come from ``skimage.measure.marching_cubes`` at level 0.5 on a *coarse* float field:
the mask is cropped to its bounding box, block-averaged so its longest side is at most
``max_side`` cells (a 128³ or 240x240x155 volume therefore costs the same), lightly smoothed,
and zero-padded so every surface closes. If the mesh still has more than ``max_faces``
triangles, marching cubes is rerun with a larger ``step_size``.

Coordinates: vertices ``(N, 3)`` float32 are in millimetres along the canonical volume axes,
voxel ``(i, j, k)``'s centre at ``(i * sx, j * sy, k * sz)`` (``spacing_mm = (sx, sy, sz)``);
pass ``affine`` to get world (scanner) coordinates instead. Faces ``(M, 3)`` int32 index the
vertices. For plotly: ``Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=f[:, 0], j=f[:, 1], k=f[:, 2])``
with ``scene.aspectmode="data"``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.measure import marching_cubes

__all__ = ["region_mesh", "brain_surface", "DEFAULT_MAX_FACES", "DEFAULT_MAX_SIDE"]

#: Default triangle budget of one mesh (keeps the browser responsive).
DEFAULT_MAX_FACES = 60_000
#: Default longest side (cells) of the field marching cubes runs on.
DEFAULT_MAX_SIDE = 96
_MAX_STEP = 8


def _check(mask: np.ndarray, spacing_mm: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mask)
    if m.ndim != 3:
        raise ValueError(f"A 3D mask is expected, got shape {m.shape}.")
    sp = np.asarray([float(s) for s in spacing_mm], dtype=np.float64)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing_mm must be 3 positive numbers, got {spacing_mm!r}.")
    return m.astype(bool, copy=False), sp


def _downsample(mask: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Block-mean field of the mask's bounding box: (field float32, box origin (3,), factor)."""
    if not mask.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        lo.append(int(hits[0]))
        hi.append(int(hits[-1]) + 1)
    crop = mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    factor = max(1, int(math.ceil(max(crop.shape) / max(int(max_side), 2))))
    if factor == 1:
        return crop.astype(np.float32), np.asarray(lo, dtype=np.float64), 1
    pad = [(0, (-s) % factor) for s in crop.shape]
    crop = np.pad(crop, pad)
    a, b, c = (s // factor for s in crop.shape)
    field = crop.reshape(a, factor, b, factor, c, factor).mean(axis=(1, 3, 5), dtype=np.float32)
    return field, np.asarray(lo, dtype=np.float64), factor


def _march(
    field: np.ndarray,
    origin: np.ndarray,
    factor: int,
    spacing: np.ndarray,
    step_size: int,
    max_faces: int,
    smoothing_sigma: float,
    affine: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    if smoothing_sigma > 0:
        field = ndimage.gaussian_filter(field, sigma=float(smoothing_sigma), mode="constant")
    field = np.pad(field, 1)
    peak = float(field.max())
    if peak <= 0:
        return None
    level = min(0.5, peak / 2.0)  # tiny objects blurred below 0.5 still get a surface
    step = max(1, int(step_size))
    while True:
        try:
            verts, faces, _, _ = marching_cubes(field, level=level, step_size=step, allow_degenerate=False)
        except (ValueError, RuntimeError):
            return None
        if len(faces) <= max_faces or step >= _MAX_STEP or min(field.shape) // (step + 1) < 3:
            break
        step += 1
    if len(faces) == 0:
        return None
    # padded coarse index -> original voxel index (centre of the block)
    index = origin + (verts.astype(np.float64) - 1.0) * factor + (factor - 1) / 2.0
    if affine is not None:
        aff = np.asarray(affine, dtype=np.float64)
        coords = index @ aff[:3, :3].T + aff[:3, 3]
    else:
        coords = index * spacing
    return coords.astype(np.float32), faces.astype(np.int32)


def region_mesh(
    mask: np.ndarray,
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    step_size: int = 1,
    max_faces: int = DEFAULT_MAX_FACES,
    max_side: int = DEFAULT_MAX_SIDE,
    smoothing_sigma: float = 0.5,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Surface ``(verts (N, 3) float32 mm, faces (M, 3) int32)`` of a 3D mask; ``None`` if empty.

    ``step_size`` is marching cubes' starting step (raised until the mesh has at most
    ``max_faces`` triangles, up to 8), ``max_side`` the coarse grid's longest side and
    ``smoothing_sigma`` a Gaussian blur (coarse cells) that removes voxel staircases.
    See the module docstring for coordinates.
    """
    m, sp = _check(mask, spacing_mm)
    down = _downsample(m, max_side)
    if down is None:
        return None
    field, origin, factor = down
    return _march(field, origin, factor, sp, step_size, int(max_faces), smoothing_sigma, affine)


def brain_surface(
    volume: np.ndarray,
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    threshold: float | None = None,
    max_faces: int = 40_000,
    max_side: int = 64,
    smoothing_sigma: float = 1.0,
    affine: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Outer surface of the brain in an MRI volume, as :func:`region_mesh`; ``None`` if blank.

    The brain is ``volume > threshold``; by default 0 for skull-stripped volumes (at least 10 %
    of the voxels exactly 0, as in BraTS) and Otsu's threshold otherwise. Internal holes
    (ventricles, dark tumour cores) are filled on the coarse grid so only the outer surface is
    drawn. Coarser and smoother than tumour meshes by default: it is context, not measurement.
    """
    vol = np.asarray(volume)
    _check(vol, spacing_mm)
    if threshold is None:
        sample = vol.ravel()[:: max(1, vol.size // 1_000_000)]
        if sample.size == 0 or np.mean(sample == 0) >= 0.10:
            threshold = 0.0
        else:
            from skimage.filters import threshold_otsu

            threshold = float(threshold_otsu(sample.astype(np.float32)))
    mask = vol > threshold
    down = _downsample(mask, max_side)
    if down is None:
        return None
    field, origin, factor = down
    filled = ndimage.binary_fill_holes(field >= 0.5)
    field = np.where(filled & (field < 0.5), np.float32(1.0), field).astype(np.float32)
    sp = np.asarray([float(s) for s in spacing_mm], dtype=np.float64)
    return _march(field, origin, factor, sp, 1, int(max_faces), smoothing_sigma, affine)
