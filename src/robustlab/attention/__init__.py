"""Attention maps and areas: channel mean, Grad-CAM, thresholds, top-k cells, IoU, masks."""

from robustlab.attention.areas import iou, mask_out, threshold_area, top_k_cells
from robustlab.attention.maps import (
    NORMALIZATIONS,
    cam_from,
    captured,
    channel_mean,
    features_and_logits,
    grad_cam,
    normalize,
    upsample,
)

__all__ = ["NORMALIZATIONS", "cam_from", "captured", "channel_mean", "features_and_logits", "grad_cam",
           "iou", "mask_out", "normalize", "threshold_area", "top_k_cells", "upsample"]
