"""Patch-level correspondences from dense pixel correspondences (paper, Appendix E.3).

For a patch of one view, its corresponding patch in the other view is the one that holds
the most of the 3D points seen by its pixels; a patch none of whose pixels corresponds to
anything has no match. Ties go to the lowest patch index (first maximum), so the result is
a pure function of the renders. Everything is counted with one `bincount` per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import ShapeError

NO_PATCH = -1  # patch index of pixels and patches without a correspondence


@dataclass(frozen=True)
class PatchCorrespondences:
    """Correspondences of one batch of pairs, both ways.

    Attributes:
        pixel_patch: (B, V, H, W) int32, row-major index over the other view's (h, w) patch
            grid of the patch that holds each pixel's corresponding point; -1 where none.
        patch_match: (B, V, N) int32, for each patch of view v, the patch of the other view
            holding most of its corresponding pixels; -1 where none.
        patch_count: (B, V, N) int32, how many of the patch's pixels fall in `patch_match`.
        patch_support: (B, V, N) int32, how many of the patch's pixels correspond at all.
    """

    pixel_patch: np.ndarray
    patch_match: np.ndarray
    patch_count: np.ndarray
    patch_support: np.ndarray


def pixel_to_patch(corr: np.ndarray, patch_size: int) -> np.ndarray:
    """Patch of the other view that each pixel's corresponding point falls in.

    Args:
        corr: (B, V, H, W, 2) sub-pixel (u, v) = (column, row) in the other view, pixel
            centres at +0.5, NaN where the point is not visible there.
        patch_size: side of a square patch in pixels; H and W must be multiples of it.

    Returns:
        (B, V, H, W) int32 row-major patch index over the (H/p, W/p) grid; -1 where none.
        A point exactly on the far image border (u == W) belongs to the last column.
    """
    if corr.ndim != 5 or corr.shape[1] != 2 or corr.shape[-1] != 2:
        raise ShapeError(f"corr: expected (B, V=2, H, W, 2), got {tuple(corr.shape)}")
    H, W = corr.shape[2:4]
    if H % patch_size or W % patch_size:
        raise ShapeError(f"corr: image size ({H}, {W}) is not a multiple of patch_size {patch_size}")
    u, v = corr[..., 0], corr[..., 1]
    inside = np.isfinite(u) & np.isfinite(v) & (u >= 0) & (u <= W) & (v >= 0) & (v <= H)
    col = np.minimum(np.floor(np.where(inside, u, 0)).astype(np.int64), W - 1)
    row = np.minimum(np.floor(np.where(inside, v, 0)).astype(np.int64), H - 1)
    patch = (row // patch_size) * (W // patch_size) + col // patch_size
    return np.where(inside, patch, NO_PATCH).astype(np.int32)


def patch_correspondences(corr: np.ndarray, patch_size: int = 16) -> PatchCorrespondences:
    """Patch correspondences of both views of a batch of pairs.

    Args:
        corr: (B, V, H, W, 2) the renders' `corr` array (see `pixel_to_patch`).
        patch_size: side of a square patch in pixels (16 for DUSt3R).

    Returns:
        The per-pixel map and the per-patch match, count and support, both views.

    Example:
        >>> patch_correspondences(np.full((1, 2, 32, 32, 2), np.nan, np.float32)).patch_match.shape
        (1, 2, 4)
    """
    target = pixel_to_patch(corr, patch_size)
    B, V, H, W = target.shape
    h, w, p = H // patch_size, W // patch_size, patch_size
    n = h * w
    rows = np.arange(H)[:, None] // p
    cols = np.arange(W)[None, :] // p
    source = (rows * w + cols).astype(np.int64)  # (H, W) own patch of each pixel
    has = target >= 0
    flat = (np.arange(B * V).reshape(B, V, 1, 1) * n + source) * n + target
    counts = np.bincount(flat[has], minlength=B * V * n * n).reshape(B, V, n, n)
    match = counts.argmax(axis=-1)
    best = np.take_along_axis(counts, match[..., None], axis=-1)[..., 0]
    return PatchCorrespondences(
        pixel_patch=target,
        patch_match=np.where(best > 0, match, NO_PATCH).astype(np.int32),
        patch_count=best.astype(np.int32),
        patch_support=counts.sum(axis=-1).astype(np.int32),
    )


def patch_centres(grid: tuple[int, int], patch_size: int = 16) -> np.ndarray:
    """(N, 2) pixel (u, v) of each patch's centre, row-major; what match errors are measured between."""
    h, w = grid
    r, c = np.divmod(np.arange(h * w), w)
    return np.stack([(c + 0.5) * patch_size, (r + 0.5) * patch_size], axis=-1)
