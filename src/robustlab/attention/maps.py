"""Attention maps of a `Classifier`: the class-irrelevant channel mean (AGKD-BML Sec. 3.2.1) and
Grad-CAM (Selvaraju et al. 2017; ATAT eq. 3, AAD's g(x)), with resizing and normalization.

Nothing here changes the model's mode or its parameters' `.grad`: Grad-CAM differentiates the
class score w.r.t. the feature map only (`torch.autograd.grad`). With `create_graph=True` the map
stays differentiable w.r.t. the parameters, for a training loss; without it, the body runs
without a graph and only the head is differentiated, which is the cheap path for analysis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import UserError
from robustlab.models.adapter import submodule

NORMALIZATIONS = ("none", "max", "minmax", "sum", "l2")


def channel_mean(features: Tensor) -> Tensor:
    """A(F(x)) = (1/C) sum_c F_c(x): [B, C, h, w] -> [B, h, w] (AGKD-BML Sec. 3.2.1, the average
    pooling over the channel dimension)."""
    if features.dim() != 4:
        raise UserError(f"attention maps need a feature map [B, C, h, w], got shape {tuple(features.shape)}")
    return features.mean(1)


@contextlib.contextmanager
def captured(model: nn.Module, layer: str, *, differentiable: bool) -> Iterator[dict]:
    """Records the output of module `layer` during forwards in the block, as `box["output"]`.

    Without `differentiable`, the output is cut from the graph (the layers below run as if
    frozen) but still requires grad, so Grad-CAM can differentiate the layers above it. The hook
    is removed when the block ends, even on error.
    """
    box: dict[str, Tensor] = {}

    def hook(module, inputs, output):
        if not isinstance(output, Tensor) or output.dim() != 4:
            raise UserError(f"layer {layer!r} gives {type(output).__name__} "
                            f"{tuple(getattr(output, 'shape', ()))}, not a [B, C, h, w] feature map")
        if not differentiable or not output.requires_grad:
            output = output.detach().requires_grad_(True)
        box["output"] = output
        return output

    handle = submodule(model, layer).register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def features_and_logits(model: nn.Module, x: Tensor, layer: str | None,
                        differentiable: bool) -> tuple[Tensor, Tensor]:
    """(A, logits): the feature map of `layer` (None: the model's `features`) and the logits, with
    A requiring grad so that d logits / d A exists."""
    with torch.enable_grad():
        if layer is None:
            if differentiable:
                feats = model.features(x)
            else:
                with torch.no_grad():
                    feats = model.features(x)
            if not feats.requires_grad:
                feats = feats.detach().requires_grad_(True)
            return feats, model.head(model.embed(feats))
        with captured(model, layer, differentiable=differentiable) as box:
            logits = model(x)
        return box["output"], logits


def grad_cam(model: nn.Module, x: Tensor, cls: Tensor | None = None, *, layer: str | None = None,
             create_graph: bool = False, relu: bool = True) -> Tensor:
    """Grad-CAM L^c = ReLU(sum_k alpha_k^c A_k), alpha_k^c = GAP(dy^c / dA_k) (Selvaraju et al.
    2017 eq. 1-2; ATAT eq. 3): [B, h, w] at the resolution of `layer`.

    Args:
        cls: the class per image [B]; None takes the model's prediction.
        layer: a module name (`model.named_modules()`); None is the model's `features`, the last
            conv feature map the papers use.
        create_graph: keep the map differentiable w.r.t. the parameters (ATAT / AAD losses).
        relu: False keeps the negative evidence too.
    """
    feats, logits = features_and_logits(model, x, layer, differentiable=create_graph)
    return cam_from(feats, logits, cls, create_graph=create_graph, relu=relu)


def cam_from(feats: Tensor, logits: Tensor, cls: Tensor | None = None, *, create_graph: bool = False,
             relu: bool = True, rows: slice | None = None) -> Tensor:
    """Grad-CAM from a feature map and the logits computed from it in the same graph, e.g. the
    outputs a training step already has (`Out.features`, `Out.logits`): no extra forward.
    `rows`: the maps of those images only (a slice of a concatenated forward's batch; `cls`
    then has one class per row of the slice)."""
    if rows is not None:
        n = len(range(*rows.indices(len(feats))))
        if cls is None:
            cls = logits[rows].detach().argmax(1)
        if cls.shape != (n,):
            raise UserError(f"grad_cam needs one class per image: got shape {tuple(cls.shape)} for "
                            f"the {n} rows {rows.start}:{rows.stop}")
        with torch.enable_grad():
            (grads,) = torch.autograd.grad(
                logits[rows].gather(1, cls.view(-1, 1).to(logits.device)).sum(), feats,
                create_graph=create_graph, retain_graph=True)
            cam = (grads[rows].mean((2, 3), keepdim=True) * feats[rows]).sum(1)
        cam = F.relu(cam) if relu else cam
        return cam if create_graph else cam.detach()
    if cls is None:
        cls = logits.detach().argmax(1)
    if cls.shape != (len(feats),):
        raise UserError(f"grad_cam needs one class per image: got shape {tuple(cls.shape)} "
                        f"for {len(feats)} images")
    with torch.enable_grad():
        score = logits.gather(1, cls.view(-1, 1).to(logits.device)).sum()
        # retain_graph: a training step still backpropagates through these logits afterwards.
        (grads,) = torch.autograd.grad(score, feats, create_graph=create_graph, retain_graph=True)
        cam = (grads.mean((2, 3), keepdim=True) * feats).sum(1)
    if relu:
        cam = F.relu(cam)
    return cam if create_graph else cam.detach()


def upsample(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Bilinear resize of [B, h, w] maps to the input size (H, W), for overlays and input masks."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def normalize(maps: Tensor, how: str = "none") -> Tensor:
    """Per-map scaling: "max" (divide by the max), "minmax" (to [0, 1]), "sum" (to a
    distribution), "l2" (unit norm, as Zagoruyko & Komodakis 2017), or "none"."""
    if how not in NORMALIZATIONS:
        raise UserError(f"attention normalization {how!r} is not one of {', '.join(NORMALIZATIONS)}")
    if how == "none":
        return maps
    flat = maps.flatten(1)
    tiny = torch.finfo(maps.dtype).tiny
    if how == "max":
        flat = flat / flat.amax(1, keepdim=True).clamp_min(tiny)
    elif how == "minmax":
        low = flat.amin(1, keepdim=True)
        flat = (flat - low) / (flat.amax(1, keepdim=True) - low).clamp_min(tiny)
    elif how == "sum":
        flat = flat / flat.sum(1, keepdim=True).clamp_min(tiny)
    else:
        flat = F.normalize(flat, dim=1)
    return flat.view_as(maps)
