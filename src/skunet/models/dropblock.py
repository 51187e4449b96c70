"""DropBlock: structured dropout of contiguous square regions.

Ghiasi G., Lin T.-Y., Le Q. V., "DropBlock: A regularization method for convolutional networks",
NeurIPS 2018, https://arxiv.org/abs/1810.12890 (Algorithm 1 and Eq. 1). SKU-Net puts it after every
convolution, before BatchNorm (docs/paper.md, "The three models": models 2 and 3).

Departures from Ghiasi et al.:
- no linear keep_prob schedule over training: the SKU-Net paper names a fixed keep rate.
- a feature map smaller than block_size uses a block the size of the map's shorter side.
- the rescaling factor counts kept units over the whole batch (units / kept units), as in
  Algorithm 1, rather than per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skunet.config import DropBlockSpec

__all__ = ["DropBlock2d", "keep_mask", "keep_seeds", "seed_rate"]


def seed_rate(keep_prob: float, block_size: int, height: int, width: int) -> float:
    """Bernoulli rate gamma of block seeds, Ghiasi et al. Eq. (1).

    gamma = (1 - keep_prob) / block_size**2 * H * W / ((H - block_size + 1) * (W - block_size + 1))

    The second factor corrects for seeds being drawn only in the valid region, where a whole block
    fits, so that on average a fraction 1 - keep_prob of the map falls under some block (counting
    overlapping blocks twice, which Eq. 1 ignores).
    """
    valid = (height - block_size + 1) * (width - block_size + 1)
    if valid <= 0:
        raise ValueError(
            f"block_size {block_size} does not fit a {height}x{width} feature map"
        )
    gamma = (1.0 - keep_prob) / block_size**2 * (height * width) / valid
    return min(gamma, 1.0)


def keep_seeds(shape: tuple[int, int, int, int], gamma: float, device: torch.device) -> Tensor:
    """Algorithm 1's seeds, drawn straight into one byte each: False (a block seed) with probability
    gamma, True otherwise. One pass writing bytes, where `torch.rand(shape) < gamma` writes and then
    reads four-byte floats; seeds come from the global torch RNG."""
    return torch.empty(shape, dtype=torch.bool, device=device).bernoulli_(1.0 - gamma)


def keep_mask(seeds: Tensor, block_size: int) -> Tensor:
    """The kept units (True) of the full map, given `keep_seeds` of its valid region.

    `seeds` is (N, C, H - block_size + 1, W - block_size + 1); a False seed at (i, j) drops the
    square [i, i + block_size) x [j, j + block_size), so every block lies wholly inside the
    (N, C, H, W) result. Seeds anchor the block's top-left corner, which is the same as Ghiasi et
    al.'s centred blocks with seeds restricted to the centres that leave the block inside the map.

    A unit is kept when every seed whose square covers it is True: a logical and (a min) over a
    sliding window, done by doubling: once every pixel covers `width` seeds along an axis,
    and-ing it with its neighbour `step` <= `width` away covers `width + step`. That is about
    log2(block_size) boolean passes per axis, where a max pool of the dropped seeds (as
    Algorithm 1 writes it) reads block_size float values per pixel and axis; the result is that
    max pool's complement, bit for bit.
    """
    pad = block_size - 1
    mask = F.pad(seeds, (pad, pad, pad, pad), value=True)
    width = 1
    while width < block_size:
        step = min(width, block_size - width)
        mask = mask[..., step:] & mask[..., :-step]
        mask = mask[..., step:, :] & mask[..., :-step, :]
        width += step
    return mask


class DropBlock2d(nn.Module):
    """Drop block_size x block_size squares of each channel in training; identity in eval.

    Algorithm 1 of Ghiasi et al.: draw seeds ~ Bernoulli(gamma) (Eq. 1, `seed_rate`) in the valid
    region, independently per sample and channel (`keep_seeds`); expand each seed to a square
    (`keep_mask`, the complement of a sliding-window max); zero the squares; rescale the survivors
    by count(mask) / count_ones(mask) so the expected activation is unchanged. Seeds come from the
    global torch RNG, so `torch.manual_seed` makes a run repeat.

    Args:
        spec: block_size, the side of the dropped squares, and keep_prob, the fraction of units
            kept, in (0, 1]; a keep_prob of 1 makes the layer an identity (defaults and ranges:
            `skunet.config.DropBlockSpec`).
    """

    def __init__(self, spec: DropBlockSpec) -> None:
        super().__init__()
        self.block_size = spec.block_size
        self.keep_prob = spec.keep_prob

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, keep_prob={self.keep_prob}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.keep_prob == 1.0:
            return x
        n, c, h, w = x.shape
        block = min(self.block_size, h, w)
        gamma = seed_rate(self.keep_prob, block, h, w)
        keep = keep_mask(keep_seeds((n, c, h - block + 1, w - block + 1), gamma, x.device), block)
        # an integer count is exact past 2**24 units and stays on the device (no host sync);
        # count_nonzero reads the mask as it is, where sum would first widen it to int64; the
        # clamp only matters when every unit of the batch is dropped (tiny maps)
        scale = (keep.numel() / torch.count_nonzero(keep).clamp_min(1)).to(dtype=x.dtype)
        # x first keeps x's memory layout (channels_last stays so), and autograd keeps the one-byte
        # mask: `x * (keep * scale)` moves fewer bytes in backward but keeps a mask in x's dtype
        # (measured: peak memory +8% for SKU-Net's fast path, +23% in fp32). Not
        # `x.mul(scale).masked_fill_(~keep, 0)` or `torch.where`: with a channels_last x, a
        # contiguous mask and BatchNorm after it, as in the networks, torch.compile (inductor,
        # torch 2.13, CPU; 2.11 did not) computed other values than eager from the same masks;
        # this form matches (tests/test_models.py, the compiled DropBlock test). Compiled code may
        # also draw the layers' seeds in another order (torch 2.11 does), so its masks for a seed
        # are not eager's.
        return x * keep * scale
