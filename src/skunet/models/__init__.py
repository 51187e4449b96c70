"""The networks compared by Hwang et al. 2021 and `build_model`, the one way to build them.

Every network maps (N, in_channels, H, W) images in [0, 1] to logits (N, 1, H, W) for any H, W;
apply a sigmoid for the paper's probabilities (training uses BCE-with-logits for bf16 stability).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from skunet.models.blocks import ConvDropBlockBNReLU, ConvReLU, DropBlockConvBlock, UNetConvBlock
from skunet.models.dropblock import DropBlock2d
from skunet.models.selective_kernel import SelectiveKernelAttention, SelectiveKernelBlock
from skunet.models.unet import SKUNet, SKUNetBlock, UNet, UNetDropBlock, UNetSkeleton

__all__ = [
    "MODEL_NAMES",
    "ModelConfig",
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

MODEL_NAMES = ("unet", "unet_dropblock", "skunet")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes a network; defaults are the values docs/paper.md settles on.

    Fields a model does not use are ignored (keep_prob by `unet`, the sk_* fields by all but
    `skunet`) but still validated. Lists (as YAML gives them) are accepted for the pairs.
    """

    name: str  # one of MODEL_NAMES
    in_channels: int = 3
    base_width: int = 16  # channels of the first level; doubles each level (lost; SA-UNet: 16)
    depth: int = 4  # number of levels (depth - 1 poolings): 16-32-64-128 (lost; SA-UNet: 4)
    block_size: int = 7  # DropBlock block size (lost; SA-UNet lineage: 7)
    keep_prob: float = 0.85  # DropBlock keep rate (paper: 0.85 DRIVE, 0.80 CHASE_DB1)
    sk_first_kernel: int = 3  # lost; 3x3 per the abstract's "standard convolutions"
    sk_kernels: tuple[int, int] = (3, 3)  # lost; SKNet
    sk_dilations: tuple[int, int] = (1, 2)  # lost; SKNet (3x3 dilation 2 = 5x5 field)
    sk_reduction: int = 16  # r (lost; SKNet)
    sk_min_dim: int = 32  # L (lost; SKNet)

    def __post_init__(self) -> None:
        for field in ("sk_kernels", "sk_dilations"):
            value = getattr(self, field)
            if isinstance(value, list):
                object.__setattr__(self, field, tuple(value))

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        if self.name not in MODEL_NAMES:
            raise ValueError(
                f"ModelConfig.name: unknown model {self.name!r} (allowed: {', '.join(MODEL_NAMES)})"
            )
        for field in ("in_channels", "base_width", "depth", "block_size", "sk_first_kernel",
                      "sk_reduction", "sk_min_dim"):
            _check_positive_int(field, getattr(self, field))
        keep_prob = self.keep_prob
        if isinstance(keep_prob, bool) or not isinstance(keep_prob, (int, float)) \
                or not 0.0 < keep_prob <= 1.0:
            raise ValueError(f"ModelConfig.keep_prob: must be in (0, 1], got {keep_prob!r}")
        for field in ("sk_kernels", "sk_dilations"):
            pair = getattr(self, field)
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(
                    f"ModelConfig.{field}: must be a pair of positive integers, got {pair!r}"
                )
            for value in pair:
                _check_positive_int(field, value)
        if self.sk_first_kernel % 2 == 0:
            raise ValueError(f"ModelConfig.sk_first_kernel: must be odd for 'same' padding, "
                             f"got {self.sk_first_kernel}")
        if any(kernel % 2 == 0 for kernel in self.sk_kernels):
            raise ValueError(f"ModelConfig.sk_kernels: must be odd for 'same' padding, "
                             f"got {self.sk_kernels}")


def _check_positive_int(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ModelConfig.{field}: must be a positive integer, got {value!r}")


def build_model(cfg: ModelConfig) -> torch.nn.Module:
    """Build the network `cfg.name`: "unet", "unet_dropblock" or "skunet".

    Raises ValueError naming the field when `cfg` is out of range (see `ModelConfig.validate`).

    The network returns logits (N, 1, H, W); training uses BCE-with-logits for bf16 stability.
    """
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig, got {type(cfg).__name__}")
    cfg.validate()
    if cfg.name == "unet":
        return UNet(cfg.in_channels, cfg.base_width, cfg.depth)
    if cfg.name == "unet_dropblock":
        return UNetDropBlock(
            cfg.in_channels, cfg.base_width, cfg.depth, cfg.block_size, cfg.keep_prob
        )
    return SKUNet(
        cfg.in_channels,
        cfg.base_width,
        cfg.depth,
        cfg.block_size,
        cfg.keep_prob,
        cfg.sk_first_kernel,
        cfg.sk_kernels,
        cfg.sk_dilations,
        cfg.sk_reduction,
        cfg.sk_min_dim,
    )
