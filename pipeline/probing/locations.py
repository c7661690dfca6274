"""The one spelling of every place in DUSt3R that probe3r reads or changes.

Stream locations name DUSt3R's residual stream of one view (view 1 flows through decoder 1,
view 2 through decoder 2); every location exists for both views:

* `enc`: encoder output after `enc_norm`, (B, N, D_enc). The encoder is shared.
* `dec_in`: `decoder_embed` output, the decoder's input stream, (B, N, D).
* `bXX.self`: the stream after block XX's self-attention output has been added.
* `bXX.cross`: the stream after block XX's cross-attention output has been added.
* `bXX.mlp`: the stream after block XX's MLP output has been added, i.e. the block's output.
  For the last block this is before the shared `dec_norm` (the head reads `dec_norm(bLL.mlp)`).

Sublayer locations (`.out`) name what one sublayer adds to the stream, before the add:

* `bXX.self.out`, `bXX.cross.out`, `bXX.mlp.out`, each (B, N, D), so that
  `bXX.cross == bXX.self + bXX.cross.out`.

Attention locations (a separate namespace, same spelling as the sublayer they belong to):

* `bXX.self`, `bXX.cross`: post-softmax attention weights of every head, (B, A, Q, K); rows
  sum to 1. Queries are this view's tokens; keys are this view's (self) or the other view's
  (cross) tokens. Token indices are row-major on the patch grid.

Blocks are numbered from 00 with two digits. For the official decoders (12 blocks) there
are 38 stream locations per view as in the paper (`RESIDUAL_LOCATIONS`), 36 sublayer outputs
and 24 attention maps per view.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.errors import ConfigError, unknown_name_message

SUBLAYERS = ("self", "cross", "mlp")
OFFICIAL_DEC_DEPTH = 12


def block_name(block: int) -> str:
    """'b03' for block 3."""
    return f"b{block:02d}"


def residual_locations(dec_depth: int = OFFICIAL_DEC_DEPTH) -> list[str]:
    """enc, dec_in, then bXX.self, bXX.cross, bXX.mlp for every block, in forward order."""
    return ["enc", "dec_in"] + [f"{block_name(b)}.{s}" for b in range(dec_depth) for s in SUBLAYERS]


def sublayer_locations(dec_depth: int = OFFICIAL_DEC_DEPTH) -> list[str]:
    """bXX.self.out, bXX.cross.out, bXX.mlp.out for every block, in forward order."""
    return [f"{block_name(b)}.{s}.out" for b in range(dec_depth) for s in SUBLAYERS]


def stream_locations(dec_depth: int = OFFICIAL_DEC_DEPTH) -> list[str]:
    """Every stream location: the residual ones, then the sublayer outputs."""
    return residual_locations(dec_depth) + sublayer_locations(dec_depth)


def attention_locations(dec_depth: int = OFFICIAL_DEC_DEPTH) -> list[str]:
    """bXX.self, bXX.cross for every block: the attention maps that can be captured."""
    return [f"{block_name(b)}.{s}" for b in range(dec_depth) for s in ("self", "cross")]


RESIDUAL_LOCATIONS = residual_locations()
LOCATIONS = stream_locations()
ATTENTION_LOCATIONS = attention_locations()


def check_names(names: Iterable[str], valid: list[str], kind: str) -> list[str]:
    """Return `names` as a list if all are in `valid`; otherwise fail on the first unknown one.

    Args:
        names: requested names.
        valid: the accepted names, in display order.
        kind: "location" or "attention location", for the message.

    Raises:
        ConfigError: "Unknown location 'b3.cross'. Did you mean 'b03.cross'? Valid: enc, ...".
    """
    names = list(names)
    known = set(valid)
    for name in names:
        if name not in known:
            raise ConfigError(unknown_name_message(kind, name, valid))
    return names


def split_location(name: str) -> tuple[int, str, bool]:
    """(block, sublayer, is_out) of a block location: 'b03.cross.out' -> (3, 'cross', True)."""
    parts = name.split(".")
    return int(parts[0][1:]), parts[1], len(parts) == 3
