"""The paper's picture figures: pointmap sequences (Fig. 3), attention maps (Fig. 9, 15) and
knockout (Fig. 13), drawn from a `PairView` and plain arrays.

Point clouds are projected by a fixed orbit camera (the 4D viewer's starting view: behind
view 1, a little to the side and above), each pointmap divided by its own scale, and drawn
far to near so nearer points cover farther ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.errors import ShapeError
from pipeline.viz.pair import PairView, pointmap_scale

YAW, PITCH, DIST = 0.3, -0.25, 2.2  # the 4D viewer's initial orbit (static/viewer4d.js)


def project(points: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(M, 3) points in view 1's frame → screen x, y (focal 1) and depth of the orbit camera."""
    cy, sy, cp, sp = np.cos(YAW), np.sin(YAW), np.cos(PITCH), np.sin(PITCH)
    R = np.array([[cy, 0, sy], [sp * sy, cp, -sp * cy], [-cp * sy, sp, cp * cy]])
    q = (points - target) @ R.T
    z = q[:, 2] + DIST
    return q[:, 0] / z, q[:, 1] / z, z


def _cloud(ax: Axes, points: np.ndarray, colours: np.ndarray, target: np.ndarray, size: float) -> None:
    """Scatter (M, 3) points with (M, 3) colours in [0, 1], far to near, y down like the image."""
    x, y, z = project(points, target)
    keep = z > 0.05
    order = np.argsort(-z[keep])
    ax.scatter(x[keep][order], y[keep][order], c=colours[keep][order], s=size, linewidths=0)
    ax.set_xlim(-0.55, 0.55)
    ax.set_ylim(0.4, -0.4)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("#101418")


def _flat(pair: PairView, points: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Drawable points of both views, normalised by their scale, and their image colours."""
    sub = (slice(None), slice(None, None, stride), slice(None, None, stride))
    mask = pair.valid[sub] & np.isfinite(points[sub]).all(-1)
    p = points[sub] / pointmap_scale(points[sub], mask)
    return p[mask], pair.rgb[sub][mask] / 255.0


def fig_pointmap_sequence(
    pair: PairView,
    probed: Mapping[str, np.ndarray],
    *,
    locations: Sequence[str] | None = None,
    stride: int = 4,
    cols: int = 6,
) -> Figure:
    """Fig. 3: both views' probed pointmaps at each location, then the model's output and GT.

    Args:
        pair: images, validity, GT and model output.
        probed: location → (V, H, W, 3) pointmaps in view 1's frame.
        locations: the locations to show, in order (None: all of `probed`).
        stride: pixel subsampling of the drawn points.
        cols: panels per row.
    """
    frames = {loc: probed[loc] for loc in (locations or probed) if loc in probed}
    if pair.model is not None:
        frames["model output"] = pair.model
    if pair.gt is not None:
        frames["ground truth"] = pair.gt
    ref = pair.gt if pair.gt is not None else next(iter(frames.values()))
    target = _flat(pair, ref, stride)[0].mean(0) if frames else np.zeros(3)
    rows = -(-len(frames) // cols)
    fig = Figure(figsize=(2.1 * cols, 1.8 * rows + 0.3))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, pts) in zip(axes, frames.items(), strict=False):
        p, c = _flat(pair, pts, stride)
        _cloud(ax, p, c, target, size=1.5)
        ax.set_title(name, fontsize=9, family="monospace")
    for ax in axes[len(frames) :]:
        ax.axis("off")
    fig.suptitle(f"Pointmaps of both views decoded at every location · {pair.title}", fontsize=10)
    fig.tight_layout()
    return fig


def fig_attention(
    query_rgb: np.ndarray,
    key_rgb: np.ndarray,
    maps: np.ndarray,
    *,
    grid: tuple[int, int],
    query: int,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "",
) -> Figure:
    """Fig. 9 / 15: attention of chosen heads for one query patch, e.g. heads x blocks.

    Args:
        query_rgb: (H, W, 3) uint8 image holding the query patch (view 2 in the paper).
        key_rgb: (H, W, 3) uint8 image of the keys (view 1 for cross-, view 2 for self-attention),
            or (R, H, W, 3), one per row, when rows mix self- and cross-attention.
        maps: (R, C, K) attention rows for the query, K = h·w keys row-major; each cell is
            scaled to its own maximum, as the paper shows them.
        grid: (h, w) patch grid.
        query: the query patch, row-major index.
        row_labels: R labels (e.g. blocks); col_labels: C labels (e.g. heads).
        title: figure title.

    Raises:
        ShapeError: maps is not (len(row_labels), len(col_labels), h·w).
    """
    h, w = grid
    R, C = len(row_labels), len(col_labels)
    if maps.shape != (R, C, h * w):
        raise ShapeError(
            f"maps: expected (R={R}, C={C}, K={h * w}) for the labels and grid, got {maps.shape}"
        )
    H, W = query_rgb.shape[:2]
    ph, pw = H / h, W / w
    keys = np.broadcast_to(key_rgb, (R, *query_rgb.shape)) if key_rgb.ndim == 3 else key_rgb
    key_gray = keys.astype(np.float64) @ [0.299, 0.587, 0.114]  # (R, H, W)
    fig = Figure(figsize=(1.25 * (C + 1), 1.25 * R + 0.4))
    axes = fig.subplots(R, C + 1, squeeze=False)
    for r in range(R):
        ax = axes[r, 0]
        ax.imshow(query_rgb)
        ax.add_patch(
            Rectangle(
                ((query % w) * pw, (query // w) * ph), pw, ph, fill=False, edgecolor="red", linewidth=1.5
            )
        )
        ax.set_ylabel(row_labels[r], fontsize=8, family="monospace")
        for c in range(C):
            cell = maps[r, c].reshape(h, w).astype(np.float64)
            peak = np.nanmax(cell) if np.isfinite(cell).any() else 1.0
            heat = colormaps["viridis"](cell / (peak or 1.0))
            heat[..., 3] = 0.1 + 0.8 * np.clip(
                cell / (peak or 1.0), 0, 1
            )  # weak attention lets the image through
            axes[r, c + 1].imshow(key_gray[r], cmap="gray", vmin=0, vmax=255)
            axes[r, c + 1].imshow(heat, extent=(0, W, H, 0), interpolation="nearest")
            if r == 0:
                axes[r, c + 1].set_title(col_labels[c], fontsize=8, family="monospace")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("query", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.3)
    return fig


def fig_knockout(
    pair: PairView, before: np.ndarray, after: np.ndarray, *, label: str = "", stride: int = 2
) -> Figure:
    """Fig. 13: the probed pointmap without and with a knockout, and how far each pixel moved.

    Args:
        pair: images and validity.
        before: (V, H, W, 3) probed (or model) pointmaps of the normal forward pass.
        after: (V, H, W, 3) the same with the intervention.
        label: what was knocked out, e.g. "b02.self heads 0, 3, 8, 9: top-5 keys".
        stride: subsampling of the drawn points.
    """
    if before.shape != after.shape:
        raise ShapeError(f"after: expected {before.shape} like before, got {after.shape}")
    scale = pointmap_scale(before, pair.valid)
    moved = np.linalg.norm(after - before, axis=-1) / scale  # (V, H, W)
    moved = np.where(pair.valid, moved, np.nan)
    target = _flat(pair, before, stride)[0].mean(0)
    fig = Figure(figsize=(12, 3.3))
    axes = fig.subplots(1, 4)
    for ax, (name, pts) in zip(
        axes[:2], (("without knockout", before), ("with knockout", after)), strict=True
    ):
        p, c = _flat(pair, pts, stride)
        _cloud(ax, p, c, target, size=2)
        ax.set_title(name, fontsize=9)
    for v, ax in enumerate(axes[2:]):
        im = ax.imshow(moved[v], cmap="magma", vmin=0)
        ax.set_title(f"view {v + 1}: displacement / scale\nmean {np.nanmean(moved[v]):.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Attention knockout · {label}" if label else "Attention knockout", fontsize=10)
    fig.tight_layout()
    return fig
