"""Patch embedding: one strided convolution, plus the (row, col) position of every patch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.errors import ShapeError


class PatchEmbed(nn.Module):
    """Cut (B, 3, H, W) images into P x P patches and embed each as one token.

    There is no norm, no cls token and no additive position embedding: positions only
    enter through the rotary embedding (`rope2d.py`). Any H and W that are multiples of P are accepted.
    """

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """Embed patches.

        Args:
            img: (B, 3, H, W) normalised images, H and W multiples of the patch size.

        Returns:
            tokens: (B, N, D) with N = h * w, patches in row-major order.
            pos: (B, N, 2) int64 (row, col) of each patch on the h x w grid.

        Raises:
            ShapeError: the image is not (B, 3, H, W) with H, W multiples of the patch size.
        """
        self.check(img)
        x = self.proj(img)
        b, _, h, w = x.shape
        return x.flatten(2).transpose(1, 2), grid_positions(b, h, w, img.device)

    def check(self, img: Tensor, name: str = "img") -> None:
        """Raise ShapeError naming `name` unless img is (B, 3, H, W) in whole patches."""
        p = self.patch_size
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] % p or img.shape[3] % p:
            raise ShapeError(
                f"{name}: expected (B, 3, H, W) with H and W multiples of {p}, got {tuple(img.shape)}"
            )


def grid_positions(batch: int, h: int, w: int, device: torch.device) -> Tensor:
    """(B, h * w, 2) int64 (row, col) of every patch, row-major."""
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack((rows, cols), dim=-1).view(1, h * w, 2).expand(batch, -1, -1)
