"""Run DUSt3R once and keep exactly the activations asked for, both views side by side.

Stream entries are (B, V, N, D) and attention entries (B, V, A, Q, K), view 1 first (V = 2).
Each is written once, straight into its output buffer on the requested device and dtype, so
capturing costs one copy per requested tensor; nothing that was not requested is copied, and
attention weights that were not requested are never computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, ShapeError, unknown_name_message
from pipeline.probing.hooks import VIEWS, Site, attached
from pipeline.probing.interventions import Intervention, intervened
from pipeline.probing.locations import attention_locations, check_names, stream_locations


@dataclass
class Activations:
    """What one `capture` call kept.

    Attributes:
        stream: location -> (B, V, N, D) residual stream or sublayer output; also `acts[name]`.
        attention: attention location -> (B, V, A, Q, K) post-softmax weights; rows sum to 1.
            For "bXX.cross" of view v, queries are view v's tokens and keys the other view's.
    """

    stream: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Tensor:
        if name not in self.stream:
            raise ConfigError(unknown_name_message("captured location", name, self.stream))
        return self.stream[name]


def capture(
    model: nn.Module,
    img1: Tensor,
    img2: Tensor,
    *,
    locations: Sequence[str] = (),
    attention: Sequence[str] = (),
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    interventions: Sequence[Intervention] = (),
) -> tuple[tuple[dict[str, Tensor], dict[str, Tensor]], Activations]:
    """One forward pass of a `Dust3r` that also returns the requested activations.

    Args:
        model: a `pipeline.model.Dust3r`.
        img1: (B, 3, H, W) view 1, normalised to [-1, 1].
        img2: (B, 3, H, W) view 2, same shape as img1.
        locations: stream locations from `pipeline.probing.locations` (e.g. "b03.cross").
        attention: attention locations (e.g. "b03.cross"); only these layers compute
            explicit weights.
        device: where captured tensors go; None keeps the model's device.
        dtype: dtype of captured tensors; None keeps the activation dtype.
        interventions: applied in the same pass, before capture at a shared site, so captured
            values are the changed ones.

    Returns:
        (res1, res2) the model output, as `Dust3r.forward`; and `Activations` with
        `acts[loc]` (B, V, N, D) and `acts.attention[loc]` (B, V, A, Q, K), view 1 first.

    Raises:
        ConfigError: an unknown location, with a suggestion and the valid names.
        ShapeError: img1 and img2 differ in shape (views are stacked on one axis).

    Example:
        >>> out, acts = capture(model, img1, img2, locations=["b03.cross"], attention=["b03.cross"])
        >>> acts["b03.cross"].shape, acts.attention["b03.cross"].shape
        (torch.Size([2, 2, 196, 768]), torch.Size([2, 2, 12, 196, 196]))
    """
    depth = model.config.dec_depth
    locations = check_names(locations, stream_locations(depth), "location")
    attention = check_names(attention, attention_locations(depth), "attention location")
    if img1.shape != img2.shape:
        raise ShapeError(
            f"img2: expected {tuple(img1.shape)} (from img1): capture stacks the views, got {tuple(img2.shape)}"
        )
    acts = Activations()
    recorders = [
        (Site(namespace, name, view), _recorder(out, name, view, device, dtype))
        for namespace, names, out in (
            ("stream", locations, acts.stream),
            ("attention", attention, acts.attention),
        )
        for name in dict.fromkeys(names)
        for view in VIEWS
    ]
    with intervened(model, interventions), attached(model, recorders):
        out = model(img1, img2)
    return out, acts


def _recorder(
    out: dict[str, Tensor], name: str, view: int, device: str | torch.device | None, dtype: torch.dtype | None
) -> Callable[[Tensor], Tensor]:
    """A hook function copying view `view`'s (B, ...) tensor into out[name][:, view - 1]."""

    def record(x: Tensor) -> Tensor:
        if name not in out:
            shape = (x.shape[0], len(VIEWS), *x.shape[1:])
            out[name] = torch.empty(shape, device=device or x.device, dtype=dtype or x.dtype)
        out[name][:, view - 1].copy_(x.detach())
        return x

    return record
