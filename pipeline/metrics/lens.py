"""The head lens: DUSt3R's own final head read at every intermediate location, no training.

The logit lens of language models, for pointmaps: each location's tokens go through the
shared `dec_norm` and the view's `downstream_head` exactly as the last block's output
does. It needs no probe, so it is the baseline that says how much a trained probe adds;
at the last block's `mlp` location it reproduces the model's output. Only the linear head
reads a single level; DPT heads mix four levels, so they have no per-location lens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, ShapeError
from pipeline.fast_linear import linear
from pipeline.model.postprocess import confidence, points
from pipeline.probes.heads import rows_without_view1_confidence


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
    heads = _linear_heads(model)
    out = {}
    for loc, x in acts.items():
        views = [head([_normed(model, loc, x, v)], *image_size) for v, head in enumerate(heads)]
        out[loc] = {
            "pred": torch.stack([r["pts3d"] for r in views], 1),
            "conf": torch.stack([r["conf"] for r in views], 1),
        }
    return out


@torch.no_grad()
def head_lens_at_pixels(
    model: nn.Module, acts: Mapping[str, Tensor], pixels: Sequence[Tensor], image_size: tuple[int, int]
) -> list[tuple[Tensor, Tensor]]:
    """`head_lens` at some pixels of each pair only, as channels-first rows: what evaluation scores.

    Without building images: each location's head outputs are read at the chosen pixels
    straight from the head's per-token layout (channel c of pixel (i, j) at c·p² + i·p + j)
    and post-processed there; view 1's head leaves out the confidence channel, which no
    metric reads (the first 3·p² rows of its weights, no copy). Equals `head_lens` at those
    pixels to float32 rounding.

    Args:
        model: a `pipeline.model.Dust3r` with a linear head.
        acts: decoder location -> (B, V, N, D) tokens, view 1 first.
        pixels: B tensors (n_b,) of flat indices into (V, H, W), view 1's first, on the
            model's device.
        image_size: (H, W) of the model input.

    Returns:
        B tuples (pred (L, 3, n_b) points in view 1's frame, conf (L, n2_b) at the pair's
        view-2 pixels, the last n2_b of its `pixels`), locations in the order of `acts`.
    """
    heads = _linear_heads(model)
    config = model.config
    p, (height, width) = config.patch_size, image_size
    xyz_rows = 3 * p * p  # the head's outputs before the confidence channel
    view1, view2 = [], []  # per location: (1, B, N, C, p·p), as large together as the images head_lens builds
    for loc, x in acts.items():
        if x.shape[0] != len(pixels):
            raise ShapeError(f"acts['{loc}']: {x.shape[0]} pairs, but pixels for {len(pixels)}")
        w, b = heads[0].proj.weight[:xyz_rows], heads[0].proj.bias[:xyz_rows]
        xyz = linear(_normed(model, loc, x, 0), w, b)
        every = heads[1].proj(_normed(model, loc, x, 1))
        view1.append(xyz.float().unflatten(-1, (3, p * p))[None])
        view2.append(every.float().unflatten(-1, (config.head_channels, p * p))[None])
    grid = (height // p, width // p)
    rows = [rows_without_view1_confidence(view1, view2, b, pix, grid) for b, pix in enumerate(pixels)]
    return [
        (points(raw, config.depth_mode[0], dim=-2), confidence(conf, config.conf_mode)) for raw, conf in rows
    ]


def _linear_heads(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """Both views' linear heads; ConfigError for a DPT model or one without confidence."""
    if model.config.head_type != "linear":
        raise ConfigError(f"the head lens needs a linear head; this model's is {model.config.head_type!r}")
    if model.config.conf_mode is None:
        raise ConfigError("the head lens needs a model that predicts confidence (conf_mode is None)")
    return model.downstream_head1, model.downstream_head2


def _normed(model: nn.Module, loc: str, x: Tensor, view: int) -> Tensor:
    """dec_norm of view `view`'s tokens of acts[loc] (B, V=2, N, D), on the head's device and dtype."""
    if x.ndim != 4 or x.shape[1] != 2 or x.shape[-1] != model.config.dec_embed_dim:
        raise ShapeError(
            f"acts['{loc}']: expected (B, V=2, N, D={model.config.dec_embed_dim}), got {tuple(x.shape)}"
        )
    weight = model.downstream_head1.proj.weight
    return model.dec_norm(x[:, view].to(device=weight.device, dtype=weight.dtype))
