"""2D rotary position embedding, the only position signal in DUSt3R.

Each head vector is split in two halves: the first is rotated by the token's row (y), the
second by its column (x). Inside a half of size 2Q, element j is paired with element j + Q
("rotate half" pairing) and the pair is rotated by the angle p * base^(-j / Q):
out[j] = u cos a - v sin a, out[j + Q] = v cos a + u sin a, with u = t[j], v = t[j + Q].

`Rotary` holds the cos/sin tables of one set of positions, built once per forward pass and
reused by every attention layer (the tables, not the rotation, dominated the cost).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Rotary:
    """Rotation tables for (B, N, 2) positions and one head width E (a multiple of 4).

    Args:
        pos: (B, N, 2) int64 (row, col) of each token on the patch grid.
        head_dim: E, the width of one attention head.
        base: frequency base, 100 for DUSt3R's 'RoPE100'.
    """

    def __init__(self, pos: Tensor, head_dim: int, base: float) -> None:
        self.pos = pos
        self.head_dim = head_dim
        self.base = base
        self._tables: dict[torch.dtype, tuple[Tensor, Tensor]] = {}

    def __call__(self, tokens: Tensor) -> Tensor:
        """Rotate (B, A, N, E) queries or keys; returns the same shape and dtype."""
        cos, sin = self._for(tokens.dtype)
        b, a, n, e = tokens.shape
        swapped = tokens.view(b, a, n, 2, 2, e // 4).flip(-2).view(b, a, n, e)  # (v, u) in each half
        return tokens * cos + swapped * sin

    def _for(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(B, 1, N, E) cos and signed sin, laid out like the head vector."""
        if dtype not in self._tables:
            quarter = self.head_dim // 4
            inv_freq = 1.0 / self.base ** (
                torch.arange(0, 2 * quarter, 2, device=self.pos.device).float() / (2 * quarter)
            )
            # angles in fp32, cast to the token dtype before cos/sin, as upstream
            angles = (self.pos[..., None].float() * inv_freq).to(dtype)  # (B, N, 2, Q)
            cos, sin = angles.cos(), angles.sin()
            cos = torch.stack((cos, cos), dim=-2)  # (B, N, 2, 2, Q): [y|x] x [u|v]
            sin = torch.stack((-sin, sin), dim=-2)
            shape = (*self.pos.shape[:2], self.head_dim)
            self._tables[dtype] = (cos.reshape(shape)[:, None], sin.reshape(shape)[:, None])
        return self._tables[dtype]
