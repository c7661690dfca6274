"""Cast activations to float16 for the store, never storing inf silently, and opt-in lossy forms.

bfloat16 is not a Zarr data type, so features are stored as float16, whose range ends at
65504. Residual streams of large ViTs can exceed it (high-norm "register" tokens), so the
cast (`pipeline.jobs.extract_shard.encode_stream`) either raises `overflow_error`, naming
where, or clips and counts the clipped values, as the caller chooses (`extract.overflow`). `shorten_mantissa` is the opt-in lossy encoding: float16 with
fewer mantissa bits compresses better and its relative error is bounded by 2**-(bits+1).
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import ConfigError, Probe3rError

FLOAT16_MAX = float(np.finfo(np.float16).max)


class Float16OverflowError(Probe3rError, OverflowError):
    """Activations beyond float16's range would be stored as inf."""


def overflow_error(where: str, n: int, max_abs: float) -> Float16OverflowError:
    """The error for `n` values of `where` beyond float16's range, saying how to store them anyway."""
    return Float16OverflowError(
        f"{where}: {n} values beyond float16's range (max |x| = {max_abs:.4g} > "
        f"{FLOAT16_MAX:g}); set extract.overflow: clip to store them clipped and counted"
    )


def shorten_mantissa(x: np.ndarray, bits: int) -> np.ndarray:
    """Round float16 values to `bits` mantissa bits (of 10), to nearest; ties away from zero.

    The relative error is at most 2**-(bits+1); the zeroed low bits make the bytes
    compress better. Values that would round past 65504 are kept at the largest finite
    value with that many bits.

    Example:
        >>> shorten_mantissa(np.array([1.0009766], np.float16), 3)
        array([1.], dtype=float16)
    """
    if not 0 <= bits <= 10:
        raise ConfigError(f"mantissa bits must be in 0..10, got {bits}")
    if bits == 10:
        return np.asarray(x, dtype=np.float16)
    drop = 10 - bits
    u = np.asarray(x, dtype=np.float16).view(np.uint16).astype(np.uint32)
    sign = u & 0x8000
    mag = u & 0x7FFF
    finite = mag < 0x7C00
    rounded = ((mag + (1 << (drop - 1))) >> drop) << drop
    largest = (0x7BFF >> drop) << drop
    rounded = np.where(finite, np.minimum(rounded, largest), mag)
    return (sign | rounded).astype(np.uint16).view(np.float16)


def mantissa_max_rel_error(bits: int) -> float:
    """Bound on |shortened - x| / |x| for normal float16 values."""
    return 2.0 ** -(bits + 1)
