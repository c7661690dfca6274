"""Attention and float16 encodings: stated error bounds, argmax preservation, overflow refusal."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.store.attention_codec import (
    ENCODINGS,
    ROWMAX_MAX_REL_ERROR,
    argmax_preserved,
    decode,
    decode_rowmax_uint8,
    encode,
    encode_rowmax_uint8,
)
from pipeline.store.float16 import Float16OverflowError, mantissa_max_rel_error, shorten_mantissa, to_float16


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
    assert argmax_preserved(p, q) == 1.0


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
    x = np.array([1.0, 7e4, -1e5], np.float32)
    with pytest.raises(
        Float16OverflowError, match=r"pairs 0\.\.3, 'acts': 2 values beyond float16's range.*overflow: clip"
    ):
        to_float16(x, overflow="error", where="pairs 0..3, 'acts'")
    y, n = to_float16(x, overflow="clip", where="x")
    assert n == 2 and np.isfinite(y).all() and y[1] == np.float16(65504)


@pytest.mark.parametrize("bits", [0, 3, 7, 10])
def test_shortened_mantissa_error_is_within_its_bound(bits: int) -> None:
    x = (np.random.default_rng(1).normal(size=10_000) * 30).astype(np.float16)
    y = shorten_mantissa(x, bits)
    rel = np.abs(y.astype(np.float64) - x) / np.abs(x.astype(np.float64))
    assert np.nanmax(rel) <= mantissa_max_rel_error(bits) + 1e-12
    assert np.isfinite(y).all()
