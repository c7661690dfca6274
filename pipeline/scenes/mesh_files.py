"""Read mesh files (glb/gltf, ply, obj) into a `Scene` with trimesh, and write scenes as glb.

Reading walks trimesh's scene graph so every node's world transform is applied (HM3D and
most exported glbs place meshes through nodes), then keeps each mesh's surface colour in
the one form `TexturedMesh` allows: a texture with uv (glTF baseColorFactor folded into
the texels), vertex colours (ply; face colours become per-corner vertex colours), or a
flat colour. A material that should have a texture but lost it is an error, never grey.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image
from trimesh.visual.material import PBRMaterial

from pipeline.errors import SceneError
from pipeline.scenes.base import Scene, TexturedMesh
from pipeline.scenes.gltf_checks import check_gltf_textures, textured_materials
from pipeline.scenes.layout import MESH_SUFFIXES

# World up by format, since only glTF defines one: glTF is y-up by spec (HM3D included;
# habitat-sim's HM3D stage config says up [0, 1, 0]); obj follows the y-up convention of
# the modelling tools that write it; ply is mostly scanner output, which is z-up.
UP_BY_SUFFIX = {
    ".glb": (0.0, 1.0, 0.0),
    ".gltf": (0.0, 1.0, 0.0),
    ".obj": (0.0, 1.0, 0.0),
    ".ply": (0.0, 0.0, 1.0),
}


def _mtl_textured_materials(obj_path: Path) -> set[str]:
    """Names of the .mtl materials with a diffuse map (map_Kd), for the lost-texture check."""
    names: set[str] = set()
    text = obj_path.read_text(errors="replace")
    for lib in re.findall(r"^mtllib\s+(.+?)\s*$", text, flags=re.MULTILINE):
        mtl = obj_path.parent / lib
        current = None
        for line in mtl.read_text(errors="replace").splitlines() if mtl.is_file() else []:
            parts = line.split(maxsplit=1)
            if parts and parts[0] == "newmtl" and len(parts) == 2:
                current = parts[1].strip()
            elif parts and parts[0] == "map_Kd" and current is not None:
                names.add(current)
    return names


def _colour(geom: trimesh.Trimesh, path: Path) -> dict:
    """TexturedMesh colour fields (uv/texture, vertex_colors or base_color) of one geometry."""
    visual = geom.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        mat = visual.material
        if isinstance(mat, PBRMaterial):
            image, factor = mat.baseColorTexture, mat.baseColorFactor
        else:  # SimpleMaterial (obj/mtl): the map is the colour, Kd only when there is no map
            image, factor = getattr(mat, "image", None), None
        rgb = np.asarray(factor if factor is not None else mat.main_color, np.float64)[:3]
        colors = visual.vertex_attributes.get("color")  # glTF COLOR_0 of a primitive with a material
        if image is None and colors is not None and len(colors) == len(geom.vertices):
            tinted = np.asarray(colors, np.float64)[:, :3] * (rgb / 255.0 if factor is not None else 1.0)
            return {"vertex_colors": np.round(tinted).astype(np.uint8)}  # glTF: factor x COLOR_0
        if image is None:
            return {"base_color": rgb.astype(np.uint8)}
        if visual.uv is None or len(visual.uv) != len(geom.vertices):
            raise SceneError(f"{path}: material '{mat.name}' has a texture but mesh has no uv per vertex")
        try:  # PIL decodes lazily: a corrupt image body only fails here
            texels = np.asarray(image.convert("RGB"), np.float64)
        except (OSError, ValueError) as err:
            raise SceneError(f"{path}: material '{mat.name}' texture cannot be decoded: {err}") from err
        texture = texels * (rgb / 255.0 if factor is not None else 1.0)
        return {"uv": np.asarray(visual.uv, np.float64), "texture": np.round(texture).astype(np.uint8)}
    if visual.kind == "vertex":
        return {"vertex_colors": np.asarray(visual.vertex_colors[:, :3], np.uint8)}
    return {}


def _meshes(loaded: trimesh.Scene, path: Path, expect_texture: set[str]) -> list[TexturedMesh]:
    out = []
    order = {name: i for i, name in enumerate(loaded.geometry)}  # file order, not graph-hash order
    nodes = sorted(loaded.graph.nodes_geometry, key=lambda n: (order[loaded.graph[n][1]], str(n)))
    for node in nodes:
        transform, geom_name = loaded.graph[node]
        geom = loaded.geometry[geom_name]
        if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
            continue  # point clouds and lines have no surface to render
        if geom.visual.kind == "face":  # one colour per face → unshared corners
            geom = geom.copy()
            geom.unmerge_vertices()
            geom.visual = trimesh.visual.ColorVisuals(
                geom, vertex_colors=np.repeat(geom.visual.face_colors, 3, 0)
            )
        colour = _colour(geom, path)
        mat_name = getattr(getattr(geom.visual, "material", None), "name", None)
        if mat_name in expect_texture and "texture" not in colour:
            raise SceneError(
                f"{path}: material '{mat_name}' lost its base-colour texture (image missing or undecodable)"
            )
        faces = np.asarray(geom.faces, np.int64)
        if np.linalg.det(transform[:3, :3]) < 0:  # a mirroring node would turn faces inside out
            faces = faces[:, ::-1]
        out.append(
            TexturedMesh(
                name=str(geom_name),
                vertices=trimesh.transform_points(np.asarray(geom.vertices, np.float64), transform),
                faces=faces,
                **colour,
            )
        )
    return out


def load_mesh_scene(path: Path, *, scene_id: str | None = None, split: str = "train") -> Scene:
    """Read a .glb, .gltf, .ply or .obj file as a Scene in the file's own world frame.

    The scene's `up` is the format's convention (`UP_BY_SUFFIX`): y for glTF and obj, z
    for ply.

    Args:
        path: the mesh file; an .obj's .mtl and images are looked up beside it.
        scene_id: defaults to the file name without suffix.
        split: split recorded on the scene.

    Raises:
        SceneError: naming the path when the file is missing, not a mesh, unreadable, has
            no triangles, or a material lost its texture (naming the material too).

    Example:
        >>> load_mesh_scene(Path("room.glb")).meshes[0].texture.shape
        (1024, 1024, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise SceneError(f"{path}: mesh file does not exist")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise SceneError(
            f"{path}: unsupported mesh format '{suffix}'; expected one of {', '.join(MESH_SUFFIXES)}"
        )
    expect_texture: set[str] = set()
    if suffix in (".glb", ".gltf"):
        expect_texture = textured_materials(check_gltf_textures(path))
    elif suffix == ".obj":
        expect_texture = _mtl_textured_materials(path)
    try:
        loaded = trimesh.load(path, force="scene", process=False)
    except Exception as err:  # trimesh raises many types for bad files; all mean "unreadable"
        raise SceneError(f"{path}: cannot read {suffix} file: {type(err).__name__}: {err}") from err
    meshes = _meshes(loaded, path, expect_texture)
    if not meshes:
        raise SceneError(f"{path}: no triangle meshes found (empty, a point cloud, or not a {suffix} file)")
    return Scene(
        scene_id=scene_id or path.name[: -len(path.suffix)],
        split=split,
        meshes=tuple(meshes),
        source=str(path),
        up=UP_BY_SUFFIX[suffix],
    )


def _rotation_to_y(up: np.ndarray) -> np.ndarray:
    """(4, 4) smallest rotation taking `up` to +y (z-up → y-up maps y to -z, as Blender does)."""
    up = up / np.linalg.norm(up)
    axis = np.cross(up, [0.0, 1.0, 0.0])
    if np.linalg.norm(axis) < 1e-12:  # already +y, or -y: turn half-way round x
        axis = np.array([1.0, 0.0, 0.0])
    return trimesh.transformations.rotation_matrix(np.arccos(np.clip(up[1], -1, 1)), axis)


def export_glb(scene: Scene, path: Path) -> None:
    """Write a Scene as a binary glTF: one node per mesh, PNG base-colour textures, REPEAT wrap.

    glTF is y-up, so each node carries the rotation taking `scene.up` to +y: viewers show
    the scene upright and `load_mesh_scene` gives back the vertices rotated by it (to
    float32 precision), with up = (0, 1, 0) and the same faces, uv and texels (lossless
    PNG, white baseColorFactor).
    """
    to_y_up = _rotation_to_y(np.asarray(scene.up, np.float64))
    out = trimesh.Scene()
    for mesh in scene.meshes:
        geom = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
        if mesh.texture is not None:
            material = PBRMaterial(
                name=mesh.name,
                baseColorTexture=Image.fromarray(mesh.texture),
                baseColorFactor=[255, 255, 255, 255],
                metallicFactor=0.0,
                roughnessFactor=1.0,
            )
            geom.visual = trimesh.visual.TextureVisuals(uv=mesh.uv, material=material)
        elif mesh.vertex_colors is not None:
            geom.visual = trimesh.visual.ColorVisuals(geom, vertex_colors=mesh.vertex_colors)
        else:
            material = PBRMaterial(name=mesh.name, baseColorFactor=[*mesh.base_color.tolist(), 255])
            geom.visual = trimesh.visual.TextureVisuals(material=material)
        out.add_geometry(geom, geom_name=mesh.name, node_name=mesh.name, transform=to_y_up)
    Path(path).write_bytes(out.export(file_type="glb"))
