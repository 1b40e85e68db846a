"""`preact_resnet18`: pre-activation ResNet-18 (He, Zhang, Ren & Sun, "Identity Mappings in Deep
Residual Networks", ECCV 2016), in the CIFAR form used by TRADES (Zhang et al. 2019), MART (Wang
et al. 2020) and fast adversarial training (Wong et al. 2020): a 3x3 stem without BN, four stages
of two pre-activation blocks (64, 128, 256, 512 channels, strides 1, 2, 2, 2), a final BN-ReLU.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.models.base import (
    MODELS,
    PooledClassifier,
    halved,
    require,
    require_feature_size,
)


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3(-dropout)-BN-ReLU-conv3x3 plus shortcut (He et al. 2016b, fig. 4e).

    Where the shape changes, the shortcut is a 1x1 conv applied to the pre-activated input, as
    in the reference code of the paper and of WRN, so the BN-ReLU runs once for both paths. Also
    the block of wide ResNets (`dropout` between the convs, Zagoruyko & Komodakis 2016).
    """

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.dropout = dropout
        self.projection = (
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: Tensor) -> Tensor:
        a = F.relu(self.bn1(x))
        shortcut = x if self.projection is None else self.projection(a)
        out = F.relu(self.bn2(self.conv1(a)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return self.conv2(out) + shortcut


def preact_stage(c_in: int, c_out: int, blocks: int, stride: int, dropout: float = 0.0) -> list[nn.Module]:
    """`blocks` pre-activation blocks; only the first changes shape."""
    return [
        PreActBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, dropout) for i in range(blocks)
    ]


@MODELS.register("preact_resnet18", paper="He et al. 2016b, pre-activation ResNet-18")
class PreActResNet18(PooledClassifier):
    """Pre-activation ResNet-18; `width` = channels of the first stage (64 in the paper).

    Features: final BN-ReLU output [B, 8 width, ceil(S/8), ceil(S/8)] ([B, 512, 4, 4] on 32x32);
    embedding: global average pool [B, 8 width].
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32, *, width: int = 64):
        require(width >= 1, f"preact_resnet18 width must be >= 1, got {width}")
        require_feature_size("preact_resnet18", image_size, lambda s: halved(s, 3))
        widths = (width, 2 * width, 4 * width, 8 * width)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False)]
        c_in = width
        for c_out, stride in zip(widths, (1, 2, 2, 2)):
            layers += preact_stage(c_in, c_out, 2, stride)
            c_in = c_out
        # The last block ends in a sum, not an activation: this BN-ReLU makes the feature map
        # the rectified one that Grad-CAM and attention maps expect.
        layers += [nn.BatchNorm2d(c_in), nn.ReLU()]
        super().__init__(
            nn.Sequential(*layers), feature_channels=c_in, num_classes=num_classes,
            in_channels=in_channels,
        )
