"""The 4D pointmap viewer: a pair's probed pointmaps played through every location.

One self-contained HTML page (static/viewer4d.html + viewer4d.js, a canvas-2D point
renderer with a z-buffer, so it needs neither WebGL nor a GPU): a slider and a play button
step through the locations, then the model's own output and the ground truth; points are
coloured by image colour or by view, both cameras are drawn as frusta, the GT can be
overlaid, and the least confident points can be hidden. Points are subsampled by `stride`
and quantised to uint16, which keeps a 38-location 224 x 224 pair near 2-3 MB.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError, ShapeError
from pipeline.viz.pack import encode_array, fill_page, png_data_uri, quantize_points
from pipeline.viz.pair import PairView, confidence_rank, frustum_segments, pointmap_scale

FRUSTUM_DEPTH = 0.15  # of the normalised scene's mean distance (1.0)


def viewer4d_data(
    pair: PairView,
    probed: Mapping[str, np.ndarray],
    conf: Mapping[str, np.ndarray] | None = None,
    *,
    stride: int = 2,
) -> dict:
    """The JSON the viewer page reads: frames, colours, frusta, images, identity.

    Args:
        pair: images, cameras, GT and model output of the pair.
        probed: location → (V, H, W, 3) probed pointmaps in view 1's frame, in play order.
        conf: location → (V, H, W) probe confidences (None: no confidence filter).
        stride: keep every `stride`-th pixel in x and y.

    Returns:
        dict with "names", "kinds" ("probe", "model", "gt") per frame, "points"
        (quantised (F, V, M, 3)), "conf" ((F, V, M) uint8 ranks or None), "gt" (the GT
        frame for the overlay or None), "rgb" ((V, M, 3)), "frusta", "images", "title", "identity".

    Raises:
        ConfigError: stride < 1 or no frame at all.
        ShapeError: a pointmap is not (V, H, W, 3) like `pair.rgb`.
    """
    if stride < 1:
        raise ConfigError(f"viewer stride must be >= 1, got {stride}")
    frames = {name: ("probe", pts) for name, pts in probed.items()}
    if pair.model is not None:
        frames["model output"] = ("model", pair.model)
    if pair.gt is not None:
        frames["ground truth"] = ("gt", pair.gt)
    if not frames:
        raise ConfigError("the 4D viewer needs at least one pointmap (probed, model or GT)")
    V, H, W, _ = pair.rgb.shape
    sub = (slice(None), slice(None, None, stride), slice(None, None, stride))
    mask = pair.valid[sub]
    points, ranks = [], []
    for name, (kind, pts) in frames.items():
        if pts.shape != (V, H, W, 3):
            raise ShapeError(f"pointmap '{name}': expected {(V, H, W, 3)} like the images, got {pts.shape}")
        p = pts[sub].astype(np.float64)
        p = p / pointmap_scale(p, mask)
        points.append(np.where(mask[..., None], p, np.nan).reshape(V, -1, 3))
        c = _frame_conf(name, kind, pair, conf)
        if c is not None:
            ranks.append(confidence_rank(np.where(mask, c[sub], np.nan).reshape(V, -1)))
        else:
            ranks.append(np.full((V, mask[0].size), 255, np.uint8))
    ref = pair.gt if pair.gt is not None else pair.model
    unit = pointmap_scale(ref[sub], mask) if ref is not None else 1.0
    cams = pair.cam_to_view1.astype(np.float64).copy()
    cams[:, :3, 3] /= unit
    gt_index = list(frames).index("ground truth") if pair.gt is not None else None
    return {
        "title": pair.title,
        "identity": pair.identity,
        "names": list(frames),
        "kinds": [kind for kind, _ in frames.values()],
        "points": quantize_points(np.stack(points)),
        "conf": encode_array(np.stack(ranks)) if conf is not None or pair.model_conf is not None else None,
        "gt_index": gt_index,
        "rgb": encode_array(np.ascontiguousarray(pair.rgb[sub].reshape(V, -1, 3), dtype=np.uint8)),
        "frusta": [
            frustum_segments(cams[v], pair.intrinsics[v], (H, W), FRUSTUM_DEPTH).round(5).tolist()
            for v in range(V)
        ],
        "images": [png_data_uri(pair.rgb[v]) for v in range(V)],
    }


def _frame_conf(
    name: str, kind: str, pair: PairView, conf: Mapping[str, np.ndarray] | None
) -> np.ndarray | None:
    if kind == "probe":
        return None if conf is None else conf.get(name)
    return pair.model_conf if kind == "model" else None


def viewer4d_html(
    pair: PairView,
    probed: Mapping[str, np.ndarray],
    conf: Mapping[str, np.ndarray] | None = None,
    *,
    stride: int = 2,
) -> str:
    """The whole viewer page as one HTML string (see `viewer4d_data` for the arguments).

    Example:
        >>> html = viewer4d_html(pair, {"b03.cross": pts})
        >>> html.startswith("<!DOCTYPE html>")
        True
    """
    data = viewer4d_data(pair, probed, conf, stride=stride)
    return fill_page(
        "viewer4d.html", data, ["common.js", "viewer4d.js"], title=f"4D pointmaps · {pair.title}"
    )


def write_viewer4d(path: Path, *args, **kwargs) -> Path:
    """Write `viewer4d_html(*args, **kwargs)` to `path` (parents created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(viewer4d_html(*args, **kwargs), encoding="utf-8")
    return path
