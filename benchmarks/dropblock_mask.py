"""DropBlock's block mask: Algorithm 1 as written (float max pools) against the current one.

    python benchmarks/dropblock_mask.py                  # 592 px, batch 4, both DropBlock models
    python benchmarks/dropblock_mask.py --size 256 --reps 8

Times a whole training step (forward + backward) of U-Net+DropBlock and SKU-Net with each way of
making the mask, on the fast path (bf16 autocast, channels_last) and in fp32. The two run
interleaved in one process (A, B, A, B, ...; the first pair is a warm-up), so a machine that
speeds up or slows down during the run affects both alike; the median step is reported. Both draw
the same seeds (`keep_seeds`), so they compute the same thing (tests/test_models.py holds
`keep_mask` to the max pool, bit for bit).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from skunet.models import ModelConfig, build_model
from skunet.models.dropblock import DropBlock2d, keep_seeds, seed_rate


def max_pool_forward(self: DropBlock2d, x: Tensor) -> Tensor:
    """Ghiasi et al.'s Algorithm 1 as written: float seeds (the same draw as DropBlock2d's), a square
    max pool (a row max of column maxes, two pools), a float mask for x and for backward."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=592)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=4, help="timed steps per variant")
    parser.add_argument("--models", nargs="+", default=["unet_dropblock", "skunet"])
    args = parser.parse_args()

    variants = {"max pool": max_pool_forward, "current": DropBlock2d.forward}
    x = torch.rand(args.batch, args.size, args.size, 3).permute(0, 3, 1, 2)  # as training feeds it
    y = (torch.rand(args.batch, 1, args.size, args.size) > 0.9).float()
    print(f"{torch.get_num_threads()} threads, {args.size} px, batch {args.batch}, median of {args.reps}")
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
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
                        loss = F.binary_cross_entropy_with_logits(model(x).float(), y)
                    loss.backward()
                    if rep:
                        times[label].append(time.perf_counter() - start)
            before, after = (statistics.median(times[v]) for v in variants)
            path = "fast (bf16, channels_last)" if fast else "fp32"
            print(f"{name:15s} {path:27s} step {before:6.2f} s (max pool) -> {after:6.2f} s "
                  f"(current): {before / after:.2f}x", flush=True)


if __name__ == "__main__":
    main()
