"""The attention viewer: click a query patch in view 2, see every head's attention across blocks.

One self-contained HTML page (static/attention.html + attention.js), the interactive form
of the paper's Fig. 9 and 15: rows are blocks, columns heads; cross-attention cells show
view 1 (the keys), self-attention cells view 2. Each row of each map is stored as uint8
relative to its own maximum, which is how the maps are drawn (the store's `attn` codes use
the same scaling), and gzip keeps a 24-map 224 x 224 pair to a few MB.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pipeline.errors import ConfigError, ShapeError
from pipeline.probing.locations import split_location
from pipeline.viz.pack import encode_array, fill_page, png_data_uri


def row_normalised_codes(maps: np.ndarray) -> np.ndarray:
    """(..., K) attention → uint8 with each row's maximum at 255 (NaN rows become 0)."""
    peak = np.nanmax(np.where(np.isfinite(maps), maps, -np.inf), axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak) & (peak > 0), peak, 1.0)
    return np.round(np.clip(np.nan_to_num(maps / peak, nan=0.0), 0, 1) * 255).astype(np.uint8)


def query_patch(query: int | None, grid: tuple[int, int]) -> int:
    """The row-major query patch to show first: `query` checked against the grid, or the centre patch.

    Raises:
        ConfigError: `query` is not a patch of the grid (the page would draw nothing).
    """
    h, w = grid
    if query is None:
        return (h // 2) * w + w // 2
    if not 0 <= query < h * w:
        raise ConfigError(f"query patch {query}: expected 0 <= query < {h * w} ({h}x{w} patches, row-major)")
    return int(query)


def attention_data(
    rgb: np.ndarray,
    attention: Mapping[str, np.ndarray],
    *,
    grid: tuple[int, int],
    query: int | None = None,
    title: str = "",
    identity: Mapping[str, str] | None = None,
) -> dict:
    """The JSON the attention page reads.

    Args:
        rgb: (V, H, W, 3) uint8 images, view 1 first.
        attention: attention location ("b01.cross", "b02.self") → (A, Q, K) weights of view
            2's decoder: queries are view 2's patches, keys view 1's (cross) or view 2's (self).
        grid: (h, w) patch grid; Q = K = h·w, row-major.
        query: the query patch shown first (None: the centre patch).
        title, identity: shown in the page header.

    Raises:
        ConfigError: no attention map.
        ShapeError: a map is not (A, h·w, h·w) with the same A as the others.
    """
    if not attention:
        raise ConfigError(
            "the attention viewer needs at least one attention map (extract.attention is 'none'?)"
        )
    n = grid[0] * grid[1]
    names = list(attention)
    heads = attention[names[0]].shape[0]
    for name in names:
        if attention[name].shape != (heads, n, n):
            raise ShapeError(
                f"attention['{name}']: expected (A={heads}, Q={n}, K={n}), got {attention[name].shape}"
            )
    codes = np.stack([row_normalised_codes(attention[name]) for name in names])  # (L, A, Q, K)
    return {
        "title": title,
        "identity": dict(identity or {}),
        "grid": list(grid),
        "names": names,
        "blocks": [name.split(".")[0] for name in names],
        "kinds": [split_location(name)[1] for name in names],
        "heads": heads,
        "attn": encode_array(codes),
        "query": query_patch(query, grid),
        "images": [png_data_uri(rgb[0]), png_data_uri(rgb[1])],
    }


def attention_html(rgb: np.ndarray, attention: Mapping[str, np.ndarray], **kwargs) -> str:
    """The whole attention page as one HTML string (arguments as `attention_data`)."""
    data = attention_data(rgb, attention, **kwargs)
    return fill_page(
        "attention.html", data, ["common.js", "attention.js"], title=f"Attention · {data['title']}"
    )


def write_attention_viewer(
    path: Path, rgb: np.ndarray, attention: Mapping[str, np.ndarray], **kwargs
) -> Path:
    """Write `attention_html(...)` to `path` (parents created); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(attention_html(rgb, attention, **kwargs), encoding="utf-8")
    return path
