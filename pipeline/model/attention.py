"""Multi-head self- and cross-attention with 2D rotary positions and two hook points each.

`hook_weights` carries the post-softmax weights (B, A, Q, K). They are computed explicitly
only when a function is attached to it; otherwise `F.scaled_dot_product_attention` runs and
the weights never exist. `hook_heads` carries each head's output (B, A, Q, E) before the
heads are merged and projected, which is where a head is ablated.

Parameter names (`qkv`, `proj`, `projq`, `projk`, `projv`) are the official ones.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.fast_linear import Linear
from pipeline.model.hook_point import HookPoint
from pipeline.model.rope2d import Rotary


class _Attention(nn.Module):
    """What self- and cross-attention share: the weighting of values and the output proj."""

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.hook_weights = HookPoint()  # (B, A, Q, K) post-softmax, rows sum to 1
        self.hook_heads = HookPoint()  # (B, A, Q, E) per-head output, E = D / A

    def _split(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, A, N, E)."""
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Weight values by softmax(q k^T / sqrt(E)); (B, A, Q, E) inputs, (B, Q, D) output."""
        if self.hook_weights.active:
            weights = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
            heads = self.hook_weights(weights.softmax(dim=-1)) @ v
        else:
            heads = F.scaled_dot_product_attention(q, k, v)
        heads = self.hook_heads(heads)
        b, a, n, e = heads.shape
        return self.proj(heads.transpose(1, 2).reshape(b, n, a * e))


class SelfAttention(_Attention):
    """Self-attention: q, k and v from one Linear `qkv`, rows ordered [q; k; v], head-major."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(num_heads)
        self.qkv = Linear(dim, 3 * dim)
        self.proj = Linear(dim, dim)

    def forward(self, x: Tensor, rot: Rotary) -> Tensor:
        """Args: x (B, N, D) normalised tokens; rot their positions' rotary tables. Returns (B, N, D)."""
        q, k, v = (self._split(t) for t in self.qkv(x).chunk(3, dim=-1))
        return self._attend(rot(q), rot(k), v)


class CrossAttention(_Attention):
    """Cross-attention: queries from one view, keys and values from the other."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(num_heads)
        self.projq = Linear(dim, dim)
        self.projk = Linear(dim, dim)
        self.projv = Linear(dim, dim)
        self.proj = Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor, xrot: Rotary, yrot: Rotary) -> Tensor:
        """Attend from x to y.

        Args:
            x: (B, Q, D) normalised query tokens of this view.
            y: (B, K, D) normalised tokens of the other view (keys and values).
            xrot: rotary tables of the queries' positions.
            yrot: rotary tables of the keys' positions.

        Returns:
            (B, Q, D) attention output after `proj`.
        """
        q = xrot(self._split(self.projq(x)))
        k = yrot(self._split(self.projk(y)))
        return self._attend(q, k, self._split(self.projv(y)))
