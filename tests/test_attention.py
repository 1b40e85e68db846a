"""Attention maps and areas against hand-computed values and captum's Grad-CAM; hooks are
released and nothing about the model changes unless a loss asks for a graph."""

import pytest
import torch
from captum.attr import LayerGradCam

from robustlab.attention import (
    channel_mean,
    grad_cam,
    iou,
    normalize,
    threshold_area,
    top_k_cells,
    upsample,
)
from robustlab.errors import UserError
from robustlab.models import create_model


def model(seed=0):
    torch.manual_seed(seed)
    m = create_model("small_cnn", num_classes=10, in_channels=1, image_size=28, width=8, embedding_dim=32)
    # a few BN statistics away from their defaults, so eval and train mode differ
    with torch.no_grad():
        m.train()(torch.rand(64, 1, 28, 28))
    return m.eval()


def images(n=4, seed=1):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_channel_mean_is_the_average_over_channels():
    # two channels of a 2 x 2 map: A = (F_0 + F_1) / 2 (AGKD-BML Sec. 3.2.1)
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[3.0, 0.0], [-1.0, 2.0]]]])
    assert torch.equal(channel_mean(f), torch.tensor([[[2.0, 1.0], [1.0, 3.0]]]))
    with pytest.raises(UserError, match=r"\[B, C, h, w\]"):
        channel_mean(torch.zeros(2, 3))


def test_grad_cam_hand_computed_on_a_linear_head():
    # logits = W . mean_hw(A): dy^c/dA_k = W[c, k] / (h w), so alpha_k = W[c, k] / 4 on a 2 x 2 map
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 4.0]]))

        def features(self, x):
            return x

        def embed(self, f):
            return f.mean((2, 3))

        def head(self, e):
            return e @ self.w.T

    a = torch.tensor([[[[1.0, 0.0], [2.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    # class 0: alpha = [1/4, -1/2]; sum_k alpha_k A_k = [[1/4, -1/2], [0, 1/4]]; ReLU
    cam = grad_cam(Tiny(), a, torch.tensor([0]))
    assert torch.allclose(cam, torch.tensor([[[0.25, 0.0], [0.0, 0.25]]]))
    cam = grad_cam(Tiny(), a, torch.tensor([0]), relu=False)
    assert torch.allclose(cam, torch.tensor([[[0.25, -0.5], [0.0, 0.25]]]))


@pytest.mark.parametrize("layer", [None, "body.9"])
def test_grad_cam_equals_captum_layer_grad_cam(layer):
    m, x = model(), images()
    cls = torch.tensor([0, 3, 5, 9])
    target_layer = m.body if layer is None else dict(m.named_modules())[layer]
    theirs = LayerGradCam(m, target_layer).attribute(x, target=cls, relu_attributions=True)[:, 0]
    ours = grad_cam(m, x, cls, layer=layer)
    assert ours.abs().max() > 0
    assert torch.allclose(ours, theirs, atol=1e-6, rtol=1e-5)
    # the default class is the prediction
    pred = m(x).argmax(1)
    assert torch.allclose(grad_cam(m, x, layer=layer), grad_cam(m, x, pred, layer=layer))


def test_grad_cam_leaves_mode_gradients_and_hooks_as_they_were():
    m, x = model(), images()
    m.train()
    flags = [p.requires_grad for p in m.parameters()]
    stats = [b.clone() for b in m.buffers()]
    m.eval()
    for layer in (None, "body.9"):
        cam = grad_cam(m, x, layer=layer)
        assert not cam.requires_grad
    assert not m.training
    assert [p.requires_grad for p in m.parameters()] == flags
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(a, b) for a, b in zip(stats, m.buffers()))
    assert all(not mod._forward_hooks for mod in m.modules())
    with pytest.raises(UserError, match="one class per image"):  # the hook goes even on error
        grad_cam(m, x, torch.tensor([1, 2]), layer="body.9")
    assert all(not mod._forward_hooks for mod in m.modules())
    with pytest.raises(UserError, match="not a module"):
        grad_cam(m, x, layer="body.99")


def test_grad_cam_with_create_graph_reaches_the_parameters_by_double_backward():
    m, x = model(), images()
    cam = grad_cam(m, x, torch.tensor([1, 2, 3, 4]), create_graph=True)
    assert cam.requires_grad
    cam.sum().backward()
    # The biases after the last conv enter d y^c / d A only through ReLU's piecewise-constant
    # slope, so their second-order gradient is exactly zero; every weight gets one.
    for name, p in m.named_parameters():
        if name.startswith("body.") or name in ("embedding.1.weight", "classifier.weight"):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_upsample_and_normalizations():
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]]])
    assert upsample(maps, 28).shape == (1, 28, 28)
    assert torch.allclose(upsample(maps, 2), maps)
    assert torch.allclose(normalize(maps, "max"), maps / 4)
    assert torch.allclose(normalize(maps, "minmax"), maps / 4)
    assert torch.allclose(normalize(maps, "sum"), maps / 8)
    assert torch.allclose(normalize(maps, "l2"), maps / 26 ** 0.5)
    assert torch.allclose(normalize(maps + 1, "minmax"), maps / 4)
    assert torch.equal(normalize(maps), maps)
    with pytest.raises(UserError, match="normalization"):
        normalize(maps, "softmax")


def test_threshold_area_at_the_mean_or_a_fixed_kappa():
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]]])  # mean 2
    assert torch.equal(threshold_area(maps), torch.tensor([[[False, True], [False, True]]]))
    assert torch.equal(threshold_area(maps, kappa=1.0), torch.tensor([[[True, True], [False, True]]]))


def test_top_k_cells_exactly_k_and_on_a_grid():
    maps = torch.tensor([[[1.0, 3.0], [0.0, 4.0]]])
    assert torch.equal(top_k_cells(maps, 1), torch.tensor([[[False, False], [False, True]]]))
    assert int(top_k_cells(torch.zeros(3, 4, 4), 5).sum()) == 15  # ties still give k per map
    # a 4 x 4 map averaged over a 2 x 2 grid: the top-left quadrant holds the mass
    big = torch.zeros(1, 4, 4)
    big[0, :2, :2] = 1.0
    assert torch.equal(top_k_cells(big, 1, grid=2), torch.tensor([[[True, False], [False, False]]]))
    with pytest.raises(UserError, match="k=5 cells"):
        top_k_cells(maps, 5)


def test_iou_of_identical_disjoint_and_overlapping_areas():
    a = torch.tensor([[[True, True], [False, False]]])
    b = torch.tensor([[[False, False], [True, True]]])
    c = torch.tensor([[[False, True], [True, False]]])
    assert iou(a, a).item() == 1.0
    assert iou(a, b).item() == 0.0
    assert iou(a, c).item() == pytest.approx(1 / 3)
    assert iou(torch.zeros(1, 2, 2, dtype=torch.bool), torch.zeros(1, 2, 2, dtype=torch.bool)).item() == 1.0
    with pytest.raises(UserError, match="different shapes"):
        iou(a, torch.zeros(1, 3, 3, dtype=torch.bool))
