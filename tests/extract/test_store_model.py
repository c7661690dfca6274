"""The model that made a features store: rebuilt from its attributes, refused when the weights differ."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import zarr

from pipeline.errors import SchemaError
from pipeline.jobs.extract import run_extract
from pipeline.jobs.extract_model import ModelRunner, rebuild_model, store_model

from .conftest import tiny_params


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_store_model_is_the_model_that_made_the_store(renders: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.zarr"
    run_extract(renders, out, tiny_params(seed=3))
    group = zarr.open_group(str(out), mode="r+")
    model = store_model(group, device="cpu", where=str(out))
    assert not model.training
    assert_same_weights(model, ModelRunner.from_params(tiny_params(seed=3)).model)
    assert_same_weights(
        model, store_model(group, device="cpu", where=str(out))
    )  # random init is reproducible
    group.attrs["model_weights"] = "random-init:tiny:4"
    with pytest.raises(
        SchemaError,
        match=r"f\.zarr: recorded model_weights 'random-init:tiny:4' but the parameters rebuild 'random-init:tiny:3'$",
    ):
        store_model(group, device="cpu", where=str(out))
    del group.attrs["params"]
    with pytest.raises(
        SchemaError, match=r"f\.zarr: no extract `params` attribute; cannot rebuild its model"
    ):
        store_model(group, device="cpu", where=str(out))


def test_rebuild_model_checks_weights_only_when_recorded() -> None:
    params = tiny_params(seed=2).identity()
    model, weights = rebuild_model(params, None, where="config.json")
    assert weights == "random-init:tiny:2" and not model.training
    with pytest.raises(
        SchemaError, match=r"config\.json: recorded model_weights 'sha256:00' .*; pass the checkpoint"
    ):
        rebuild_model(params, "sha256:00", where="config.json", hint="pass the checkpoint")
