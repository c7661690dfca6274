"""2D rotary position embedding, the only position signal in DUSt3R.

Each head vector is split in two halves: the first is rotated by the token's row (y), the
second by its column (x). Inside a half of size 2Q, element j is paired with element j + Q
("rotate half" pairing) and the pair is rotated by the angle p * base^(-j / Q).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RoPE2D(nn.Module):
    """Rotary embedding over (row, col) patch positions; holds no parameters.

    Args:
        base: frequency base, 100 for DUSt3R's 'RoPE100'.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = base

    def forward(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """Rotate per-head queries or keys by their positions.

        Args:
            tokens: (B, A, N, E) one tensor of queries or keys, E (head width) a multiple of 4.
            pos: (B, N, 2) int64 (row, col) of each token on the patch grid.

        Returns:
            (B, A, N, E) rotated tokens, same dtype as `tokens`.
        """
        half = tokens.shape[-1] // 2
        cos, sin = self._cos_sin(half // 2, int(pos.max()) + 1, tokens.device, tokens.dtype)
        y, x = tokens.split(half, dim=-1)
        return torch.cat((self._rotate(y, pos[..., 0], cos, sin), self._rotate(x, pos[..., 1], cos, sin)), -1)

    def _cos_sin(
        self, quarter: int, n_pos: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[Tensor, Tensor]:
        """(n_pos, Q) cos and sin tables: angles in fp32, cast to `dtype` before cos/sin (as upstream)."""
        inv_freq = 1.0 / self.base ** (torch.arange(0, 2 * quarter, 2, device=device).float() / (2 * quarter))
        angles = torch.arange(n_pos, device=device, dtype=torch.float32)[:, None] * inv_freq[None, :]
        angles = angles.to(dtype)
        return angles.cos(), angles.sin()

    @staticmethod
    def _rotate(half: Tensor, pos1d: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rotate pairs (j, j + Q) of a (B, A, N, 2Q) half by the angles at `pos1d` (B, N)."""
        c = cos[pos1d][:, None]  # (B, 1, N, Q)
        s = sin[pos1d][:, None]
        u, v = half.chunk(2, dim=-1)
        return torch.cat((u * c - v * s, v * c + u * s), dim=-1)
