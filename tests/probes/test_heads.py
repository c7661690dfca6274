"""Probe outputs are laid out and post-processed exactly like DUSt3R's linear head."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from einops import rearrange

from pipeline.errors import ConfigError, ShapeError
from pipeline.probes.heads import (
    Head,
    patch_positions,
    patches_to_pixels,
    pixel_major_order,
    pixels_to_patches,
    pointmap_postprocess,
    token_order_pixels,
    token_outputs_at,
    tokens_to_pixels,
)
from pipeline.probes.probeset import ProbeSet, ProbeSpec


class TestTokensToPixels:
    @pytest.mark.parametrize("grid", [(2, 3), (14, 14)])
    def test_matches_an_einops_pixel_shuffle(self, grid: tuple[int, int]) -> None:
        raw = torch.randn(2, 3, grid[0] * grid[1], 4 * 16 * 16)
        expected = rearrange(raw, "l b (h w) (c i j) -> l b (h i) (w j) c", h=grid[0], w=grid[1], i=16, j=16)
        torch.testing.assert_close(tokens_to_pixels(raw, grid, 16), expected, rtol=0, atol=0)

    def test_channel_index_maps_to_the_documented_pixel(self) -> None:
        raw = torch.zeros(6, 4 * 4 * 4)
        raw[4, 2 * 16 + 1 * 4 + 3] = 1.0  # token (row 1, col 1) of a 2x3 grid, channel c=2, i=1, j=3
        pixels = tokens_to_pixels(raw, (2, 3), 4)
        assert pixels.shape == (8, 12, 4)
        assert pixels[4 + 1, 4 + 3, 2] == 1.0 and pixels.sum() == 1.0

    def test_pixel_major_patches_give_the_same_image(self) -> None:
        """The training path (permuted weights, patch layout) lays pixels out like DUSt3R."""
        raw = torch.randn(3, 6, 4 * 16 * 16)
        patches = raw[..., pixel_major_order(4, 16)].reshape(3, 6, 256, 4)
        torch.testing.assert_close(
            patches_to_pixels(patches, (2, 3)), tokens_to_pixels(raw, (2, 3), 16), rtol=0, atol=0
        )
        torch.testing.assert_close(
            pixels_to_patches(patches_to_pixels(patches, (2, 3)), 16), patches, rtol=0, atol=0
        )

    def test_rejects_a_token_count_that_does_not_fit_the_grid(self) -> None:
        with pytest.raises(ShapeError, match=r"N=6"):
            tokens_to_pixels(torch.zeros(5, 64), (2, 3), 4)


class TestPostprocess:
    def test_pointmap_direction_times_expm1_norm_and_conf(self) -> None:
        raw = torch.tensor([[3.0, 0.0, 4.0, 0.5], [0.0, 0.0, 0.0, -1.0]])
        pts, conf = pointmap_postprocess(raw)
        torch.testing.assert_close(pts[0], torch.tensor([0.6, 0.0, 0.8]) * torch.expm1(torch.tensor(5.0)))
        torch.testing.assert_close(pts[1], torch.zeros(3))
        torch.testing.assert_close(conf, 1 + torch.exp(torch.tensor([0.5, -1.0])))

    @pytest.mark.parametrize("head", [Head(), Head("depth", beta=0.5)])
    def test_channels_first_rows_equal_channels_last(self, head: Head) -> None:
        raw = torch.randn(3, 50, head.channels)
        pred, conf = head.postprocess(raw)
        rows_pred, rows_conf = head.postprocess(raw.transpose(1, 2).contiguous(), dim=-2)
        torch.testing.assert_close(rows_pred, pred.transpose(1, 2), rtol=1e-6, atol=0)
        torch.testing.assert_close(rows_conf, conf, rtol=0, atol=0)

    def test_depth_is_beta_exp_raw(self) -> None:
        depth, conf = Head("depth", beta=2.5).postprocess(torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
        torch.testing.assert_close(depth[:, 0], 2.5 * torch.exp(torch.tensor([0.0, 1.0])))
        torch.testing.assert_close(conf, 1 + torch.exp(torch.tensor([0.0, 2.0])))

    def test_unknown_head_is_named(self) -> None:
        with pytest.raises(ConfigError, match=r"Unknown probe head 'pointmaps'\. Did you mean 'pointmap'"):
            Head("pointmaps")


def test_linear_probe_with_dust3r_head_weights_reproduces_mini_dust3r() -> None:
    """mini-dust3r's LinearPts3d (the official code) is the reference; it imports without torchvision."""
    linear_head = pytest.importorskip("mini_dust3r.heads.linear_head")
    torch.manual_seed(0)
    net = SimpleNamespace(
        patch_embed=SimpleNamespace(patch_size=(16, 16)),
        depth_mode=("exp", -float("inf"), float("inf")),
        conf_mode=("exp", 1, float("inf")),
        dec_embed_dim=96,
    )
    heads = [linear_head.LinearPts3d(net, has_conf=True) for _ in range(2)]
    probes = ProbeSet(ProbeSpec("linear", {"b11.mlp": 96}, (3, 2), patch_size=16))
    with torch.no_grad():
        for v, head in enumerate(heads):
            probes.groups["d96"].weight0[v] = head.proj.weight.T * 0.1
            probes.groups["d96"].bias0[v] = head.proj.bias * 0.1
            head.proj.weight.mul_(0.1)
            head.proj.bias.mul_(0.1)
    tokens = torch.randn(2, 2, 6, 96)  # (B, V, N, D) final decoder tokens
    got = probes({"b11.mlp": tokens})["b11.mlp"]
    for v, head in enumerate(heads):
        ref = head([tokens[:, v]], (48, 32))
        torch.testing.assert_close(got["pred"][:, v], ref["pts3d"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got["conf"][:, v], ref["conf"], rtol=1e-5, atol=1e-5)


def test_patch_positions_find_each_pixel_in_the_token_layout() -> None:
    """Tag every raw output with its own flat index: unfolding to images and looking the tag up agree."""
    grid, p = (2, 3), 4
    raw = torch.arange(2 * 6 * p * p, dtype=torch.float64).reshape(2, 6, p * p, 1)  # (V, N, p·p, C=1)
    images = patches_to_pixels(raw, grid)[..., 0]  # (V, H, W): the flat (V, N, p·p) index at each pixel
    pixels = torch.randperm(images.numel(), generator=torch.Generator().manual_seed(0))[:30]
    view, token, in_patch = patch_positions(pixels, grid, p)
    assert torch.equal((view * 6 + token) * p * p + in_patch, images.flatten()[pixels].long())


class TestTokenOrder:
    def test_patch_one_is_image_order(self) -> None:
        valid = torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(0)) > 0.4
        assert torch.equal(token_order_pixels(valid, 1), valid.flatten().nonzero()[:, 0])

    def test_valid_pixels_view_then_token_then_pixel_in_patch(self) -> None:
        grid, p = (2, 3), 4
        valid = torch.rand(2, 8, 12, generator=torch.Generator().manual_seed(1)) > 0.3
        pixels = token_order_pixels(valid, p)
        assert torch.equal(pixels.sort().values, valid.flatten().nonzero()[:, 0])  # each valid pixel once
        view, token, in_patch = patch_positions(pixels, grid, p)
        key = (view * 6 + token) * p * p + in_patch  # rank in the per-token layout
        assert bool((key[1:] > key[:-1]).all())

    def test_image_not_made_of_patches_is_refused(self) -> None:
        with pytest.raises(ShapeError, match="multiple of patch_size 4"):
            token_order_pixels(torch.ones(2, 8, 10, dtype=torch.bool), 4)

    @pytest.mark.parametrize("which", ["every pixel, token order", "every pixel, image order", "some pixels"])
    def test_token_outputs_at_equals_the_images(self, which: str) -> None:
        """The strided copy (every pixel in token order) and the gather (anything else) read the same values."""
        grid, p, B = (2, 3), 4, 3
        g = torch.Generator().manual_seed(2)
        outputs = [torch.randn(2, B, 6, 4, p * p, generator=g) for _ in range(2)]  # (V, B, N, C, p·p)
        valid = (
            torch.ones(2, 8, 12, dtype=torch.bool)
            if which.startswith("every")
            else torch.rand(2, 8, 12, generator=g) > 0.5
        )
        pixels = token_order_pixels(valid, 1 if "image" in which else p)
        for b in range(B):
            rows = token_outputs_at(outputs, b, pixels, grid)
            for j, o in enumerate(outputs):
                images = tokens_to_pixels(o[:, b].flatten(-2), grid, p)  # (V, H, W, C)
                expected = images.reshape(-1, 4)[pixels].T
                torch.testing.assert_close(rows[j], expected, rtol=0, atol=0)


WIDTHS = {"enc": 24, "b00.self": 16, "b01.cross": 16}  # two width groups, spec order kept


def probes_and_unlike_views(
    head: Head, shared_views: bool, n_layers: int, g: torch.Generator
) -> tuple[ProbeSet, dict[str, torch.Tensor]]:
    """A small probe set over WIDTHS and acts (2, 2, 6, D) whose views differ in scale, so a
    head or token of the wrong view read by mistake changes the values."""
    spec = ProbeSpec(
        "mlp", WIDTHS, (3, 2), patch_size=4, head=head, hidden=8, n_layers=n_layers, shared_views=shared_views
    )
    acts = {
        loc: torch.randn(2, 2, 6, d, generator=g) * torch.tensor([1.0, 3.0])[:, None, None]
        for loc, d in WIDTHS.items()
    }
    return ProbeSet(spec), acts


class TestAtPixels:
    @pytest.mark.parametrize("head", [Head(), Head("depth")])
    @pytest.mark.parametrize("shared_views", [False, True])
    def test_equals_forward_at_those_pixels(self, head: Head, shared_views: bool) -> None:
        g = torch.Generator().manual_seed(1)
        probes, acts = probes_and_unlike_views(head, shared_views, 2, g)
        spec = probes.spec
        valid = torch.rand(2, 2, 12, 8, generator=g) > 0.3
        with torch.no_grad():
            images = probes(acts)
        valid[1] = True  # a fully valid pair: read by a strided copy in token order
        pixels = [token_order_pixels(v, 4) for v in valid]
        rows = probes.at_pixels(acts, pixels)
        for b, (pred, conf) in enumerate(rows):
            n, n2 = int(valid[b].sum()), int(valid[b, 1].sum())
            assert pred.shape == (3, head.target_channels, n) and conf.shape == (3, n2)
            for j, loc in enumerate(spec.locations):
                expected = images[loc]["pred"][b].flatten(0, 2)[pixels[b]].T
                torch.testing.assert_close(pred[j], expected, rtol=1e-5, atol=1e-6)
                view2_conf = images[loc]["conf"][b].flatten()[pixels[b][n - n2 :]]  # no view-1 confidence
                torch.testing.assert_close(conf[j], view2_conf, rtol=1e-6, atol=0)

    def test_view2_pixels_before_view1_are_refused(self) -> None:
        probes = ProbeSet(ProbeSpec("linear", {"b00.self": 16}, (3, 2), patch_size=4))
        pixels = torch.tensor([12 * 8 + 3, 5])  # a view-2 pixel, then a view-1 one
        with pytest.raises(ShapeError, match="view 1's pixels must all come before view 2's"):
            probes.at_pixels({"b00.self": torch.zeros(1, 2, 6, 16)}, [pixels])

    def test_one_index_tensor_per_pair(self) -> None:
        probes = ProbeSet(ProbeSpec("linear", {"b00.self": 16}, (3, 2), patch_size=4))
        with pytest.raises(ShapeError, match="B=2"):
            probes.at_pixels({"b00.self": torch.zeros(2, 2, 6, 16)}, [torch.arange(4)])


class TestView1DepthAtPixels:
    @pytest.mark.parametrize("shared_views", [False, True])
    def test_equals_forward_view1_depth_at_those_pixels(self, shared_views: bool) -> None:
        g = torch.Generator().manual_seed(2)
        probes, acts = probes_and_unlike_views(Head("depth", beta=2.0), shared_views, 3, g)
        spec = probes.spec
        valid = torch.rand(2, 1, 12, 8, generator=g) > 0.3
        valid[1] = True  # a fully valid view: read by a strided copy in token order
        with torch.no_grad():
            images = probes(acts)
        pixels = [token_order_pixels(v, 4) for v in valid]
        depths = probes.view1_depth_at_pixels(acts, pixels)
        for b, depth in enumerate(depths):
            assert depth.shape == (3, 1, int(valid[b].sum()))
            for j, loc in enumerate(spec.locations):
                expected = images[loc]["pred"][b, 0].flatten()[pixels[b]]
                torch.testing.assert_close(depth[j, 0], expected, rtol=1e-5, atol=1e-6)

    def test_pointmap_probes_are_refused(self) -> None:
        probes = ProbeSet(ProbeSpec("linear", {"b00.self": 16}, (3, 2), patch_size=4))
        with pytest.raises(ConfigError, match="needs depth probes"):
            probes.view1_depth_at_pixels({"b00.self": torch.zeros(1, 2, 6, 16)}, [torch.arange(4)])

    def test_acts_of_one_view_are_refused(self) -> None:
        """Reading view 1 alone must still see both views' tokens: one-view acts are a caller's mistake."""
        probes = ProbeSet(
            ProbeSpec("mlp", {"b00.self": 16}, (3, 2), patch_size=4, head=Head("depth"), hidden=8)
        )
        with pytest.raises(ShapeError, match=r"acts\['b00.self'\]: expected \(B, V=2, N=6, D\)"):
            probes.view1_depth_at_pixels({"b00.self": torch.zeros(1, 1, 6, 16)}, [torch.arange(4)])
