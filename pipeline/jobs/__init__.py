"""Whole-stage jobs: tie library parts to stores, split work by shards, run it in parallel."""
