"""float32 linear layers: oneDNN's path (`pipeline.fast_linear`) beside PyTorch's default (MKL).

Times the layer shapes the embedded default runs, a batch of 4 pairs of 196 tokens per
view: the `small` model's qkv, fc1, fc2 and linear head (extract, the head lens), and the
probes' layers (evaluate), on the threads torch has (`--threads`: 1 is what each evaluate
worker gets on this 2-core VM). Prints GFLOP/s of both paths and their ratio.

    .venv/bin/python benchmarks/linear.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from pipeline.fast_linear import linear, use_onednn

TOKENS = 4 * 2 * 196
SHAPES = {  # name -> (d_in, d_out)
    "model qkv 384->1152": (384, 1152),
    "model fc1 384->1536": (384, 1536),
    "model fc2 1536->384": (1536, 384),
    "head / linear probe 384->1024": (384, 1024),
    "mlp probe hidden 128->128": (128, 128),
    "mlp probe output 128->1024": (128, 1024),
}


def gflops(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """Best of five rounds of `repeats` calls, in GFLOP/s."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            linear(x, w, b)
        best = min(best, (time.perf_counter() - start) / repeats)
    return 2 * x.shape[0] * w.shape[0] * w.shape[1] / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = {}
    with torch.no_grad():
        for name, (d_in, d_out) in SHAPES.items():
            x, w, b = (torch.randn(*s, generator=gen) for s in ((TOKENS, d_in), (d_out, d_in), (d_out,)))
            with use_onednn(False):
                default = gflops(x, w, b, args.repeats)
            onednn = gflops(x, w, b, args.repeats)
            rows[name] = {
                "default_gflops": round(default),
                "onednn_gflops": round(onednn),
                "ratio": round(onednn / default, 2),
            }
    print(json.dumps({"threads": args.threads, "layers": rows}, indent=2))


if __name__ == "__main__":
    main()
