"""list_scenes / load_scene: procedural splits, HM3D and generic folders, split files, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import trimesh

from pipeline.errors import ConfigError, SceneError
from pipeline.scenes.catalog import SceneRef, list_scenes, load_scene
from pipeline.scenes.splits import SPLITS, apportion, is_test_from_val

WHITE = (255, 255, 255, 255)
HM3D_VAL = [
    "00800-TEEsavR23oF",
    "00801-HaxA7YrQdEC",
    "00802-wcojb4TFT35",
    "00803-k1cupFYWXJ6",
    "00804-BHXhpBwSMLh",
]


@pytest.fixture
def hm3d(tmp_path, write_glb, basisify, gradient_image) -> Path:
    """HM3D's glb release as unpacked: <root>/{train,val}/<NNNNN-id>/<id>[.basis|.semantic].glb."""
    root = tmp_path / "hm3d"

    def scene(split, folder, *, plain=True, basis=True):
        short = folder.split("-", 1)[1]
        d = root / split / folder
        src = write_glb(d / f"{short}.glb", [(gradient_image, f"mat_{short}", np.eye(4), WHITE)])
        if basis:
            basisify(src, d / f"{short}.basis.glb")
            (d / f"{short}.basis.navmesh").write_bytes(b"\0")
        if not plain:
            src.unlink()

    scene("train", "00000-kfPV7w3FaU5")
    (root / "train" / "00000-kfPV7w3FaU5" / "kfPV7w3FaU5.semantic.glb").write_bytes(b"not read")
    scene("train", "00001-UVdNNRcVyV1", plain=False)
    for folder in HM3D_VAL:
        scene("val", folder, basis=False)
    return root


class TestProcedural:
    def test_exact_shares_by_scene(self):
        refs = list_scenes("procedural", n_scenes=20, seed=0)
        assert [r.index for r in refs] == list(range(20))
        assert Counter(r.split for r in refs) == {"train": 16, "val": 2, "test": 2}
        assert refs == list_scenes("procedural", n_scenes=20, seed=0)
        assert [r.split for r in refs] != [r.split for r in list_scenes("procedural", n_scenes=20, seed=1)]

    def test_a_larger_population_extends_a_smaller_ones_split(self):
        small = [r.split for r in list_scenes("procedural", n_scenes=16, seed=5)]
        large = [r.split for r in list_scenes("procedural", n_scenes=1000, seed=5)]
        assert large[:16] == small  # a room keeps its split whatever the store's size
        counts = Counter(large)
        assert (
            abs(counts["train"] - 800) <= 1
            and abs(counts["val"] - 100) <= 1
            and abs(counts["test"] - 100) <= 1
        )
        for n in range(1, 60):  # every prefix within about one room of its shares
            prefix = Counter(large[:n])
            assert all(
                abs(prefix[name] - share * n) < 2 for name, share in zip(SPLITS, (0.8, 0.1, 0.1), strict=True)
            )

    def test_small_runs_still_have_every_split(self):
        assert apportion(3, [0.8, 0.1, 0.1]) == [1, 1, 1]
        assert Counter(r.split for r in list_scenes("procedural", n_scenes=4, seed=3)) == {
            "train": 2,
            "val": 1,
            "test": 1,
        }

    def test_split_filter_and_fractions(self):
        refs = list_scenes(
            "procedural", n_scenes=10, seed=0, splits=("val",), split_fractions=(0.5, 0.5, 0.0)
        )
        assert len(refs) == 5 and {r.split for r in refs} == {"val"}

    def test_load_scene_gives_the_listed_room(self):
        ref = list_scenes("procedural", n_scenes=3, seed=4)[2]
        scene = load_scene(ref, seed=4)
        assert (
            (scene.scene_id, scene.split) == (ref.scene_id, ref.split) == ("procedural-4-000002", ref.split)
        )

    def test_errors(self):
        with pytest.raises(ConfigError, match="n_scenes is required for procedural"):
            list_scenes("procedural", n_scenes=None, seed=0)
        with pytest.raises(ConfigError, match=r"Unknown split 'tset'\. Did you mean 'test'\?"):
            list_scenes("procedural", n_scenes=5, seed=0, splits=("tset",))
        with pytest.raises(
            ConfigError, match=r"split_fractions must be 3 non-negative numbers.*got \[0\.8, 0\.3, 0\.1\]"
        ):
            list_scenes("procedural", n_scenes=5, seed=0, split_fractions=(0.8, 0.3, 0.1))
        ref = list_scenes("procedural", n_scenes=2, seed=0)[0]
        with pytest.raises(ConfigError, match="listed with another seed"):
            load_scene(ref, seed=1)


class TestHm3dLayout:
    def test_listing_ids_splits_and_files(self, hm3d):
        refs = list_scenes(str(hm3d), n_scenes=None, seed=0)
        got = {r.scene_id: (r.split, Path(r.source).relative_to(hm3d).as_posix()) for r in refs}
        expected = {
            "00000-kfPV7w3FaU5": ("train", "train/00000-kfPV7w3FaU5/kfPV7w3FaU5.glb"),  # plain over basis
            "00001-UVdNNRcVyV1": ("train", "train/00001-UVdNNRcVyV1/UVdNNRcVyV1.basis.glb"),
        }
        for folder in HM3D_VAL:
            short = folder.split("-", 1)[1]
            expected[folder] = ("test" if is_test_from_val(folder) else "val", f"val/{folder}/{short}.glb")
        assert got == expected
        assert {"val", "test"} <= {s for s, _ in got.values()}  # these ids land on both sides
        assert [r.index for r in refs] == list(range(len(refs)))

    def test_load_plain_and_basis(self, hm3d):
        refs = {r.scene_id: r for r in list_scenes(str(hm3d), n_scenes=None, seed=0)}
        scene = load_scene(refs["00000-kfPV7w3FaU5"], seed=0)
        assert scene.split == "train" and scene.meshes[0].texture is not None
        with pytest.raises(
            SceneError, match=r"UVdNNRcVyV1\.basis\.glb: material 'mat_UVdNNRcVyV1' lost its base-colour"
        ):
            load_scene(refs["00001-UVdNNRcVyV1"], seed=0)

    def test_split_file_overrides_folders(self, hm3d):
        (hm3d / "minival" / "00800-TEEsavR23oF").mkdir(parents=True)  # unrelated folders are ignored
        (hm3d / "splits.yaml").write_text("train: [TEEsavR23oF, 00801-HaxA7YrQdEC]\ntest: [kfPV7w3FaU5]\n")
        refs = list_scenes(str(hm3d), n_scenes=None, seed=0)
        assert [(r.scene_id, r.split) for r in refs] == [
            ("00000-kfPV7w3FaU5", "test"),
            ("00800-TEEsavR23oF", "train"),
            ("00801-HaxA7YrQdEC", "train"),
        ]

    def test_split_file_errors(self, hm3d):
        (hm3d / "splits.yaml").write_text("train: [nothere]\n")
        with pytest.raises(SceneError, match=r"splits\.yaml: train scene 'nothere' not found under .*hm3d"):
            list_scenes(str(hm3d), n_scenes=None, seed=0)
        (hm3d / "splits.yaml").write_text("trian: [kfPV7w3FaU5]\n")
        with pytest.raises(SceneError, match=r"splits\.yaml: Unknown split 'trian'\. Did you mean 'train'\?"):
            list_scenes(str(hm3d), n_scenes=None, seed=0)


class TestGenericLayout:
    @pytest.fixture
    def root(self, tmp_path, write_glb, gradient_image) -> Path:
        root = tmp_path / "scenes"
        for split, n in (("train", 6), ("val", 2), ("test", 2)):
            for i in range(n):
                write_glb(root / split / f"{split}_{i}.glb", [(gradient_image, "m", np.eye(4), WHITE)])
        trimesh.creation.box().export(root / "train" / "zbox.ply")
        return root

    def test_folder_splits_and_formats(self, root):
        refs = list_scenes(str(root), n_scenes=None, seed=0)
        assert Counter(r.split for r in refs) == {
            "train": 7,
            "val": 2,
            "test": 2,
        }  # test folder: no derivation
        assert load_scene(next(r for r in refs if r.scene_id == "zbox"), seed=0).n_faces == 12

    def test_cap_is_shared_among_splits(self, root):
        refs = list_scenes(str(root), n_scenes=5, seed=0)
        assert [(r.scene_id, r.split) for r in refs] == [
            ("test_0", "test"),
            ("train_0", "train"),
            ("train_1", "train"),
            ("train_2", "train"),
            ("val_0", "val"),
        ]
        assert refs == list_scenes(str(root), n_scenes=5, seed=99)  # folder splits ignore the seed

    def test_missing_and_malformed_folders(self, tmp_path):
        with pytest.raises(
            SceneError, match=r"scene folder .*nowhere does not exist; expected <root>/<split>/<scene>\.glb"
        ):
            list_scenes(str(tmp_path / "nowhere"), n_scenes=None, seed=0)
        (tmp_path / "flat").mkdir()
        with pytest.raises(SceneError, match=r"flat has no split folders and no splits\.yaml; expected"):
            list_scenes(str(tmp_path / "flat"), n_scenes=None, seed=0)
        (tmp_path / "empty" / "val" / "00800-x").mkdir(parents=True)
        with pytest.raises(SceneError, match=r"00800-x: scene folder has no \.glb/\.gltf/\.ply/\.obj mesh"):
            list_scenes(str(tmp_path / "empty"), n_scenes=None, seed=0)

    def test_garbage_mesh_in_folder_fails_at_load_naming_it(self, root):
        (root / "val" / "broken.glb").write_bytes(b"\x00garbage" * 10)
        ref = next(r for r in list_scenes(str(root), n_scenes=None, seed=0) if r.scene_id == "broken")
        with pytest.raises(SceneError, match=r"broken\.glb: not a binary glTF file"):
            load_scene(ref, seed=0)


def test_scene_ref_is_hashable_and_frozen():
    ref = SceneRef("a", "train", "procedural", 0)
    assert {ref: 1}[ref] == 1
    with pytest.raises(AttributeError):
        ref.split = "val"  # type: ignore[misc]
