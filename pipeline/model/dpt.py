"""DUSt3R's DPT head: four decoder levels reassembled at four scales and fused back up.

The head reads decoder levels (0, d/2, 3d/4, d) (encoder output, two intermediate levels and
the normalised last level). Each is reshaped to its (h, w) grid, projected and resampled to
4x, 2x, 1x and 1/2x the grid (`act_postprocess`), projected to 256 channels (`scratch.layer_rn`),
fused coarse to fine by residual conv units with 2x bilinear upsampling (`scratch.refinenet*`)
and turned into pixels by `head`. Total upsampling is 16, so the head needs 16-pixel patches.

Attribute names follow the official checkpoint, including its aliases: `scratch.layer1_rn` and
`scratch.layer_rn.0` are the same module, so both keys are in the state_dict.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.config import Dust3rConfig
from pipeline.model.postprocess import postprocess

LAYER_DIMS = (96, 192, 384, 768)
FEATURE_DIM = 256
LAST_DIM = 128


def _conv3x3(c_in: int, c_out: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=bias)


def _upsample2x(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))) at constant width."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(dim, dim)
        self.conv2 = _conv3x3(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Add a refined skip input, refine again, upsample 2x, 1x1 conv."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(dim, dim, kernel_size=1)
        self.resConfUnit1 = ResidualConvUnit(dim)
        self.resConfUnit2 = ResidualConvUnit(dim)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        """(B, C, h, w) and optional skip (B, C, h, w) -> (B, C, 2h, 2w)."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        return self.out_conv(_upsample2x(self.resConfUnit2(x)))


class _Upsample2x(nn.Module):
    """Parameter-free 2x bilinear upsampling, a module so it can sit in `head`."""

    def forward(self, x: Tensor) -> Tensor:
        return _upsample2x(x)


class _Scratch(nn.Module):
    """Projections to FEATURE_DIM and the four fusion blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn = (
            _conv3x3(c, FEATURE_DIM, bias=False) for c in LAYER_DIMS
        )
        self.layer_rn = nn.ModuleList([self.layer1_rn, self.layer2_rn, self.layer3_rn, self.layer4_rn])
        self.refinenet1, self.refinenet2, self.refinenet3, self.refinenet4 = (
            FusionBlock(FEATURE_DIM) for _ in range(4)
        )


class DptAdapter(nn.Module):
    """Reassemble, fuse and decode four token levels into a (B, C, H, W) map."""

    def __init__(self, level_dims: tuple[int, int, int, int], out_channels: int) -> None:
        super().__init__()
        self.scratch = _Scratch()
        self.head = nn.Sequential(
            _conv3x3(FEATURE_DIM, FEATURE_DIM // 2),
            _Upsample2x(),
            _conv3x3(FEATURE_DIM // 2, LAST_DIM),
            nn.ReLU(),
            nn.Conv2d(LAST_DIM, out_channels, kernel_size=1),
        )
        d1, d2, d3, d4 = LAYER_DIMS
        self.act_postprocess = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(level_dims[0], d1, 1), nn.ConvTranspose2d(d1, d1, 4, stride=4)),
                nn.Sequential(nn.Conv2d(level_dims[1], d2, 1), nn.ConvTranspose2d(d2, d2, 2, stride=2)),
                nn.Sequential(nn.Conv2d(level_dims[2], d3, 1)),
                nn.Sequential(nn.Conv2d(level_dims[3], d4, 1), nn.Conv2d(d4, d4, 3, stride=2, padding=1)),
            ]
        )

    def forward(self, tokens: list[Tensor], h: int, w: int) -> Tensor:
        """Args: tokens, four (B, N, D_i) levels with N = h * w. Returns (B, C, 16h, 16w)."""
        maps = [t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w) for t in tokens]
        l1, l2, l3, l4 = (
            rn(act(m)) for act, rn, m in zip(self.act_postprocess, self.scratch.layer_rn, maps, strict=True)
        )
        s = self.scratch
        path = s.refinenet4(l4)[:, :, : l3.shape[2], : l3.shape[3]]  # odd grids: 2 * ceil(h/2) > h
        path = s.refinenet3(path, l3)
        path = s.refinenet2(path, l2)
        return self.head(s.refinenet1(path, l1))


class DptHead(nn.Module):
    """DPT head of one view; runs on the decoder levels `config.dpt_levels`."""

    def __init__(self, config: Dust3rConfig) -> None:
        super().__init__()
        self.config = config
        dims = tuple(config.enc_embed_dim if i == 0 else config.dec_embed_dim for i in config.dpt_levels)
        self.dpt = DptAdapter(dims, config.head_channels)

    def forward(self, levels: list[Tensor], height: int, width: int) -> dict[str, Tensor]:
        """Args: levels, the dec_depth + 1 decoder levels (B, N, D_i); height, width: H, W.

        Returns: "pts3d" (B, H, W, 3) and "conf" (B, H, W), see `postprocess`.
        """
        dtype = self.dpt.head[0].weight.dtype
        tokens = [levels[i].to(dtype) for i in self.config.dpt_levels]
        p = self.config.patch_size
        raw = self.dpt(tokens, height // p, width // p)
        return postprocess(raw, self.config.depth_mode, self.config.conf_mode)
