"""A tiny random DUSt3R and an image pair for the probing tests."""

from __future__ import annotations

import pytest
import torch

from pipeline.model.dust3r import Dust3r
from pipeline.model.registry import build_model


@pytest.fixture(scope="session")
def model() -> Dust3r:
    """`tiny` (4 decoder blocks, 4 heads, D = 64) with norms and decoder 2 made distinct."""
    model = build_model("tiny", seed=0).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 or name.startswith("dec_blocks2."):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 3, 48, 64) x 2: 3 x 4 patches, so N = 12 tokens per view."""
    g = torch.Generator().manual_seed(2)
    return torch.randn(2, 3, 48, 64, generator=g), torch.randn(2, 3, 48, 64, generator=g)
