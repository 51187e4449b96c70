"""Selective kernel (SK) convolution block of SKU-Net (Hwang et al. 2021, Sec. III.1, Eqs. 1-8).

Built on SKNet: Li X., Wang W., Hu X., Yang J., "Selective Kernel Networks", CVPR 2019,
https://arxiv.org/abs/1903.06586 (Sec. 3.1: Split, Fuse, Select). The split attention
("Fuse" and "Select") is its own module, `SelectiveKernelAttention`, beside the block that owns
the convolution branches, `SelectiveKernelBlock`.

Departures from the paper (its kernel sizes, r and L were lost in extraction; see docs/paper.md,
"Lost values"):
- branch kernels 3x3 and 3x3 with dilation 2 by default (SKNet's 5x5 -> 3x3 + dilation 2).
- first convolution 3x3 by default (SKNet's bottleneck would use 1x1); configurable.
- r = 16, L = 32 by default (SKNet's values).
- the heads A, B and W carry no bias, as Eqs. (4) and (6) are written.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from skunet.config import DropBlockSpec, SKSpec
from skunet.models.blocks import ConvDropBlockBNReLU

__all__ = ["SelectiveKernelAttention", "SelectiveKernelBlock"]


class SelectiveKernelAttention(nn.Module):
    """Split attention over two branches, paper Eqs. (2)-(6) (SKNet Eqs. 1-5).

    U = U1 + U2 (Eq. 2); s = global average pool of U, one value per channel (Eq. 3);
    z = ReLU(BN(W s)) with W: C -> d (Eq. 4), d = max(C // r, L) (Eq. 5);
    a_c = exp(A_c z) / (exp(A_c z) + exp(B_c z)), b_c = 1 - a_c (Eq. 6).

    The BatchNorm of Eq. (4) normalises one vector per sample, so training needs a batch of at
    least two (as in SKNet).

    Args:
        channels: C, channels of each branch.
        reduction: r of Eq. (5).
        min_dim: L of Eq. (5), the smallest width of z.
    """

    def __init__(self, channels: int, *, reduction: int, min_dim: int) -> None:
        super().__init__()
        dim = max(channels // reduction, min_dim)  # Eq. 5: d = max(C / r, L)
        self.fc = nn.Linear(channels, dim, bias=False)  # W of Eq. 4
        self.bn = nn.BatchNorm1d(dim)  # BN of Eq. 4
        self.act = nn.ReLU(inplace=True)
        self.head_a = nn.Linear(dim, channels, bias=False)  # A of Eq. 6
        self.head_b = nn.Linear(dim, channels, bias=False)  # B of Eq. 6

    def forward(self, u1: Tensor, u2: Tensor) -> Tensor:
        """Return the branch weights, shape (N, 2, C, 1, 1): `[:, 0]` is a, `[:, 1]` is b."""
        if self.training and u1.shape[0] < 2:
            raise ValueError(
                "SelectiveKernelAttention needs a batch of at least 2 in training mode: "
                "the BatchNorm of z = ReLU(BN(W s)) normalises over the batch"
            )
        s = (u1 + u2).mean(dim=(2, 3))  # Eq. 2: U = U1 + U2; Eq. 3: s = GAP(U)
        z = self.act(self.bn(self.fc(s)))  # Eq. 4: z = ReLU(BN(W s))
        logits = torch.stack((self.head_a(z), self.head_b(z)), dim=1)  # Eq. 6: A z, B z
        # Eq. 6: a, b = softmax of (A z, B z) across the two branches, per channel; computed
        # in float32 so that a + b = 1 holds to float32 precision under bf16 autocast
        weights = logits.float().softmax(dim=1).to(dtype=u1.dtype)
        return weights[..., None, None]


class SelectiveKernelBlock(nn.Module):
    """SK block of SKU-Net, paper Fig. 1 and Eqs. (1), (7), (8).

    X' = conv_first(X); U1 = branch_a(X'), U2 = branch_b(X') (Eq. 1), every convolution followed
    by DropBlock, BatchNorm and ReLU; (a, b) = attention(U1, U2) (Eqs. 2-6);
    V = a * U1 + b * U2 (Eq. 7); Y = ReLU(V + X) (Eq. 8, the ResNet residual).
    Input and output have `channels` channels and the same size.

    Args:
        channels: C, channels in and out.
        sk: the first kernel, the branches' kernels and dilations, r and L of Eq. (5)
            (`skunet.config.SKSpec`; all lost in the paper's text, SKNet's values by default).
        drop: the DropBlock after every convolution.
    """

    def __init__(self, channels: int, *, sk: SKSpec, drop: DropBlockSpec) -> None:
        super().__init__()
        # the three convolutions of Eq. 1: X' = conv_first(X), U1 = branch_a(X'), U2 = branch_b(X')
        self.conv_first = ConvDropBlockBNReLU(channels, channels, drop=drop, kernel_size=sk.first_kernel)
        self.branch_a = ConvDropBlockBNReLU(channels, channels, drop=drop, kernel_size=sk.kernels[0],
                                            dilation=sk.dilations[0])
        self.branch_b = ConvDropBlockBNReLU(channels, channels, drop=drop, kernel_size=sk.kernels[1],
                                            dilation=sk.dilations[1])
        self.attn = SelectiveKernelAttention(channels, reduction=sk.reduction, min_dim=sk.min_dim)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x_prime = self.conv_first(x)  # Eq. 1: X'
        u1 = self.branch_a(x_prime)  # Eq. 1: U1
        u2 = self.branch_b(x_prime)  # Eq. 1: U2
        weights = self.attn(u1, u2)  # Eqs. 2-6: (a, b)
        v = weights[:, 0] * u1 + weights[:, 1] * u2  # Eq. 7: V = a * U1 + b * U2
        return self.act(v + x)  # Eq. 8: Y = ReLU(V + X)
