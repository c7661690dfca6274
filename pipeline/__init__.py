"""probe3r's library: scenes, rendering, the DUSt3R model, stores, probes, metrics and figures.

Nothing here parses command lines or decides file paths; the thin modules in `stages/`
do that and call into this package.
"""

__version__ = "0.1.0"
