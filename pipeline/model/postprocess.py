"""DUSt3R's map from raw head channels to points and confidence."""

from __future__ import annotations

import torch
from torch import Tensor


def postprocess(
    raw: Tensor, depth_mode: tuple[str, float, float], conf_mode: tuple[str, float, float] | None
) -> dict[str, Tensor]:
    """Turn raw head output into a pointmap and, with a conf_mode, a confidence map.

    Args:
        raw: (B, C, H, W) head output; [:, :3] raw xyz, [:, 3] raw confidence when C == 4.
        depth_mode: (mode, vmin, vmax), mode "exp" (DUSt3R), "linear" or "square"; no bounds.
        conf_mode: (mode, vmin, vmax), mode "exp" (DUSt3R) or "sigmoid"; None for no confidence.

    Returns:
        "pts3d": (B, H, W, 3) points; "conf": (B, H, W), present when conf_mode is not None.
    """
    fmap = raw.permute(0, 2, 3, 1)
    out = {"pts3d": points(fmap[..., :3], depth_mode[0])}
    if conf_mode is not None:
        out["conf"] = confidence(fmap[..., 3], conf_mode)
    return out


def channel_norm(x: Tensor, dim: int = -1) -> Tensor:
    """L2 norm over the channel dim `dim`, kept as size 1.

    A trailing channel dim takes torch's norm (the model's own arithmetic); any other dim
    (channels-first rows) sums squares channel by channel into one accumulator instead:
    torch's norm over a dim that is not the innermost is about 10x slower there, and
    squaring into a temporary as large as x doubles the memory traffic.
    """
    if dim in (-1, x.ndim - 1):
        return x.norm(dim=-1, keepdim=True)
    total = x.select(dim, 0).square()
    for c in range(1, x.shape[dim]):
        channel = x.select(dim, c)
        total.addcmul_(channel, channel)
    return total.sqrt_().unsqueeze(dim)


def points(xyz: Tensor, mode: str, dim: int = -1) -> Tensor:
    """Raw xyz (channels on `dim`, 3 of them) -> points: keep the direction, map the norm d to expm1(d) (mode "exp")."""
    if mode == "linear":
        return xyz
    d = channel_norm(xyz, dim)
    length = d.square() if mode == "square" else torch.expm1(d)
    if dim in (-1, xyz.ndim - 1):  # the model's own arithmetic, to the bit
        return xyz / d.clip(min=1e-8) * length
    # channels-first rows (evaluation): one pass over the points instead of two
    return xyz * length.div_(d.clip(min=1e-8))


def confidence(raw: Tensor, conf_mode: tuple[str, float, float]) -> Tensor:
    """(...) raw confidence -> vmin + exp(raw) clipped at vmax (mode "exp"), or a scaled sigmoid."""
    mode, vmin, vmax = conf_mode
    if mode == "exp":
        return vmin + raw.exp().clip(max=vmax - vmin)
    return (vmax - vmin) * torch.sigmoid(raw) + vmin
