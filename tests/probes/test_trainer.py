"""The batched trainer equals separate training, learns, and resumes exactly."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.probes.batches import Batch, BatchSource, TensorSource
from pipeline.probes.heads import tokens_to_pixels
from pipeline.probes.loss import conf_regression_loss
from pipeline.probes.probeset import ProbeSet, ProbeSpec
from pipeline.probes.trainer import TrainConfig, train, validate


def _separate_modules(probes: ProbeSet, loc: str) -> list[nn.Sequential]:
    """Plain nn.Linear stacks holding the batched probe's initial weights for `loc`."""
    key = next(k for k, locs in probes.group_locations.items() if loc in locs)
    group, i = probes.groups[key], probes.group_locations[key].index(loc)
    out = []
    for v in range(probes.views_per_probe):
        p = i * probes.views_per_probe + v
        layers: list[nn.Module] = []
        for k in range(group.n_layers):
            w = getattr(group, f"weight{k}")[p]
            lin = nn.Linear(*w.shape)
            with torch.no_grad():
                lin.weight.copy_(w.T)
                lin.bias.copy_(getattr(group, f"bias{k}")[p])
            layers += [lin, nn.ReLU()]
        out.append(nn.Sequential(*layers[:-1]))
    return out


def _train_separately(
    mods: list[nn.Sequential], spec: ProbeSpec, loc: str, batches: Iterator[Batch], cfg: TrainConfig
) -> list[float]:
    """Textbook single-probe training: one module per view, clip_grad_norm_, AdamW, cosine."""
    params = [p for m in mods for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cfg.lr_factor)
    norms = []
    for _ in range(cfg.steps):
        batch = next(batches)
        x = batch.acts[loc]
        raw = torch.stack([mods[v % len(mods)](x[:, v]) for v in range(2)], 1)  # (B, V, N, K)
        pred, conf = spec.head.postprocess(tokens_to_pixels(raw, spec.grid, spec.patch_size))
        loss = conf_regression_loss(pred, conf, batch.target(spec.head.name), batch.valid, alpha=cfg.alpha)
        opt.zero_grad()
        loss.backward()
        norms.append(float(nn.utils.clip_grad_norm_(params, cfg.grad_clip)))
        opt.step()
        sched.step()
    return norms


@pytest.mark.parametrize("shared_views", [False, True])
def test_batched_update_equals_separate_updates(
    problem: dict, make_source: Callable[..., TensorSource], layout: dict, shared_views: bool
) -> None:
    widths = {k: v.shape[-1] for k, v in problem["acts"].items()}
    specs = [
        ProbeSpec("mlp", widths, hidden=32, shared_views=shared_views, seed=3, **layout),
        ProbeSpec("linear", widths, shared_views=shared_views, seed=3, **layout),
    ]
    sets = {s.name: ProbeSet(s) for s in specs}
    cfg = TrainConfig(steps=6, batch_size=4, lr=3e-3, warmup_steps=2, grad_clip=0.5, seed=1)
    separate = {(n, loc): _separate_modules(s, loc) for n, s in sets.items() for loc in widths}
    train(sets, make_source(problem, range(40), 4, seed=1), None, cfg, progress=False)
    clipped = False
    for (name, loc), mods in separate.items():
        spec = sets[name].spec
        norms = _train_separately(mods, spec, loc, make_source(problem, range(40), 4, seed=1).batches(), cfg)
        clipped |= max(norms) > cfg.grad_clip
        for ref, got in zip(mods, _separate_modules(sets[name], loc), strict=True):
            for p_ref, p_got in zip(ref.parameters(), got.parameters(), strict=True):
                torch.testing.assert_close(p_got, p_ref, rtol=1e-4, atol=1e-5)
    assert clipped, "the test must exercise clipping"


def _scale_invariant_error(probes: ProbeSet, problem: dict, pairs: range) -> float:
    with torch.no_grad():
        out = probes({k: v[pairs] for k, v in problem["acts"].items()})
        pred = torch.stack([o["pred"] for o in out.values()])
        ones = torch.ones(pred.shape[:-1])
        err = conf_regression_loss(pred, ones, problem["pts3d"][pairs], problem["valid"][pairs], alpha=0.0)
    return float(err.mean())


def test_training_on_a_learnable_target_lowers_validation_error(
    problem: dict, make_source: Callable[..., TensorSource], layout: dict
) -> None:
    widths = {k: v.shape[-1] for k, v in problem["acts"].items()}
    probes = ProbeSet(ProbeSpec("mlp", widths, hidden=64, **layout))
    val = make_source(problem, range(40, 48), 4)
    before = _scale_invariant_error(probes, problem, slice(40, 48))
    cfg = TrainConfig(steps=150, batch_size=8, lr=2e-3, val_every=50)
    result = train({"mlp": probes}, make_source(problem, range(40), 8), val, cfg, progress=False)
    after = _scale_invariant_error(probes, problem, slice(40, 48))
    assert after < before / 4, (before, after)
    assert set(result["val"]["mlp"]) == set(widths)


class _KilledAfter:
    """A source that dies after `n` batches, like a run killed mid-training."""

    def __init__(self, inner: TensorSource, n: int) -> None:
        self.inner, self.n = inner, n

    def batches(self, start: int = 0, *, loop: bool = True) -> Iterator[Batch]:
        for i, batch in enumerate(self.inner.batches(start, loop=loop)):
            if i == self.n:
                raise KeyboardInterrupt
            yield batch


def test_resumed_run_ends_where_an_uninterrupted_run_does(
    tmp_path: Path, problem: dict, make_source: Callable[..., TensorSource], layout: dict
) -> None:
    widths = {"b00.self": 16}
    cfg = TrainConfig(steps=6, batch_size=4, lr=1e-3, checkpoint_every=2, val_every=3)
    val = make_source(problem, range(40, 48), 4)
    whole = ProbeSet(ProbeSpec("linear", widths, **layout))
    train(
        {"linear": whole},
        make_source(problem, range(40), 4),
        val,
        cfg,
        checkpoint=tmp_path / "a" / "ckpt.pt",
        progress=False,
    )
    killed = ProbeSet(ProbeSpec("linear", widths, **layout))
    with pytest.raises(KeyboardInterrupt):
        train(
            {"linear": killed},
            _KilledAfter(make_source(problem, range(40), 4), 5),
            val,
            cfg,
            checkpoint=tmp_path / "b" / "ckpt.pt",
            curves_dir=tmp_path / "b",
            progress=False,
        )
    resumed = ProbeSet(ProbeSpec("linear", widths, **layout))
    train(
        {"linear": resumed},
        make_source(problem, range(40), 4),
        val,
        cfg,
        checkpoint=tmp_path / "b" / "ckpt.pt",
        curves_dir=tmp_path / "b",
        progress=False,
    )
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with (tmp_path / "b" / "train_loss.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[0]) == {"step", "lr", "linear/b00.self"}
    with (tmp_path / "b" / "val_loss.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [3, 6]


def test_checkpoint_carrying_code_is_refused_without_running(
    tmp_path: Path, problem: dict, make_source: Callable[..., TensorSource], layout: dict
) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    ckpt = tmp_path / "ckpt.pt"
    torch.save({"step": 1, "identity": Payload()}, ckpt)
    probes = ProbeSet(ProbeSpec("linear", {"b00.self": 16}, **layout))
    cfg = TrainConfig(steps=2, batch_size=4)
    with pytest.raises(ConfigError, match=r"ckpt\.pt: refused to unpickle"):
        train(
            {"linear": probes}, make_source(problem, range(8), 4), None, cfg, checkpoint=ckpt, progress=False
        )
    assert not marker.exists()


def test_a_rerun_after_the_last_checkpoint_returns_its_losses(
    tmp_path: Path, problem: dict, make_source: Callable[..., TensorSource], layout: dict
) -> None:
    """A run killed after its final checkpoint, before the job removed it, has no step left on rerun."""
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2, val_every=2)
    sources = (make_source(problem, range(40), 4), make_source(problem, range(40, 48), 4))
    first = train(
        {"linear": ProbeSet(ProbeSpec("linear", {"b00.self": 16}, **layout))},
        *sources,
        cfg,
        checkpoint=tmp_path / "ckpt.pt",
        progress=False,
    )
    again = train(
        {"linear": ProbeSet(ProbeSpec("linear", {"b00.self": 16}, **layout))},
        *sources,
        cfg,
        checkpoint=tmp_path / "ckpt.pt",
        progress=False,
    )
    assert again == first and first["train"]["linear"]


class _Identified:
    """A source that names the features it serves, like StoreSource and LiveSource."""

    def __init__(self, inner: BatchSource, features: str) -> None:
        self.inner, self.features = inner, features

    def identity(self) -> dict:
        return {"features": self.features}

    def batches(self, start: int = 0, *, loop: bool = True) -> Iterator[Batch]:
        return self.inner.batches(start, loop=loop)


def test_a_checkpoint_of_other_features_is_refused(
    tmp_path: Path, problem: dict, make_source: Callable[..., TensorSource], layout: dict
) -> None:
    cfg = TrainConfig(steps=4, batch_size=4, lr=1e-3, checkpoint_every=2)
    spec = ProbeSpec("linear", {"b00.self": 16}, **layout)

    def run(features: str, killed_after: int | None = None) -> None:
        source: BatchSource = make_source(problem, range(40), 4)
        if killed_after is not None:
            source = _KilledAfter(source, killed_after)
        identified = _Identified(source, features)
        train(
            {"linear": ProbeSet(spec)}, identified, None, cfg, checkpoint=tmp_path / "ckpt.pt", progress=False
        )

    with pytest.raises(KeyboardInterrupt):
        run("a.zarr", killed_after=3)
    with pytest.raises(ConfigError, match=r"ckpt\.pt: checkpoint of other probes, settings or features"):
        run("b.zarr")
    run("a.zarr")  # the same features resume


def test_validation_weights_each_batch_by_its_pairs(
    problem: dict, make_source: Callable[..., TensorSource], layout: dict
) -> None:
    probes = ProbeSet(ProbeSpec("linear", {"b00.self": 16}, **layout))
    val = make_source(problem, range(40, 43), 2)  # batches of 2 pairs and 1 pair
    batches = list(val.batches(loop=False))
    assert [len(b.valid) for b in batches] == [2, 1]
    with torch.no_grad():
        per_batch = [
            float(probes.losses(b.acts, b.target("pointmap"), b.valid, alpha=0.2)[0]) for b in batches
        ]
    got = validate({"linear": probes}, val, alpha=0.2)["linear"]["b00.self"]
    assert got == pytest.approx((2 * per_batch[0] + per_batch[1]) / 3, rel=1e-6)
