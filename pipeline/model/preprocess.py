"""Turn a user's photo into the input the official 224 and 512 checkpoints were trained on.

Same steps as the official `load_images`: EXIF orientation, RGB, resize with PIL (LANCZOS
when shrinking, BICUBIC otherwise), centre crop, then x / 255 mapped to [-1, 1].

* size 224: the short side becomes 224, then a centred 224 x 224 square is cut.
* size 512: the long side becomes 512, then each side is cut down to a multiple of 16 around
  the centre; a square image becomes 512 x 384 (4:3) unless `square_ok`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import torch
from PIL.ImageOps import exif_transpose
from torch import Tensor

from pipeline.errors import ConfigError

SIZES = (224, 512)


def load_image(image: str | Path | PIL.Image.Image, size: int = 224, *, square_ok: bool = False) -> Tensor:
    """Resize, crop and normalise one image for DUSt3R.

    Args:
        image: a path PIL can open, or a PIL image.
        size: 224 for the 224 checkpoints, 512 for the 512 ones.
        square_ok: with size 512, keep square images square instead of cutting them to 4:3.

    Returns:
        (1, 3, H, W) float32 RGB in [-1, 1]; H = W = 224 for size 224, max(H, W) = 512 and
        H, W multiples of 16 for size 512.

    Raises:
        ConfigError: size is not 224 or 512.

    Example:
        >>> load_image(PIL.Image.new("RGB", (640, 480)), 512).shape
        torch.Size([1, 3, 384, 512])
    """
    if size not in SIZES:
        raise ConfigError(f"size: expected one of {SIZES} (the official input pipelines), got {size!r}")
    img = image if isinstance(image, PIL.Image.Image) else PIL.Image.open(image)
    img = exif_transpose(img).convert("RGB")
    w1, h1 = img.size
    long_edge = round(size * max(w1 / h1, h1 / w1)) if size == 224 else size
    img = _resize_long_edge(img, long_edge)
    img = img.crop(_crop_box(*img.size, size, square_ok))
    pixels = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
    return ((pixels - 0.5) / 0.5)[None]


def _resize_long_edge(img: PIL.Image.Image, long_edge: int) -> PIL.Image.Image:
    """Scale so the longer side is `long_edge`, each side rounded to the nearest pixel."""
    s = max(img.size)
    resample = PIL.Image.Resampling.LANCZOS if s > long_edge else PIL.Image.Resampling.BICUBIC
    return img.resize(tuple(round(x * long_edge / s) for x in img.size), resample)


def _crop_box(w: int, h: int, size: int, square_ok: bool) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centred crop."""
    cx, cy = w // 2, h // 2
    if size == 224:
        half = min(cx, cy)
        return cx - half, cy - half, cx + half, cy + half
    half_w, half_h = (2 * cx) // 16 * 8, (2 * cy) // 16 * 8
    if w == h and not square_ok:
        half_h = 3 * half_w // 4
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h
