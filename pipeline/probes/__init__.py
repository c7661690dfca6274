"""Per-patch probes that decode pointmaps (or depth) from any residual-stream location."""
