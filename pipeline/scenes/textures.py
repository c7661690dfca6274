"""Surface textures for procedural rooms: real photos plus procedural patterns.

Why both: photo content (scikit-image's bundled photographs and texture scans, which ship
inside the wheel and load offline, no pooch download) gives DUSt3R the natural image
statistics it was trained on; procedural patterns (noise, stripes, checkers, bricks, wood)
add unlimited variety. Every texture is colour-jittered and photos are randomly cropped,
rotated and flipped, so no two scenes share a surface and a pair cannot be matched from a
memorised texture alone.

All textures are (S, S, 3) uint8 RGB; every function takes a numpy Generator so a room is a
pure function of its seed.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

import numpy as np
from PIL import Image

# Colour photographs bundled in scikit-image's wheel (verified present without pooch).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
)
# Greyscale scans of real materials, tinted before use.
MATERIAL_SCANS = ("brick.png", "grass.png", "gravel.png", "camera.png", "moon.png", "coins.png")

TEXTURE_SIZE = 256
MIN_STD = 8.0  # a texture whose channels all vary less than this is drawn again …
MAX_DRAWS = 6  # … up to this many times


@cache
def bundled_image(name: str) -> np.ndarray:
    """(H, W, 3) uint8 copy of one scikit-image bundled image, at most 384 px a side.

    Cached because decoding the PNGs dominates generation time otherwise.
    """
    with (files("skimage") / "data" / name).open("rb") as fh:
        img = Image.open(fh).convert("RGB")
        img.thumbnail((384, 384), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """(3,) float RGB in [0, 1]: a random hue at moderate saturation and value."""
    hue = rng.random()
    sat = rng.uniform(0.15, 0.8)
    val = rng.uniform(0.35, 0.95)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6) % 6
    return val - val * sat * np.clip(np.minimum(k, 4 - k), 0, 1)


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = _random_colour(rng)
    b = np.clip(a * rng.uniform(0.3, 0.8) + rng.normal(0, 0.15, 3), 0, 1)
    return (a, b) if rng.random() < 0.5 else (a, _random_colour(rng))


def _mix(t: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blend colours a and b by t (S, S) in [0, 1] → (S, S, 3) float."""
    return a * (1 - t[..., None]) + b * t[..., None]


def periodic_noise(rng: np.random.Generator, size: int, *, smooth: float) -> np.ndarray:
    """(size, size) fractal noise in [0, 1] that tiles seamlessly (built in Fourier space).

    Args:
        smooth: spectral decay exponent; ~1 is grainy, ~2.5 is cloudy.
    """
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    amp = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / size) ** smooth
    spec = amp * np.exp(2j * np.pi * rng.random(amp.shape))
    field = np.fft.irfft2(spec, s=(size, size))
    lo, hi = np.percentile(field, [1, 99])
    return np.clip((field - lo) / (hi - lo + 1e-12), 0, 1)


def noise_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    a, b = _two_colours(rng)
    return _mix(periodic_noise(rng, size, smooth=rng.uniform(1.0, 2.6)), a, b)


def stripes_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    a, b = _two_colours(rng)
    n = rng.integers(2, 12)  # whole periods across the tile so it repeats without a seam
    axis = np.arange(size) / size
    t = (np.sin(2 * np.pi * n * axis) > rng.uniform(-0.6, 0.6)).astype(float)
    t = np.broadcast_to(t[None, :] if rng.random() < 0.5 else t[:, None], (size, size))
    return _mix(np.clip(t + 0.25 * periodic_noise(rng, size, smooth=1.2) - 0.12, 0, 1), a, b)


def checkers_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    a, b = _two_colours(rng)
    n = int(rng.choice([2, 4, 8, 16]))
    idx = np.arange(size) * n // size
    t = ((idx[:, None] + idx[None, :]) % 2).astype(float)
    return _mix(0.85 * t + 0.15 * periodic_noise(rng, size, smooth=1.5), a, b)


def bricks_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    brick = _random_colour(rng) * np.array([1.0, 0.7, 0.55])
    mortar = np.full(3, rng.uniform(0.5, 0.9))
    rows, cols = int(rng.choice([4, 8, 16])), int(rng.choice([2, 4, 8]))
    y, x = np.mgrid[0:size, 0:size] / size
    row = np.floor(y * rows)
    xs = x * cols + 0.5 * (row % 2)
    col = np.floor(xs) % cols
    gap = rng.uniform(0.04, 0.12)
    is_mortar = ((y * rows) % 1 < gap) | ((xs % 1) < gap * rows / cols)
    jitter = rng.uniform(0.7, 1.2, (rows, cols))[row.astype(int), col.astype(int)]
    grain = 0.8 + 0.4 * periodic_noise(rng, size, smooth=1.0)
    out = brick * (jitter * grain)[..., None]
    out[is_mortar] = mortar
    return out


def wood_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    light = np.array([0.75, 0.55, 0.35]) * rng.uniform(0.7, 1.2)
    dark = light * rng.uniform(0.4, 0.7)
    warp = periodic_noise(rng, size, smooth=2.2)
    y = np.arange(size)[:, None] / size
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (rng.integers(4, 14) * y + rng.uniform(1, 4) * warp))
    t = np.broadcast_to(rings, (size, size)) ** rng.uniform(0.5, 2)
    grain = periodic_noise(rng, size, smooth=0.8)
    return _mix(np.clip(0.85 * t + 0.15 * grain, 0, 1), light, dark)


def photo_crop(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop of a bundled colour photo, rotated by a multiple of 90° and maybe flipped."""
    img = bundled_image(PHOTOS[rng.integers(len(PHOTOS))])
    h, w = img.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = np.rot90(img[y0 : y0 + side, x0 : x0 + side], k=int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return _resize(np.ascontiguousarray(crop), size) / 255.0


def material_scan(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random crop of a greyscale material scan (bricks, grass, gravel, …) tinted a colour."""
    img = bundled_image(MATERIAL_SCANS[rng.integers(len(MATERIAL_SCANS))])
    h, w = img.shape[:2]
    side = int(rng.uniform(0.4, 1.0) * min(h, w))
    y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    grey = _resize(np.ascontiguousarray(img[y0 : y0 + side, x0 : x0 + side]), size)[..., 0] / 255.0
    return grey[..., None] * (0.4 + 0.8 * _random_colour(rng))


GENERATORS = {
    "photo": photo_crop,
    "scan": material_scan,
    "noise": noise_texture,
    "stripes": stripes_texture,
    "checkers": checkers_texture,
    "bricks": bricks_texture,
    "wood": wood_texture,
}
# Photos and scans are drawn most often: real content is what makes the probe meaningful.
_WEIGHTS = np.array([3.0, 2.0, 1.0, 1.0, 0.7, 1.0, 1.0])


def colour_jitter(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Random per-channel gain, brightness and contrast on a float (S, S, 3) image → uint8."""
    gain = (rng.uniform(0.8, 1.2, 3) * rng.uniform(0.75, 1.25) * 255).astype(np.float32)
    img = img.astype(np.float32)
    mean = img.mean()
    out = (img - mean) * np.float32(rng.uniform(0.7, 1.3)) + mean
    return np.clip(out * gain, 0, 255).astype(np.uint8)


def random_texture(rng: np.random.Generator, kind: str | None = None, size: int = TEXTURE_SIZE) -> np.ndarray:
    """One random texture.

    Args:
        rng: the scene's generator.
        kind: one of GENERATORS' keys, or None for a weighted random choice.
        size: side S in pixels.

    Returns:
        (S, S, 3) uint8 RGB.

    Example:
        >>> random_texture(np.random.default_rng(0)).shape
        (256, 256, 3)
    """
    for _ in range(MAX_DRAWS):
        name = kind or list(GENERATORS)[rng.choice(len(GENERATORS), p=_WEIGHTS / _WEIGHTS.sum())]
        texture = colour_jitter(rng, GENERATORS[name](rng, size))
        if texture.reshape(-1, 3).std(0).max() >= MIN_STD:
            break  # flat crops (a patch of sky, a dark border) carry nothing to match
    return texture
