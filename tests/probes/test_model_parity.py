"""Against the project's DUSt3R: head parity, and live training from the model's forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer
from typer.testing import CliRunner

from pipeline.model.registry import build_model
from pipeline.probes.files import load_probes
from pipeline.probes.live import LiveSource
from pipeline.probes.probeset import ProbeSet, ProbeSpec
from pipeline.probes.trainer import TrainConfig, train
from pipeline.probing.capture import capture
from stages.train_probes import train_probes


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


def test_live_source_feeds_captured_activations_to_the_trainer(rgb_renders: tuple[Path, np.ndarray]) -> None:
    model = build_model("tiny", seed=0).eval()
    path, rgb = rgb_renders
    src = LiveSource(model, path, ["enc", "b01.cross"], splits=["train"], batch_size=4)
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


def test_stage_trains_live_from_the_extract_model(
    tmp_path: Path, rgb_renders: tuple[Path, np.ndarray]
) -> None:
    (tmp_path / "params.yaml").write_text(
        "base:\n  seed: 0\n  device: cpu\nextract:\n  model: tiny\n"
        "train_probes:\n  kinds: [linear]\n  steps: 2\n  batch_size: 4\n"
    )
    app = typer.Typer()
    app.command()(train_probes)
    args = ["--params", str(tmp_path / "params.yaml"), "--renders", str(rgb_renders[0]), "--live"]
    args += [
        "--out",
        str(tmp_path / "probes"),
        "--curves",
        str(tmp_path / "curves"),
        "--locations",
        "b01.cross",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    probes = load_probes(tmp_path / "probes" / "linear")
    assert probes.meta["features"]["source"] == "live" and probes.spec.locations == ("b01.cross",)
