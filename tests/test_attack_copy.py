"""models/attack_copy: BatchNorm folded into convolutions gives the same function, cheaper."""

import pytest
import torch
from torch import nn

from robustlab.models import create_model
from robustlab.models.attack_copy import attack_copy, fold_batchnorm, in_bfloat16


def trained_like(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))
    return model.eval()


@pytest.mark.parametrize("name, shape, left", [("small_cnn", (1, 28, 28), 0), ("resnet20", (3, 32, 32), 0),
                                               ("preact_resnet18", (3, 32, 32), 9)])
def test_folding_keeps_the_function_and_removes_every_bn_after_a_conv(name, shape, left):
    model = trained_like(create_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1]))
    x = torch.rand(8, *shape, generator=torch.Generator().manual_seed(1))
    folded = fold_batchnorm(model)
    # pre-activation blocks put BN before ReLU and conv: those 9 cannot fold and must stay
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == left
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in folded.parameters())
    assert model.training is False and all(p.requires_grad for p in model.parameters())  # untouched


def test_the_bf16_copy_returns_float32_logits_close_to_the_model():
    model = trained_like(create_model("small_cnn", num_classes=10))
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits, exact = in_bfloat16(fold_batchnorm(model))(x), model(x)
    assert logits.dtype == torch.float32
    err = (logits - exact).abs().max().item()
    assert 0 < err < 0.05 * exact.abs().max().item()  # bfloat16 rounding: not exact, but close


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            x = x * 2
        return self.bn(self.conv(x)).flatten(1)


def test_a_model_fx_cannot_trace_is_used_unfolded_with_a_warning():
    model = Untraceable().eval()
    with pytest.warns(UserWarning, match="BatchNorm not folded"):
        copy = fold_batchnorm(model)
    x = torch.rand(2, 1, 5, 5)
    with torch.no_grad():
        assert torch.equal(copy(x), model(x))


def test_the_attack_copy_is_channels_last_and_keeps_the_function():
    model = trained_like(create_model("resnet20", num_classes=10, in_channels=3, image_size=32))
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    copy = attack_copy(model, x)
    convs = [m for m in copy.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy.modules())
    with torch.no_grad():
        assert torch.allclose(copy(x), model(x), atol=1e-4, rtol=1e-4)
    x_grad = x.clone().requires_grad_()
    copy(x_grad).sum().backward()  # the input gradient comes back in the input's shape
    assert x_grad.grad.shape == x.shape
    assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, nn.Conv2d))  # untouched


class Viewing(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4 * 3 * 3, 2)

    def forward(self, x):
        z = self.conv(x)
        return self.fc(z.view(len(z), -1))  # .view needs the default layout


def test_a_model_that_cannot_run_channels_last_is_used_in_its_own_layout_with_a_warning():
    model = Viewing().eval()
    x = torch.rand(3, 1, 5, 5)
    with pytest.warns(UserWarning, match="channels-last layout not used"):
        copy = attack_copy(model, x)
    with torch.no_grad():
        assert torch.allclose(copy(x), model(x), atol=1e-6)
