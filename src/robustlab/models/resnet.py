"""CIFAR ResNets (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016,
section 4.2): `resnet` with a `depth` option, and the presets `resnet20`, `resnet32`, `resnet56`.

A 3x3 conv stem, then three stages of n = (depth - 2) / 6 basic blocks with 16, 32, 64 channels,
the last two starting with stride 2. Shortcuts are the paper's option A for CIFAR (identity,
subsampled and zero-padded in channels), so the parameter counts are the paper's (0.27M, 0.46M,
0.85M for depths 20, 32, 56).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.base import (
    MODELS,
    PooledClassifier,
    halved,
    make_activation,
    require,
    require_feature_size,
)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (He et al. 2016, fig. 2 left)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act=nn.ReLU):
        super().__init__()
        self.act1, self.act2 = act(), act()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.stride = stride
        self.extra_channels = c_out - c_in

    def shortcut(self, x: Tensor) -> Tensor:
        # Option A: parameter-free. x[..., ::2, ::2] has the same ceil(size / 2) side as the
        # stride-2 conv with padding 1, so odd input sizes work too.
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return x

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


@MODELS.register("resnet", paper="He et al. 2016, CIFAR ResNet (depth 6n+2)")
class ResNet(PooledClassifier):
    """CIFAR ResNet of `depth` = 6n + 2 layers; `width` = channels of the first stage (16 in the
    paper; the stages have width, 2 width, 4 width channels).

    `activation` (relu | leaky_relu, with `negative_slope`) is every block's nonlinearity.
    Features: last stage output after ReLU [B, 4 width, ceil(S/4), ceil(S/4)] for an SxS input;
    embedding: global average pool [B, 4 width].
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        *,
        depth: int = 20,
        width: int = 16,
        activation: str = "relu",
        negative_slope: float = 0.1,
    ):
        act = lambda: make_activation(activation, negative_slope)
        require(
            depth >= 8 and (depth - 2) % 6 == 0,
            f"resnet depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...), got {depth}",
        )
        require(width >= 1, f"resnet width must be >= 1, got {width}")
        require_feature_size("resnet", image_size, lambda s: halved(s, 2))
        n = (depth - 2) // 6
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            act(),
        ]
        c_in = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                layers.append(BasicBlock(c_in, c_out, stride=2 if stage > 0 and i == 0 else 1, act=act))
                c_in = c_out
        super().__init__(
            nn.Sequential(*layers), feature_channels=4 * width, num_classes=num_classes,
            in_channels=in_channels,
        )


def _preset(depth: int):
    def factory(num_classes: int, in_channels: int, image_size: int, width: int = 16,
                activation: str = "relu", negative_slope: float = 0.1) -> ResNet:
        return ResNet(num_classes, in_channels, image_size, depth=depth, width=width,
                      activation=activation, negative_slope=negative_slope)

    factory.__name__ = f"resnet{depth}"
    factory.__doc__ = f"CIFAR ResNet-{depth} (He et al. 2016)."
    return factory


for _depth in (20, 32, 56):
    MODELS.register(f"resnet{_depth}", paper=f"He et al. 2016, ResNet-{_depth}")(_preset(_depth))
