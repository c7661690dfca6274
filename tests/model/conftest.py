"""Fixtures for the model tests: the reference implementation, when installed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from dust3r_reference import build_reference
from torch import nn

from pipeline.model.config import Dust3rConfig


@pytest.fixture(scope="session")
def reference() -> Callable[..., nn.Module]:
    """Build mini-dust3r's AsymmetricCroCo3DStereo for a config, with seeded random weights."""
    ref_model = pytest.importorskip("mini_dust3r.model", reason="needs the test extra (mini-dust3r)")

    def build(config: Dust3rConfig, seed: int = 0) -> nn.Module:
        return build_reference(ref_model, config, seed)

    return build
