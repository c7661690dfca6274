"""Thin typer commands, one module per pipeline stage: parse options, call `pipeline`, log."""
