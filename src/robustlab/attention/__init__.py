"""Attention maps and areas: channel mean, Grad-CAM, thresholds, top-k cells, IoU."""

from robustlab.attention.areas import iou, threshold_area, top_k_cells
from robustlab.attention.maps import (
    NORMALIZATIONS,
    captured,
    channel_mean,
    grad_cam,
    normalize,
    upsample,
)

__all__ = ["NORMALIZATIONS", "captured", "channel_mean", "grad_cam", "iou", "normalize",
           "threshold_area", "top_k_cells", "upsample"]
