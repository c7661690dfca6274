"""Pairs per second: plain DUSt3R forward vs forwards that capture activations.

Four variants run round-robin in one process (so machine load hits them alike), each timed
by its median over the rounds, in wall-clock time and (on CPU) in process CPU time, which a
shared machine's load disturbs less:

* plain: `model(img1, img2)`, no hooks;
* residual: `capture` of the 38 residual-stream locations of both views;
* stream: also the 36 sublayer outputs (`.out`);
* everything: every stream location and every attention map (explicit softmax, copied).

Defaults: on CPU the `small` config in float32; with CUDA `dust3r-224-linear` under bf16
autocast. Random weights: speed does not depend on them.

    .venv/bin/python benchmarks/model.py [--model small] [--batch 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from pipeline.model.registry import build_model, get_config
from pipeline.probing.capture import capture
from pipeline.probing.locations import attention_locations, residual_locations, stream_locations


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dust3r-224-linear" if cuda else "small")
    parser.add_argument("--batch", type=int, default=8 if cuda else 2, help="pairs per forward")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per variant (after 1 warm-up)")
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=cuda, help="bf16 autocast")
    args = parser.parse_args()

    config = get_config(args.model)
    device = torch.device(args.device)
    model = build_model(config, seed=0).to(device).eval()
    h, w = config.img_size
    img1, img2 = (torch.randn(args.batch, 3, h, w, device=device) for _ in range(2))
    depth = config.dec_depth
    variants: dict[str, Callable[[], object]] = {
        "plain": lambda: model(img1, img2),
        "residual": lambda: capture(model, img1, img2, locations=residual_locations(depth)),
        "stream": lambda: capture(model, img1, img2, locations=stream_locations(depth)),
        "everything": lambda: capture(
            model, img1, img2, locations=stream_locations(depth), attention=attention_locations(depth)
        ),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        for round_ in range(args.rounds + 1):
            for name, fn in variants.items():
                elapsed = _timed(fn, device)
                if round_:  # round 0 warms up
                    times[name].append(elapsed)

    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(
        f"{args.model} on {_device_name(device)}, {precision}, batch {args.batch}, {h}x{w}, {args.rounds} rounds"
    )
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    wall0 = statistics.median(t[0] for t in times["plain"])
    cpu0 = statistics.median(t[1] for t in times["plain"])
    print(f"{'variant':<12}{'pairs/s':>10}{'ms/pair':>10}{'vs plain':>10}{'cpu ms/pair':>13}{'vs plain':>10}")
    for name, values in times.items():
        wall = statistics.median(t[0] for t in values)
        cpu = statistics.median(t[1] for t in values)
        print(
            f"{name:<12}{args.batch / wall:>10.2f}{1000 * wall / args.batch:>10.1f}{wall / wall0:>10.3f}"
            f"{1000 * cpu / args.batch:>13.1f}{cpu / cpu0:>10.3f}"
        )


def _timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


if __name__ == "__main__":
    main()
