"""Small mesh files built with trimesh for the scene-source tests."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial


def _quad_mesh(image: np.ndarray, name: str, factor=(255, 255, 255, 255)) -> trimesh.Trimesh:
    """A unit square in the xy plane with uv spanning the whole image."""
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float64)
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    mat = PBRMaterial(name=name, baseColorTexture=Image.fromarray(image), baseColorFactor=list(factor))
    return trimesh.Trimesh(v, f, process=False, visual=trimesh.visual.TextureVisuals(uv=uv, material=mat))


@pytest.fixture
def gradient_image() -> np.ndarray:
    """(16, 32, 3) uint8 with distinct texels, so any flip or swap shows."""
    y, x = np.mgrid[0:16, 0:32]
    return np.stack([x * 8, y * 16, (x + y) % 7 * 30], -1).astype(np.uint8)


@pytest.fixture
def write_glb() -> Callable[..., Path]:
    """write_glb(path, [(image, name, 4x4 transform, factor), ...]) → path of a multi-node glb."""

    def write(path: Path, parts: list[tuple[np.ndarray, str, np.ndarray, tuple]]) -> Path:
        scene = trimesh.Scene()
        for image, name, transform, factor in parts:
            scene.add_geometry(
                _quad_mesh(image, name, factor), geom_name=name, node_name=f"node_{name}", transform=transform
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(scene.export(file_type="glb"))
        return path

    return write


@pytest.fixture
def basisify() -> Callable[[Path, Path], Path]:
    """basisify(src, dst): rewrite a glb so texture 0's image comes only via KHR_texture_basisu."""

    def rewrite(src: Path, dst: Path) -> Path:
        raw = src.read_bytes()
        (n_json,) = struct.unpack_from("<I", raw, 12)
        doc = json.loads(raw[20 : 20 + n_json])
        rest = raw[20 + n_json :]
        doc["textures"][0] = {"extensions": {"KHR_texture_basisu": {"source": 0}}}
        doc["images"][0]["mimeType"] = "image/ktx2"
        doc["extensionsUsed"] = doc["extensionsRequired"] = ["KHR_texture_basisu"]
        body = json.dumps(doc).encode()
        body += b" " * (-len(body) % 4)
        head = struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(body) + len(rest))
        dst.write_bytes(head + struct.pack("<II", len(body), 0x4E4F534A) + body + rest)
        return dst

    return rewrite
