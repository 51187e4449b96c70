"""Convolution blocks of the U-Net and U-Net+DropBlock baselines (Hwang et al. 2021, Fig. 4).

- U-Net (Ronneberger et al. 2015, https://arxiv.org/abs/1505.04597): `conv3x3 -> ReLU`, twice per
  level (`UNetConvBlock`).
- U-Net+DropBlock (the paper's Fig. 4 right, the SA-UNet / SD-Unet order):
  `conv3x3 -> DropBlock -> BatchNorm -> ReLU`, twice per level (`DropBlockConvBlock`).

Convolutions followed by BatchNorm carry no bias (BatchNorm's shift replaces it; the paper does
not say). "Same" padding throughout, so skip connections need no cropping (as the SA-UNet lineage;
Ronneberger et al. used unpadded convolutions).
"""

from __future__ import annotations

from torch import nn

from skunet.config import DropBlockSpec
from skunet.models.dropblock import DropBlock2d

__all__ = ["ConvReLU", "ConvDropBlockBNReLU", "UNetConvBlock", "DropBlockConvBlock"]


def _same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H and W for an odd kernel_size at stride 1."""
    return dilation * (kernel_size - 1) // 2


class ConvReLU(nn.Sequential):
    """`conv -> ReLU`, the unit of the plain U-Net (paper Fig. 4 left)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        padding = _same_padding(kernel_size)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
        self.act = nn.ReLU(inplace=True)


class ConvDropBlockBNReLU(nn.Sequential):
    """`conv -> DropBlock -> BatchNorm -> ReLU`, the unit of U-Net+DropBlock and of the SK block.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        drop: the DropBlock after the convolution.
        kernel_size: odd kernel size (3 in the conv blocks; configurable in the SK block).
        dilation: kernel dilation (the SK block's second branch uses 2).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, drop: DropBlockSpec, kernel_size: int = 3, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=_same_padding(kernel_size, dilation),
            dilation=dilation,
            bias=False,
        )
        self.drop = DropBlock2d(drop)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)


class UNetConvBlock(nn.Sequential):
    """One U-Net level: two `conv3x3 -> ReLU` (Ronneberger et al. 2015, Fig. 1)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = ConvReLU(in_channels, out_channels)
        self.conv2 = ConvReLU(out_channels, out_channels)


class DropBlockConvBlock(nn.Sequential):
    """One U-Net+DropBlock level: two `conv3x3 -> DropBlock -> BatchNorm -> ReLU` (paper Fig. 4)."""

    def __init__(self, in_channels: int, out_channels: int, *, drop: DropBlockSpec) -> None:
        super().__init__()
        self.conv1 = ConvDropBlockBNReLU(in_channels, out_channels, drop=drop)
        self.conv2 = ConvDropBlockBNReLU(out_channels, out_channels, drop=drop)
