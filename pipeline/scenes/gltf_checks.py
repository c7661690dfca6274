"""Find materials whose texture trimesh would silently drop, by reading the glTF JSON.

Why: trimesh follows a texture's plain `source` image (and EXT_texture_webp) and skips,
with only a debug log, a texture whose image comes through another extension
(KHR_texture_basisu in HM3D's `*.basis.glb`, MSFT_texture_dds), is KTX2, is missing or
whose header PIL cannot read. Such a material loads untextured and the scene renders flat
grey with no error. Reading the JSON ourselves names the file and material instead.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from pathlib import Path
from urllib.parse import unquote

from PIL import Image

from pipeline.errors import SceneError

_GLB_MAGIC = b"glTF"
_JSON_CHUNK = 0x4E4F534A
_UNDECODABLE = ("image/ktx2", "image/vnd-ms.dds", "image/basis")
_UNDECODABLE_EXT = (".ktx2", ".ktx", ".dds", ".basis")


def read_gltf(path: Path) -> tuple[dict, bytes]:
    """The glTF JSON document of a .glb or .gltf file, and the glb's binary chunk (b"" if none).

    Raises:
        SceneError: not a glTF file, or a corrupt header or JSON.
    """
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gltf":
            doc, binary = json.loads(raw), b""
        else:
            if raw[:4] != _GLB_MAGIC or len(raw) < 20:
                raise SceneError(f"{path}: not a binary glTF file (no 'glTF' header)")
            length, kind = struct.unpack_from("<II", raw, 12)
            if kind != _JSON_CHUNK or 20 + length > len(raw):
                raise SceneError(f"{path}: corrupt glb, first chunk is not a complete JSON chunk")
            doc = json.loads(raw[20 : 20 + length])
            rest = raw[20 + length :]
            binary = rest[8 : 8 + struct.unpack_from("<I", rest)[0]] if len(rest) >= 8 else b""
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SceneError(f"{path}: cannot read glTF JSON: {err}") from err
    if not isinstance(doc, dict):  # valid JSON, but not a glTF document: fail as a scene, not a crash
        raise SceneError(f"{path}: glTF JSON is a {type(doc).__name__}, expected an object")
    return doc, binary


def _uri_bytes(uri: str, folder: Path) -> bytes:
    if uri.startswith("data:"):
        return base64.b64decode(uri.split(",", 1)[1])
    return (folder / unquote(uri)).read_bytes()


def _image_bytes(doc: dict, image: dict, binary: bytes, folder: Path) -> bytes:
    """The encoded bytes of one glTF image, from a uri or a buffer view."""
    if "uri" in image:
        return _uri_bytes(image["uri"], folder)
    view = doc["bufferViews"][image["bufferView"]]
    buffer = doc["buffers"][view.get("buffer", 0)]
    data = _uri_bytes(buffer["uri"], folder) if "uri" in buffer else binary
    start = view.get("byteOffset", 0)
    return data[start : start + view["byteLength"]]


def _colour_texture_indices(material: dict) -> list[int]:
    """Indices of the textures that carry a material's base (diffuse) colour."""
    refs = [material.get("pbrMetallicRoughness", {}).get("baseColorTexture")]
    spec_gloss = material.get("extensions", {}).get("KHR_materials_pbrSpecularGlossiness", {})
    refs.append(spec_gloss.get("diffuseTexture"))
    return [r["index"] for r in refs if isinstance(r, dict) and "index" in r]


def _texture_problem(doc: dict, index: int, binary: bytes, folder: Path) -> str | None:
    """Why texture `index` can't be decoded by trimesh, or None if it can."""
    textures, images = doc.get("textures", []), doc.get("images", [])
    if not 0 <= index < len(textures):
        return f"texture {index} does not exist ({len(textures)} textures)"
    texture = textures[index]
    source = texture.get("source", texture.get("extensions", {}).get("EXT_texture_webp", {}).get("source"))
    if source is None:  # KHR_texture_basisu, MSFT_texture_dds: trimesh has no decoder
        extensions = ", ".join(sorted(texture.get("extensions", {}))) or "none"
        return f"texture {index} has no plain image source, only extension source(s): {extensions}"
    if not 0 <= source < len(images):
        return f"texture {index} points to image {source}, which does not exist"
    image = images[source]
    if image.get("mimeType") in _UNDECODABLE or image.get("uri", "").lower().endswith(_UNDECODABLE_EXT):
        return f"image {source} is {image.get('mimeType') or image['uri']}, which cannot be decoded"
    try:
        Image.open(io.BytesIO(_image_bytes(doc, image, binary, folder)))  # reads the header only
    except (OSError, KeyError, IndexError, ValueError) as err:
        return f"image {source} cannot be read: {type(err).__name__}: {err}"
    return None


def textured_materials(doc: dict) -> set[str]:
    """Names of the materials that have a base-colour texture (so must load with an image)."""
    return {
        m.get("name", f"material_{i}")
        for i, m in enumerate(doc.get("materials", []))
        if _colour_texture_indices(m)
    }


def check_gltf_textures(path: Path) -> dict:
    """Raise if a material used by a mesh would lose its base-colour texture.

    Args:
        path: a .glb or .gltf file.

    Returns:
        The glTF JSON document, for later checks against what trimesh loaded.

    Raises:
        SceneError: naming the file, the material and why, e.g. "scene.basis.glb: material
            'wall' lost its base-colour texture: texture 0 has no plain image source, only
            extension source(s): KHR_texture_basisu".
    """
    doc, binary = read_gltf(path)
    materials = doc.get("materials", [])
    used = sorted(
        {
            p["material"]
            for mesh in doc.get("meshes", [])
            for p in mesh.get("primitives", [])
            if "material" in p
        }
    )
    for m in used:
        if not 0 <= m < len(materials):
            raise SceneError(f"{path}: a mesh uses material {m}, but the file has {len(materials)} materials")
        for index in _colour_texture_indices(materials[m]):
            problem = _texture_problem(doc, index, binary, path.parent)
            if problem:
                name = materials[m].get("name", f"material_{m}")
                raise SceneError(
                    f"{path}: material '{name}' lost its base-colour texture: {problem}. "
                    "trimesh would load it untextured (grey); for HM3D use <id>.glb, not <id>.basis.glb"
                )
    return doc
