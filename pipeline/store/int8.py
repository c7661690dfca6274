"""The opt-in int8 encoding of the residual stream: int8 codes with per-channel scales.

Float16 features compress only about 1.1x losslessly. Int8 halves them: for each pair,
view and location, channel c gets scale_c = max over tokens |x[:, c]| / 127 and codes
round(x / scale_c). Every value is then within scale_c / 2 of the model's, i.e. within
1/254 of its channel's largest magnitude in that pair; per-channel scales matter because
residual channels differ in size by orders of magnitude (a per-tensor scale would flatten
the small ones to zero). The scales (float32) cost 2 % of the codes at 196 tokens.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import Probe3rError

MAX_ERROR_OF_CHANNEL_MAX = 1 / 254  # |decoded - x| <= scale / 2 = channel max / 254


class Int8NonFiniteError(Probe3rError, ValueError):
    """inf or NaN among activations to int8-code: it would poison its channel's scale."""


def non_finite_error(where: str, n: int) -> Int8NonFiniteError:
    """The error for `n` non-finite values of `where`, saying how to store them anyway."""
    return Int8NonFiniteError(
        f"{where}: {n} non-finite values (inf or NaN) cannot be int8-coded (one would make its "
        f"channel's scale inf or NaN for every token); set extract.overflow: clip to store them "
        f"clipped to their channel's largest finite magnitude (NaN as 0) and counted"
    )


def clip_non_finite(x: torch.Tensor) -> torch.Tensor:
    """(..., N, D) values with ±inf set to ±(their channel's largest finite magnitude over N), NaN to 0."""
    finite = torch.isfinite(x)
    largest = torch.where(finite, x.abs(), 0).amax(dim=-2, keepdim=True).expand_as(x)
    return torch.where(finite, x, torch.where(x > 0, largest, torch.where(x < 0, -largest, 0)))


def encode_int8(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Quantise (..., N, D) finite tokens to int8 with one scale per channel over the N tokens.

    Runs in torch on the tensor's device; only the codes and scales reach the host. The
    caller deals with non-finite values first (`non_finite_error`, `clip_non_finite`).

    Returns:
        codes: (..., N, D) int8 in -127..127.
        scale: (..., D) float32; 0 for a channel that is zero on every token.

    Example:
        >>> codes, scale = encode_int8(torch.tensor([[1.0, -2.0], [0.5, 4.0]]))
        >>> codes.tolist(), scale.tolist()
        ([[127, -64], [64, 127]], [0.007874015718698502, 0.031496062874794006])
    """
    x = x.float()
    scale = x.abs().amax(dim=-2) / 127
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(x / safe.unsqueeze(-2)).clamp_(-127, 127).to(torch.int8)
    return codes.cpu().numpy(), scale.cpu().numpy()


def decode_int8(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(..., N, D) int8 codes and (..., D) scales → (..., N, D) float32 values."""
    return np.asarray(codes, dtype=np.float32) * np.asarray(scale, dtype=np.float32)[..., None, :]
