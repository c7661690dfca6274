"""DUSt3R (AsymmetricCroCo3DStereo): a Siamese ViT encoder and two cross-talking decoders.

This module only puts the parts together. Children are registered in the official order
with the official names, so `state_dict()` has exactly the keys of the released checkpoints
(`mask_token` first, `downstream_head2` last); the hook points hold no state.

Stream hook points at the top level are per view: `hook_enc1`/`hook_enc2` (encoder output
after `enc_norm`) and `hook_dec_in1`/`hook_dec_in2` (`decoder_embed` output). View 1 runs
through `dec_blocks` and `downstream_head1`, view 2 through `dec_blocks2` and
`downstream_head2`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.errors import ShapeError
from pipeline.fast_linear import Linear
from pipeline.model.blocks import DecoderBlock, EncoderBlock, layer_norm
from pipeline.model.config import Dust3rConfig
from pipeline.model.heads import make_head
from pipeline.model.hook_point import HookPoint
from pipeline.model.patch_embed import PatchEmbed
from pipeline.model.rope2d import Rotary


class Dust3r(nn.Module):
    """DUSt3R with hook points; see `pipeline/probing` for capture and interventions.

    Args:
        config: the architecture. Parameters start at PyTorch's defaults; call
            `init_weights` for the official random initialisation or load a checkpoint.
    """

    def __init__(self, config: Dust3rConfig) -> None:
        super().__init__()
        self.config = c = config
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.dec_embed_dim))  # CroCo's; never used here
        self.patch_embed = PatchEmbed(c.patch_size, c.enc_embed_dim)
        self.enc_blocks = nn.ModuleList(
            EncoderBlock(c.enc_embed_dim, c.enc_num_heads, c.mlp_ratio) for _ in range(c.enc_depth)
        )
        self.enc_norm = layer_norm(c.enc_embed_dim)
        self.decoder_embed = Linear(c.enc_embed_dim, c.dec_embed_dim)
        self.dec_blocks = self._decoder()
        self.dec_norm = layer_norm(c.dec_embed_dim)  # shared by both views, last level only
        self.dec_blocks2 = self._decoder()
        self.downstream_head1 = make_head(c)
        self.downstream_head2 = make_head(c)
        self.hook_enc1 = HookPoint()  # (B, N, D_enc)
        self.hook_enc2 = HookPoint()  # (B, N, D_enc)
        self.hook_dec_in1 = HookPoint()  # (B, N, D)
        self.hook_dec_in2 = HookPoint()  # (B, N, D)

    def _decoder(self) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(
            DecoderBlock(c.dec_embed_dim, c.dec_num_heads, c.mlp_ratio, c.norm_im2_in_dec)
            for _ in range(c.dec_depth)
        )

    def encode(self, img1: Tensor, img2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Run the shared encoder on both views (one batched pass when their sizes agree).

        Args:
            img1: (B, 3, H, W) view 1, normalised to [-1, 1].
            img2: (B, 3, H', W') view 2, normalised to [-1, 1].

        Returns:
            e1: (B, N, D_enc) and e2: (B, M, D_enc) encoder outputs after `enc_norm`;
            pos1: (B, N, 2) and pos2: (B, M, 2) their (row, col) positions.

        Raises:
            ShapeError: the batch sizes differ or an image is not (B, 3, H, W) in whole patches.
        """
        self.patch_embed.check(img1, "img1")
        self.patch_embed.check(img2, "img2")
        if img1.shape[0] != img2.shape[0]:
            raise ShapeError(
                f"img2: expected batch size B={img1.shape[0]} (from img1), got {tuple(img2.shape)}"
            )
        if img1.shape == img2.shape:
            tokens, pos = self._encode(torch.cat((img1, img2)))
            (e1, e2), (pos1, pos2) = tokens.chunk(2), pos.chunk(2)
        else:
            (e1, pos1), (e2, pos2) = self._encode(img1), self._encode(img2)
        return self.hook_enc1(e1), self.hook_enc2(e2), pos1, pos2

    def _encode(self, img: Tensor) -> tuple[Tensor, Tensor]:
        x, pos = self.patch_embed(img)
        rot = Rotary(pos, self.config.enc_embed_dim // self.config.enc_num_heads, self.config.rope_base)
        for block in self.enc_blocks:
            x = block(x, rot)
        return self.enc_norm(x), pos

    def decode(self, e1: Tensor, pos1: Tensor, e2: Tensor, pos2: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Run both decoders; block i of each view reads the other view's level i - 1.

        Args:
            e1, e2: (B, N, D_enc) encoder outputs of views 1 and 2.
            pos1, pos2: (B, N, 2) their positions.

        Returns:
            levels1, levels2: dec_depth + 1 tensors each, as the official `_decoder`:
            [e (B, N, D_enc), f^1, ..., f^(d-1), dec_norm(f^d)], each f (B, N, D). The
            `decoder_embed` output f^0 is not in the list.
        """
        head_dim = self.config.dec_embed_dim // self.config.dec_num_heads
        rot1, rot2 = (
            Rotary(pos1, head_dim, self.config.rope_base),
            Rotary(pos2, head_dim, self.config.rope_base),
        )
        f1 = self.hook_dec_in1(self.decoder_embed(e1))
        f2 = self.hook_dec_in2(self.decoder_embed(e2))
        levels1, levels2 = [e1], [e2]
        for block1, block2 in zip(self.dec_blocks, self.dec_blocks2, strict=True):
            f1, f2 = block1(f1, f2, rot1, rot2), block2(f2, f1, rot2, rot1)
            levels1.append(f1)
            levels2.append(f2)
        levels1[-1], levels2[-1] = self.dec_norm(levels1[-1]), self.dec_norm(levels2[-1])
        return levels1, levels2

    def forward(self, img1: Tensor, img2: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Predict both views' pointmaps in view 1's camera frame.

        Args:
            img1: (B, 3, H, W) view 1, RGB normalised to [-1, 1] (see `pipeline.model.preprocess`).
            img2: (B, 3, H', W') view 2, same normalisation.

        Returns:
            res1: "pts3d" (B, H, W, 3) view 1's points and "conf" (B, H, W), conf > 1.
            res2: "pts3d_in_other_view" (B, H', W', 3) view 2's points, in view 1's frame,
            and "conf" (B, H', W'). Keys as in the official model; heads run without autocast,
            in their weights' dtype (fp32 for official checkpoints).

        Example:
            >>> res1, res2 = build_model("tiny", seed=0)(img, img)  # img (2, 3, 64, 64)
            >>> res2["pts3d_in_other_view"].shape
            torch.Size([2, 64, 64, 3])
        """
        e1, e2, pos1, pos2 = self.encode(img1, img2)
        levels1, levels2 = self.decode(e1, pos1, e2, pos2)
        with torch.autocast(img1.device.type, enabled=False):
            res1 = self.downstream_head1(levels1, *img1.shape[-2:])
            res2 = self.downstream_head2(levels2, *img2.shape[-2:])
        res2["pts3d_in_other_view"] = res2.pop("pts3d")
        return res1, res2

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> Dust3r:
        """Initialise like a fresh official model, and return self.

        Linear: xavier-uniform weights, zero bias; LayerNorm: 1 and 0; patch conv: xavier on
        its (D_enc, 3 P^2) view; mask_token: normal(0, 0.02). Then, as upstream, `dec_blocks2`
        becomes a copy of `dec_blocks` and the heads get PyTorch's default initialisation.
        """
        heads = [*self.downstream_head1.modules(), *self.downstream_head2.modules()]
        for module in self.modules():
            if module in heads:
                continue
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        proj = self.patch_embed.proj
        nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1), generator=generator)
        _default_init(proj.bias, proj.weight, generator)
        nn.init.normal_(self.mask_token, std=0.02, generator=generator)
        self.dec_blocks2.load_state_dict(self.dec_blocks.state_dict())
        for module in dict.fromkeys(heads):  # ordered, each aliased DPT conv once
            if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                _default_init(module.weight, module.weight, generator)
                if module.bias is not None:
                    _default_init(module.bias, module.weight, generator)
        return self


def _default_init(param: Tensor, weight: Tensor, generator: torch.Generator | None) -> None:
    """PyTorch's default Linear/Conv init: uniform(+-1/sqrt(fan_in)), fan_in from `weight`."""
    bound = weight[0].numel() ** -0.5
    nn.init.uniform_(param, -bound, bound, generator=generator)
