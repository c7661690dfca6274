"""Scene sources: procedural rooms (the default), mesh files (glb/gltf, ply, obj; HM3D's
release layout), and habitat-sim as an optional backend. All produce `Scene` objects."""
