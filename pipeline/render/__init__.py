"""Cameras, the ray-cast renderer, pair sampling with overlap control, correspondences."""
