"""Scale-shift invariant pointmap error (paper, Appendix E.1).

Metrics work on point sets stored channels first: the valid pixels of a pair (or of one
view) as (..., 3, n) rows of x, y and z, with any number of leading prediction dims
(locations, probe sets) in front, because a pair's valid mask is the same for every
location's prediction. Rows keep every per-point operation on contiguous memory (a norm
over a trailing dim of 3 was a tenth of evaluation).

Medians are numpy's (the mean of the two middle values for an even count) and exact.
They dominate evaluation (four per point set of ~100k points, eight per prediction with
E.2, ~150 predictions per pair), so each is one linear-time selection. On the CPU it is
numpy's `partition` (vectorised quickselect where the CPU has AVX2 or AVX-512) on blocks
of rows in parallel threads; the upper middle value is the minimum right of the lower
one. Elsewhere it is `torch.kthvalue`. The ground truth's half of E.1 is computed once
per pair (`normalise`) and shared by every prediction.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pipeline.errors import ShapeError

MIN_ROWS_PER_THREAD = 2  # fewer rows than this per thread: the pool costs more than it saves


class Normalised(NamedTuple):
    """A point set after steps 1-3 of E.1.

    Attributes:
        shifted: (..., 3, n) the points with their median z subtracted from every z.
        scale: (...) the median distance of `shifted` to its coordinate-wise median.
    """

    shifted: Tensor
    scale: Tensor


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="median")


def _by_row_blocks(fn: Callable[[slice], tuple[np.ndarray, ...]], n_rows: int) -> tuple[np.ndarray, ...]:
    """fn over blocks of rows in parallel threads (numpy releases the GIL), outputs concatenated in row order."""
    threads = min(torch.get_num_threads(), n_rows // MIN_ROWS_PER_THREAD)
    if threads <= 1:
        return fn(slice(0, n_rows))
    edges = np.linspace(0, n_rows, threads + 1).astype(int)
    blocks = [slice(int(lo), int(hi)) for lo, hi in itertools.pairwise(edges)]
    parts = list(_pool(threads).map(fn, blocks))
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def _partition_middle(rows: np.ndarray, k: int, even: bool) -> tuple[np.ndarray, np.ndarray]:
    """k-th smallest (0-based) of each row of (R, n) and, for an even count, the next one.

    After partitioning at k, every value right of k is >= the k-th, so the next order
    statistic is their minimum: one selection serves both middle values.
    """
    part = np.partition(rows, k, axis=-1)
    lo = part[:, k]
    return lo, (part[:, k + 1 :].min(-1) if even else lo)


def middle_values(x: Tensor) -> tuple[Tensor, Tensor]:
    """The lower and upper middle values along the last dim (the same value for an odd count).

    Args:
        x: (..., n) finite values, n >= 1.

    Returns:
        lo, hi: (...) the ((n+1)//2)-th and (n//2+1)-th smallest values, exactly.
    """
    n = x.shape[-1]
    if n == 0:
        raise ShapeError(f"median of an empty last dim of shape {tuple(x.shape)}")
    k, even = (n - 1) // 2, n % 2 == 0
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        lo = x.kthvalue(k + 1, dim=-1).values
        return lo, (x.kthvalue(k + 2, dim=-1).values if even else lo)
    rows = x.detach().reshape(-1, n).numpy()
    lo, hi = _by_row_blocks(lambda block: _partition_middle(rows[block], k, even), len(rows))
    lead = x.shape[:-1]
    return torch.from_numpy(lo).reshape(lead), torch.from_numpy(hi).reshape(lead)


def median(x: Tensor, dim: int = -1) -> Tensor:
    """numpy-style median along `dim`: the mean of the two middle values for an even count.

    Args:
        x: (..., n, ...) finite values; n >= 1 along `dim`.

    Returns:
        x with `dim` removed.
    """
    if x.shape[dim] == 0:
        raise ShapeError(f"median of an empty dim {dim} of shape {tuple(x.shape)}")
    lo, hi = middle_values(x.movedim(dim, -1))
    return lo if x.shape[dim] % 2 else (lo + hi) / 2


def _distances(
    points: Tensor, centre: Tensor, scale: Tensor | None = None, target: Tensor | None = None
) -> Tensor:
    """(..., n) per point ||scale · (p - centre) - target||, one channel at a time.

    A single (..., n) accumulator and no (..., 3, n) temporary: for ~100 predictions of
    100k points each such temporary is ~100 MB of memory traffic, which is what E.1's
    arithmetic is bound by.

    Args:
        points: (..., 3, n) channels first.
        centre: (..., 3) subtracted from every point.
        scale: (...) multiplies the centred points (1 when None).
        target: (3, n) subtracted after scaling (0 when None).
    """
    total = None
    for ch in range(3):
        c = centre[..., ch, None]
        if scale is None:
            d = points[..., ch, :] - c
        else:
            s = scale[..., None]
            d = torch.addcmul(-(s * c), points[..., ch, :], s)
        if target is not None:
            d.sub_(target[ch])
        total = d.square_() if total is None else total.addcmul_(d, d)
    return total.sqrt_()


def _centre(points: Tensor) -> tuple[Tensor, Tensor]:
    """Steps 1-2 of E.1: the median depth (...) and the median point of the shifted points (..., 3).

    One selection gives the middle values of x, y and z together. The median of the
    shifted z needs none of its own: subtracting a constant keeps the order, so its middle
    values are the shifted middle values of z.
    """
    lo, hi = middle_values(points)  # (..., 3) each
    mid = lo if points.shape[-1] % 2 else (lo + hi) / 2
    shifted_z = torch.stack([lo[..., 2], hi[..., 2]], -1) - mid[..., 2, None]  # its middle values
    origin_z = shifted_z[..., 0] if points.shape[-1] % 2 else shifted_z.sum(-1) / 2
    return mid[..., 2], torch.cat([mid[..., :2], origin_z[..., None]], dim=-1)


def _on_z(values: Tensor) -> Tensor:
    """(..., 3) vectors (0, 0, v) of values (...)."""
    zeros = torch.zeros_like(values)
    return torch.stack([zeros, zeros, values], -1)


def normalise(points: Tensor) -> Normalised:
    """Steps 1-3 of E.1: subtract the median depth; scale = median distance to the median point.

    Args:
        points: (..., 3, n) one point set (a pair, or one view) per leading index, xyz rows
            in one camera frame.
    """
    depth, origin = _centre(points)
    shifted = points.clone()
    shifted[..., 2, :] -= depth[..., None]
    return Normalised(shifted, median(_distances(shifted, origin)))


def ssi_point_errors(pred: Tensor, gt: Normalised) -> Tensor:
    """Per-point scale-shift invariant error of E.1 between matching point sets.

    Both sets are shifted by their own median depth; the prediction is then multiplied by
    s_gt / s_pred (about the camera origin, as the paper writes it) and compared with the
    shifted ground truth, which is not rescaled: the error is in the ground truth's units.
    The prediction's shifted copy is never made: its distances are taken from `pred`
    with the shift folded into the centre (`_distances`).

    Args:
        pred: (..., 3, n) predicted points, e.g. (L, 3, n) for L locations.
        gt: the ground truth's (3, n) points after `normalise` (metres), shared by every prediction.

    Returns:
        (..., n) L2 distance per point, metres.

    Example:
        >>> g = torch.rand(3, 100) + 1
        >>> ssi_point_errors(2.0 * g + torch.tensor([[0], [0], [5.0]]), normalise(g)).abs().max() < 1e-5
        tensor(True)
    """
    if pred.shape[-2:] != gt.shifted.shape or gt.shifted.shape[0] != 3:
        raise ShapeError(
            f"pred: expected (..., 3, n) with n={gt.shifted.shape[-1]} (from gt (3, n)), got {tuple(pred.shape)}"
        )
    depth, origin = _centre(pred)
    shift = _on_z(depth)
    s_p = median(_distances(pred, origin + shift))
    ratio = gt.scale / s_p.clamp(min=torch.finfo(s_p.dtype).tiny)
    return _distances(pred, shift, ratio, gt.shifted)


def gather_valid(images: Tensor, valid: Tensor) -> Tensor:
    """Valid pixels of one pair as channels-first rows.

    Args:
        images: (..., V, H, W, C) per-pixel values of one pair.
        valid: (V, H, W) bool.

    Returns:
        (..., C, n) with n = valid.sum(), in (view, y, x) order.
    """
    if images.shape[-4:-1] != valid.shape:
        raise ShapeError(
            f"images: expected (..., V, H, W, C) with (V, H, W)={tuple(valid.shape)}, got {tuple(images.shape)}"
        )
    return images.movedim(-1, -4)[..., valid]


def view_means(errors: Tensor, n_view: tuple[int, int]) -> dict[str, Tensor]:
    """E.1's means of per-point errors (..., n1 + n2): both views, and each view (NaN when empty)."""
    v1, v2 = errors.split(list(n_view), dim=-1)
    nan = torch.full(errors.shape[:-1], torch.nan, dtype=errors.dtype, device=errors.device)
    return {
        "ssi_error": errors.mean(-1) if errors.shape[-1] else nan,
        "ssi_error_v1": v1.mean(-1) if v1.shape[-1] else nan,
        "ssi_error_v2": v2.mean(-1) if v2.shape[-1] else nan,
    }


def ssi_error(pred: Tensor, gt: Tensor, valid: Tensor) -> dict[str, Tensor]:
    """Mean scale-shift invariant error of one pair, over both views and per view (E.1).

    Args:
        pred: (..., V, H, W, 3) predicted pointmaps of one pair, both in view 1's frame.
        gt: (V, H, W, 3) ground-truth pointmaps in view 1's camera frame, metres.
        valid: (V, H, W) bool, ground-truth valid pixels.

    Returns:
        "ssi_error": (...) mean over the valid pixels of both views; "ssi_error_v1",
        "ssi_error_v2": (...) the same errors averaged per view (NaN for a view without
        valid pixels). All NaN when the pair has no valid pixel.
    """
    n_view = tuple(int(n) for n in valid.flatten(1).sum(1))
    if sum(n_view) == 0:
        return view_means(pred.new_zeros((*pred.shape[:-4], 0)), (0, 0))
    err = ssi_point_errors(gather_valid(pred, valid), normalise(gather_valid(gt, valid)))
    return view_means(err, n_view)
