"""Find materials whose texture trimesh would silently drop, by reading the glTF JSON.

Why: trimesh only follows a texture's plain `source` image. A texture whose image comes
only through an extension (KHR_texture_basisu in HM3D's `*.basis.glb`, EXT_texture_webp,
MSFT_texture_dds) or in a format PIL cannot decode (KTX2, DDS) loads as an untextured
material, and the scene renders as flat grey with no error. Reading the JSON chunk
ourselves names the file and material before that happens.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from urllib.parse import unquote

from pipeline.errors import SceneError

_GLB_MAGIC = b"glTF"
_JSON_CHUNK = 0x4E4F534A
_UNDECODABLE = ("image/ktx2", "image/vnd-ms.dds", "image/basis")
_UNDECODABLE_EXT = (".ktx2", ".ktx", ".dds", ".basis")


def read_gltf_json(path: Path) -> dict:
    """The glTF JSON document of a .glb (its first chunk) or .gltf file.

    Raises:
        SceneError: not a glTF file, or a corrupt header or JSON.
    """
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".gltf":
            return json.loads(raw)
        if raw[:4] != _GLB_MAGIC or len(raw) < 20:
            raise SceneError(f"{path}: not a binary glTF file (no 'glTF' header)")
        length, kind = struct.unpack_from("<II", raw, 12)
        if kind != _JSON_CHUNK or 20 + length > len(raw):
            raise SceneError(f"{path}: corrupt glb, first chunk is not a complete JSON chunk")
        return json.loads(raw[20 : 20 + length])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SceneError(f"{path}: cannot read glTF JSON: {err}") from err


def _colour_texture_indices(material: dict) -> list[int]:
    """Indices of the textures that carry a material's base (diffuse) colour."""
    refs = [material.get("pbrMetallicRoughness", {}).get("baseColorTexture")]
    spec_gloss = material.get("extensions", {}).get("KHR_materials_pbrSpecularGlossiness", {})
    refs.append(spec_gloss.get("diffuseTexture"))
    return [r["index"] for r in refs if isinstance(r, dict) and "index" in r]


def _texture_problem(doc: dict, index: int, folder: Path) -> str | None:
    """Why texture `index` can't be decoded by trimesh, or None if it can."""
    textures, images = doc.get("textures", []), doc.get("images", [])
    if not 0 <= index < len(textures):
        return f"texture {index} does not exist ({len(textures)} textures)"
    texture = textures[index]
    if "source" not in texture:
        extensions = ", ".join(sorted(texture.get("extensions", {}))) or "none"
        return f"texture {index} has no plain image source, only extension source(s): {extensions}"
    if not 0 <= texture["source"] < len(images):
        return f"texture {index} points to image {texture['source']}, which does not exist"
    image = images[texture["source"]]
    uri = image.get("uri", "")
    if image.get("mimeType") in _UNDECODABLE or uri.lower().endswith(_UNDECODABLE_EXT):
        return f"image {texture['source']} is {image.get('mimeType') or uri}, which cannot be decoded"
    if uri and not uri.startswith("data:") and not (folder / unquote(uri)).is_file():
        return f"image file {folder / unquote(uri)} is missing"
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
    doc = read_gltf_json(path)
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
            problem = _texture_problem(doc, index, path.parent)
            if problem:
                name = materials[m].get("name", f"material_{m}")
                raise SceneError(
                    f"{path}: material '{name}' lost its base-colour texture: {problem}. "
                    "trimesh would load it untextured (grey); for HM3D use <id>.glb, not <id>.basis.glb"
                )
    return doc
