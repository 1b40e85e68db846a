"""A cheaper stand-in for a model inside an attack's many passes: an eval-mode copy whose
BatchNorm layers are folded into the convolutions before them (`fold_batchnorm`), with its
activations in the channels-last layout (`in_channels_last`), optionally run under bfloat16
autocast (`in_bfloat16`). `attack_copy` builds the first two.

Folding is exact algebra (eval-mode BN is the affine map gamma (z - mu) / sqrt(var + eps) + beta,
which merges into the conv's weight and bias; Ioffe & Szegedy 2015, Sec. 3.2, the usual
inference fusion): the logits move by float rounding only (7e-9 on small_cnn, 5e-7 on resnet20).
Channels-last (NHWC) is a memory layout, not a change of the function (logits within 2e-6 on
small_cnn): oneDNN's convolutions on this CPU run faster in it. Measured on madry's small_cnn, 65
images a call, 2 threads, interleaved medians of 20 (forward; forward + input-backward) over the
model as it is: folded 1.07x; 1.34x, folded channels-last 1.64x; 1.56x, and with bfloat16
autocast 1.69x; 2.67x in the default layout, 2.98x; 3.59x channels-last. The whole AutoAttack's
gain is in benchmarks/results.md (`python benchmarks/autoattack.py`).
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


class _ChannelsLast(nn.Module):
    """model(x) with x and every 4-d weight in channels-last memory (the same values)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)


def in_channels_last(model: nn.Module, probe: Tensor) -> nn.Module:
    """`model` (converted in place: give it a copy) run channels-last; a model whose forward
    cannot take that layout on `probe` (a `.view` of its activations, say) is given back as it
    is, with a warning."""
    wrapped = _ChannelsLast(model)
    try:
        with torch.no_grad():
            wrapped(probe)
    except RuntimeError as error:
        warnings.warn(f"channels-last layout not used ({error}): the attack runs the model in its "
                      "own layout, a little slower", UserWarning, stacklevel=2)
        return model.to(memory_format=torch.contiguous_format)
    return wrapped.eval()


def attack_copy(model: nn.Module, probe: Tensor) -> nn.Module:
    """The float32 stand-in for `model` in an attack: BatchNorm folded, channels-last (`probe`: a
    batch of the attack's inputs, to check the layout); `model` itself is untouched."""
    return in_channels_last(fold_batchnorm(model), probe[:1])


def in_bfloat16(model: nn.Module) -> nn.Module:
    """model(x) under bfloat16 autocast, logits back in float32 (up to 5e-2 from the float32
    logits of madry's small_cnn; its speed is in the module docstring)."""
    return _Autocast(model).eval()
