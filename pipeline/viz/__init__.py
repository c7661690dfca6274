"""See it: static figures, self-contained HTML viewers (4D pointmaps, attention) and the report."""
