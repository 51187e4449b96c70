"""The three networks of Hwang et al. 2021 (Fig. 3): U-Net, U-Net+DropBlock and SKU-Net.

All three share one encoder-decoder skeleton (Ronneberger et al. 2015,
https://arxiv.org/abs/1505.04597) and differ only in the block used at every level:
level i has base_width * 2**i channels; 2x2 max pooling goes down, a 2x2 stride-2 transposed
convolution goes up and halves the channels, its output is concatenated with the encoder features
of the same resolution and passed through the level block again; a final 1x1 convolution gives
one channel.

Departures from the paper:
- the networks return logits, not sigmoid probabilities: training uses BCE-with-logits, which
  is the same loss and stays numerically stable under bf16 autocast.
- inputs of any size are zero-padded (bottom and right) to a multiple of 2**(depth - 1) and the
  output is cropped back; the paper's inputs (592, 1008) need no padding at depth 4.
- base width 16 and depth 4 are not stated (lost); they follow SA-UNet / SD-Unet (docs/paper.md,
  "Lost values").
- weights are He-normal initialised (Ronneberger et al. Sec. 3: Gaussian, std sqrt(2/N); Keras
  lineage: he_normal), not PyTorch's default, under which a U-Net without BatchNorm barely trains.
- the output bias starts at the logit of the vessel prior (Lin et al. 2017, "Focal Loss", Sec. 4.1:
  prior initialisation), so early training does not push every unit towards "background"; on
  short runs this decides whether a model leaves the all-background plateau at all.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skunet.config import DropBlockSpec, ModelConfig, SKSpec
from skunet.models.blocks import ConvDropBlockBNReLU, DropBlockConvBlock, UNetConvBlock
from skunet.models.selective_kernel import SelectiveKernelBlock

__all__ = ["UNetSkeleton", "SKUNetBlock", "UNet", "UNetDropBlock", "SKUNet"]

# Fraction of vessel pixels, about 0.09 in DRIVE and 0.07-0.1 in CHASE_DB1: the output's initial bias.
VESSEL_PRIOR = 0.1

LevelBlock = Callable[[int, int], nn.Module]
"""Builds the block of one level from (in_channels, out_channels)."""


def _he_init(module: nn.Module) -> None:
    """He-normal weights (fan in, ReLU gain) and zero biases for every convolution."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class UNetSkeleton(nn.Module):
    """U-Net encoder-decoder with a pluggable level block; returns logits (N, 1, H, W).

    Args:
        level_block: builds a level's block from (in_channels, out_channels).
        config: in_channels (of the input image), base_width (channels of the first level; level i
            has base_width * 2**i) and depth (levels: depth - 1 poolings and as many
            up-convolutions), validated by `skunet.config.ModelConfig`.
    """

    def __init__(self, level_block: LevelBlock, config: ModelConfig) -> None:
        super().__init__()
        in_channels, base_width, depth = config.in_channels, config.base_width, config.depth
        widths = [base_width * 2**i for i in range(depth)]
        self.depth = depth
        self.encoder = nn.ModuleList(
            level_block(c_in, c_out) for c_in, c_out in zip([in_channels, *widths[:-1]], widths)
        )
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        # decoder[i] and up[i] produce level i (fine to coarse order, like the encoder)
        levels = range(depth - 1)
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2) for i in levels
        )
        self.decoder = nn.ModuleList(level_block(2 * widths[i], widths[i]) for i in levels)
        self.head = nn.Conv2d(base_width, 1, kernel_size=1)
        self.apply(_he_init)
        nn.init.constant_(self.head.bias, math.log(VESSEL_PRIOR / (1 - VESSEL_PRIOR)))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        multiple = 2 ** (self.depth - 1)
        x = F.pad(x, (0, -width % multiple, 0, -height % multiple))
        skips = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottom level has no skip
        for level in reversed(range(self.depth - 1)):
            x = self.up[level](x)
            x = self.decoder[level](torch.cat((skips[level], x), dim=1))
        return self.head(x)[..., :height, :width]


class SKUNetBlock(nn.Sequential):
    """One SKU-Net level (paper Sec. III.2, Fig. 3): a DropBlock conv unit, then an SK block.

    `conv3x3 -> DropBlock -> BatchNorm -> ReLU` (in -> out), then `SelectiveKernelBlock`
    (out -> out).
    Departure: the paper's Fig. 4 is not in the extracted text; we read its "convolution block"
    as one such unit, since the SK block that follows holds three more convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, *, drop: DropBlockSpec, sk: SKSpec) -> None:
        super().__init__()
        self.conv = ConvDropBlockBNReLU(in_channels, out_channels, drop=drop)
        self.sk = SelectiveKernelBlock(out_channels, sk=sk, drop=drop)


class UNet(UNetSkeleton):
    """Baseline U-Net (paper model 1): two `conv3x3 -> ReLU` per level. Returns logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(UNetConvBlock, config)


class UNetDropBlock(UNetSkeleton):
    """U-Net+DropBlock (paper model 2): two `conv3x3 -> DropBlock -> BN -> ReLU` per level
    (`config.dropblock`). Returns logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(partial(DropBlockConvBlock, drop=config.dropblock), config)


class SKUNet(UNetSkeleton):
    """SKU-Net (paper model 3, Fig. 3): every level is an `SKUNetBlock`, with `config.dropblock`
    after every convolution and `config.sk` shaping the SK blocks. Returns logits."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(partial(SKUNetBlock, drop=config.dropblock, sk=config.sk), config)
