"""A cheaper stand-in for a model inside an attack's many passes: an eval-mode copy whose
BatchNorm layers are folded into the convolutions before them (`fold_batchnorm`), optionally run
under bfloat16 autocast (`in_bfloat16`).

Folding is exact algebra (eval-mode BN is the affine map gamma (z - mu) / sqrt(var + eps) + beta,
which merges into the conv's weight and bias; Ioffe & Szegedy 2015, Sec. 3.2, the usual
inference fusion): the logits move by float rounding only (7e-9 on small_cnn, 5e-7 on resnet20),
while a forward + input-backward of small_cnn costs 1.5x less and a forward 2.1x less on this
CPU at 1 thread (a pass-cost probe; eval-mode BN is a memory-bound pass over every activation).
The whole AutoAttack gains less (benchmarks/results.md, `python benchmarks/autoattack.py`).
A BN that does not directly follow a convolution (pre-activation ResNets) stays as it is.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn


class _Autocast(nn.Module):
    """model(x) under bfloat16 autocast, logits back in float32."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.model(x).float()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` (logits only) with each conv -> BN pair folded into one conv
    (torch.fx's `fuse`); a model torch.fx cannot trace is copied unfolded, with a warning."""
    with warnings.catch_warnings():  # its mkldnn helpers use the deprecated torch.jit.script_method
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    try:
        folded = fuse(model)
    except Exception as error:  # noqa: BLE001 (fx raises many types on untraceable Python)
        warnings.warn(f"BatchNorm not folded ({type(error).__name__}: {error}): the model cannot be "
                      "traced by torch.fx; attacks run it as it is", UserWarning, stacklevel=2)
        folded = model
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded.eval()


def in_bfloat16(model: nn.Module) -> nn.Module:
    """model(x) under bfloat16 autocast, logits back in float32 (about 1e-2 from the float32
    logits of small_cnn; 2.3x cheaper passes than the folded float32 copy at 1 thread here)."""
    return _Autocast(model).eval()
