"""The head lens: DUSt3R's own final head read at every intermediate location, no training.

The logit lens of language models, for pointmaps: each location's tokens go through the
shared `dec_norm` and the view's `downstream_head` exactly as the last block's output
does. It needs no probe, so it is the baseline that says how much a trained probe adds;
at the last block's `mlp` location it reproduces the model's output. Only the linear head
reads a single level; DPT heads mix four levels, so they have no per-location lens.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, ShapeError


@torch.no_grad()
def head_lens(
    model: nn.Module, acts: Mapping[str, Tensor], image_size: tuple[int, int]
) -> dict[str, dict[str, Tensor]]:
    """Pointmaps and confidences from the model's head applied at each location.

    Args:
        model: a `pipeline.model.Dust3r` with a linear head.
        acts: decoder location -> (B, V, N, D) tokens, view 1 first (not "enc": it has the
            encoder's width and is not the decoder's stream).
        image_size: (H, W) of the model input.

    Returns:
        location -> {"pred": (B, V, H, W, 3) points in view 1's frame, "conf": (B, V, H, W)}.

    Raises:
        ConfigError: the model's head is not linear.

    Example:
        >>> head_lens(model, {"b03.cross": acts["b03.cross"]}, (224, 224))["b03.cross"]["pred"].shape
        torch.Size([2, 2, 224, 224, 3])
    """
    if model.config.head_type != "linear":
        raise ConfigError(f"the head lens needs a linear head; this model's is {model.config.head_type!r}")
    heads = (model.downstream_head1, model.downstream_head2)
    dtype = heads[0].proj.weight.dtype
    device = heads[0].proj.weight.device
    out = {}
    for loc, x in acts.items():
        if x.ndim != 4 or x.shape[1] != 2 or x.shape[-1] != model.config.dec_embed_dim:
            raise ShapeError(
                f"acts['{loc}']: expected (B, V=2, N, D={model.config.dec_embed_dim}), got {tuple(x.shape)}"
            )
        views = [
            head([model.dec_norm(x[:, v].to(device=device, dtype=dtype))], *image_size)
            for v, head in enumerate(heads)
        ]
        out[loc] = {
            "pred": torch.stack([r["pts3d"] for r in views], 1),
            "conf": torch.stack([r["conf"] for r in views], 1),
        }
    return out
