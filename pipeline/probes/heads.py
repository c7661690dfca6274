"""What a probe's raw per-token output means: DUSt3R's pixel layout and postprocess.

A probe maps one token to `channels * p * p` numbers, laid out exactly like DUSt3R's
LinearPts3d (dust3r_spec.md §3.1): output k = c·p² + i·p + j of the token at patch (r, s)
is channel c of pixel (p·r + i, p·s + j). Keeping this layout means a linear probe holding
the model's own head weights reproduces the model's pointmap exactly from the tokens the
head sees (the last block's output after dec_norm; the stored b11.mlp stream is before
dec_norm, which the head lens applies), and the same raw tensor can be post-processed as a
pointmap or as depth.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.errors import ConfigError, ShapeError, unknown_name_message
from pipeline.model.postprocess import channel_norm

HEAD_CHANNELS = {"pointmap": 4, "depth": 2}  # raw channels per pixel: prediction + confidence


def tokens_to_pixels(raw: Tensor, grid: tuple[int, int], patch_size: int) -> Tensor:
    """Unfold per-token outputs into pixels (DUSt3R's transpose + pixel_shuffle).

    Args:
        raw: (..., N, C·p·p) outputs of the N = h·w tokens of one view, row-major.
        grid: (h, w) patch grid.
        patch_size: p, pixels per patch side.

    Returns:
        (..., H, W, C) with H = h·p and W = w·p.

    Example:
        >>> tokens_to_pixels(torch.zeros(2, 196, 1024), (14, 14), 16).shape
        torch.Size([2, 224, 224, 4])
    """
    h, w = grid
    p = patch_size
    *lead, n, k = raw.shape
    if n != h * w or k % (p * p):
        raise ShapeError(
            f"raw: expected (..., N={h * w}, C·{p * p}) for grid {grid} and patch {p}, got {tuple(raw.shape)}"
        )
    c = k // (p * p)
    x = raw.reshape(*lead, h, w, c, p, p)
    d = len(lead)
    x = x.permute(*range(d), d, d + 3, d + 1, d + 4, d + 2)  # (..., h, i, w, j, C)
    return x.reshape(*lead, h * p, w * p, c)


def pixel_major_order(channels: int, patch_size: int) -> Tensor:
    """Permutation of DUSt3R's per-token outputs from (c, i, j) order to (i, j, c) order.

    `raw[..., pixel_major_order(C, p)]` viewed as (..., p·p, C) holds pixel (i, j)'s C
    channels at row i·p + j: each patch's pixels with channels last, without any copy of the
    (large) outputs. The loss is a sum over pixels, so training never needs image layout.
    """
    c, ij = torch.meshgrid(torch.arange(channels), torch.arange(patch_size**2), indexing="ij")
    return (c * patch_size**2 + ij).T.reshape(-1)


def patches_to_pixels(patches: Tensor, grid: tuple[int, int]) -> Tensor:
    """(..., N, p·p, C) pixel-major patches → (..., H, W, C) image layout."""
    h, w = grid
    *lead, n, pp, c = patches.shape
    p = round(pp**0.5)
    if n != h * w or p * p != pp:
        raise ShapeError(
            f"patches: expected (..., N={h * w}, p·p, C) for grid {grid}, got {tuple(patches.shape)}"
        )
    x = patches.reshape(*lead, h, w, p, p, c)
    d = len(lead)
    return x.permute(*range(d), d, d + 2, d + 1, d + 3, d + 4).reshape(*lead, h * p, w * p, c)


def pixels_to_patches(pixels: Tensor, patch_size: int) -> Tensor:
    """(..., H, W, C) image layout → (..., N, p·p, C), the inverse of `patches_to_pixels`."""
    *lead, H, W, c = pixels.shape
    p = patch_size
    if H % p or W % p:
        raise ShapeError(f"pixels: image size ({H}, {W}) is not a multiple of patch_size {p}")
    x = pixels.reshape(*lead, H // p, p, W // p, p, c)
    d = len(lead)
    return x.permute(*range(d), d, d + 2, d + 1, d + 3, d + 4).reshape(*lead, (H // p) * (W // p), p * p, c)


def patch_positions(pixels: Tensor, grid: tuple[int, int], patch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Where DUSt3R's per-token outputs hold some pixels of a pair: (view, token, pixel in patch).

    Args:
        pixels: (n,) flat indices into (V, H, W) images, H = h·p and W = w·p.
        grid: (h, w) patch grid.
        patch_size: p.

    Returns:
        view, token (row-major patch n), and i·p + j (the pixel's row i, column j in its
        patch), each (n,): the indices of a (V, N, p·p) layout (`ProbeSet.at_pixels`, the lens).

    Example:
        >>> patch_positions(torch.tensor([0, 224 * 224 + 17]), (14, 14), 16)
        (tensor([0, 1]), tensor([0, 1]), tensor([0, 1]))
    """
    h, w = grid
    width = w * patch_size
    view, rest = pixels.div(h * patch_size * width, rounding_mode="floor"), pixels % (h * patch_size * width)
    y, x = rest.div(width, rounding_mode="floor"), rest % width
    token = y.div(patch_size, rounding_mode="floor") * w + x.div(patch_size, rounding_mode="floor")
    return view, token, (y % patch_size) * patch_size + x % patch_size


def take_stacked(sources: Sequence[Tensor], index: Tensor, out: Tensor | None = None) -> Tensor:
    """`torch.take` of each source at the same flat indices, stacked: (L, *index.shape) float32.

    Reading pixels out of L predictions (images, or per-token outputs with `patch_positions`)
    into one preallocated tensor skips a boolean index and a stack's copies per location.

    Args:
        sources: L tensors of any shape and layout; each is cast to float32 on index's device.
        index: flat indices into every source (the same for all of them).
        out: (L, *index.shape) float32 to write into (it may be a strided view); None: a new one.
    """
    if out is None:
        out = torch.empty((len(sources), *index.shape), dtype=torch.float32, device=index.device)
    for i, source in enumerate(sources):
        torch.take(source.to(device=index.device, dtype=torch.float32), index, out=out[i])
    return out


def token_order_pixels(valid: Tensor, patch_size: int) -> Tensor:
    """Flat indices into (V, H, W) of the True pixels of `valid`, in the per-token order.

    View by view, patch by patch (row-major), pixel by pixel within a patch (row-major): the
    order in which a head's per-token outputs hold a pair's pixels. Evaluation scores the
    valid pixels in this order (its metrics do not depend on the order), so a fully valid
    pair is read out of the per-token outputs by a strided copy instead of a gather
    (`token_outputs_at`). With patch_size 1 it is the image order of `valid.nonzero()`.

    Args:
        valid: (V, H, W) bool, H and W multiples of patch_size.
        patch_size: p.

    Returns:
        (n,) int64 flat indices, n = valid.sum().

    Example:
        >>> token_order_pixels(torch.ones(1, 2, 4, dtype=torch.bool), 2)
        tensor([0, 1, 4, 5, 2, 3, 6, 7])
    """
    V, H, W = valid.shape
    p = patch_size
    if H % p or W % p:
        raise ShapeError(f"valid: image size ({H}, {W}) is not a multiple of patch_size {p}")
    order = (
        torch.arange(V * H * W, device=valid.device).view(V, H // p, p, W // p, p).transpose(2, 3).flatten()
    )
    return order[valid.flatten()[order]]


@functools.cache
def _every_pixel_in_token_order(
    views: int, grid: tuple[int, int], patch_size: int, device: torch.device
) -> Tensor:
    """`token_order_pixels` of a fully valid pair, built once per layout: it is compared with every pair's pixels."""
    size = (views, grid[0] * patch_size, grid[1] * patch_size)
    return token_order_pixels(torch.ones(size, dtype=torch.bool, device=device), patch_size)


def token_outputs_at(
    outputs: Sequence[Tensor], pair: int, pixels: Tensor, grid: tuple[int, int], out: Tensor | None = None
) -> Tensor:
    """One pair's per-token outputs at some of its pixels, stacked channels first: (L, C, n) float32.

    Every pixel of the pair in `token_order_pixels` order (evaluation's fully valid pairs)
    is one strided copy per output, a third of a gather's time; other pixels are gathered.

    Args:
        outputs: L contiguous tensors (V, B, N, C, p·p), a batch's raw per-token outputs in
            DUSt3R's order (channel c of in-patch pixel i·p + j at [..., c, i·p + j]).
        pair: which of the B pairs.
        pixels: (n,) flat indices into the pair's (V, H, W), on the outputs' device.
        grid: (h, w) patch grid, N = h·w.
        out: (L, C, n) float32 to write into, each row contiguous (a slice of a larger
            buffer will do); None: a new tensor.
    """
    V, B, N, C, PP = outputs[0].shape
    p = round(PP**0.5)
    if out is None:
        out = torch.empty((len(outputs), C, len(pixels)), dtype=torch.float32, device=pixels.device)
    if len(pixels) == V * N * PP:
        if torch.equal(pixels, _every_pixel_in_token_order(V, grid, p, pixels.device)):
            for i, o in enumerate(outputs):
                out[i].unflatten(-1, (V, N, PP)).copy_(o[:, pair].permute(2, 0, 1, 3))
            return out
    view, token, in_patch = patch_positions(pixels, grid, p)
    base = ((view * B + pair) * N + token) * C * PP + in_patch
    return take_stacked(outputs, base[None] + PP * torch.arange(C, device=pixels.device)[:, None], out)


def rows_without_view1_confidence(
    view1: Sequence[Tensor], view2: Sequence[Tensor], pair: int, pixels: Tensor, grid: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """One pair's raw outputs at its pixels from heads that skipped view 1's confidence channel.

    No metric reads view 1's confidence (E.2 weights view 2's points by their own), so
    evaluation's heads compute view 1's outputs without that channel: an eighth of the
    probes' and the lens' last layers. Both views' prediction channels land in one (L, C-1, n)
    tensor in pixel order, as if one head had made them.

    Args:
        view1: L contiguous tensors (1, B, N, C-1, p·p), view 1's raw outputs without the
            confidence (the last channel).
        view2: L contiguous tensors (1, B, N, C, p·p), view 2's raw outputs.
        pair: which of the B pairs.
        pixels: (n,) flat indices into the pair's (V=2, H, W), view 1's first.
        grid: (h, w) patch grid.

    Returns:
        raw (L, C-1, n): the prediction channels at every pixel; raw_conf (L, n2): the
        confidence channel at view 2's pixels (the last n2 of `pixels`).

    Raises:
        ShapeError: a view-2 pixel comes before a view-1 pixel.
    """
    _, _, N, C, PP = view2[0].shape
    per_view = N * PP
    in_view1 = pixels < per_view
    n1 = int(in_view1.sum())
    if not bool(in_view1[:n1].all()):
        raise ShapeError("pixels: view 1's pixels must all come before view 2's")
    rows = torch.empty((len(view2), C, len(pixels)), dtype=torch.float32, device=pixels.device)
    token_outputs_at(view1, pair, pixels[:n1], grid, rows[:, : C - 1, :n1])
    token_outputs_at(view2, pair, pixels[n1:] - per_view, grid, rows[:, :, n1:])
    return rows[:, : C - 1], rows[:, C - 1, n1:]


def pointmap_postprocess(raw: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
    """DUSt3R's postprocess ('exp' depth mode, 'exp' confidence from 1).

    Args:
        raw: 4 channels on `dim` (last: per pixel (..., 4); -2: channels-first rows
            (..., 4, n)); channels 0-2 raw xyz, 3 raw confidence.
        dim: the channel dim.

    Returns:
        pts3d (3 channels on `dim`) = direction · expm1(norm), and conf (`dim` removed) = 1 + exp(r) > 1.
    """
    return pointmap_points(raw.narrow(dim, 0, 3), dim), raw_confidence(raw.select(dim, 3))


def pointmap_points(xyz: Tensor, dim: int = -1) -> Tensor:
    """Raw xyz (3 channels on `dim`) → points: direction · expm1(norm) (DUSt3R's 'exp' depth mode)."""
    d = channel_norm(xyz, dim)
    return xyz * (torch.expm1(d) / d.clamp(min=1e-8))


def raw_confidence(raw: Tensor) -> Tensor:
    """Raw confidence → 1 + exp(r) > 1 (DUSt3R's 'exp' confidence mode from 1)."""
    return 1 + raw.exp()


@dataclass(frozen=True)
class Head:
    """The kind of prediction a probe makes from its raw outputs.

    Attributes:
        name: "pointmap" (xyz in view 1's frame + confidence, DUSt3R's head) or "depth"
            (z-depth in the view's own frame + confidence, the paper's depth-probe ablation).
        beta: depth scale; depth = beta · exp(raw). Unused by pointmaps.
    """

    name: str = "pointmap"
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in HEAD_CHANNELS:
            raise ConfigError(unknown_name_message("probe head", self.name, HEAD_CHANNELS))
        if self.beta <= 0:
            raise ConfigError(f"depth beta must be > 0, got {self.beta}")

    @property
    def channels(self) -> int:
        """Raw channels per pixel (4 for pointmaps, 2 for depth)."""
        return HEAD_CHANNELS[self.name]

    @property
    def target_channels(self) -> int:
        """Channels of the prediction the loss compares with ground truth (3 or 1)."""
        return self.channels - 1

    def depth(self, raw: Tensor) -> Tensor:
        """A depth head's depth from its raw depth channel: beta · exp(raw)."""
        return self.beta * raw.exp()

    def prediction(self, raw: Tensor, dim: int = -1) -> Tensor:
        """The prediction channels alone (3 or 1 on `dim`, no confidence) → points or depth."""
        if self.name == "pointmap":
            return pointmap_points(raw, dim)
        return self.depth(raw)

    def postprocess(self, pixels: Tensor, dim: int = -1) -> tuple[Tensor, Tensor]:
        """Raw pixels (channels on `dim`) → prediction (3 or 1 channels on `dim`) and conf (`dim` removed).

        Any pixel layout: channels last (..., C), or channels-first rows (..., C, n) with dim=-2.
        """
        return (
            self.prediction(pixels.narrow(dim, 0, self.target_channels), dim),
            raw_confidence(pixels.select(dim, self.target_channels)),
        )
