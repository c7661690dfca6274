"""Mesh files → Scene: transforms, textures, vertex colours, and the errors that replace grey scenes."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import trimesh
from PIL import Image

from pipeline.errors import SceneError
from pipeline.scenes.mesh_files import export_glb, load_mesh_scene
from pipeline.scenes.procedural import generate_room

WHITE = (255, 255, 255, 255)


class TestGlb:
    def test_round_trip_procedural_room(self, tmp_path):
        room = generate_room(3, 1)
        export_glb(room, tmp_path / "room.glb")
        back = load_mesh_scene(tmp_path / "room.glb", scene_id=room.scene_id)
        assert room.up == (0, 0, 1) and back.up == (0, 1, 0)  # the file is y-up, as glTF requires
        z_up_to_y_up = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]])
        assert [m.name for m in back.meshes] == [m.name for m in room.meshes]
        for a, b in zip(room.meshes, back.meshes, strict=True):
            np.testing.assert_allclose(b.vertices, a.vertices @ z_up_to_y_up.T, atol=1e-5)  # float32 in file
            np.testing.assert_array_equal(b.faces, a.faces)
            np.testing.assert_allclose(b.uv, a.uv, atol=1e-5)
            np.testing.assert_array_equal(b.texture, a.texture)
        assert max(float(m.uv.max()) for m in back.meshes) > 1  # tiling (REPEAT) survives the file

    def test_multi_mesh_node_transforms_and_two_textures(self, tmp_path, write_glb, gradient_image):
        move = trimesh.transformations.translation_matrix([2.0, 0.0, 5.0])
        turn = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1])
        other = 255 - gradient_image
        path = write_glb(
            tmp_path / "two.glb", [(gradient_image, "a", move, WHITE), (other, "b", turn, WHITE)]
        )
        scene = load_mesh_scene(path)
        assert scene.up == (0, 1, 0)  # glTF is y-up
        a, b = scene.meshes
        np.testing.assert_allclose(a.vertices, [[2, 0, 5], [3, 0, 5], [3, 1, 5], [2, 1, 5]], atol=1e-6)
        np.testing.assert_allclose(b.vertices, [[0, 0, 0], [0, 1, 0], [-1, 1, 0], [-1, 0, 0]], atol=1e-6)
        np.testing.assert_array_equal(a.texture, gradient_image)
        np.testing.assert_array_equal(b.texture, other)
        np.testing.assert_allclose(a.uv, [[0, 0], [1, 0], [1, 1], [0, 1]], atol=1e-6)  # v up, as trimesh

    def test_base_color_factor_is_folded_into_texture(self, tmp_path, write_glb, gradient_image):
        path = write_glb(tmp_path / "f.glb", [(gradient_image, "half", np.eye(4), (255, 128, 0, 255))])
        tex = load_mesh_scene(path).meshes[0].texture
        expected = np.round(gradient_image * (np.array([255, 128, 0]) / 255.0)).astype(np.uint8)
        np.testing.assert_allclose(tex.astype(int), expected.astype(int), atol=1)

    def test_basis_texture_is_an_error_naming_file_and_material(
        self, tmp_path, write_glb, basisify, gradient_image
    ):
        src = write_glb(tmp_path / "plain.glb", [(gradient_image, "wall_paint", np.eye(4), WHITE)])
        bad = basisify(src, tmp_path / "kfPV7w3FaU5.basis.glb")
        with pytest.raises(
            SceneError, match=r"kfPV7w3FaU5\.basis\.glb: material 'wall_paint' lost its base-colour texture"
        ) as err:
            load_mesh_scene(bad)
        assert "KHR_texture_basisu" in str(err.value)

    def test_gltf_with_external_buffers(self, tmp_path, write_glb, gradient_image):
        glb = write_glb(tmp_path / "a.glb", [(gradient_image, "paint", np.eye(4), WHITE)])
        files = trimesh.load(glb).export(file_type="gltf")
        for name, data in files.items():
            (tmp_path / name).write_bytes(data)
        mesh = load_mesh_scene(tmp_path / "model.gltf").meshes[0]
        np.testing.assert_array_equal(mesh.texture, gradient_image)

    @pytest.mark.parametrize(
        ("keep", "message"), [(20, "image 0 cannot be read"), (60, "texture cannot be decoded")]
    )
    def test_corrupt_embedded_image_is_an_error(self, tmp_path, write_glb, gradient_image, keep, message):
        """A broken PNG header fails the JSON check; a broken body fails at decode. Never grey."""
        raw = bytearray(
            write_glb(tmp_path / "ok.glb", [(gradient_image, "tile", np.eye(4), WHITE)]).read_bytes()
        )
        start = raw.index(b"\x89PNG")
        raw[start + keep : start + keep + 200] = bytes(200)
        (tmp_path / "bad.glb").write_bytes(raw)
        with pytest.raises(SceneError, match=rf"bad\.glb: material 'tile'.*{message}"):
            load_mesh_scene(tmp_path / "bad.glb")

    @pytest.mark.parametrize("factor", [None, [0.5, 1.0, 0.25, 1.0]])
    def test_vertex_colours_of_a_primitive_with_a_material_are_kept(self, tmp_path, factor):
        """Blender-style exports: COLOR_0 plus a plain material; glTF colour = factor x COLOR_0."""
        box = trimesh.creation.box()
        colours = np.random.default_rng(2).integers(0, 256, (len(box.vertices), 3), dtype=np.uint8)
        box.visual = trimesh.visual.ColorVisuals(
            box, vertex_colors=np.c_[colours, np.full(len(colours), 255)]
        )
        raw = trimesh.Scene(box).export(file_type="glb")
        length = struct.unpack_from("<I", raw, 12)[0]
        doc = json.loads(raw[20 : 20 + length])
        material = {"name": "paint", "pbrMetallicRoughness": {}}
        if factor is not None:
            material["pbrMetallicRoughness"]["baseColorFactor"] = factor
        doc["materials"] = [material]
        doc["meshes"][0]["primitives"][0]["material"] = 0
        text = json.dumps(doc).encode()
        text += b" " * (-len(text) % 4)
        rest = raw[20 + length :]
        glb = (
            raw[:8]
            + struct.pack("<I", 20 + len(text) + len(rest))
            + struct.pack("<II", len(text), 0x4E4F534A)
        )
        (tmp_path / "painted.glb").write_bytes(glb + text + rest)
        mesh = load_mesh_scene(tmp_path / "painted.glb").meshes[0]
        order = [
            int(np.argmin(np.linalg.norm(box.vertices - v, axis=1)))
            for v in mesh.vertices @ np.diag([1, 1, 1])
        ]
        scale = np.asarray(factor[:3] if factor else [1.0, 1.0, 1.0])
        assert mesh.texture is None and mesh.vertex_colors is not None
        # trimesh keeps the factor in 8 bits (0.5 -> 128/255): within one level of the exact product
        np.testing.assert_allclose(mesh.vertex_colors, colours[order] * scale, atol=1)

    @pytest.mark.parametrize("body", ["[1, 2]", '"scene"', "3"])
    def test_gltf_json_that_is_not_an_object_is_a_scene_error(self, tmp_path, body):
        (tmp_path / "odd.gltf").write_text(body)
        with pytest.raises(SceneError, match=r"odd\.gltf: glTF JSON is a \w+, expected an object"):
            load_mesh_scene(tmp_path / "odd.gltf")

    def test_garbage_bytes_name_the_file(self, tmp_path):
        for suffix in (".glb", ".ply", ".obj"):
            path = tmp_path / f"junk{suffix}"
            path.write_bytes(os.urandom(256))
            with pytest.raises(SceneError, match=rf"junk\{suffix}"):
                load_mesh_scene(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(SceneError, match=r"nope\.glb: mesh file does not exist"):
            load_mesh_scene(tmp_path / "nope.glb")

    def test_unsupported_suffix(self, tmp_path):
        (tmp_path / "a.stl").write_text("solid")
        with pytest.raises(SceneError, match=r"a\.stl: unsupported mesh format '\.stl'"):
            load_mesh_scene(tmp_path / "a.stl")


class TestPly:
    def test_vertex_colours(self, tmp_path):
        box = trimesh.creation.box()
        colours = np.random.default_rng(0).integers(0, 256, (len(box.vertices), 3), dtype=np.uint8)
        box.visual.vertex_colors = np.c_[colours, np.full(len(colours), 255, np.uint8)]
        box.export(tmp_path / "box.ply")
        scene = load_mesh_scene(tmp_path / "box.ply")
        mesh = scene.meshes[0]
        assert mesh.texture is None and scene.up == (0, 0, 1)  # ply: scanner convention
        order = [int(np.argmin(np.linalg.norm(box.vertices - v, axis=1))) for v in mesh.vertices]
        np.testing.assert_array_equal(mesh.vertex_colors, colours[order])

    def test_face_colours_become_corner_colours(self, tmp_path):
        box = trimesh.creation.box()
        faces = np.random.default_rng(1).integers(0, 256, (len(box.faces), 3), dtype=np.uint8)
        box.visual.face_colors = np.c_[faces, np.full(len(faces), 255, np.uint8)]
        box.export(tmp_path / "faces.ply")
        mesh = load_mesh_scene(tmp_path / "faces.ply").meshes[0]
        np.testing.assert_array_equal(mesh.vertex_colors[mesh.faces[:, 0]], faces)
        np.testing.assert_array_equal(mesh.vertex_colors[mesh.faces[:, 2]], faces)


class TestObj:
    def _write(self, folder, image):
        box = trimesh.creation.box()
        uv = np.random.default_rng(0).random((len(box.vertices), 2))
        box.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(image))
        obj, files = trimesh.exchange.obj.export_obj(
            box, include_texture=True, mtl_name="box.mtl", return_texture=True
        )
        folder.mkdir(exist_ok=True)
        (folder / "box.obj").write_text(obj)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return folder / "box.obj", files

    def test_mtl_texture(self, tmp_path, gradient_image):
        path, _ = self._write(tmp_path / "obj", gradient_image)
        mesh = load_mesh_scene(path).meshes[0]
        np.testing.assert_array_equal(mesh.texture, gradient_image)  # Kd does not tint a mapped texture
        assert mesh.uv.shape == (len(mesh.vertices), 2)

    def test_missing_texture_image_is_an_error(self, tmp_path, gradient_image):
        path, files = self._write(tmp_path / "obj", gradient_image)
        image_name = next(n for n in files if n.endswith(".png"))
        (path.parent / image_name).unlink()
        with pytest.raises(SceneError, match=r"box\.obj: material '.+' lost its base-colour texture"):
            load_mesh_scene(path)
