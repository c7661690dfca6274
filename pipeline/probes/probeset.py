"""A set of probes of one kind and head at many locations, applied in one batched pass.

Locations of equal token width (every decoder location: 768; the encoder: 1024) share one
`BatchedMLP` whose probe axis is (location, view), or just location with a shared head.
One probe, in the paper's sense, is a location's pair of view heads: they are trained on
one joint loss, so gradients are clipped per location, not per head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, ShapeError, unknown_name_message
from pipeline.probes.batched import BatchedMLP, layer_sizes, probe_seed
from pipeline.probes.heads import (
    Head,
    patches_to_pixels,
    pixel_major_order,
    pixels_to_patches,
    raw_confidence,
    rows_without_view1_confidence,
    token_outputs_at,
)
from pipeline.probes.loss import conf_regression_loss

VIEWS = (1, 2)


@dataclass(frozen=True)
class ProbeSpec:
    """Everything that decides a probe set's architecture and initial weights.

    Attributes:
        kind: "mlp" or "linear".
        widths: token width D of every location to probe, in order, e.g. {"enc": 1024, "b03.cross": 768}.
        grid: (h, w) patch grid; token n is patch (n // w, n % w).
        patch_size: pixels per patch side.
        head: what the raw outputs mean (pointmap or depth).
        hidden: MLP hidden width.
        n_layers: MLP Linear layers.
        shared_views: one head for both views instead of one per view.
        seed: with kind, location and view, seeds each probe's init.
    """

    kind: str
    widths: dict[str, int]
    grid: tuple[int, int]
    patch_size: int = 16
    head: Head = field(default_factory=Head)
    hidden: int = 1024
    n_layers: int = 5
    shared_views: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.widths:
            raise ConfigError("a probe set needs at least one location")
        layer_sizes(self.kind, 1, 1, hidden=self.hidden, n_layers=self.n_layers)  # validates kind and sizes

    @property
    def locations(self) -> tuple[str, ...]:
        return tuple(self.widths)

    @property
    def name(self) -> str:
        """ "mlp", "linear", or "depth-mlp" / "depth-linear" for depth probes."""
        return self.kind if self.head.name == "pointmap" else f"{self.head.name}-{self.kind}"

    def to_dict(self) -> dict:
        return {**asdict(self), "grid": list(self.grid)}

    @classmethod
    def from_dict(cls, raw: dict) -> ProbeSpec:
        return cls(**{**raw, "grid": tuple(raw["grid"]), "head": Head(**raw["head"])})


class ProbeSet(nn.Module):
    """Probes of one spec at every location of `spec.widths`.

    Call it on captured features, acts[location] (B, V, N, D), to get each location's
    prediction; `losses` gives every probe's training loss at once.
    """

    def __init__(self, spec: ProbeSpec) -> None:
        super().__init__()
        self.spec = spec
        self.meta: dict = {}  # provenance from a probe file (see files.load_probes)
        p = spec.patch_size
        d_out = spec.head.channels * p * p
        by_width: dict[int, list[str]] = {}
        for loc, width in spec.widths.items():
            by_width.setdefault(int(width), []).append(loc)
        self.group_locations = {f"d{w}": locs for w, locs in by_width.items()}
        heads = ("shared",) if spec.shared_views else VIEWS
        self.register_buffer("out_order", pixel_major_order(spec.head.channels, p), persistent=False)
        self.groups = nn.ModuleDict(
            {
                f"d{w}": BatchedMLP(
                    layer_sizes(spec.kind, w, d_out, hidden=spec.hidden, n_layers=spec.n_layers),
                    [probe_seed(spec.seed, spec.name, loc, v) for loc in locs for v in heads],
                )
                for w, locs in by_width.items()
            }
        )

    @property
    def views_per_probe(self) -> int:
        return 1 if self.spec.shared_views else len(VIEWS)

    def raw(self, acts: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Raw outputs of each width group, patch by patch, channels last.

        Args:
            acts: location → (B, V, N, D) tokens of both views; extra locations are ignored.

        Returns:
            group → (L_g, B, V, N, p·p, C) in `group_locations[group]` order; pixel (i, j) of
            patch n is row i·p + j (see `heads.pixel_major_order`).
        """
        return {key: y.transpose(1, 2) for key, y in self._raw_views_first(acts).items()}

    def _check_acts(self, acts: Mapping[str, Tensor]) -> None:
        """ShapeError unless acts holds every probed location as (B, V=2, N, D) with the set's N."""
        missing = [loc for loc in self.spec.locations if loc not in acts]
        if missing:
            raise ShapeError(unknown_name_message("location in acts", missing[0], acts))
        n = self.spec.grid[0] * self.spec.grid[1]
        for loc in self.spec.locations:
            shape = tuple(acts[loc].shape)
            if len(shape) != 4 or shape[1] != len(VIEWS) or shape[2] != n:
                raise ShapeError(f"acts['{loc}']: expected (B, V=2, N={n}, D), got {shape}")

    def _raw_views_first(self, acts: Mapping[str, Tensor], *, pixel_major: bool = True) -> dict[str, Tensor]:
        """`raw` as the MLPs return it, contiguous: group → (L_g, V, B, N, p·p, C), or with
        `pixel_major` False DUSt3R's own per-token order (L_g, V, B, N, C, p·p)."""
        self._check_acts(acts)
        out = {}
        for key, locs in self.group_locations.items():
            x = torch.stack([acts[loc].transpose(0, 1).float() for loc in locs])  # (L, V, B, N, D)
            L, V, B, N, D = x.shape
            order = self.out_order.to(x.device) if pixel_major else None
            y = self.groups[key](x.reshape(L * self.views_per_probe, -1, D), order)
            c = self.spec.head.channels
            out[key] = y.reshape(L, V, B, N, -1, c) if pixel_major else y.reshape(L, V, B, N, c, -1)
        return out

    def _view_outputs(self, acts: Mapping[str, Tensor], view: int, *, confidence: bool) -> list[Tensor]:
        """One view's raw per-token outputs at every location: L tensors (1, B, N, C', p·p),
        DUSt3R's order, in `spec.locations` order.

        Only that view's heads run (every probe with shared views), on that view's tokens;
        without `confidence` the last layer leaves out the confidence channel (C' = C - 1),
        a slice of its weights (no copy).
        """
        self._check_acts(acts)
        pp = self.spec.patch_size**2
        channels = self.spec.head.channels - (0 if confidence else 1)
        heads = None if self.spec.shared_views else slice(view, None, len(VIEWS))
        raw = {}
        for key, locs in self.group_locations.items():
            x = torch.stack([acts[loc][:, view].float() for loc in locs])  # (L, B, N, D)
            L, B, N, D = x.shape
            y = self.groups[key].forward_each(x.reshape(L, B * N, D), slice(0, channels * pp), heads)
            raw.update({loc: y[i].view(1, B, N, channels, pp) for i, loc in enumerate(locs)})
        return [raw[loc] for loc in self.spec.locations]

    @torch.no_grad()
    def at_pixels(self, acts: Mapping[str, Tensor], pixels: Sequence[Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Each pair's predictions at some of its pixels, and view 2's confidences: what evaluation scores.

        The raw outputs are read at those pixels straight from the patch layout and
        post-processed there, skipping the image-layout copy and the slower channels-last
        arithmetic of `forward`; view 1's confidence, which no metric reads, is not
        computed (`rows_without_view1_confidence`). Values equal `forward`'s at those
        pixels (to float32 rounding); inference only (no gradients).

        Args:
            acts: location → (B, V, N, D) tokens, view 1 first.
            pixels: B tensors (n_b,) of flat indices into (V, H, W), view 1's first (e.g.
                `token_order_pixels`), on the probes' device.

        Returns:
            B tuples (pred (L, C, n_b), conf (L, n2_b) at the pair's view-2 pixels, the last
            n2_b of its `pixels`), locations in `spec.locations` order; C = 3 for pointmaps,
            1 for depth.
        """
        view1 = self._view_outputs(acts, 0, confidence=False)
        view2 = self._view_outputs(acts, 1, confidence=True)
        _check_pixels(pixels, view1[0].shape[1])
        head = self.spec.head
        rows = []
        for b, pix in enumerate(pixels):
            raw, raw_conf = rows_without_view1_confidence(view1, view2, b, pix, self.spec.grid)
            rows.append((head.prediction(raw, dim=-2), raw_confidence(raw_conf)))
        return rows

    @torch.no_grad()
    def view1_depth_at_pixels(self, acts: Mapping[str, Tensor], pixels: Sequence[Tensor]) -> list[Tensor]:
        """A depth probe set's view-1 depths at some of view 1's pixels: all that Table 1 scores.

        Only view 1's heads run, and their last layer only for the depth channel (not the
        confidence): under half of `at_pixels`' arithmetic (40% for the embedded default's
        probes, 47% for the paper's). Values equal `at_pixels`' at those pixels (to float32
        rounding); inference only.

        Args:
            acts: location → (B, V, N, D) tokens, view 1 first.
            pixels: B tensors (n_b,) of flat indices into view 1's (H, W), on the probes' device.

        Returns:
            B tensors (L, 1, n_b): depth in view 1's frame, locations in `spec.locations` order.

        Raises:
            ConfigError: the set's head is not "depth".
        """
        if self.spec.head.name != "depth":
            raise ConfigError(
                f"view1_depth_at_pixels needs depth probes; this set's head is {self.spec.head.name!r}"
            )
        outputs = self._view_outputs(acts, 0, confidence=False)
        _check_pixels(pixels, outputs[0].shape[1])
        return [
            self.spec.head.depth(token_outputs_at(outputs, b, pix, self.spec.grid))
            for b, pix in enumerate(pixels)
        ]

    def forward(self, acts: Mapping[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """Each location's prediction from its tokens.

        Args:
            acts: location → (B, V, N, D) tokens, view 1 first.

        Returns:
            location → {"pred": (B, V, H, W, 3) pointmaps in view 1's frame (or (B, V, H, W, 1)
            depth in each view's own frame), "conf": (B, V, H, W)}.

        Example:
            >>> probes({"b03.cross": torch.zeros(2, 2, 196, 768)})["b03.cross"]["pred"].shape
            torch.Size([2, 2, 224, 224, 3])
        """
        out = {}
        for key, patches in self.raw(acts).items():
            pred, conf = self.spec.head.postprocess(patches_to_pixels(patches, self.spec.grid))
            for i, loc in enumerate(self.group_locations[key]):
                out[loc] = {"pred": pred[i], "conf": conf[i]}
        return {loc: out[loc] for loc in self.spec.locations}

    def losses(self, acts: Mapping[str, Tensor], target: Tensor, valid: Tensor, *, alpha: float) -> Tensor:
        """(L,) training loss of every location's probe, in `spec.locations` order.

        Computed patch by patch (the loss sums over pixels, so no image-layout copy of the
        outputs is made); the targets are rearranged instead, once, without the probe axis.

        Args:
            acts: location → (B, V, N, D).
            target: (B, V, H, W, 3) GT pointmaps in view 1's frame, or (B, V, H, W, 1) depth.
            valid: (B, V, H, W) bool.
            alpha: confidence regulariser weight.
        """
        p = self.spec.patch_size
        target = pixels_to_patches(target, p)  # (B, V, N, p·p, C)
        valid = pixels_to_patches(valid[..., None], p)[..., 0]
        per_loc = {}
        for key, patches in self.raw(acts).items():
            pred, conf = self.spec.head.postprocess(patches)
            for loc, loss in zip(
                self.group_locations[key],
                conf_regression_loss(pred, conf, target, valid, alpha=alpha),
                strict=True,
            ):
                per_loc[loc] = loss
        return torch.stack([per_loc[loc] for loc in self.spec.locations])

    def clip_grad_norm_(self, max_norm: float) -> None:
        """Clip each location's gradient (both view heads together) to `max_norm`."""
        for group in self.groups.values():
            group.clip_grad_norm_per_group(max_norm, self.views_per_probe)


def _check_pixels(pixels: Sequence[Tensor], n_pairs: int) -> None:
    """ShapeError unless there is one pixel-index tensor per pair of the batch."""
    if len(pixels) != n_pairs:
        raise ShapeError(f"pixels: expected one index tensor per pair (B={n_pairs}), got {len(pixels)}")
