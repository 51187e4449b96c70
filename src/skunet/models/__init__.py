"""The networks compared by Hwang et al. 2021 and `build_model`, the one way to build them.

Every network maps (N, in_channels, H, W) images in [0, 1] to logits (N, 1, H, W) for any H, W;
apply a sigmoid for the paper's probabilities (training uses BCE-with-logits for bf16 stability).
What shapes a network is one `skunet.config.ModelConfig` (with its DropBlock and SK settings),
validated where it is made.
"""

from __future__ import annotations

import torch

from skunet.config import ModelConfig
from skunet.models.blocks import ConvDropBlockBNReLU, ConvReLU, DropBlockConvBlock, UNetConvBlock
from skunet.models.dropblock import DropBlock2d
from skunet.models.selective_kernel import SelectiveKernelAttention, SelectiveKernelBlock
from skunet.models.unet import SKUNet, SKUNetBlock, UNet, UNetDropBlock, UNetSkeleton

__all__ = [
    "build_model",
    "UNet",
    "UNetDropBlock",
    "SKUNet",
    "UNetSkeleton",
    "SKUNetBlock",
    "SelectiveKernelAttention",
    "SelectiveKernelBlock",
    "DropBlock2d",
    "ConvReLU",
    "ConvDropBlockBNReLU",
    "UNetConvBlock",
    "DropBlockConvBlock",
]

NETWORKS = {"unet": UNet, "unet_dropblock": UNetDropBlock, "skunet": SKUNet}


def build_model(config: ModelConfig) -> torch.nn.Module:
    """The network `config.name` ("unet", "unet_dropblock" or "skunet"), as `config` shapes it.

    The network returns logits (N, 1, H, W); training uses BCE-with-logits for bf16 stability.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model expects a skunet.config.ModelConfig, got {type(config).__name__}")
    return NETWORKS[config.name](config)
