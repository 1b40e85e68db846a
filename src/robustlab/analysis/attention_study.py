"""Where models look: attention grids, attention over an attack's iterations, and AAD Sec. 3's
studies (attention vs object area, AAD Tables 1-2; clean vs adversarial areas, Table 3)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
from torch import Tensor, nn

from robustlab.attacks import PGD
from robustlab.attention import (
    cam_from,
    channel_mean,
    features_and_logits,
    grad_cam,
    iou,
    top_k_cells,
    upsample,
)
from robustlab.errors import UserError
from robustlab.models.modes import frozen_eval

Attack = Callable[[nn.Module, Tensor, Tensor], Tensor]


def _predict(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def attention_grid(model: nn.Module, x: Tensor, y: Tensor, attack: Attack) -> dict[str, Tensor]:
    """For each image: the adversarial image, both predictions, and three maps at input size
    (channel mean, Grad-CAM of the true class, Grad-CAM of the predicted class) on the clean and
    on the adversarial image (AGKD-BML Fig. 1 and 4, ATAT Fig. 1-2, AAD Fig. 1). The model runs
    in eval mode (restored after); one forward per image set serves all three maps."""
    out: dict[str, Tensor] = {"x": x, "y": y}
    size = x.shape[-2:]
    with frozen_eval(model):
        out["x_adv"] = attack(model, x, y)
        for tag, images in (("clean", x), ("adv", out["x_adv"])):
            feats, logits = features_and_logits(model, images, None, differentiable=False)
            pred = logits.detach().argmax(1)
            out[f"pred_{tag}"] = pred
            out[f"mean_{tag}"] = upsample(channel_mean(feats.detach()), size)
            out[f"cam_true_{tag}"] = upsample(cam_from(feats, logits, y), size)
            out[f"cam_pred_{tag}"] = upsample(cam_from(feats, logits, pred), size)
    return out


def attention_trace(model: nn.Module, x: Tensor, y: Tensor, attack: PGD) -> dict[str, Tensor]:
    """Grad-CAM of the true class after each iteration 0..k of a PGD-family attack (ATAT Fig. 3,
    AAD Fig. 2 and 12). The step size is fixed at the attack's own, so PGD(steps=i) is the i-th
    iterate of PGD(steps=k): the same random start, the same steps."""
    if not isinstance(attack, PGD):
        raise UserError("the attention trace follows a PGD-family attack (pgd, bim, iter_ll, ...)")
    fixed = replace(attack, step_size=attack.alpha)
    images, preds, maps = [x], [], []
    with frozen_eval(model):
        for i in range(1, attack.steps + 1):
            images.append(replace(fixed, steps=i)(model, x, y))
        for step_images in images:
            preds.append(_predict(model, step_images).argmax(1))
            maps.append(upsample(grad_cam(model, step_images, y), x.shape[-2:]))
    return {"images": torch.stack(images, 1), "pred": torch.stack(preds, 1), "cam": torch.stack(maps, 1),
            "y": y}


def foreground(x: Tensor, threshold: float = 0.1) -> Tensor:
    """The object area of a dark-background grey image (Fashion-MNIST, MNIST): pixels brighter
    than `threshold`, [B, H, W] bool (AAD uses boxes where a data set has them)."""
    return x.mean(1) > threshold


def _top_area(maps: Tensor, sizes: Tensor) -> Tensor:
    """Per map, its `sizes[i]` highest pixels (AAD Sec. 3.1: kappa chosen so that Att(x) and
    the object area have the same size)."""
    flat = maps.flatten(1)
    order = flat.argsort(1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(flat.shape[1], device=maps.device).expand_as(order))
    return (rank < sizes[:, None]).view_as(maps)


def _correct(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    keep = _predict(model, x).argmax(1) == y  # I_att: the images the model gets right
    if not keep.any():
        raise UserError("the model classifies none of these images correctly; the attention study "
                        "needs correctly classified images (I_att)")
    return x[keep], y[keep], keep


def object_iou_study(model: nn.Module, x: Tensor, y: Tensor, attack: Attack,
                     threshold: float = 0.1, low: float = 0.5) -> dict:
    """AAD Tables 1-2: IoU between the attention area (Grad-CAM of the true class at input size,
    as many pixels as the object has) and the object area, for images the attack fools
    (I_succeed) and those it does not (I_fail); then, among images with IoU < `low`, the share of
    each group and its mean clean confidence in the true class."""
    with frozen_eval(model):
        x, y, _ = _correct(model, x, y)
        objects = foreground(x, threshold)
        maps = upsample(grad_cam(model, x, y), x.shape[-2:])
        fooled = _predict(model, attack(model, x, y)).argmax(1) != y
        confidence = _predict(model, x).softmax(1).gather(1, y[:, None]).squeeze(1)
    scores = iou(_top_area(maps, objects.flatten(1).sum(1)), objects)
    result: dict = {"images": len(y), "table1": {}, "table2": {}}
    lows = scores < low
    for name, group in (("succeed", fooled), ("fail", ~fooled)):
        result["table1"][name] = {"percentage": group.float().mean().item(),
                                  "iou": scores[group].mean().item() if group.any() else None}
        in_low = group & lows
        result["table2"][name] = {"percentage": (in_low.sum() / lows.sum()).item() if lows.any() else None,
                                  "confidence": confidence[in_low].mean().item() if in_low.any() else None}
    return result


def shift_iou_study(model: nn.Module, x: Tensor, y: Tensor, attack: Attack,
                    cells: Sequence[int] = (5, 10, 20, 30), grid: int | None = None) -> dict:
    """AAD Table 3: IoU between the clean and the adversarial attention areas, each the top-k
    cells of the Grad-CAM grid (the model's last feature map, or `grid` x `grid` cells), for
    I_succeed and I_fail. k larger than the grid is capped at the number of cells."""
    with frozen_eval(model):
        x, y, _ = _correct(model, x, y)
        x_adv = attack(model, x, y)
        fooled = _predict(model, x_adv).argmax(1) != y
        clean, adv = grad_cam(model, x, y), grad_cam(model, x_adv, y)
    n_cells = (grid * grid) if grid else clean[0].numel()
    rows = {}
    for k in cells:
        kk = min(k, n_cells)
        scores = iou(top_k_cells(clean, kk, grid), top_k_cells(adv, kk, grid))
        rows[str(k)] = {"succeed": scores[fooled].mean().item() if fooled.any() else None,
                        "fail": scores[~fooled].mean().item() if (~fooled).any() else None}
    return {"images": len(y), "cells": n_cells, "succeed": fooled.float().mean().item(), "rows": rows}
