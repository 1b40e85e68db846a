"""Wide ResNets (Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016): `wide_resnet` with
`depth` and `widen_factor` options, and the presets `wrn28_10` and `wrn34_10` (WRN-34-10 is the
standard model of Madry et al. 2018, TRADES, MART and most CIFAR-10 robustness benchmarks).

A 3x3 conv stem with 16 channels, three stages of n = (depth - 4) / 6 pre-activation blocks with
16k, 32k, 64k channels (k = widen_factor, strides 1, 2, 2), a final BN-ReLU.
"""

from __future__ import annotations

from torch import nn

from robustlab.models.base import (
    MODELS,
    PooledClassifier,
    halved,
    require,
    require_feature_size,
)
from robustlab.models.preact_resnet import preact_stage


@MODELS.register("wide_resnet", paper="Zagoruyko & Komodakis 2016, WRN-depth-k")
class WideResNet(PooledClassifier):
    """WRN-`depth`-`widen_factor` with dropout `dropout` between the convs of each block.

    Features: final BN-ReLU output [B, 64 k, ceil(S/4), ceil(S/4)]; embedding: global average
    pool [B, 64 k].
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        *,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
    ):
        require(
            depth >= 10 and (depth - 4) % 6 == 0,
            f"wide_resnet depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, 34, 40, ...), got {depth}",
        )
        require(widen_factor >= 1, f"wide_resnet widen_factor must be >= 1, got {widen_factor}")
        require(0.0 <= dropout < 1.0, f"wide_resnet dropout must be in [0, 1), got {dropout}")
        require_feature_size("wide_resnet", image_size, lambda s: halved(s, 2))
        n = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)]
        c_in = 16
        for c_out, stride in zip(widths, (1, 2, 2)):
            layers += preact_stage(c_in, c_out, n, stride, dropout)
            c_in = c_out
        layers += [nn.BatchNorm2d(c_in), nn.ReLU()]
        super().__init__(
            nn.Sequential(*layers), feature_channels=c_in, num_classes=num_classes,
            in_channels=in_channels,
        )


def _preset(depth: int, widen_factor: int):
    def factory(num_classes: int, in_channels: int, image_size: int, dropout: float = 0.0) -> WideResNet:
        return WideResNet(
            num_classes,
            in_channels,
            image_size,
            depth=depth,
            widen_factor=widen_factor,
            dropout=dropout,
        )

    factory.__name__ = f"wrn{depth}_{widen_factor}"
    factory.__doc__ = f"WRN-{depth}-{widen_factor} (Zagoruyko & Komodakis 2016)."
    return factory


for _depth, _k in ((28, 10), (34, 10)):
    MODELS.register(f"wrn{_depth}_{_k}", paper=f"Zagoruyko & Komodakis 2016, WRN-{_depth}-{_k}")(
        _preset(_depth, _k)
    )
