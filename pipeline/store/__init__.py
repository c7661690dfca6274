"""Zarr stores: the schema in store_schema.yaml, writers that follow it, validation, readers."""
