"""Rebuild the model a features store was extracted with, for the head lens and interventions.

The store records the extract parameters and the weights' identity; building from those
parameters gives back the same model (a checkpoint's sha256, or the seeded random init),
and a mismatch is refused rather than silently evaluated against other weights.
"""

from __future__ import annotations

import zarr

from pipeline.errors import SchemaError
from pipeline.jobs.extract_model import ModelRunner
from pipeline.jobs.extract_params import ExtractParams
from pipeline.model.dust3r import Dust3r


def store_model(features: zarr.Group, *, device: str, where: str) -> Dust3r:
    """The model of a features store, in eval mode on `device`.

    Args:
        features: an open features store.
        device: "auto", "cpu" or "cuda[:i]".
        where: the store's path, for messages.

    Raises:
        SchemaError: the store lacks its extract parameters, or the rebuilt weights differ.
    """
    params = features.attrs.get("params")
    if not isinstance(params, dict):
        raise SchemaError(f"{where}: no extract `params` attribute; cannot rebuild its model")
    runner = ModelRunner.from_params(ExtractParams.from_dict({**params, "device": device}))
    stored = features.attrs.get("model_weights")
    if runner.weights_id != stored:
        raise SchemaError(
            f"{where}: model_weights is {stored!r} but its parameters rebuild {runner.weights_id!r}"
        )
    return runner.model.eval()
