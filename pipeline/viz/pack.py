"""Pack arrays and images into self-contained HTML pages: gzip + base64, filled templates.

Pages must open offline from a single file, so every array travels inside the page as
base64 of gzip-compressed bytes (the browser inflates it with `DecompressionStream`, see
static/common.js) and every image as a PNG data URI. Points are quantised to uint16 per
frame and axis: 1/65535 of the frame's extent is far below a screen pixel.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
from importlib import resources
from typing import Any

import numpy as np
import PIL.Image

from pipeline.errors import ShapeError

TYPED = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """{"dtype", "shape", "b64"}: little-endian bytes of a uint8/uint16/float32 array, gzipped.

    Example:
        >>> encode_array(np.zeros((2, 3), np.uint8))["shape"]
        [2, 3]
    """
    name = str(array.dtype)
    if name not in TYPED:
        raise ShapeError(f"encode_array: dtype {name} cannot be sent to the page; use one of {list(TYPED)}")
    raw = np.ascontiguousarray(array, dtype=np.dtype(TYPED[name]).newbyteorder("<")).tobytes()
    payload = base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")
    return {"dtype": name, "shape": list(array.shape), "b64": payload}


def quantize_points(points: np.ndarray) -> dict[str, Any]:
    """Points of many frames as uint16 with per-frame, per-axis bounds; NaN points masked.

    Args:
        points: (F, ..., 3) float; NaN or inf where a point is missing.

    Returns:
        {"q": encoded (F, ..., 3) uint16, "lo": (F, 3), "hi": (F, 3), "ok": encoded (F, ...) uint8}
        with point = lo + q / 65535 · (hi - lo).
    """
    if points.shape[-1] != 3:
        raise ShapeError(f"points: expected (F, ..., 3), got {points.shape}")
    F = points.shape[0]
    flat = points.reshape(F, -1, 3).astype(np.float64)
    ok = np.isfinite(flat).all(-1)
    lo = np.array([flat[f][ok[f]].min(0) if ok[f].any() else np.zeros(3) for f in range(F)])
    hi = np.array([flat[f][ok[f]].max(0) if ok[f].any() else np.ones(3) for f in range(F)])
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    q = np.clip(np.nan_to_num((flat - lo[:, None]) / span[:, None], nan=0.0, posinf=0.0, neginf=0.0), 0, 1)
    q = np.round(q * 65535).astype(np.uint16).reshape(points.shape)
    return {
        "q": encode_array(q),
        "lo": lo.round(6).tolist(),
        "hi": hi.round(6).tolist(),
        "ok": encode_array(ok.reshape(points.shape[:-1]).astype(np.uint8)),
    }


def png_data_uri(rgb: np.ndarray) -> str:
    """A (H, W, 3) or (H, W) uint8 image as a `data:image/png;base64,…` URI."""
    buf = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def static_text(name: str) -> str:
    """A file of pipeline/viz/static (templates, scripts, styles), as text."""
    return resources.files("pipeline.viz").joinpath("static", name).read_text(encoding="utf-8")


def fill_template(name: str, values: dict[str, str]) -> str:
    """The static template `name` with each `{{KEY}}` of `values` put in place, in one pass
    (so text inserted for one key is never searched for another)."""
    pattern = "|".join(re.escape(key) for key in values)
    return re.sub(r"\{\{(" + pattern + r")\}\}", lambda m: values[m.group(1)], static_text(name))


def fill_page(template: str, data: dict[str, Any], scripts: list[str], *, title: str) -> str:
    """A viewer template with its data (JSON), scripts, style and title put in place.

    The template holds `{{TITLE}}`, `{{STYLE}}`, `{{DATA}}` and `{{SCRIPTS}}`. Every "<" of
    the JSON is written \\u003c (it only occurs inside JSON strings, where that means the
    same), so no "</script>" or "<!--" in a title or path can end the script element early.
    """
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    code = "\n".join(static_text(s) for s in scripts)
    return fill_template(
        template, {"TITLE": escape(title), "STYLE": static_text("page.css"), "DATA": payload, "SCRIPTS": code}
    )


def escape(text: str) -> str:
    """Text made safe to put inside HTML elements and attribute values."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
