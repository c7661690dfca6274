"""The official 224 and 512 input pipelines: sizes, crops, orientation and normalisation."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.model.preprocess import load_image


def photo(w: int, h: int, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("size", "wh", "expected_hw", "square_ok"),
    [
        (224, (640, 480), (224, 224), False),  # short side to 224, centre square
        (224, (480, 640), (224, 224), False),
        (224, (100, 50), (224, 224), False),  # upscaled
        (512, (640, 480), (384, 512), False),  # long side to 512
        (512, (480, 640), (512, 384), False),
        (512, (500, 500), (384, 512), False),  # square -> 4:3
        (512, (500, 500), (512, 512), True),
        (512, (1000, 333), (160, 512), False),  # 512 x 170, cut to multiples of 16
    ],
)
def test_output_sizes(size: int, wh: tuple[int, int], expected_hw: tuple[int, int], square_ok: bool) -> None:
    out = load_image(photo(*wh), size, square_ok=square_ok)
    assert out.shape == (1, 3, *expected_hw)
    assert out.dtype == torch.float32
    assert -1.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_normalisation_is_exact_when_no_resize_is_needed(tmp_path) -> None:
    img = photo(224, 224)
    img.save(tmp_path / "p.png")
    expected = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255 * 2 - 1
    for source in (img, tmp_path / "p.png", str(tmp_path / "p.png")):
        torch.testing.assert_close(load_image(source, 224)[0], expected, atol=1e-6, rtol=0)


def test_centre_crop_and_exif_orientation(tmp_path) -> None:
    # left half black, right half white, 448 x 224: after the crop the centre column splits them
    arr = np.zeros((224, 448, 3), np.uint8)
    arr[:, 224:] = 255
    out = load_image(PIL.Image.fromarray(arr), 224)[0]
    assert out.shape == (3, 224, 224)
    assert float(out[:, :, :100].max()) == -1.0 and float(out[:, :, 124:].min()) == 1.0
    img = PIL.Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display: the photo is portrait
    img.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg", 512).shape == (1, 3, 512, 256)


def test_unknown_size() -> None:
    with pytest.raises(ConfigError, match=r"^size: expected one of \(224, 512\).*got 256"):
        load_image(photo(10, 10), 256)
