"""Attention areas (boolean masks over a map) and their overlap (AAD Sec. 3 and eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.errors import UserError


def threshold_area(maps: Tensor, kappa: float | None = None) -> Tensor:
    """Att(x) = g(x) >= kappa (AAD eq. 3): [B, h, w] bool. kappa None takes each map's own mean,
    the AAD default; a number is a fixed threshold for every map."""
    if maps.dim() != 3:
        raise UserError(f"attention areas need maps [B, h, w], got shape {tuple(maps.shape)}")
    if kappa is None:
        return maps >= maps.mean((1, 2), keepdim=True)
    return maps >= kappa


def top_k_cells(maps: Tensor, k: int, grid: int | None = None) -> Tensor:
    """The k cells with the most attention (AAD Table 3): [B, g, g] bool, where the map is first
    averaged over a g x g grid of cells (None: the map's own cells). Exactly k cells per map."""
    if maps.dim() != 3:
        raise UserError(f"attention areas need maps [B, h, w], got shape {tuple(maps.shape)}")
    if grid is not None:
        if not isinstance(grid, int) or grid < 1:
            raise UserError(f"grid={grid!r} must be an integer >= 1")
        maps = F.adaptive_avg_pool2d(maps[:, None], grid)[:, 0]
    cells = maps[0].numel() if len(maps) else 0
    if not isinstance(k, int) or not 1 <= k <= max(cells, 1):
        raise UserError(f"k={k!r} cells: expected an integer in [1, {cells}] for "
                        f"{tuple(maps.shape[1:])} maps")
    flat = maps.flatten(1)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask.scatter_(1, flat.topk(k, dim=1).indices, True)
    return mask.view_as(maps)


def iou(a: Tensor, b: Tensor) -> Tensor:
    """|a & b| / |a | b| per map [B]; two empty areas count as identical (1)."""
    if a.shape != b.shape:
        raise UserError(f"IoU of areas of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.flatten(1).bool(), b.flatten(1).bool()
    inter = (a & b).sum(1).float()
    union = (a | b).sum(1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mask_out(x: Tensor, maps: Tensor, kappa: float | None = None) -> Tensor:
    """x^m = x * (1 - Att(x)) (AAD eq. 7): the attention area, thresholded after a bilinear resize
    of the maps to the input size, set to 0 in every channel. A hard mask: no gradient flows
    through it."""
    if maps.dim() != 3 or len(maps) != len(x):
        raise UserError(f"mask_out needs one map [B, h, w] per image: got maps {tuple(maps.shape)} "
                        f"for images {tuple(x.shape)}")
    size = x.shape[-2:]
    full = F.interpolate(maps.detach()[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return x * (1 - threshold_area(full, kappa).to(x.dtype))[:, None]
