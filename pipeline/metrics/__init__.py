"""The paper's metrics: pointmap errors, depth, correspondence from attention, registers, statistics."""
