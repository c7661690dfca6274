"""Against the project's DUSt3R: head parity, and live training from the model's forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline.model.registry import build_model
from pipeline.probes.live import LiveSource
from pipeline.probes.probeset import ProbeSet, ProbeSpec
from pipeline.probes.trainer import TrainConfig, train
from pipeline.probing.capture import capture
from pipeline.store.writer import create_store


def test_linear_probe_with_the_model_head_weights_reproduces_the_model_pointmap() -> None:
    """The head reads dec_norm(last block's output); a probe fed those tokens must match it exactly."""
    model = build_model("tiny", seed=0).eval()
    with torch.no_grad():
        model.downstream_head2.proj.weight.mul_(-0.7)  # make the two heads differ
        img1, img2 = torch.rand(2, 2, 3, 64, 48) * 2 - 1
        (res1, res2), acts = capture(model, img1, img2, locations=["b03.mlp"])
        tokens = model.dec_norm(acts["b03.mlp"])  # (B, V, N, D)
        cfg = model.config
        probes = ProbeSet(
            ProbeSpec("linear", {"b03.mlp": cfg.dec_embed_dim}, (4, 3), patch_size=cfg.patch_size)
        )
        for v, head in enumerate((model.downstream_head1, model.downstream_head2)):
            probes.groups[f"d{cfg.dec_embed_dim}"].weight0[v] = head.proj.weight.T
            probes.groups[f"d{cfg.dec_embed_dim}"].bias0[v] = head.proj.bias
        got = probes({"b03.mlp": tokens})["b03.mlp"]
    torch.testing.assert_close(got["pred"][:, 0], res1["pts3d"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["pred"][:, 1], res2["pts3d_in_other_view"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        got["conf"], torch.stack([res1["conf"], res2["conf"]], 1), rtol=1e-5, atol=1e-6
    )


def _rgb_renders(path: Path, n: int) -> np.ndarray:
    g = np.random.default_rng(0)
    group = create_store(
        path,
        "renders",
        sizes={"pair": n, "y": 32, "x": 32},
        pairs_per_shard=4,
        attrs={"params": {}, "n_pairs": n, "image_size": [32, 32]},
        coords={"view": np.array([1, 2])},
    )
    rgb = g.integers(0, 256, (n, 2, 32, 32, 3), dtype=np.uint8)
    group["rgb"][:] = rgb
    group["pts3d_view1"][:] = g.normal(size=(n, 2, 32, 32, 3)).astype(np.float32) + np.array(
        [0, 0, 4], np.float32
    )
    group["depth"][:] = 4.0
    group["valid"][:] = True
    group["status"][:] = 1
    group["split"][:] = np.array(["train"] * n, dtype=np.dtypes.StringDType())
    return rgb


def test_live_source_feeds_captured_activations_to_the_trainer(tmp_path: Path) -> None:
    model = build_model("tiny", seed=0).eval()
    rgb = _rgb_renders(tmp_path / "r.zarr", 8)
    src = LiveSource(model, tmp_path / "r.zarr", ["enc", "b01.cross"], splits=["train"], batch_size=4)
    assert src.widths == {"enc": 64, "b01.cross": 64} and src.grid == (2, 2)
    batch = next(src.batches(loop=False))
    img = torch.from_numpy(rgb[:4]).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    with torch.no_grad():
        _, acts = capture(model, img[:, 0], img[:, 1], locations=["b01.cross"])
    torch.testing.assert_close(batch.acts["b01.cross"], acts["b01.cross"])
    probes = ProbeSet(ProbeSpec("mlp", src.widths, src.grid, hidden=16))
    result = train({"mlp": probes}, src, src, TrainConfig(steps=3, batch_size=4), progress=False)
    assert set(result["val"]["mlp"]) == {"enc", "b01.cross"}
    assert all(np.isfinite(v) for v in result["val"]["mlp"].values())
