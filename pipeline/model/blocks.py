"""Transformer blocks: the encoder's pre-norm block and the decoder's three-sublayer block.

Every LayerNorm has eps 1e-6 and every Linear a bias, as in the official model. Attribute
names (`norm1`, `attn`, `cross_attn`, `norm2`, `norm3`, `mlp.fc1`, `mlp.fc2`, `norm_y`) are the
official ones so checkpoints load with strict=True.
"""

from __future__ import annotations

from torch import Tensor, nn

from pipeline.fast_linear import Linear
from pipeline.model.attention import CrossAttention, SelfAttention
from pipeline.model.hook_point import HookPoint
from pipeline.model.rope2d import Rotary

LN_EPS = 1e-6


def layer_norm(dim: int) -> nn.LayerNorm:
    """The LayerNorm used everywhere in DUSt3R."""
    return nn.LayerNorm(dim, eps=LN_EPS)


class Mlp(nn.Module):
    """fc1, exact (erf) GELU, fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """x += SelfAttn(norm1(x)); x += MLP(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, rot: Rotary) -> Tensor:
        """Args: x (B, N, D_enc) tokens; rot their rotary tables. Returns (B, N, D_enc)."""
        x = x + self.attn(self.norm1(x), rot)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Self-attention, cross-attention to the other view, MLP; three residual adds.

    The other view's tokens `y` are its previous level, normalised by this block's `norm_y`.
    The hook points carry the stream after each add (`hook_self`, `hook_cross`, `hook_mlp`)
    and each sublayer's output before its add (`hook_*_out`); the names in
    `pipeline/probing/locations.py` say which is which.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, norm_other: bool) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = layer_norm(dim) if norm_other else nn.Identity()
        self.hook_self_out = HookPoint()  # (B, N, D)
        self.hook_self = HookPoint()  # (B, N, D)
        self.hook_cross_out = HookPoint()  # (B, N, D)
        self.hook_cross = HookPoint()  # (B, N, D)
        self.hook_mlp_out = HookPoint()  # (B, N, D)
        self.hook_mlp = HookPoint()  # (B, N, D)

    def forward(self, x: Tensor, y: Tensor, xrot: Rotary, yrot: Rotary) -> Tensor:
        """Update this view's stream.

        Args:
            x: (B, N, D) this view's stream at the previous level.
            y: (B, M, D) the other view's stream at the previous level (not normalised).
            xrot: rotary tables of this view's token positions.
            yrot: rotary tables of the other view's token positions.

        Returns:
            (B, N, D) this view's stream after the block.
        """
        x = self.hook_self(x + self.hook_self_out(self.attn(self.norm1(x), xrot)))
        x = self.hook_cross(
            x + self.hook_cross_out(self.cross_attn(self.norm2(x), self.norm_y(y), xrot, yrot))
        )
        return self.hook_mlp(x + self.hook_mlp_out(self.mlp(self.norm3(x))))
