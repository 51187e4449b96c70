"""DropBlock's block mask: Algorithm 1 as written (float max pools), the previous mask (float
seeds, or-passes) and the current one (byte seeds, and-passes).

    python benchmarks/dropblock_mask.py                  # 592 px, batch 4, both DropBlock models
    python benchmarks/dropblock_mask.py --size 256 --reps 8

Times a whole training step (forward + backward) of U-Net+DropBlock and SKU-Net with each way of
making the mask, on the fast path (bf16 autocast, channels_last) and in fp32. The variants run
interleaved in one process (A, B, C, A, B, C, ...; the first round is a warm-up), so a machine that
speeds up or slows down during the run affects all alike; the median step is reported. The max
pool draws the same seeds as the current mask (`keep_seeds`), so the two compute the same thing
(tests/test_models.py holds `keep_mask` to the max pool, bit for bit); the previous mask draws
float seeds (`torch.rand(...) < gamma`): other masks, from the same distribution. Each variant's
bytes per step are counted too (benchmarks/train_throughput.py's rule). Results are printed and
written to benchmarks/results/cpu-dropblock_mask.json (--out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from skunet.config import ModelConfig, load_params
from skunet.models import build_model
from skunet.models.dropblock import DropBlock2d, keep_seeds, seed_rate
from skunet.training import forward_loss
from train_throughput import TrafficCounter


def max_pool_forward(self: DropBlock2d, x: Tensor) -> Tensor:
    """Ghiasi et al.'s Algorithm 1 as written: float seeds (DropBlock2d's byte draw, made float), a
    square max pool (a row max of column maxes, two pools), a float mask for x and for backward."""
    if not self.training or self.keep_prob == 1.0:
        return x
    n, c, h, w = x.shape
    block = min(self.block_size, h, w)
    gamma = seed_rate(self.keep_prob, block, h, w)
    seeds = keep_seeds((n, c, h - block + 1, w - block + 1), gamma, x.device).logical_not().float()
    pad = block - 1
    rows = F.max_pool2d(F.pad(seeds, (pad, pad, pad, pad)), (1, block), stride=1)
    dropped = F.max_pool2d(rows, (block, 1), stride=1)
    keep = 1.0 - dropped
    return x * (keep * (keep.numel() / keep.sum().clamp_min(1.0))).to(dtype=x.dtype)


def float_seeds_forward(self: DropBlock2d, x: Tensor) -> Tensor:
    """The previous mask: seeds as `torch.rand(...) < gamma` (four-byte floats written, then read),
    the dropped squares grown by or-ing shifted copies (doubling), inverted, then applied."""
    if not self.training or self.keep_prob == 1.0:
        return x
    n, c, h, w = x.shape
    block = min(self.block_size, h, w)
    gamma = seed_rate(self.keep_prob, block, h, w)
    drop = F.pad(torch.rand(n, c, h - block + 1, w - block + 1, device=x.device) < gamma, (block - 1,) * 4)
    width = 1
    while width < block:
        step = min(width, block - width)
        drop = drop[..., step:] | drop[..., :-step]
        drop = drop[..., step:, :] | drop[..., :-step, :]
        width += step
    kept = drop.numel() - torch.count_nonzero(drop)
    return x * drop.logical_not() * (drop.numel() / kept.clamp_min(1)).to(dtype=x.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=None, help="input side (default: DRIVE's in params.yaml)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--models", nargs="+", default=["unet_dropblock", "skunet"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu-dropblock_mask.json")
    args = parser.parse_args()

    variants = {"max pool": max_pool_forward, "float seeds": float_seeds_forward, "current": DropBlock2d.forward}
    args.size = args.size or load_params(Path(__file__).resolve().parents[1] / "params.yaml")["resize"]["drive"]["input_size"]
    x = torch.rand(args.batch, args.size, args.size, 3).permute(0, 3, 1, 2)  # as training feeds it
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.9).float()
    print(f"{torch.get_num_threads()} threads, {args.size} px, batch {args.batch}, median of {args.reps}")
    rows = []
    for name in args.models:
        for fast in (True, False):
            model = build_model(ModelConfig(name=name)).train()
            if fast:
                model = model.to(memory_format=torch.channels_last)
            times: dict[str, list[float]] = {v: [] for v in variants}
            for rep in range(args.reps + 1):
                for label, forward in variants.items():
                    DropBlock2d.forward = forward
                    model.zero_grad(set_to_none=True)
                    start = time.perf_counter()
                    forward_loss(model, x, y, fast).backward()
                    if rep:
                        times[label].append(time.perf_counter() - start)
            gb = {}  # bytes of one step (TrafficCounter's rule), once per variant
            for label, forward in variants.items():
                DropBlock2d.forward = forward
                counter = TrafficCounter()
                with counter:
                    forward_loss(model, x, y, fast).backward()
                gb[label] = sum(moved for _, moved, _ in counter.ops) / 1e9
            DropBlock2d.forward = variants["current"]
            pool, previous, current = (statistics.median(times[v]) for v in variants)
            path = "fast (bf16, channels_last)" if fast else "fp32"
            rows.append({"model": name, "path": path, "step_s": {v: statistics.median(times[v]) for v in variants},
                         "gb_per_step": gb})
            print(f"{name:15s} {path:27s} step {pool:6.2f} s (max pool), {previous:6.2f} s (float seeds), "
                  f"{current:6.2f} s (current): {pool / current:.2f}x, {previous / current:.2f}x; GB per step "
                  + ", ".join(f"{gb[v]:.2f}" for v in variants), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"size": args.size, "batch": args.batch, "reps": args.reps,
                                    "threads": torch.get_num_threads(), "torch": str(torch.__version__),
                                    "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
