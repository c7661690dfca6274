"""Surface colour at ray hits: textures, vertex colours or flat colour, vectorised.

Per-face tables are built once per scene so that shading a view is a handful of numpy
gathers, not a loop over meshes: every face gets three corner colours (its vertex
colours, or its mesh's base colour three times, so flat and vertex-coloured faces share
one barycentric blend), and textured faces also get three corner uvs and a texture index.

Texture convention: uv is trimesh's (u right, v up; loaders already flipped glTF's
v-down). Texel (row i, column j) of an (Ht, Wt) texture has its centre at
u = (j + 0.5) / Wt, v = 1 - (i + 0.5) / Ht, as in OpenGL and glTF; sampling is bilinear
between the four nearest texel centres with repeat wrapping in both directions.
"""

from __future__ import annotations

import numpy as np

from pipeline.scenes.base import Scene


class Shader:
    """Per-face colour tables of one scene.

    Attributes:
        corner_rgb: (F, 3, 3) float32 RGB in [0, 255] at each face's three corners.
        corner_uv: (F, 3, 2) float64 uv at each corner; zeros on untextured faces.
        face_texture: (F,) int32 index into `textures`, -1 on untextured faces.
        textures: list of (Ht * Wt, 3) float32 texel tables with their (Ht, Wt) shapes.
    """

    def __init__(self, scene: Scene) -> None:
        rgb, uv, tex_id = [], [], []
        self.textures: list[tuple[np.ndarray, int, int]] = []
        for mesh in scene.meshes:
            n = len(mesh.faces)
            if mesh.vertex_colors is not None:
                rgb.append(np.asarray(mesh.vertex_colors, np.float32)[mesh.faces])
            else:
                rgb.append(np.broadcast_to(np.asarray(mesh.base_color, np.float32), (n, 3, 3)))
            if mesh.texture is not None:
                uv.append(np.asarray(mesh.uv, np.float64)[mesh.faces])
                tex_id.append(np.full(n, len(self.textures), np.int32))
                ht, wt = mesh.texture.shape[:2]
                self.textures.append((np.asarray(mesh.texture, np.float32).reshape(-1, 3), ht, wt))
            else:
                uv.append(np.zeros((n, 3, 2)))
                tex_id.append(np.full(n, -1, np.int32))
        self.corner_rgb = np.ascontiguousarray(np.concatenate(rgb))
        self.corner_uv = np.concatenate(uv)
        self.face_texture = np.concatenate(tex_id)

    def shade(self, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """Colour of N hits.

        Args:
            face: (N,) int64 global face indices, all >= 0.
            bary: (N, 3) float64 barycentric weights of the exact hits; clipped to the
                face here so float32-traversal slack never extrapolates a colour.

        Returns:
            (N, 3) uint8 RGB.
        """
        w = np.clip(bary, 0.0, 1.0)
        w /= w.sum(1, keepdims=True)
        w32 = w.astype(np.float32)
        out = np.einsum("nk,nkc->nc", w32, self.corner_rgb[face])
        tex = self.face_texture[face]
        textured = np.flatnonzero(tex >= 0)
        if textured.size:
            uv = np.einsum("nk,nkc->nc", w[textured], self.corner_uv[face[textured]])
            order = np.argsort(tex[textured], kind="stable")
            sorted_tex = tex[textured][order]
            bounds = np.searchsorted(sorted_tex, np.arange(len(self.textures) + 1))
            for k, (texels, ht, wt) in enumerate(self.textures):
                sel = order[bounds[k] : bounds[k + 1]]
                if sel.size:
                    out[textured[sel]] = sample_bilinear(texels, ht, wt, uv[sel])
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sample_bilinear(texels: np.ndarray, ht: int, wt: int, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup with repeat wrapping.

    Args:
        texels: (Ht * Wt, 3) float32 texture, row-major, row 0 at the top (v = 1).
        ht, wt: texture height and width in texels.
        uv: (N, 2) float64 texture coordinates, v up, any real values (they wrap).

    Returns:
        (N, 3) float32 RGB in [0, 255].
    """
    x = uv[:, 0] * wt - 0.5
    y = (1.0 - uv[:, 1]) * ht - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32)[:, None], (y - y0).astype(np.float32)[:, None]
    xa, ya = np.mod(x0, wt).astype(np.int64), np.mod(y0, ht).astype(np.int64)
    xb, yb = (xa + 1) % wt, (ya + 1) % ht
    top = texels[ya * wt + xa] * (1 - fx) + texels[ya * wt + xb] * fx
    bottom = texels[yb * wt + xa] * (1 - fx) + texels[yb * wt + xb] * fx
    return top * (1 - fy) + bottom * fy
