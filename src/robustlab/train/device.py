"""Device choice (`auto` picks CUDA, then Apple MPS, then CPU), deterministic kernels and the
opt-in compiled forward (`compile_model`)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator

import torch
from torch import nn

from robustlab.errors import UserError


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(
            f"train.device={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r} but CUDA is not available here; use train.device=cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """torch.use_deterministic_algorithms(True, warn_only=True) while training, restored after:
    an op with no deterministic kernel warns instead of silently making two runs differ (the
    parallel CPU index_put_ accumulate once did, see defenses.terms._sml_triplets). On CUDA it
    needs CUBLAS_WORKSPACE_CONFIG, set here when unset (a fixed cuBLAS workspace: a few MB)."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile (inductor) cannot run here, or None when it can."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support this Python / platform (torch {torch.__version__})"
    compilers = (os.environ.get("CXX", "g++"), "c++", "clang++")
    if device.type == "cpu" and not any(shutil.which(c) for c in compilers):
        return "inductor needs a C++ compiler for the CPU (apt-get install g++, or set CXX)"
    return None


def compile_model(model: nn.Module, device: torch.device, log: Callable[[str], None]) -> bool:
    """Compile `model`'s forward and forward_all in place (torch.compile, inductor: the first
    batches of each shape pay the compilation); the weights and checkpoints are unchanged. Without
    a compiler, one line says why and the model stays eager (returns False)."""
    reason = compile_unavailable(device)
    if reason is not None:
        log(f"compile: {reason}; running eager")
        return False
    model.compile()
    if hasattr(model, "forward_all"):
        model.forward_all = torch.compile(model.forward_all)
    return True
