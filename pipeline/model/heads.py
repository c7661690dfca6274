"""The linear head, and the choice between it and the DPT head."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.fast_linear import Linear
from pipeline.model.config import Dust3rConfig
from pipeline.model.dpt import DptHead
from pipeline.model.postprocess import postprocess


class LinearHead(nn.Module):
    """One Linear per token to P x P pixels of C channels, laid out by pixel shuffle.

    Output channel k = c * P^2 + i * P + j of the token at grid cell (r, s) becomes channel c
    of pixel (P r + i, P s + j); c is x, y, z, then raw confidence.
    """

    def __init__(self, config: Dust3rConfig) -> None:
        super().__init__()
        self.config = config
        self.proj = Linear(config.dec_embed_dim, config.head_channels * config.patch_size**2)

    def forward(self, levels: list[Tensor], height: int, width: int) -> dict[str, Tensor]:
        """Args: levels, decoder levels whose last is (B, N, D); height, width: image size H, W.

        Returns: "pts3d" (B, H, W, 3) and "conf" (B, H, W), see `postprocess`.
        """
        tokens = levels[-1].to(self.proj.weight.dtype)
        p = self.config.patch_size
        feat = self.proj(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, height // p, width // p)
        return postprocess(F.pixel_shuffle(feat, p), self.config.depth_mode, self.config.conf_mode)


def make_head(config: Dust3rConfig) -> nn.Module:
    """The head `config.head_type` names."""
    return LinearHead(config) if config.head_type == "linear" else DptHead(config)
