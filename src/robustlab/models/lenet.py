"""`lenet`: LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-Based Learning Applied to
Document Recognition", Proc. IEEE 1998), with the now usual ReLU and max-pooling in place of the
scaled tanh and trainable sub-sampling."""

from __future__ import annotations

from torch import nn

from robustlab.models.base import MODELS, Classifier, conv_out, make_activation, require_feature_size


def _padding(image_size: int) -> int:
    # LeNet-5 was designed for 32x32 inputs (MNIST digits padded to 32x32); padding 2 makes a
    # 28x28 input behave exactly like that, giving the paper's 5x5 map after the second block.
    return 2 if image_size < 32 else 0


def _feature_side(image_size: int) -> int:
    side = conv_out(image_size, 5, padding=_padding(image_size)) // 2
    return conv_out(side, 5) // 2 if side >= 5 else 0


@MODELS.register("lenet", paper="LeCun et al. 1998, LeNet-5")
class LeNet(Classifier):
    """conv5x5(6)-ReLU-maxpool2, conv5x5(16)-ReLU-maxpool2 -> features [B, 16, 5, 5] (28x28 or
    32x32 input); flatten -> 120 -> ReLU -> 84 -> ReLU -> embedding [B, 84]; Linear -> logits.
    `activation` (relu | leaky_relu, with `negative_slope`) replaces every ReLU."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28, *,
                 activation: str = "relu", negative_slope: float = 0.1):
        side = require_feature_size("lenet", image_size, _feature_side)
        act = lambda: make_activation(activation, negative_slope)
        body = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=_padding(image_size)),
            act(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            act(),
            nn.MaxPool2d(2),
        )
        embedding = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            act(),
            nn.Linear(120, 84),
            act(),
        )
        super().__init__(
            body,
            embedding,
            nn.Linear(84, num_classes),
            in_channels=in_channels,
            feature_channels=16,
        )
