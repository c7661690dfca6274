"""Attention and float16 encodings: stated error bounds, argmax preservation, overflow refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.jobs.extract_shard import encode_stream
from pipeline.store.attention_codec import (
    ENCODINGS,
    ROWMAX_MAX_REL_ERROR,
    UINT8_MAX_ABS_ERROR,
    argmax_preserved,
    decode,
    decode_rowmax_uint8,
    decode_uint8,
    encode,
    encode_rowmax_uint8,
    encode_uint8_argmax,
)
from pipeline.store.float16 import Float16OverflowError, mantissa_max_rel_error, shorten_mantissa


def softmax_rows(shape: tuple[int, ...], sharpness: float, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=shape) * sharpness
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("sharpness", [0.01, 1.0, 8.0])
def test_rowmax_uint8_is_within_its_bound_and_keeps_every_argmax(sharpness: float) -> None:
    p = softmax_rows((3, 4, 49, 49), sharpness)
    codes, scale = encode_rowmax_uint8(p)
    assert codes.dtype == np.uint8 and scale.shape == (3, 4, 49)
    q = decode_rowmax_uint8(codes, scale)
    bound = ROWMAX_MAX_REL_ERROR * p.max(-1, keepdims=True)
    assert (np.abs(q - p) <= bound + 1e-7).all()
    assert argmax_preserved(p, {"codes": codes}, q) == 1.0


@pytest.mark.parametrize("sharpness", [0.01, 1.0, 8.0])
def test_uint8_argmax_is_within_half_a_step_and_stores_every_argmax(sharpness: float) -> None:
    p = softmax_rows((3, 4, 49, 49), sharpness)
    codes, argmax = encode_uint8_argmax(p)
    assert codes.dtype == np.uint8 and argmax.dtype == np.uint16 and argmax.shape == (3, 4, 49)
    assert np.abs(decode_uint8(codes) - p).max() <= UINT8_MAX_ABS_ERROR + 1e-7
    np.testing.assert_array_equal(argmax, np.argmax(p, -1))


def test_uint8_argmax_keeps_argmaxes_that_rounding_ties() -> None:
    p = np.array([[0.2500, 0.2510, 0.2495, 0.2500], [0.5, 0.5, 0.0, 0.0]], np.float32)
    codes, argmax = encode_uint8_argmax(torch.from_numpy(p))
    assert len(set(codes[0].tolist())) == 1  # all round to 64: the decoded row has no argmax
    assert argmax.tolist() == [1, 0]  # exact, the first on an exact tie
    assert argmax_preserved(p, {"codes": codes, "argmax": argmax}, decode_uint8(codes)) == 1.0


def test_rowmax_uint8_keeps_exact_ties_and_zero_rows() -> None:
    p = np.array([[0.25, 0.5, 0.25, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)
    codes, scale = encode_rowmax_uint8(p)
    assert codes[1].tolist() == [255, 255, 0, 0]
    np.testing.assert_array_equal(np.argmax(decode_rowmax_uint8(codes, scale), -1), np.argmax(p, -1))
    assert (decode_rowmax_uint8(codes, scale)[2] == 0).all()


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_encoding_round_trips_within_a_coarse_bound(name: str) -> None:
    p = softmax_rows((2, 16, 16), 4.0)
    q = decode(encode(p, name, k=16), name, n_keys=16)  # k = all keys: top-k is exact too
    assert q.shape == p.shape and np.abs(q - p).max() < 4e-3


def test_float16_cast_refuses_overflow_naming_where_and_clips_on_request() -> None:
    x = torch.tensor([1.0, 7e4, -1e5, 2.0]).reshape(2, 1, 1, 2)  # (B, V, N, D)
    with pytest.raises(
        Float16OverflowError, match=r"pairs 0\.\.3, 'acts': 2 values beyond float16's range.*overflow: clip"
    ):
        encode_stream(x, overflow="error", where="pairs 0..3, 'acts'", n_high_norm=1)
    out = encode_stream(x, overflow="clip", where="x", n_high_norm=1)
    assert out["clipped"].tolist() == [1, 1] and np.isfinite(out["values"]).all()
    assert out["values"][0, 0, 0, 1] == np.float16(65504) and out["values"][1, 0, 0, 0] == np.float16(-65504)


def test_stream_statistics_match_numpy_in_float64() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 2, 4, 16, 8)).astype(np.float32)  # (B, V, L, N, D)
    x[1, 0, 2, [5, 9]] = 10.0  # two tokens of equal, largest norm: the lower index first
    out = encode_stream(torch.from_numpy(x), overflow="error", where="x", n_high_norm=3)
    np.testing.assert_array_equal(out["values"], x.astype(np.float16))
    norms = np.linalg.norm(x.astype(np.float64), axis=-1)
    np.testing.assert_allclose(out["norms"], norms, rtol=1e-6)
    np.testing.assert_array_equal(out["top"], np.argsort(-norms, axis=-1, kind="stable")[..., :3])
    assert out["top"][1, 0, 2, :2].tolist() == [5, 9]
    np.testing.assert_allclose(out["sum"], x.astype(np.float64).sum(axis=(0, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["sumsq"], np.square(x.astype(np.float64)).sum(axis=(0, 3)), rtol=1e-6)


@pytest.mark.parametrize("bits", [0, 3, 7, 10])
def test_shortened_mantissa_error_is_within_its_bound(bits: int) -> None:
    x = (np.random.default_rng(1).normal(size=10_000) * 30).astype(np.float16)
    y = shorten_mantissa(x, bits)
    rel = np.abs(y.astype(np.float64) - x) / np.abs(x.astype(np.float64))
    assert np.nanmax(rel) <= mantissa_max_rel_error(bits) + 1e-12
    assert np.isfinite(y).all()
