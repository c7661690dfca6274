"""fast_linear: oneDNN's path equals F.linear, and is never taken where a gradient is needed."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from pipeline.fast_linear import Linear, linear, onednn_applies, use_onednn
from pipeline.probes.batched import BatchedMLP


def _reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(x.double(), w.double(), None if b is None else b.double())


@pytest.mark.parametrize("shape", [(7, 48), (2, 5, 48), (0, 48)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_equals_float64_reference(shape: tuple[int, ...], with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(*shape, generator=gen), torch.randn(24, 48, generator=gen)
    b = torch.randn(24, generator=gen) if with_bias else None
    with torch.no_grad():
        out = linear(x, w, b)
    assert out.shape == (*shape[:-1], 24) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), _reference(x, w, b), rtol=1e-5, atol=1e-5)


def test_linear_reads_strided_inputs_and_transposed_weights() -> None:
    gen = torch.Generator().manual_seed(1)
    x, w = torch.randn(6, 9, 32, generator=gen)[:, ::2], torch.randn(32, 20, generator=gen).T
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w).double(), _reference(x, w, None), rtol=1e-5, atol=1e-5)


def test_onednn_is_taken_only_for_cpu_float32_inference() -> None:
    if not torch.backends.mkldnn.is_available():
        pytest.skip("this PyTorch has no oneDNN")
    x, w = torch.randn(4, 8), torch.randn(3, 8, requires_grad=True)
    with torch.no_grad():
        assert onednn_applies(x, w)
        assert not onednn_applies(x.double(), w.double())
        assert not onednn_applies(x[:0], w)
        with use_onednn(False):
            assert not onednn_applies(x, w)
        with torch.backends.mkldnn.flags(enabled=False):
            assert not onednn_applies(x, w)
        assert onednn_applies(x, w)  # the switches are restored on exit
    assert not onednn_applies(x, w)  # w needs a gradient
    assert onednn_applies(x, w.detach())


def test_gradients_flow_where_they_are_needed() -> None:
    """oneDNN's op has no backward: taking it here would leave the weight's grad None."""
    gen = torch.Generator().manual_seed(2)
    layer = Linear(16, 5)
    x = torch.randn(3, 16, generator=gen, requires_grad=True)
    layer(x).square().sum().backward()
    w, b = layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    F.linear(x2, w, b).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, w.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_linear_module_keeps_nn_linear_names() -> None:
    layer = Linear(4, 2)
    assert isinstance(layer, torch.nn.Linear)
    assert set(layer.state_dict()) == {"weight", "bias"}
    x = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("out_order", [None, slice(0, 7)])
@pytest.mark.parametrize("probes", [None, slice(1, None, 2)])
def test_forward_each_equals_forward(out_order: slice | None, probes: slice | None) -> None:
    mlp = BatchedMLP([12, 16, 16, 10], seeds=[3, 4, 5, 6])
    n = len(range(4)[probes or slice(None)])
    x = torch.randn(n, 9, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        each = mlp.forward_each(x, out_order, probes)
        stacked = mlp(x, out_order, probes)
    assert len(each) == n
    torch.testing.assert_close(torch.stack(each), stacked, rtol=1e-5, atol=1e-6)


def test_forward_each_sees_weight_updates() -> None:
    """The output-major weight copy is remade after an in-place update (an optimiser step)."""
    mlp = BatchedMLP([6, 5], seeds=[0, 1])
    x = torch.randn(2, 3, 6)
    before = mlp.forward_each(x)
    with torch.no_grad():
        mlp.weight0.mul_(2.0)
        mlp.bias0.zero_()
    after = mlp.forward_each(x)
    torch.testing.assert_close(torch.stack(after), mlp(x).detach(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(torch.stack(after), torch.stack(before))
