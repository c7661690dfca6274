"""Optional habitat-sim backend: HM3D glb scenes rendered by habitat-sim's rasteriser.

UNTESTED HERE: habitat-sim has no pip wheel for Python 3.11 on Linux, so it is absent from
probe3r's environment and CI; only the missing-dependency error is tested. Install it with
`conda install habitat-sim -c conda-forge -c aihabitat` to use this backend.

habitat-sim renders RGB and z-depth of the scene file; the pointmap is the back-projected
depth (pixel-centre rays, as in the Embree backend), so it carries the rasteriser's
float32 depth precision rather than the Embree backend's float64 exactness. Geometry
queries (free-space tests, look-at targets, occlusion in correspondences) use the exact
Embree `RayCaster` on the same `Scene`. This assumes the Scene's world frame is the glb's
own frame, which is habitat-sim's world frame for a glb loaded without a dataset config
(y up); set `PairSamplingConfig.up` to (0, 1, 0) for such scenes. habitat-sim's sensor
axes are OpenGL's (x right, y up, z backwards); they are converted to OpenCV here.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import ConfigError, DependencyError
from pipeline.render.base import ViewRender
from pipeline.render.camera import Camera
from pipeline.render.raycast import RayCaster
from pipeline.scenes.base import Scene

INSTALL_HINT = (
    "habitat-sim is not installed; install it with "
    "`conda install habitat-sim -c conda-forge -c aihabitat` (there is no pip wheel for "
    "Python 3.11 on Linux), or use the default backend 'embree'"
)
_OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


class HabitatRenderer:
    """Renders a scene's glb file with habitat-sim; geometry queries use Embree.

    Attributes:
        scene: the scene; `scene.source` must be the path of its glb file.
        caster: exact ray caster over the same meshes.
    """

    backend = "habitat"

    def __init__(self, scene: Scene) -> None:
        try:
            import habitat_sim
        except ImportError as err:
            raise DependencyError(
                f"render backend 'habitat' for scene '{scene.scene_id}': {INSTALL_HINT}"
            ) from err
        if not scene.source.endswith(".glb"):
            raise ConfigError(
                f"render backend 'habitat' needs a glb scene file; scene '{scene.scene_id}' "
                f"comes from '{scene.source}'"
            )
        self._hs = habitat_sim
        self.scene = scene
        self.caster = RayCaster(scene)
        self._sim = None
        self._size: tuple[int, int, float] | None = None

    def _simulator(self, width: int, height: int, fov_x_deg: float):  # -> habitat_sim.Simulator
        """A simulator whose sensors match the camera; rebuilt only when they change."""
        if self._size == (width, height, fov_x_deg):
            return self._sim
        hs = self._hs
        if self._sim is not None:
            self._sim.close()
        sim_cfg = hs.SimulatorConfiguration()
        sim_cfg.scene_id = self.scene.source
        specs = []
        for uuid, kind in (("rgb", hs.SensorType.COLOR), ("depth", hs.SensorType.DEPTH)):
            spec = hs.CameraSensorSpec()
            spec.uuid, spec.sensor_type = uuid, kind
            spec.resolution = [height, width]
            spec.hfov = fov_x_deg
            spec.position = [0.0, 0.0, 0.0]
            specs.append(spec)
        agent = hs.agent.AgentConfiguration(sensor_specifications=specs)
        self._sim = hs.Simulator(hs.Configuration(sim_cfg, [agent]))
        self._size = (width, height, fov_x_deg)
        return self._sim

    def render(self, camera: Camera, *, shade: bool = True) -> ViewRender:
        """Render one view with habitat-sim (shade is ignored: RGB comes with the raster).

        Only centred, square-pixel cameras (`Camera.from_fov`) are supported, as that is
        all habitat-sim's pinhole sensor models.
        """
        K = camera.K
        W, H = camera.width, camera.height
        if not (np.isclose(K[0, 0], K[1, 1]) and np.allclose(K[:2, 2], [W / 2, H / 2])):
            raise ConfigError("render backend 'habitat': only centred square-pixel cameras are supported")
        fov_x = float(np.degrees(2 * np.arctan(W / (2 * K[0, 0]))))
        sim = self._simulator(W, H, fov_x)
        R = camera.cam_to_world[:3, :3] @ _OPENCV_TO_OPENGL
        state = self._hs.AgentState()
        state.position = camera.center.astype(np.float32)
        state.rotation = _quat_from_matrix(R)
        sim.get_agent(0).set_state(state)
        obs = sim.get_sensor_observations()
        rgb = np.asarray(obs["rgb"])[..., :3].astype(np.uint8)
        depth = np.asarray(obs["depth"], np.float64)
        valid = depth > 0
        _, dirs = camera.pixel_rays()
        pts = camera.center + dirs * depth.reshape(-1, 1)
        pts[~valid.ravel()] = np.nan
        rgb[~valid] = 0
        return ViewRender(
            camera=camera,
            rgb=rgb,
            depth=np.where(valid, depth, 0.0),
            pts_world=pts.reshape(H, W, 3),
            valid=valid,
            face=np.full((H, W), -1, np.int64),
        )


def _quat_from_matrix(R: np.ndarray):  # -> quaternion.quaternion (numpy-quaternion, a habitat-sim dependency)
    import quaternion

    return quaternion.from_rotation_matrix(R)
